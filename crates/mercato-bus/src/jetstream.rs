//! [`JetStreamBus`]: the event bus on NATS JetStream (`mercato serve`).
//!
//! - Stream `<PREFIX>` on `<prefix>.>`, file storage, a 2-minute duplicate window: every message
//!   carries its event id as `Nats-Msg-Id`, so a re-send inside the window is dropped by the broker
//!   (consumers' inboxes catch re-sends after it).
//! - Dead letters go to stream `<PREFIX>_DLQ` on `dlq.<prefix>.<consumer>`, with the original
//!   subject, the error and the attempts as headers. Its subjects must not overlap the main stream's.
//! - One durable pull consumer per (service, purpose), explicit acks, shared by every replica. The
//!   broker redelivers after `ack_wait` or after a nak's delay; how many attempts are too many is
//!   decided by the consumer runner (both buses behave the same), so `max_deliver` is unlimited.
//! - Works with nats-server 2.9 (Debian's): one filter subject per consumer. A consumer with
//!   several filters reads the narrowest one subject that covers them all ([`covering_filter`]:
//!   `<prefix>.order.*` for three `order.` events, `<prefix>.>` at worst) and acks what it does
//!   not want, since `filter_subjects` needs 2.10. A durable consumer made by an earlier version
//!   keeps the filter it was made with (it is reused, not changed).
//! - Streams are created lazily, so a service starts while NATS is down and catches up when it
//!   is back; the client reconnects forever.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::OnceCell;

use crate::bus::{
    BusError, ConsumerSpec, DeadLetter, Delivery, EventBus, OutgoingMessage, Settle, Subscription,
    subject_matches,
};

const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
const HEADER_CONSUMER: &str = "Mercato-Consumer";
const HEADER_SUBJECT: &str = "Mercato-Original-Subject";
const HEADER_ERROR: &str = "Mercato-Error";
const HEADER_ATTEMPTS: &str = "Mercato-Attempts";
const HEADER_FAILED_AT: &str = "Mercato-Failed-At";

/// The event bus on NATS JetStream.
#[derive(Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    jetstream: Context,
    prefix: String,
    stream: String,
    dead_letter_stream: String,
    streams: std::sync::Arc<OnceCell<()>>,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus").field("stream", &self.stream).finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(error.to_string())
}

/// The stream name for a subject prefix: `mercato` -> `MERCATO`.
pub fn stream_name(prefix: &str) -> String {
    prefix.to_uppercase().replace(['-', '.'], "_")
}

impl JetStreamBus {
    /// Connects to `url` (comma-separated for a cluster) for subjects under `prefix`.
    ///
    /// Returns at once even when NATS is down: the client keeps reconnecting, and operations
    /// answer [`BusError::Unavailable`] meanwhile.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("mercato-{prefix}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection event");
            })
            .connect(url)
            .await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(4096)
            .build(client.clone());
        let stream = stream_name(prefix);
        Ok(Self {
            client,
            jetstream,
            prefix: prefix.to_owned(),
            dead_letter_stream: format!("{stream}_DLQ"),
            stream,
            streams: std::sync::Arc::new(OnceCell::new()),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates the event and dead-letter streams once (idempotent across replicas).
    async fn ensure_streams(&self) -> Result<(), BusError> {
        self.streams
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: self.stream.clone(),
                        subjects: vec![format!("{}.>", self.prefix)],
                        storage: StorageType::File,
                        duplicate_window: DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)?;
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: self.dead_letter_stream.clone(),
                        subjects: vec![format!("dlq.{}.>", self.prefix)],
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("dlq.{}.{consumer}", self.prefix)
    }
}

#[async_trait]
impl EventBus for JetStreamBus {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Vec<Result<(), BusError>> {
        if let Err(error) = self.ensure_streams().await {
            let reason = error.to_string();
            return messages.iter().map(|_| Err(BusError::Unavailable(reason.clone()))).collect();
        }
        // Send everything first, then await the acks: many in flight, one round trip in all.
        let mut pending = Vec::with_capacity(messages.len());
        let mut stopped: Option<String> = None;
        for message in messages {
            if let Some(reason) = &stopped {
                pending.push(Err(BusError::Unavailable(reason.clone())));
                continue;
            }
            let publish =
                PublishMessage::build().payload(message.payload).message_id(&message.event_id);
            match self.jetstream.send_publish(message.subject, publish).await {
                Ok(ack) => pending.push(Ok(ack)),
                Err(error) => {
                    // Later messages are not sent, to keep the order of what does get stored.
                    stopped = Some(error.to_string());
                    pending.push(Err(unavailable(error)));
                }
            }
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for entry in pending {
            outcomes.push(match entry {
                Ok(ack) => ack.await.map(|_| ()).map_err(unavailable),
                Err(error) => Err(error),
            });
        }
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        metrics::counter!("bus_published_total").increment(stored as u64);
        outcomes
    }

