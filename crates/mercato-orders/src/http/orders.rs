//! The order routes: place, read, list, change and cancel.
//!
//! A write commits the order and its event (outbox) in one transaction and answers at once, or,
//! with `Prefer: wait=N`, once the saga has moved the order on (see [`crate::waiters`]). Orders
//! of other users are `404`, as if they did not exist.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mercato_contracts::{OrderCancelled, OrderDelivered, OrderShipped, OrderUpdated};
use mercato_platform::ApiError;
use mercato_platform::auth::Caller;
use mercato_platform::extract::{Json, Path, Query};
use mercato_platform::money::Money;
use mercato_platform::pagination::{Page, PageQuery, parse_ids, parse_limit};
use mercato_platform::time::Timestamp;
use mercato_platform::trace::TraceContext;
use mercato_platform::validation::Fields;
use mercato_store::is_unique_violation;
use mercato_store::sqlx::AnyConnection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::AppState;
use crate::db::idempotency::{self, Stored};
use crate::db::orders::{self, Filter};
use crate::db::replicas;
use crate::fields;
use crate::http::preferences;
use crate::http::{Signed, deleted_first, refuse_if_deleted};
use crate::order::{Address, Order, Refusal, Status, UpdateRejection};
use crate::placing::{self, OrderToPlace};
use crate::waiters::Armed;

/// One line of an order as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemResponse {
    pub product_id: Uuid,
    pub quantity: i64,
    /// The products service's price per unit; `null` until the order is priced.
    pub unit_price: Option<Money>,
    /// The products service's name once priced; before, the catalog replica's (`null` if this
    /// service has not heard of the product yet).
    pub name: Option<String>,
}

/// An order as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: Status,
    pub items: Vec<ItemResponse>,
    /// `null` until priced, and for a rejected order.
    pub total: Option<Money>,
    pub shipping_address: Option<Address>,
    pub payment_method: Option<String>,
    /// Why the products service refused the order (`insufficient_stock`, `unknown_product`,
    /// `product_unavailable`).
    pub rejection_reason: Option<String>,
    /// Why the last item change was refused (the order kept its previous items).
    pub last_update_rejection: Option<UpdateRejection>,
    /// Increases on every change: the `orderVersion` of the order's events.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Client views of `orders`: lines not priced yet take their names from the catalog replica,
/// read once for the whole list.
pub(crate) async fn present(
    state: &AppState,
    conn: &mut AnyConnection,
    orders: Vec<Order>,
) -> Result<Vec<OrderResponse>, ApiError> {
    let unnamed: Vec<Uuid> = orders
        .iter()
        .flat_map(|order| order.items.iter())
        .filter(|line| line.name.is_none())
        .map(|line| line.product_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let names = replicas::names(&state.db, conn, &unnamed).await?;
    Ok(views(orders, &names))
}

/// Client views of `orders`, naming unpriced lines from `names`.
fn views(orders: Vec<Order>, names: &HashMap<Uuid, String>) -> Vec<OrderResponse> {
    orders.into_iter().map(|order| view(order, names)).collect()
}

/// The client view of `order`, naming unpriced lines from `names`.
pub(crate) fn view(order: Order, names: &HashMap<Uuid, String>) -> OrderResponse {
    OrderResponse {
        id: order.id,
        user_id: order.user_id,
        status: order.status,
        items: order
            .items
            .iter()
            .map(|line| ItemResponse {
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price: line.unit_price(),
                name: line.name.clone().or_else(|| names.get(&line.product_id).cloned()),
            })
            .collect(),
        total: order.total,
        shipping_address: order.shipping_address,
        payment_method: order.payment_method,
        rejection_reason: order.rejection_reason,
        last_update_rejection: order.last_update_rejection,
        version: order.version,
        created_at: order.created_at,
        updated_at: order.updated_at,
    }
}

async fn present_one(state: &AppState, order: Order) -> Result<OrderResponse, ApiError> {
    let mut views = if order.items.iter().all(|line| line.name.is_some()) {
        // Priced lines carry their names: no connection to take (and hand back) at all.
        views(vec![order], &HashMap::new())
    } else {
        let mut conn = state.db.pool().acquire().await?;
        present(state, &mut conn, vec![order]).await?
    };
    views.pop().ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("an order went missing")))
}

