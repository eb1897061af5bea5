//! NATS subject and JetStream stream names, all derived from the deployment prefix.
//!
//! The prefix (default `mercato`) lets several deployments or test runs share one NATS server; it
//! is expected to be a single subject token (letters, digits, `-`, `_`), which the configuration
//! that supplies it validates.

/// The subject an event is published on: `<prefix>.<aggregate>.<action>`.
///
/// The version is not part of the subject: `.v1` and `.v2` of one event share it and consumers
/// tell them apart by the envelope's `type`.
pub fn nats_subject(prefix: &str, aggregate: &str, action: &str) -> String {
    format!("{prefix}.{aggregate}.{action}")
}

/// The subjects the event stream captures: `<prefix>.>`.
pub fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The JetStream stream holding every event of a deployment: the prefix upper-cased, with `-`
/// turned into `_` (`mercato` -> `MERCATO`, `test-42` -> `TEST_42`).
pub fn stream_name(prefix: &str) -> String {
    prefix.to_ascii_uppercase().replace('-', "_")
}

/// The stream that receives events a consumer gave up on: `<STREAM>_DLQ`.
pub fn dead_letter_stream_name(prefix: &str) -> String {
    format!("{}_DLQ", stream_name(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_prefix_aggregate_action() {
        assert_eq!(nats_subject("mercato", "order", "placed"), "mercato.order.placed");
        assert_eq!(nats_subject("run-7", "inventory", "updated"), "run-7.inventory.updated");
        assert_eq!(stream_subjects("mercato"), "mercato.>");
    }

    #[test]
    fn stream_names_are_the_prefix_upper_cased() {
        assert_eq!(stream_name("mercato"), "MERCATO");
        assert_eq!(stream_name("test-run-42"), "TEST_RUN_42");
        assert_eq!(dead_letter_stream_name("mercato"), "MERCATO_DLQ");
        assert_eq!(dead_letter_stream_name("test-run-42"), "TEST_RUN_42_DLQ");
    }
}