    async fn subscribe(&self, spec: ConsumerSpec) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_streams().await?;
        let (filter_subject, client_filters) = match spec.filter_subjects.as_slice() {
            [one] => (one.clone(), None),
            several => (
                covering_filter(several).unwrap_or_else(|| format!("{}.>", self.prefix)),
                Some(spec.filter_subjects.clone()),
            ),
        };
        let stream = self.jetstream.get_stream(&self.stream).await.map_err(unavailable)?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &spec.durable_name,
                pull::Config {
                    durable_name: Some(spec.durable_name.clone()),
                    filter_subject,
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: spec.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(Box::new(JetStreamSubscription { consumer, messages: None, client_filters }))
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BusError> {
        self.ensure_streams().await?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_CONSUMER, consumer);
        headers.insert(HEADER_SUBJECT, delivery.subject.as_str());
        // Header values are one line.
        let one_line: String =
            error.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        headers.insert(HEADER_ERROR, one_line.as_str());
        headers.insert(HEADER_ATTEMPTS, delivery.attempt.to_string().as_str());
        headers.insert(HEADER_FAILED_AT, now_millis().to_string().as_str());
        let publish = PublishMessage::build().payload(delivery.payload.clone()).headers(headers);
        self.jetstream
            .send_publish(self.dead_letter_subject(consumer), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        self.ensure_streams().await?;
        let mut stream =
            self.jetstream.get_stream(&self.dead_letter_stream).await.map_err(unavailable)?;
        let state = stream.info().await.map_err(unavailable)?.state.clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if letters.len() >= limit {
                break;
            }
            // Redriven letters leave holes in the sequence.
            let Ok(message) = stream.get_raw_message(sequence).await else { continue };
            let header = |name: &str| {
                message.headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default()
            };
            letters.push(DeadLetter {
                id: sequence,
                consumer: header(HEADER_CONSUMER),
                subject: header(HEADER_SUBJECT),
                payload: message.payload.clone(),
                error: header(HEADER_ERROR),
                attempts: header(HEADER_ATTEMPTS).parse().unwrap_or(0),
                failed_at: header(HEADER_FAILED_AT).parse().unwrap_or(0),
            });
        }
        Ok(letters)
    }

    async fn redrive(&self, id: u64) -> Result<(), BusError> {
        self.ensure_streams().await?;
        let stream =
            self.jetstream.get_stream(&self.dead_letter_stream).await.map_err(unavailable)?;
        let message = stream
            .get_raw_message(id)
            .await
            .map_err(|_| BusError::Invalid(format!("no dead letter {id}")))?;
        let subject =
            message.headers.get(HEADER_SUBJECT).map(|v| v.as_str().to_owned()).ok_or_else(
                || BusError::Invalid(format!("dead letter {id} has no original subject")),
            )?;
        // No message id: the original id is inside the duplicate window perhaps, and this send
        // must not be dropped. Consumers that handled the event skip it by its event id.
        self.jetstream
            .send_publish(subject, PublishMessage::build().payload(message.payload.clone()))
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        stream.delete_message(id).await.map_err(unavailable)?;
        Ok(())
    }

    async fn signal(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        // Core NATS: no stream captures the subject, no ack is awaited.
        self.client.publish(subject, payload).await.map_err(unavailable)
    }

    async fn tail(
        &self,
        filter_subjects: Vec<String>,
    ) -> Result<futures::stream::BoxStream<'static, (String, Bytes)>, BusError> {
        let mut streams = Vec::new();
        for filter in filter_subjects {
            let subscriber = self.client.subscribe(filter).await.map_err(unavailable)?;
            streams.push(subscriber.map(|message| (message.subject.to_string(), message.payload)));
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn consumer_lag(&self, durable_name: &str) -> Result<u64, BusError> {
        self.ensure_streams().await?;
        let stream = self.jetstream.get_stream(&self.stream).await.map_err(unavailable)?;
        let info = stream.consumer_info(durable_name).await.map_err(unavailable)?;
        Ok(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(0))
    }

    async fn check(&self) -> Result<String, String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => {
                self.ensure_streams().await.map_err(|e| e.to_string())?;
                Ok(format!("nats connected, stream {}", self.stream))
            }
            other => Err(format!("nats {other}")),
        }
    }
}

fn now_millis() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

struct JetStreamSubscription {
    consumer: PullConsumer,
    messages: Option<pull::Stream>,
    /// Filters applied here when the broker could take only one (nats-server 2.9).
    client_filters: Option<Vec<String>>,
}