pub(crate) fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::InvalidState { .. } => ApiError::conflict("invalid_state", refusal.to_string()),
        Refusal::UpdateInProgress => ApiError::conflict("update_in_progress", refusal.to_string()),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such order")
}

fn body_object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid_field("body", "must be a JSON object")),
    }
}

async fn read_order(state: &AppState, order_id: Uuid) -> Result<Order, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    orders::find(&state.db, &mut conn, order_id).await?.ok_or_else(not_found)
}

/// The answer after a committed write: with `Prefer: wait`, the order once `done` (or as it is
/// when the wait runs out); without, the order as written. A write that armed its wait before
/// committing ([`crate::waiters::Waiters::arm`]) passes it with the order as written, and the
/// order is read only when the saga wakes it; otherwise it is read once first. The write stands
/// whatever happens here, so when the order cannot be read again the answer is the order as
/// written, not an error that would invite a retry.
async fn held(
    state: &AppState,
    order_id: Uuid,
    wait: Option<Duration>,
    done: impl Fn(&Order) -> bool,
    written: OrderResponse,
    armed: Option<(Armed, Order)>,
) -> OrderResponse {
    let Some(wait) = wait else { return written };
    let deadline = tokio::time::Instant::now() + wait;
    let read = || read_order(state, order_id);
    let waited = async {
        let order = match armed {
            Some((armed, as_written)) => armed.wait(deadline, as_written, read, done).await?,
            None => state.waiters.wait_for(order_id, deadline, read, done).await?,
        };
        present_one(state, order).await
    }
    .await;
    match waited {
        Ok(view) => view,
        Err(error) => {
            tracing::warn!(%order_id, %error, "cannot read the order again after the write; answering with it as written");
            written
        }
    }
}

/// A write's answer: the order, with `Location` for a creation and `Preference-Applied` when
/// the response was held.
fn answer(status: StatusCode, view: OrderResponse, waited: Option<Duration>) -> Response {
    let mut headers = HeaderMap::new();
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", view.id))
    {
        headers.insert(header::LOCATION, location);
    }
    if let Some(wait) = waited {
        headers.insert("preference-applied", preferences::applied(wait));
    }
    (status, headers, Json(view)).into_response()
}

