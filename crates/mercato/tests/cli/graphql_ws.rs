//! GraphQL subscriptions over WebSocket through the real binary: `mercato up` serves
//! `/graphql/ws`, and every test is a WebSocket client (the subprotocol asked for in
//! `Sec-WebSocket-Protocol`, the token in `connection_init`'s payload) while the changes that
//! raise events are made over `POST /graphql`.
//!
//! What is proved here (API.md "GraphQL gateway", "Subscriptions"): `graphql-transport-ws` with
//! `connection_ack`, `next` and `ping`/`pong` (a `pong` after `subscribe` means the subscription
//! is live); `orderStatusChanged` shows a customer their own orders only; subscriptions the
//! caller may not have get the protocol's `error` message (and no `complete`); an anonymous
//! socket follows `inventoryChanged`; an admin follows `domainEvents` by type; and the legacy
//! `graphql-ws` protocol (`start`, `data`, `stop`, `complete`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::graphql::{Gateway, cents, string};

pub(crate) const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";
/// How long a message that must come may take, at most.
const WAIT: Duration = Duration::from_secs(20);

/// One client socket on `/graphql/ws`, past `connection_ack`.
pub(crate) struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: &'static str,
}

impl Socket {
    /// Connects asking for `protocol`, sends `connection_init` (with the token, if any) and
    /// waits for `connection_ack`.
    async fn open(gw: &Gateway, protocol: &'static str, token: Option<&str>) -> Self {
        Self::open_at(&gw.mercato.base_url, protocol, token).await
    }

    /// [`Socket::open`] on the gateway at `base_url` (`http://host:port`).
    pub(crate) async fn open_at(
        base_url: &str,
        protocol: &'static str,
        token: Option<&str>,
    ) -> Self {
        let url = format!("{base_url}/graphql/ws").replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().expect("a WebSocket request");
        let value = protocol.parse().expect("a header value");
        request.headers_mut().insert("sec-websocket-protocol", value);
        let (stream, response) = tokio::time::timeout(WAIT, connect_async(request))
            .await
            .expect("the WebSocket handshake finishes")
            .expect("the WebSocket handshake succeeds");
        let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        assert_eq!(chosen, Some(protocol), "the server speaks the subprotocol asked for");
        let mut socket = Self { stream, protocol };
        let payload = match token {
            Some(token) => json!({"Authorization": format!("Bearer {token}")}),
            None => json!({}),
        };
        socket.send(json!({"type": "connection_init", "payload": payload})).await;
        let ack = socket.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        socket
    }

    async fn send(&mut self, message: Value) {
        self.stream.send(Message::text(message.to_string())).await.expect("a message is sent");
    }

    /// The next protocol message, within [`WAIT`].
    async fn next(&mut self) -> Value {
        let read = async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str::<Value>(text.as_str())
                            .unwrap_or_else(|error| panic!("a JSON message ({error}): {text}"));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        panic!("the server closed the socket: {frame:?}")
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => panic!("the socket failed: {error}"),
                    None => panic!("the socket ended"),
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("a message comes within 20 s")
    }

    /// Starts a subscription (`subscribe`, or `start` in the legacy protocol).
    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == LEGACY_WS { "start" } else { "subscribe" };
        let payload = json!({"query": query, "variables": variables});
        self.send(json!({"type": kind, "id": id, "payload": payload})).await;
    }

    /// Sends `ping` and returns what came before the `pong`: every subscription asked for before
    /// is live once this returns.
    async fn sync(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let message = self.next().await;
            if message["type"] == "pong" {
                return before;
            }
            before.push(message);
        }
    }

    /// Subscribes and waits until the subscription is live; returns what came before.
    pub(crate) async fn subscribe_live(
        &mut self,
        id: &str,
        query: &str,
        variables: Value,
    ) -> Vec<Value> {
        self.subscribe(id, query, variables).await;
        self.sync().await
    }

    /// The next message, which must be a result (`next`, or `data` in the legacy protocol) of
    /// subscription `id` without errors; returns its `data`.
    pub(crate) async fn result(&mut self, id: &str) -> Value {
        let message = self.next().await;
        let kind = if self.protocol == LEGACY_WS { "data" } else { "next" };
        assert_eq!(message["type"], kind, "{message}");
        assert_eq!(message["id"], id, "{message}");
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"].clone()
    }

    /// The next message, which must be the `error` of subscription `id` with `code`, followed by
    /// no `complete`.
    async fn refused(&mut self, id: &str, code: &str) {
        let message = self.next().await;
        assert_eq!(message["type"], "error", "{message}");
        assert_eq!(message["id"], id, "{message}");
        let errors =
            message["payload"].as_array().unwrap_or_else(|| panic!("a list of errors: {message}"));
        assert_eq!(errors.len(), 1, "{message}");
        assert_eq!(errors[0]["extensions"]["code"], code, "{message}");
        // The socket goes on, and no `complete` follows the `error`.
        for _ in 0..2 {
            let between = self.sync().await;
            assert!(
                between.is_empty(),
                "nothing follows an error, not even `complete`: {between:?}"
            );
        }
    }
}

