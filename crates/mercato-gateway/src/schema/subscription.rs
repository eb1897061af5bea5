//! `Subscription`: live events from the bus ([`crate::hub`]), filtered per subscriber and
//! authorized when the subscription starts.
//!
//! `orderStatusChanged` and `inventoryChanged` answer with the order or product as its service
//! shows it to the subscriber (read with the subscriber's own token), with the status or stock
//! the event carries, so every transition is seen in order even when the next one has already
//! happened. A subscription whose token has expired ends with `UNAUTHENTICATED`.

use std::sync::Arc;

use async_graphql::{Context, ID, Result, Subscription as SubscriptionObject};
use futures::Stream;
use mercato_platform::auth::Caller;
use tokio::sync::broadcast;

use crate::clients::{Credentials, Services};
use crate::errors::{IntoGraphql, forbidden};
use crate::hub::{Event, EventHub, Listener, next_event};
use crate::schema::context::Session;
use crate::schema::ids;
use crate::schema::types::{DomainEvent, Order, OrderStatus, Product};

#[derive(Debug, Default)]
pub struct Subscription;

/// The listener the socket took when the subscription was asked for, else one from now.
fn listener(ctx: &Context<'_>) -> Result<broadcast::Receiver<Arc<Event>>> {
    if let Some(events) = ctx.data_opt::<Listener>().and_then(Listener::take) {
        return Ok(events);
    }
    let hub = ctx.data::<EventHub>()?;
    hub.listen().take().ok_or_else(|| "the event hub is gone".into())
}

/// What an order event says about the order's status.
struct StatusChange<'a> {
    order_id: &'a str,
    user_id: &'a str,
    status: OrderStatus,
}

impl<'a> StatusChange<'a> {
    fn of(event: &'a Event) -> Option<Self> {
        let action = event.kind.strip_prefix("mercato.order.")?.strip_suffix(".v1")?;
        let status = match action {
            "placed" | "updated" => OrderStatus::Pending,
            "cancelled" => OrderStatus::Cancelled,
            other => OrderStatus::from_rest(other)?,
        };
        Some(Self {
            order_id: event.data_str("orderId")?,
            user_id: event.data_str("userId")?,
            status,
        })
    }
}

struct Follow {
    events: broadcast::Receiver<Arc<Event>>,
    services: Services,
    credentials: Credentials,
    caller: Option<Caller>,
    subject: Option<String>,
    ended: bool,
}

impl Follow {
    fn new(ctx: &Context<'_>, session: &Session, subject: Option<String>) -> Result<Self> {
        Ok(Self {
            events: listener(ctx)?,
            services: session.services.clone(),
            credentials: session.credentials.clone(),
            caller: session.caller()?.cloned(),
            subject,
            ended: false,
        })
    }
}

#[SubscriptionObject]
impl Subscription {
    /// The caller's orders as their status changes (an admin: every order); `orderId`: one.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<Order>>> {
        let session = ctx.data::<Session>()?;
        let order_id = order_id.map(|id| ids::uuid("orderId", &id)).transpose()?;
        session.require()?;
        if let Some(id) = &order_id
            && session.services.order(id, &session.credentials).await.graphql()?.is_none()
        {
            return Err(forbidden("you may not follow this order"));
        }
        let follow = Follow::new(ctx, session, order_id)?;
        Ok(futures::stream::unfold(follow, |mut follow| async move {
            if follow.ended {
                return None;
            }
            let caller = follow.caller.clone()?;
            loop {
                let event = next_event(&mut follow.events).await?;
                let Some(change) = StatusChange::of(&event) else { continue };
                let visible = caller.is_admin() || change.user_id == caller.user_id.to_string();
                let wanted = follow.subject.as_deref().is_none_or(|id| id == change.order_id);
                if !visible || !wanted {
                    continue;
                }
                match follow.services.order(change.order_id, &follow.credentials).await {
                    Ok(Some(mut order)) => {
                        order.status = change.status;
                        return Some((Ok(order), follow));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        follow.ended = true;
                        return Some((Err(error.into_graphql()), follow));
                    }
                }
            }
        }))
    }

    /// A product as its stock changes (anyone); `productId`: one product.
    async fn inventory_changed(
        &self,
        ctx: &Context<'_>,
        product_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<Product>>> {
        let session = ctx.data::<Session>()?;
        let product_id = product_id.map(|id| ids::uuid("productId", &id)).transpose()?;
        let follow = Follow::new(ctx, session, product_id)?;
        Ok(futures::stream::unfold(follow, |mut follow| async move {
            if follow.ended {
                return None;
            }
            loop {
                let event = next_event(&mut follow.events).await?;
                if event.kind != "mercato.inventory.updated.v1" {
                    continue;
                }
                let Some(product_id) = event.data_str("productId") else { continue };
                if follow.subject.as_deref().is_some_and(|id| id != product_id) {
                    continue;
                }
                let stock = event.envelope.get("data").and_then(|data| data.get("stock"));
                match follow.services.product(product_id, &follow.credentials).await {
                    Ok(Some(mut product)) => {
                        if let Some(stock) = stock.and_then(|s| s.as_i64()) {
                            product.stock = i32::try_from(stock).unwrap_or(product.stock);
                        }
                        return Some((Ok(product), follow));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        follow.ended = true;
                        return Some((Err(error.into_graphql()), follow));
                    }
                }
            }
        }))
    }

    /// Every event on the bus (admin); `types`: only these CloudEvents types.
    async fn domain_events(
        &self,
        ctx: &Context<'_>,
        types: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = Result<DomainEvent>>> {
        let session = ctx.data::<Session>()?;
        session.require_admin()?;
        let follow = Follow::new(ctx, session, None)?;
        Ok(futures::stream::unfold((follow, types), |(mut follow, types)| async move {
            loop {
                let event = next_event(&mut follow.events).await?;
                if types.as_ref().is_some_and(|types| !types.contains(&event.kind)) {
                    continue;
                }
                match serde_json::from_value::<DomainEvent>(event.envelope.clone()) {
                    Ok(event) => return Some((Ok(event), (follow, types))),
                    Err(error) => tracing::warn!(%error, "an event does not fit DomainEvent"),
                }
            }
        }))
    }
}