/// Replays a stored first response (`Idempotent-Replayed: true`), or refuses a reused key.
fn replay(stored: Stored, fingerprint: &str) -> Result<Response, ApiError> {
    if stored.fingerprint != fingerprint {
        return Err(ApiError::Unprocessable {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was used for a different request".to_owned(),
        });
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::CREATED
        && let Some(id) = serde_json::from_str::<Value>(&stored.body)
            .ok()
            .and_then(|body| body.get("id").and_then(Value::as_str).map(str::to_owned))
        && let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{id}"))
    {
        headers.insert(header::LOCATION, location);
    }
    Ok((status, headers, stored.body).into_response())
}

/// An idempotent write's key, scope and fingerprint.
struct Idempotency {
    key: String,
    route: &'static str,
    fingerprint: String,
}

impl Idempotency {
    fn from_headers(
        headers: &HeaderMap,
        route: &'static str,
        request: &Value,
    ) -> Result<Option<Self>, ApiError> {
        Ok(preferences::idempotency_key(headers)?.map(|key| Self {
            key,
            route,
            fingerprint: preferences::fingerprint(route, request),
        }))
    }

    /// The stored answer when the key was used before.
    async fn earlier(&self, state: &AppState, user_id: Uuid) -> Result<Option<Response>, ApiError> {
        let mut conn = state.db.pool().acquire().await?;
        match idempotency::find(&state.db, &mut conn, user_id, self.route, &self.key).await? {
            Some(stored) => replay(stored, &self.fingerprint).map(Some),
            None => Ok(None),
        }
    }

    /// Makes the stored answer the one finally given after `Prefer: wait` held it. The write is
    /// committed either way: when this fails, a retry gets the answer first stored (the order as
    /// written), which is still a true answer.
    async fn answered(&self, state: &AppState, user_id: Uuid, view: &OrderResponse) {
        let Ok(body) = serde_json::to_string(view) else { return };
        if let Err(error) =
            idempotency::replace_body(&state.db, user_id, self.route, &self.key, &body).await
        {
            tracing::warn!(%error, "cannot store the held answer for its idempotency key");
        }
    }

    /// After losing the race for the key to a concurrent request (whose commit made this one's
    /// insert fail): answers what the winner answered.
    async fn winner(&self, state: &AppState, user_id: Uuid) -> Result<Response, ApiError> {
        self.earlier(state, user_id).await?.ok_or_else(|| {
            ApiError::Unavailable(anyhow::anyhow!("an idempotency key vanished after its commit"))
        })
    }

    /// Stores the first answer in the write's transaction; `false` when another request with the
    /// key committed first (the caller's transaction is then spent: roll it back).
    async fn record(
        &self,
        state: &AppState,
        conn: &mut AnyConnection,
        user_id: Uuid,
        status: StatusCode,
        view: &OrderResponse,
    ) -> Result<bool, ApiError> {
        let stored = Stored {
            fingerprint: self.fingerprint.clone(),
            status: status.as_u16(),
            body: serde_json::to_string(view)
                .map_err(|error| ApiError::Unexpected(error.into()))?,
        };
        let now = Timestamp::now().millis();
        match idempotency::insert(&state.db, conn, user_id, self.route, &self.key, &stored, now)
            .await
        {
            Ok(()) => Ok(true),
            Err(error) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

/// What `POST /api/orders` takes. Client-set `status`, prices and totals are not part of it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PlaceOrderRequest {
    /// 1..100 lines, each product at most once.
    #[schema(value_type = Vec<Object>, required = true, example = json!([{"productId": "0192f0c4-...", "quantity": 2}]))]
    pub items: Option<Value>,
    #[schema(value_type = Option<Address>)]
    pub shipping_address: Option<Value>,
    /// At most 50 characters.
    #[schema(value_type = Option<String>)]
    pub payment_method: Option<Value>,
    /// The customer the order is for: absent or the caller's own id (an admin may name anyone).
    #[schema(value_type = Option<Uuid>)]
    pub user_id: Option<Value>,
}

/// A placement, validated.
pub(crate) struct Placement {
    pub user_id: Uuid,
    pub items: Vec<mercato_contracts::OrderLine>,
    pub shipping_address: Option<Address>,
    pub payment_method: Option<String>,
}

/// Validates a placement body (every bad field in one `422`); a customer naming another user is
/// `403`.
pub(crate) fn placement(caller: &Caller, body: &Map<String, Value>) -> Result<Placement, ApiError> {
    let mut checks = Fields::default();
    let items = match body.get("items") {
        Some(items) => fields::items(&mut checks, items),
        None => {
            checks.push("items", "is required");
            None
        }
    };
    let address = match body.get("shippingAddress") {
        Some(address) => fields::address(&mut checks, address),
        None => Some(None),
    };
    let payment_method = checks
        .optional("paymentMethod", body.get("paymentMethod"), fields::payment_method)
        .unwrap_or(None);
    let user_id =
        checks.optional("userId", body.get("userId").filter(|v| !v.is_null()), fields::uuid);
    checks.finish()?;
    let user_id = user_id.unwrap_or(caller.user_id);
    if !caller.may_act_for(user_id) {
        return Err(ApiError::forbidden("a customer places orders only for themselves"));
    }
    let (Some(items), Some(shipping_address)) = (items, address) else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("parsed fields went missing")));
    };
    Ok(Placement { user_id, items, shipping_address, payment_method })
}

