//! Subscriptions over WebSocket at `/graphql/ws`: `graphql-transport-ws` and the older
//! `graphql-ws`, the token in `connection_init`'s payload (`{"Authorization": "Bearer ..."}`).
//!
//! Two things async-graphql's own socket loop does not do, done here:
//! - a subscription listens to the hub from the moment its `subscribe` message is handled
//!   ([`LiveExecutor`]), so a `ping` answered after `subscribe` means every later event is seen;
//! - a subscription refused before it starts (auth, arguments) is answered with the protocol's
//!   `error` message rather than `next` + `complete`.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::http::{WebSocket as Protocol, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};

use crate::Gateway;
use crate::hub::EventHub;
use crate::schema::GatewaySchema;
use crate::upstream::ClientAddress;

/// Runs a subscription with a [`crate::hub::Listener`] taken when it is asked for.
#[derive(Clone)]
pub struct LiveExecutor {
    schema: GatewaySchema,
    hub: EventHub,
}

impl Executor for LiveExecutor {
    async fn execute(&self, request: Request) -> Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let request = request.data(self.hub.listen());
        self.schema.execute_stream_with_session_data(request, session_data.unwrap_or_default())
    }
}

/// The protocol the client asks for in `Sec-WebSocket-Protocol`.
pub fn protocol(headers: &http::HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())?
        .split(',')
        .find_map(|name| name.trim().parse().ok())
}

/// `GET /graphql/ws`.
pub async fn upgrade(
    gateway: Gateway,
    protocol: WebSocketProtocols,
    upgrade: WebSocketUpgrade,
    client: Option<ClientAddress>,
) -> axum::response::Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(gateway, socket, protocol, client))
}

async fn serve(
    gateway: Gateway,
    socket: WebSocket,
    protocol: WebSocketProtocols,
    client: Option<ClientAddress>,
) {
    let (mut sink, stream) = socket.split();
    let incoming = stream.take_while(|message| futures::future::ready(message.is_ok())).filter_map(
        |message| {
            futures::future::ready(match message {
                Ok(Message::Text(text)) => Some(bytes::Bytes::from(text)),
                Ok(Message::Binary(bytes)) => Some(bytes),
                _ => None,
            })
        },
    );
    let executor = LiveExecutor { schema: gateway.schema.clone(), hub: gateway.hub.clone() };
    let on_init = move |payload: serde_json::Value| {
        let gateway = gateway.clone();
        async move {
            let token = ["Authorization", "authorization"]
                .iter()
                .find_map(|key| payload.get(*key).and_then(|value| value.as_str()))
                .map(crate::http::bearer_value);
            let session = gateway.session(token.as_deref(), client, None).await.without_cache();
            let mut data = Data::default();
            data.insert(session);
            Ok(data)
        }
    };
    let mut outgoing =
        Protocol::new(executor, incoming, protocol).on_connection_init(on_init).boxed();
    let mut refused = HashSet::new();
    while let Some(message) = outgoing.next().await {
        let sent = match message {
            WsMessage::Text(text) => match refusal(&text, &mut refused) {
                Rewrite::Keep => sink.send(Message::Text(text.into())).await,
                Rewrite::Replace(text) => sink.send(Message::Text(text.into())).await,
                Rewrite::Drop => Ok(()),
            },
            WsMessage::Close(code, reason) => {
                let frame = CloseFrame { code, reason: reason.into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
}

enum Rewrite {
    Keep,
    Replace(String),
    Drop,
}

/// A `next`/`data` message with errors and no data becomes the protocol's `error` message
/// (which ends the operation, so the `complete` that follows is dropped).
fn refusal(text: &str, refused: &mut HashSet<String>) -> Rewrite {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else { return Rewrite::Keep };
    let kind = message.get("type").and_then(|kind| kind.as_str()).unwrap_or_default();
    let Some(id) = message.get("id").and_then(|id| id.as_str()) else { return Rewrite::Keep };
    match kind {
        "next" | "data" => {
            let payload = message.get("payload");
            let has_data =
                payload.and_then(|payload| payload.get("data")).is_some_and(|data| !data.is_null());
            let errors = payload.and_then(|payload| payload.get("errors")).cloned();
            match errors {
                Some(serde_json::Value::Array(errors)) if !has_data && !errors.is_empty() => {
                    refused.insert(id.to_owned());
                    let payload = if kind == "next" {
                        serde_json::Value::Array(errors)
                    } else {
                        errors.into_iter().next().unwrap_or_default()
                    };
                    let error =
                        serde_json::json!({ "type": "error", "id": id, "payload": payload });
                    Rewrite::Replace(error.to_string())
                }
                _ => Rewrite::Keep,
            }
        }
        "complete" if refused.remove(id) => Rewrite::Drop,
        _ => Rewrite::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_only_next_becomes_an_error_and_its_complete_is_dropped() {
        let mut refused = HashSet::new();
        let next = r#"{"type":"next","id":"1","payload":{"data":null,"errors":[{"message":"no","extensions":{"code":"FORBIDDEN"}}]}}"#;
        let Rewrite::Replace(error) = refusal(next, &mut refused) else { panic!("not rewritten") };
        let error: serde_json::Value = serde_json::from_str(&error).unwrap_or_default();
        assert_eq!(error["type"], "error");
        assert_eq!(error["payload"][0]["extensions"]["code"], "FORBIDDEN");
        assert!(matches!(refusal(r#"{"type":"complete","id":"1"}"#, &mut refused), Rewrite::Drop));
        let data = r#"{"type":"next","id":"2","payload":{"data":{"x":1}}}"#;
        assert!(matches!(refusal(data, &mut refused), Rewrite::Keep));
        assert!(matches!(refusal(r#"{"type":"complete","id":"2"}"#, &mut refused), Rewrite::Keep));
    }
}
