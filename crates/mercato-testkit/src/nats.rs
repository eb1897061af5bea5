//! NATS for tests: the shared server's URL and unique subject prefixes. A private `nats-server`
//! that a fault drill may stop and restart is [`crate::servers::PrivateNats`].
//!
//! Tests on the shared server (`MERCATO_TEST_NATS_URL`, default `nats://127.0.0.1:4222`) each use
//! their own prefix from [`unique_prefix`], so their streams (named after the prefix) never meet.

use std::time::Duration;

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The shared NATS server of the machine (`MERCATO_TEST_NATS_URL`).
pub fn shared_nats_url() -> String {
    std::env::var("MERCATO_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// The shared NATS server's URL when it accepts connections; `None` after a loud message when
/// it does not and servers are not required (panics when they are), like [`crate::TestDatabase`].
pub async fn reachable_shared_nats() -> Option<String> {
    let url = shared_nats_url();
    let authority = url.split("://").nth(1).unwrap_or(&url).split('/').next().unwrap_or_default();
    let address = authority.rsplit('@').next().unwrap_or(authority).to_owned();
    let connect = tokio::net::TcpStream::connect(address.clone());
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => Some(url),
        outcome => {
            let reason = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "no answer within 3 s".to_owned(),
            };
            crate::skip_or_fail(&format!("NATS is unreachable at {url} ({reason})"));
            None
        }
    }
}

/// A subject prefix no other test uses: `t` and 12 random hex digits (one subject token, so
/// the stream name derived from it is valid too).
pub fn unique_prefix() -> String {
    // The tail of a UUIDv7 is random; its head is the clock, which tests started in the same
    // millisecond share.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("t{}", &id[id.len() - 12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_one_token_and_unique() {
        let first = unique_prefix();
        let second = unique_prefix();
        assert_ne!(first, second);
        assert_eq!(first.len(), 13);
        assert!(first.starts_with('t'));
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()), "{first}");
    }
}