/// Place an order. It is `pending` until the products service has reserved its stock.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    request_body = PlaceOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first response (`Idempotent-Replayed: true`) instead of placing again."),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): answer once the order has left `pending`, or after N seconds."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Placed (`pending`, or settled when waited for)", body = OrderResponse, headers(("Location" = String))),
        (status = 400, description = "`malformed_json`, or a bad `Idempotency-Key`", body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "a customer naming another `userId`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed` or `idempotency_key_reused`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all)]
pub async fn place_order(
    State(state): State<AppState>,
    trace: TraceContext,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let validated = body.and_then(|Json(body)| {
        let request = body_object(body)?;
        let placement = placement(&caller, &request)?;
        Ok((request, placement))
    });
    let (request, placement) = deleted_first(&state, &caller, validated).await?;
    place(&state, trace, &caller, &headers, Value::Object(request), placement).await
}

/// Places a validated order for a caller whose account is not checked yet ([`Caller`] only; see [`refuse_if_deleted`]);
/// shared with `POST /api/create`.
pub(crate) async fn place(
    state: &AppState,
    trace: TraceContext,
    caller: &Caller,
    headers: &HeaderMap,
    request: Value,
    placement: Placement,
) -> Result<Response, ApiError> {
    let idempotency =
        deleted_first(state, caller, Idempotency::from_headers(headers, "place", &request)).await?;
    if let Some(idempotency) = &idempotency {
        // A stored answer is never replayed to a deleted account.
        refuse_if_deleted(state, caller).await?;
        if let Some(earlier) = idempotency.earlier(state, caller.user_id).await? {
            return Ok(earlier);
        }
    }
    let wait = preferences::wait(headers);
    let order = Order::place(
        placement.user_id,
        placement.items,
        placement.shipping_address,
        placement.payment_method,
        Timestamp::now(),
    );
    // Listening for the saga before the order exists for it: the held answer needs no first read.
    let armed = wait.map(|_| (state.waiters.arm(order.id), order.clone()));
    let order_id = order.id;
    let user_id = order.user_id;
    let lines = order.items.len();
    let placement = OrderToPlace { order, caller: caller.user_id, traceparent: trace.0 };
    let view = match &idempotency {
        None => state.placer.place(placement).await?,
        Some(idempotency) => {
            // A transaction of its own: losing the race for the key spoils it (crate::placing).
            let mut tx = state.db.begin().await?;
            let placed = placing::write(&state.db, &state.outbox, &mut tx, &[placement]).await?;
            let view = placed.into_iter().next().ok_or_else(not_found)??;
            if !idempotency
                .record(state, &mut tx, caller.user_id, StatusCode::CREATED, &view)
                .await?
            {
                drop(tx);
                return idempotency.winner(state, caller.user_id).await;
            }
            tx.commit().await?;
            state.outbox.notify();
            view
        }
    };
    metrics::counter!("orders_placed_total").increment(1);
    tracing::info!(%order_id, %user_id, lines, "order placed");
    let placed = |order: &Order| order.status != Status::Pending;
    let view = held(state, order_id, wait, placed, view, armed).await;
    if let (Some(idempotency), Some(_)) = (&idempotency, wait) {
        idempotency.answered(state, caller.user_id, &view).await;
    }
    Ok(answer(StatusCode::CREATED, view, wait))
}

/// One order: its owner's or, for an admin, anyone's.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderResponse),
        (status = 400, description = "not a UUID", body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 404, description = "no such order, or another user's", body = mercato_platform::error::Problem),
    ),
)]
pub async fn get_order(
    State(state): State<AppState>,
    Signed(caller): Signed,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderResponse>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let order = orders::find(&state.db, &mut conn, id)
        .await?
        .filter(|order| caller.may_act_for(order.user_id))
        .ok_or_else(not_found)?;
    let mut views = present(&state, &mut conn, vec![order]).await?;
    views.pop().map(Json).ok_or_else(not_found)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListOrdersQuery {
    /// Only orders with this status.
    pub status: Option<String>,
    /// Only this user's orders: an admin may name anyone, a customer only themselves.
    pub user_id: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The caller's orders (an admin: everyone's), newest first.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "orders",
    params(ListOrdersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<OrderResponse>),
        (status = 400, description = "bad `status`, `userId`, `limit` or `cursor`", body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "a customer naming another `userId`", body = mercato_platform::error::Problem),
    ),
)]
pub async fn list_orders(
    State(state): State<AppState>,
    Signed(caller): Signed,
    Query(query): Query<ListOrdersQuery>,
) -> Result<Json<Page<OrderResponse>>, ApiError> {
    let page = PageQuery { limit: query.limit, cursor: query.cursor };
    let limit = page.limit()?;
    let before = page.after()?.map(|key| parse_cursor(&key)).transpose()?;
    let status = parse_status(query.status.as_deref())?;
    let named = query
        .user_id
        .as_deref()
        .map(|raw| {
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::bad_request(format!("userId must be a UUID, got `{raw}`")))
        })
        .transpose()?;
    let user_id = match named {
        Some(user_id) if !caller.may_act_for(user_id) => {
            return Err(ApiError::forbidden("a customer sees only their own orders"));
        }
        Some(user_id) => Some(user_id),
        None if caller.is_admin() => None,
        None => Some(caller.user_id),
    };
    let filter = Filter { user_id, status, before };
    let mut conn = state.db.pool().acquire().await?;
    let rows = orders::list(&state.db, &mut conn, &filter, limit + 1).await?;
    let page = Page::from_rows(rows, limit, |order| {
        mercato_platform::pagination::order_key(order.created_at.millis(), &order.id.to_string())
    });
    let items = present(&state, &mut conn, page.items).await?;
    Ok(Json(Page { items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct UserPagesQuery {
    /// Comma-separated user ids (at most 100): an admin may name anyone, a customer only
    /// themselves.
    pub user_ids: String,
    /// Only orders with this status.
    pub status: Option<String>,
    /// Orders per user, 1..100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The first page of one user's orders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub user_id: Uuid,
    pub items: Vec<OrderResponse>,
    /// Where that user's next page starts (`GET /api/orders?userId=&cursor=`), if any.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPages {
    /// One page per user asked for, in the order asked (empty pages included).
    pub pages: Vec<UserPage>,
}

/// The first page of orders of each of several users, in one call (the gateway's batched
/// `User.orders`).
#[utoipa::path(
    get,
    path = "/api/orders/by-user",
    tag = "orders",
    params(UserPagesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserPages),
        (status = 400, description = "bad `userIds`, `status` or `limit`", body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "a customer naming another user", body = mercato_platform::error::Problem),
    ),
)]
pub async fn orders_by_user(
    State(state): State<AppState>,
    Signed(caller): Signed,
    Query(query): Query<UserPagesQuery>,
) -> Result<Json<UserPages>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let status = parse_status(query.status.as_deref())?;
    let users = parse_ids(&query.user_ids, "users")?;
    if users.iter().any(|user| !caller.may_act_for(*user)) {
        return Err(ApiError::forbidden("a customer sees only their own orders"));
    }
    let mut conn = state.db.pool().acquire().await?;
    let rows = orders::newest_of_each(&state.db, &mut conn, &users, status, limit + 1).await?;
    let mut by_user: HashMap<Uuid, Vec<Order>> = HashMap::new();
    for order in rows {
        by_user.entry(order.user_id).or_default().push(order);
    }
    let mut pages = Vec::with_capacity(users.len());
    for user_id in users {
        let page = Page::from_rows(by_user.remove(&user_id).unwrap_or_default(), limit, |order| {
            mercato_platform::pagination::order_key(
                order.created_at.millis(),
                &order.id.to_string(),
            )
        });
        let items = present(&state, &mut conn, page.items).await?;
        pages.push(UserPage { user_id, items, next_cursor: page.next_cursor });
    }
    Ok(Json(UserPages { pages }))
}

