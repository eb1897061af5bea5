//! `mercato events`: watch the bus and manage dead letters, in either shape; and the AsyncAPI
//! document route.
//!
//! With a NATS URL configured (`--nats-url`, `MERCATO_NATS_URL`) the commands talk to JetStream;
//! otherwise to the embedded log under `--data-dir`, which works beside a running `mercato up`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use futures::StreamExt;
use mercato_bus::EventBus;
use mercato_contracts::Envelope;

use crate::cli::{DlqCommand, EventsArgs, EventsCommand};
use crate::config::{Overrides, Settings};

/// `GET /api/asyncapi.json`: the AsyncAPI 3 document of every event, for this subject prefix.
pub fn asyncapi_route(prefix: &str) -> Router {
    let document = Arc::new(mercato_contracts::asyncapi(prefix).to_string());
    Router::new().route(
        "/api/asyncapi.json",
        get(move || {
            let document = document.clone();
            async move {
                ([(axum::http::header::CONTENT_TYPE, "application/json")], document.to_string())
            }
        }),
    )
}

/// The subject filter for `--type`: a full CloudEvents type (`mercato.user.created.v1`) or its
/// short form (`user.created`).
fn subject_filter(prefix: &str, event_type: &str) -> anyhow::Result<String> {
    let short = event_type.strip_prefix("mercato.").unwrap_or(event_type);
    let short =
        short.rsplit_once(".v").filter(|(_, v)| v.parse::<u32>().is_ok()).map_or(short, |(s, _)| s);
    let known = mercato_contracts::catalog()
        .iter()
        .any(|info| format!("{}.{}", info.aggregate, info.action) == short);
    if !known {
        let types: Vec<String> =
            mercato_contracts::catalog().iter().map(|i| i.type_name.to_owned()).collect();
        anyhow::bail!("unknown event type `{event_type}`; known types: {}", types.join(", "));
    }
    Ok(format!("{prefix}.{short}"))
}

pub async fn run(config: Option<&Path>, args: EventsArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        nats_url: args.nats_url.clone(),
        nats_prefix: args.nats_prefix.clone(),
        ..Overrides::default()
    };
    let settings = Settings::load(config, overrides)?;
    let prefix = settings.nats_prefix.clone();
    let jetstream = match settings.nats_url {
        Some(_) => Some(crate::backbone::jetstream(&settings).await?),
        None => None,
    };
    let embedded = match jetstream {
        Some(_) => None,
        None => Some(crate::backbone::embedded_log(&settings.data_dir).await?),
    };
    let bus: Arc<dyn EventBus> = match (&jetstream, &embedded) {
        (Some(jetstream), _) => Arc::new(jetstream.clone()),
        (None, Some(log)) => Arc::new(log.clone()),
        (None, None) => anyhow::bail!("no event bus configured"),
    };
    match args.command {
        EventsCommand::Tail { types } => {
            let filters = if types.is_empty() {
                vec![format!("{prefix}.>")]
            } else {
                types.iter().map(|t| subject_filter(&prefix, t)).collect::<anyhow::Result<_>>()?
            };
            let mut stream = match &embedded {
                Some(log) => log.follow(filters).await?,
                None => bus.tail(filters).await?,
            };
            eprintln!(
                "following events on {} (Ctrl-C to stop)",
                match &embedded {
                    Some(_) => format!("the embedded log in {}", settings.data_dir.display()),
                    None => format!("NATS, prefix `{prefix}`"),
                }
            );
            loop {
                tokio::select! {
                    next = stream.next() => match next {
                        Some((subject, payload)) => print_event(&subject, &payload)?,
                        None => return Ok(()),
                    },
                    () = mercato_platform::shutdown::signal() => return Ok(()),
                }
            }
        }
        EventsCommand::Dlq(DlqCommand::List { limit }) => {
            let letters = bus.dead_letters(limit).await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for letter in letters {
                let event = Envelope::parse(&letter.payload).ok();
                println!(
                    "#{id}  {at}  consumer={consumer}  attempts={attempts}  {kind}  id={event_id}\n    error: {error}",
                    id = letter.id,
                    at = mercato_contracts::format_rfc3339_millis(letter.failed_at),
                    consumer = letter.consumer,
                    attempts = letter.attempts,
                    kind =
                        event.as_ref().map_or(letter.subject.as_str(), |e| e.event_type.as_str()),
                    event_id = event.as_ref().map_or("?", |e| e.id.as_str()),
                    error = letter.error,
                );
            }
            Ok(())
        }
        EventsCommand::Dlq(DlqCommand::Redrive { id }) => {
            bus.redrive(id).await?;
            println!("dead letter #{id} redriven");
            Ok(())
        }
    }
}

/// One readable line per event: time, type, aggregate id, event id, then the data.
fn print_event(subject: &str, payload: &[u8]) -> anyhow::Result<()> {
    let line = match Envelope::parse(payload) {
        Ok(event) => format!(
            "{}  {}  subject={}  id={}  {}",
            event.time, event.event_type, event.subject, event.id, event.data
        ),
        Err(_) => {
            format!("{subject}  (not an event envelope) {}", String::from_utf8_lossy(payload))
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_subjects_in_both_forms() {
        assert_eq!(
            subject_filter("p", "mercato.user.created.v1").ok().as_deref(),
            Some("p.user.created")
        );
        assert_eq!(subject_filter("p", "order.placed").ok().as_deref(), Some("p.order.placed"));
        assert!(subject_filter("p", "user.exploded").is_err());
    }
}