impl JetStreamSubscription {
    fn wanted(&self, subject: &str) -> bool {
        self.client_filters
            .as_ref()
            .is_none_or(|filters| filters.iter().any(|f| subject_matches(f, subject)))
    }

    fn delivery(message: jetstream::Message) -> Result<Delivery, BusError> {
        let info = message.info().map_err(|e| BusError::Other(anyhow::anyhow!("{e}")))?;
        let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX);
        let sequence = info.stream_sequence;
        let subject = message.subject.to_string();
        let payload = message.payload.clone();
        let (_, acker) = message.split();
        Ok(Delivery {
            subject,
            payload,
            attempt,
            sequence,
            settle: Box::new(JetStreamSettle(acker)),
        })
    }
}

#[async_trait]
impl Subscription for JetStreamSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if self.messages.is_none() {
            self.messages = Some(self.consumer.messages().await.map_err(unavailable)?);
        }
        let Some(messages) = self.messages.as_mut() else { return Ok(Vec::new()) };
        let mut batch = Vec::new();
        let first = match tokio::time::timeout(wait, messages.next()).await {
            Err(_) | Ok(None) => return Ok(batch),
            Ok(Some(first)) => first,
        };
        let mut received = vec![first];
        while received.len() < max {
            match messages.next().now_or_never() {
                Some(Some(next)) => received.push(next),
                _ => break,
            }
        }
        for item in received {
            let message = match item {
                Ok(message) => message,
                Err(error) => {
                    // The pull stream broke (missed heartbeats, reconnect): start a new one.
                    self.messages = None;
                    if batch.is_empty() {
                        return Err(unavailable(error));
                    }
                    break;
                }
            };
            if !self.wanted(message.subject.as_str()) {
                let _ = message.ack().await;
                continue;
            }
            batch.push(Self::delivery(message)?);
        }
        Ok(batch)
    }
}

struct JetStreamSettle(async_nats::jetstream::message::Acker);

#[async_trait]
impl Settle for JetStreamSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack().await.map_err(unavailable)
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Nak(Some(delay))).await.map_err(unavailable)
    }

    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Term).await.map_err(unavailable)
    }
}

/// The narrowest single filter that matches every subject any of `filters` matches, when they
/// all have the same number of tokens and none ends in `>`: the tokens they share, `*` where
/// they differ. Every consumer used to read the whole stream and ack most of it unread.
fn covering_filter(filters: &[String]) -> Option<String> {
    let split: Vec<Vec<&str>> = filters.iter().map(|filter| filter.split('.').collect()).collect();
    let first = split.first()?;
    if split.iter().any(|tokens| tokens.len() != first.len() || tokens.contains(&">")) {
        return None;
    }
    let covering: Vec<&str> = (0..first.len())
        .map(|position| {
            let token = first[position];
            if split.iter().all(|tokens| tokens[position] == token) { token } else { "*" }
        })
        .collect();
    Some(covering.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(filters: &[&str]) -> Vec<String> {
        filters.iter().map(|filter| (*filter).to_owned()).collect()
    }

    #[test]
    fn several_filters_are_covered_by_their_shared_tokens() {
        let order_events = strings(&["p.order.placed", "p.order.updated", "p.order.cancelled"]);
        assert_eq!(covering_filter(&order_events).as_deref(), Some("p.order.*"));
        let replicas = strings(&["p.user.created", "p.product.created", "p.user.deleted"]);
        assert_eq!(covering_filter(&replicas).as_deref(), Some("p.*.*"));
        assert_eq!(covering_filter(&strings(&["p.a.*", "p.a.b"])).as_deref(), Some("p.a.*"));
        // Different depths, or a tail wildcard: only the whole stream covers them.
        assert_eq!(covering_filter(&strings(&["p.a.b", "p.a.b.c"])), None);
        assert_eq!(covering_filter(&strings(&["p.a.>", "p.a.b"])), None);
        assert_eq!(covering_filter(&[]), None);
    }

    #[test]
    fn a_covering_filter_matches_whatever_its_filters_match() {
        let filters = strings(&["p.order.placed", "p.inventory.*", "p.order.cancelled"]);
        let covering = covering_filter(&filters).unwrap_or_default();
        for subject in ["p.order.placed", "p.inventory.reserved", "p.order.cancelled"] {
            assert!(subject_matches(&covering, subject), "{covering} misses {subject}");
        }
        assert!(!subject_matches(&covering, "q.order.placed"));
        assert!(!subject_matches(&covering, "p.order.placed.extra"));
    }

    #[test]
    fn stream_names_derive_from_the_prefix() {
        assert_eq!(stream_name("mercato"), "MERCATO");
        assert_eq!(stream_name("test-run_7"), "TEST_RUN_7");
    }
}