fn parse_status(raw: Option<&str>) -> Result<Option<Status>, ApiError> {
    raw.map(|raw| {
        Status::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be one of pending, confirmed, rejected, cancelled, shipped, \
                 delivered; got `{raw}`"
            ))
        })
    })
    .transpose()
}

fn parse_cursor(key: &str) -> Result<(i64, Uuid), ApiError> {
    let bad = || ApiError::bad_request("the cursor is not one this service gave out");
    let (millis, id) = key.split_once(':').ok_or_else(bad)?;
    Ok((millis.parse().map_err(|_| bad())?, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// What `PATCH` / `PUT /api/orders/:id` takes: any of these.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UpdateOrderRequest {
    /// The complete new list of lines (allowed while `confirmed`; the order is `pending` again
    /// until re-reserved, all or nothing).
    #[schema(value_type = Option<Vec<Object>>)]
    pub items: Option<Value>,
    /// `null` removes it.
    #[schema(value_type = Option<Address>)]
    pub shipping_address: Option<Value>,
    /// `null` removes it.
    #[schema(value_type = Option<String>)]
    pub payment_method: Option<Value>,
    /// Admin only: `shipped` (from `confirmed`) or `delivered` (from `shipped`).
    #[schema(value_type = Option<String>)]
    pub status: Option<Value>,
}

/// Change an order's items, shipping address or payment method; an admin also moves it to
/// `shipped` and `delivered`.
#[utoipa::path(
    patch,
    path = "/api/orders/{id}",
    tag = "orders",
    request_body = UpdateOrderRequest,
    params(
        ("id" = Uuid, Path),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: after an item change, answer once the order has left `pending`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderResponse),
        (status = 400, body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "a customer setting `status`", body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`invalid_state` or `update_in_progress`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn update_order(
    State(state): State<AppState>,
    trace: TraceContext,
    Signed(caller): Signed,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let body = body_object(body)?;
    let mut checks = Fields::default();
    let items = body.get("items").and_then(|items| fields::items(&mut checks, items));
    let address = body.get("shippingAddress").and_then(|raw| fields::address(&mut checks, raw));
    let payment_method =
        checks.optional("paymentMethod", body.get("paymentMethod"), fields::payment_method);
    let status = checks.optional("status", body.get("status"), |value| {
        match value.as_str().and_then(Status::parse) {
            Some(status @ (Status::Shipped | Status::Delivered)) => Ok(status),
            _ => Err("may only be `shipped` or `delivered`; other statuses follow from the \
                      order's life"
                .to_owned()),
        }
    });
    if status.is_some() && items.is_some() {
        checks.push("status", "cannot change together with items");
    }
    checks.finish()?;
    if status.is_some() && !caller.is_admin() {
        return Err(ApiError::forbidden("only an admin ships and delivers orders"));
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let mut order = orders::find_for_update(&state.db, &mut tx, id)
        .await?
        .filter(|order| caller.may_act_for(order.user_id))
        .ok_or_else(not_found)?;
    let before = order.version;
    if address.is_some() || payment_method.is_some() {
        order.change_details(address, payment_method, now).map_err(refused)?;
    }
    if let Some(items) = &items {
        order.change_items(items, now).map_err(refused)?;
    }
    if let Some(status) = status {
        order.advance(status, now).map_err(refused)?;
    }
    let view = present(&state, &mut tx, vec![order.clone()]).await?.pop().ok_or_else(not_found)?;
    if order.version != before {
        orders::update(&state.db, &mut tx, &order).await?;
        let traceparent = Some(trace.0);
        let millis = now.millis();
        if items.is_some() {
            let event = OrderUpdated {
                order_id: order.id,
                user_id: order.user_id,
                order_version: order.version,
                items: order.order_lines(),
            };
            state.outbox.write(&mut tx, event, millis, traceparent.clone()).await?;
        }
        let total = order.total.map(|total| total.to_string());
        match status {
            Some(Status::Shipped) => {
                let event = OrderShipped {
                    order_id: order.id,
                    user_id: order.user_id,
                    status: order.status.as_str().to_owned(),
                    total,
                    reason: None,
                };
                state.outbox.write(&mut tx, event, millis, traceparent).await?;
            }
            Some(Status::Delivered) => {
                let event = OrderDelivered {
                    order_id: order.id,
                    user_id: order.user_id,
                    status: order.status.as_str().to_owned(),
                    total,
                    reason: None,
                };
                state.outbox.write(&mut tx, event, millis, traceparent).await?;
            }
            _ => {}
        }
        tx.commit().await?;
        state.outbox.notify();
        tracing::info!(order_id = %order.id, version = order.version, "order changed");
    }
    let wait = preferences::wait(&headers).filter(|_| items.is_some());
    let view =
        held(&state, order.id, wait, |order| order.status != Status::Pending, view, None).await;
    Ok(answer(StatusCode::OK, view, wait))
}

/// `PUT` is a partial update, as `PATCH` (the original clients send `PUT`).
#[utoipa::path(
    put,
    path = "/api/orders/{id}",
    tag = "orders",
    request_body = UpdateOrderRequest,
    params(
        ("id" = Uuid, Path),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: after an item change, answer once the order has left `pending`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderResponse),
        (status = 400, body = mercato_platform::error::Problem),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 403, description = "a customer setting `status`", body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`invalid_state` or `update_in_progress`", body = mercato_platform::error::Problem),
        (status = 422, description = "`validation_failed`", body = mercato_platform::error::Problem),
    ),
)]
pub async fn replace_order(
    state: State<AppState>,
    trace: TraceContext,
    caller: Signed,
    id: Path<Uuid>,
    headers: HeaderMap,
    body: Json<Value>,
) -> Result<Response, ApiError> {
    update_order(state, trace, caller, id, headers, body).await
}

/// Cancel an order (`pending` or `confirmed`); its reserved stock goes back. Cancelling a
/// cancelled order returns it unchanged.
#[utoipa::path(
    delete,
    path = "/api/orders/{id}",
    tag = "orders",
    params(
        ("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: answer once the stock is released."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`invalid_state` (rejected, shipped, delivered)", body = mercato_platform::error::Problem),
    ),
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    trace: TraceContext,
    Signed(caller): Signed,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    cancel(&state, trace, &caller, id, &headers).await
}

/// The same as `DELETE /api/orders/{id}`.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header), ("Prefer" = Option<String>, Header)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 401, body = mercato_platform::error::Problem),
        (status = 404, body = mercato_platform::error::Problem),
        (status = 409, description = "`invalid_state` (rejected, shipped, delivered)", body = mercato_platform::error::Problem),
    ),
)]
pub async fn cancel_order_post(
    State(state): State<AppState>,
    trace: TraceContext,
    Signed(caller): Signed,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    cancel(&state, trace, &caller, id, &headers).await
}