pub(crate) const ORDER_STATUS: &str =
    "subscription { orderStatusChanged { id userId status total } }";
const ADJUST: &str =
    "mutation($id: ID!, $delta: Int!) { adjustInventory(productId: $id, delta: $delta) { stock } }";
/// Reads results of subscription `id` until `done` says so; each must pass `check`. At most
/// `max` results.
pub(crate) async fn results_until(
    socket: &mut Socket,
    id: &str,
    max: usize,
    mut check: impl FnMut(&Value),
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let data = socket.result(id).await;
        check(&data);
        seen.push(data.clone());
        if done(&data) {
            return seen;
        }
        assert!(seen.len() < max, "at most {max} results until the one awaited: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_status_changes_reach_the_orders_owner_and_nobody_else() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    let bob = gw.customer("bob").await;
    let pen = gw.product("Pen", "2.50", 10, None).await;
    // No order exists yet, so nothing can come before the subscriptions are live.
    let mut alices = Socket::open(&gw, TRANSPORT_WS, Some(&alice.token)).await;
    assert_eq!(alices.subscribe_live("a", ORDER_STATUS, json!({})).await, Vec::<Value>::new());
    let mut bobs = Socket::open(&gw, TRANSPORT_WS, Some(&bob.token)).await;
    assert_eq!(bobs.subscribe_live("b", ORDER_STATUS, json!({})).await, Vec::<Value>::new());

    let placed = gw.place_order(Some(&alice.token), &[(&pen, 3)], None, None).await;
    let order = string(&placed.data()["placeOrder"]["id"]);
    let seen = results_until(
        &mut alices,
        "a",
        5,
        |data| {
            let changed = &data["orderStatusChanged"];
            assert_eq!(changed["id"], order.as_str(), "alice sees her order only: {data}");
            assert_eq!(changed["userId"], alice.id.as_str(), "{data}");
            let status = &changed["status"];
            assert!(
                status == "PENDING" || status == "CONFIRMED",
                "pending, then confirmed: {data}"
            );
        },
        |data| data["orderStatusChanged"]["status"] == "CONFIRMED",
    )
    .await;
    let confirmed = &seen[seen.len() - 1]["orderStatusChanged"];
    assert_eq!(cents(&confirmed["total"]), 750, "{confirmed}");

    // Bob's subscriber never saw alice's order: the first thing it gets is bob's own order.
    let placed = gw.place_order(Some(&bob.token), &[(&pen, 1)], None, None).await;
    let bobs_order = string(&placed.data()["placeOrder"]["id"]);
    let data = bobs.result("b").await;
    assert_eq!(data["orderStatusChanged"]["id"], bobs_order.as_str(), "{data}");
    assert_eq!(data["orderStatusChanged"]["userId"], bob.id.as_str(), "{data}");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_gets_forbidden_error_messages_for_others_orders_and_domain_events() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    let bob = gw.customer("bob").await;
    let pen = gw.product("Pen", "2.50", 10, None).await;
    let placed = gw.place_order(Some(&bob.token), &[(&pen, 1)], None, Some(5)).await;
    let bobs_order = string(&placed.data()["placeOrder"]["id"]);

    // Another customer's order.
    let mut alices = Socket::open(&gw, TRANSPORT_WS, Some(&alice.token)).await;
    let query = "subscription($id: ID) { orderStatusChanged(orderId: $id) { id status } }";
    alices.subscribe("1", query, json!({"id": bobs_order})).await;
    alices.refused("1", "FORBIDDEN").await;
    // Every event is for admins only.
    alices.subscribe("2", "subscription { domainEvents { id type } }", json!({})).await;
    alices.refused("2", "FORBIDDEN").await;

    // Bob himself may follow that order.
    let mut bobs = Socket::open(&gw, TRANSPORT_WS, Some(&bob.token)).await;
    let early = bobs.subscribe_live("1", query, json!({"id": bobs_order})).await;
    for message in &early {
        assert_eq!(message["payload"]["data"]["orderStatusChanged"]["id"], bobs_order.as_str());
    }
    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id } }";
    gw.data(cancel, json!({"id": bobs_order}), Some(&bob.token)).await;
    results_until(
        &mut bobs,
        "1",
        5,
        |data| assert_eq!(data["orderStatusChanged"]["id"], bobs_order.as_str(), "{data}"),
        |data| data["orderStatusChanged"]["status"] == "CANCELLED",
    )
    .await;
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_socket_gets_an_unauthenticated_error_message_for_order_status() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let mut anonymous = Socket::open(&gw, TRANSPORT_WS, None).await;
    anonymous.subscribe("1", ORDER_STATUS, json!({})).await;
    anonymous.refused("1", "UNAUTHENTICATED").await;
    anonymous.subscribe("2", "subscription { domainEvents { id } }", json!({})).await;
    anonymous.refused("2", "UNAUTHENTICATED").await;
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_socket_follows_the_stock_of_one_product() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let followed = gw.product("Pen", "2.50", 10, None).await;
    let other = gw.product("Book", "10.00", 4, None).await;
    let mut socket = Socket::open(&gw, TRANSPORT_WS, None).await;
    let query = "subscription($id: ID) { inventoryChanged(productId: $id) { id name stock } }";
    // The product's creation (initial stock 10) may still be on its way.
    let only_followed = |data: &Value| {
        let product = &data["inventoryChanged"];
        assert_eq!(product["id"], followed.as_str(), "only the product asked for: {data}");
        assert_eq!(product["name"], "Pen", "{data}");
    };
    for message in socket.subscribe_live("1", query, json!({"id": followed})).await {
        only_followed(&message["payload"]["data"]);
    }

    gw.data(ADJUST, json!({"id": other, "delta": 1}), Some(&gw.admin)).await;
    gw.data(ADJUST, json!({"id": followed, "delta": 5}), Some(&gw.admin)).await;
    let seen = results_until(&mut socket, "1", 3, only_followed, |data| {
        data["inventoryChanged"]["stock"] != 10
    })
    .await;
    assert_eq!(seen[seen.len() - 1]["inventoryChanged"]["stock"], 15, "{seen:?}");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_follows_domain_events_of_the_types_asked_for() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let alice = gw.customer("alice").await;
    let pen = gw.product("Pen", "2.50", 10, None).await;
    let mut socket = Socket::open(&gw, TRANSPORT_WS, Some(&gw.admin)).await;
    let query = "subscription($types: [String!]) { domainEvents(types: $types) \
                 { specversion id type source subject time data } }";
    let types = json!({"types": ["mercato.order.placed.v1"]});
    assert_eq!(socket.subscribe_live("1", query, types).await, Vec::<Value>::new(), "no order yet");

    // The order is placed, reserved and confirmed: only `order.placed` is asked for.
    let placed = gw.place_order(Some(&alice.token), &[(&pen, 2)], None, Some(5)).await;
    let order = string(&placed.data()["placeOrder"]["id"]);
    let data = socket.result("1").await;
    let event = &data["domainEvents"];
    assert_eq!(event["type"], "mercato.order.placed.v1", "{data}");
    assert_eq!(event["specversion"], "1.0", "{data}");
    assert_eq!(event["source"], "/mercato/orders", "{data}");
    assert_eq!(event["subject"], order.as_str(), "{data}");
    assert_eq!(event["data"]["orderId"], order.as_str(), "{data}");
    assert_eq!(event["data"]["userId"], alice.id.as_str(), "{data}");
    // A second order: the next event is its `order.placed`, none of the first's later events.
    let placed = gw.place_order(Some(&alice.token), &[(&pen, 1)], None, None).await;
    let second = string(&placed.data()["placeOrder"]["id"]);
    let data = socket.result("1").await;
    assert_eq!(data["domainEvents"]["type"], "mercato.order.placed.v1", "{data}");
    assert_eq!(data["domainEvents"]["data"]["orderId"], second.as_str(), "{data}");
    assert!(gw.mercato.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_graphql_ws_protocol_starts_sends_data_and_stops() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let gw = Gateway::start(dir.path()).await;
    let pen = gw.product("Pen", "2.50", 10, None).await;
    let mut socket = Socket::open(&gw, LEGACY_WS, None).await;
    let query = "subscription($id: ID) { inventoryChanged(productId: $id) { id stock } }";
    // The product's creation (initial stock 10) may still be on its way.
    let is_pen = |data: &Value| assert_eq!(data["inventoryChanged"]["id"], pen.as_str(), "{data}");
    for message in socket.subscribe_live("1", query, json!({"id": pen})).await {
        assert_eq!(message["type"], "data", "{message}");
        is_pen(&message["payload"]["data"]);
    }

    gw.data(ADJUST, json!({"id": pen, "delta": 3}), Some(&gw.admin)).await;
    let seen =
        results_until(&mut socket, "1", 3, is_pen, |data| data["inventoryChanged"]["stock"] != 10)
            .await;
    assert_eq!(seen[seen.len() - 1]["inventoryChanged"]["stock"], 13, "{seen:?}");
    gw.data(ADJUST, json!({"id": pen, "delta": -1}), Some(&gw.admin)).await;
    let data = socket.result("1").await;
    assert_eq!(data["inventoryChanged"], json!({"id": pen, "stock": 12}));

    socket.send(json!({"type": "stop", "id": "1"})).await;
    let complete = socket.next().await;
    assert_eq!(complete, json!({"type": "complete", "id": "1"}));
    assert!(gw.mercato.terminate().await.success());
}