/// Cancels; shared by both cancel routes and the compatibility route.
pub(crate) async fn cancel(
    state: &AppState,
    trace: TraceContext,
    caller: &Caller,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let idempotency = Idempotency::from_headers(headers, "cancel", &Value::String(id.to_string()))?;
    if let Some(idempotency) = &idempotency
        && let Some(earlier) = idempotency.earlier(state, caller.user_id).await?
    {
        return Ok(earlier);
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let mut order = orders::find_for_update(&state.db, &mut tx, id)
        .await?
        .filter(|order| caller.may_act_for(order.user_id))
        .ok_or_else(not_found)?;
    let changed = order.cancel(now).map_err(refused)?;
    if changed {
        orders::update(&state.db, &mut tx, &order).await?;
        let event = OrderCancelled {
            order_id: order.id,
            user_id: order.user_id,
            order_version: order.version,
        };
        state.outbox.write(&mut tx, event, now.millis(), Some(trace.0)).await?;
    }
    let view = present(state, &mut tx, vec![order.clone()]).await?.pop().ok_or_else(not_found)?;
    if let Some(idempotency) = &idempotency
        && !idempotency.record(state, &mut tx, caller.user_id, StatusCode::OK, &view).await?
    {
        drop(tx);
        return idempotency.winner(state, caller.user_id).await;
    }
    tx.commit().await?;
    if changed {
        state.outbox.notify();
        // A placement or item change held by `Prefer: wait` is over: the order left `pending`.
        state.waiters.wake(order.id);
        metrics::counter!("orders_cancelled_total", "by" => "request").increment(1);
        tracing::info!(order_id = %order.id, "order cancelled");
    }
    let wait = preferences::wait(headers);
    let view = held(state, order.id, wait, |order| order.stock_released, view, None).await;
    if let (Some(idempotency), Some(_)) = (&idempotency, wait) {
        idempotency.answered(state, caller.user_id, &view).await;
    }
    Ok(answer(StatusCode::OK, view, wait))
}
