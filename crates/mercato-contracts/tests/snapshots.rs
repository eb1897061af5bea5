//! Fails when the wire contract changes without the committed schemas changing with it.
//!
//! The JSON Schema of every payload (`schemas/<type>.json`), of the envelope
//! (`schemas/envelope.json`) and the AsyncAPI document (`asyncapi.json`) are generated from the
//! types and compared with the files in the repository, so a payload change shows up in review as
//! a diff of those files. After a deliberate change, regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p mercato-contracts --test snapshots`, and remember the
//! versioning rule: a breaking change is a new `.v2` type, not an edit of `.v1`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

const UPDATE_COMMAND: &str = "UPDATE_SNAPSHOTS=1 cargo test -p mercato-contracts --test snapshots";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn updating() -> bool {
    std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|value| value == "1")
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Compares `generated` with the committed file, or rewrites the file when updating. Returns a
/// description of the difference, if any.
fn check(path: &Path, generated: &str) -> Option<String> {
    if updating() {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("the snapshot folder can be created");
        }
        fs::write(path, generated).expect("the snapshot can be written");
        return None;
    }
    let Ok(committed) = fs::read_to_string(path) else {
        return Some(format!("{}: missing", path.display()));
    };
    if committed == generated {
        return None;
    }
    let committed_lines: Vec<&str> = committed.lines().collect();
    let generated_lines: Vec<&str> = generated.lines().collect();
    let line = committed_lines
        .iter()
        .zip(&generated_lines)
        .position(|(committed, generated)| committed != generated)
        .unwrap_or(committed_lines.len().min(generated_lines.len()));
    Some(format!(
        "{}: differs from line {}\n    committed: {}\n    generated: {}",
        path.display(),
        line + 1,
        committed_lines.get(line).unwrap_or(&"<end of file>"),
        generated_lines.get(line).unwrap_or(&"<end of file>"),
    ))
}

fn assert_no_differences(differences: Vec<String>) {
    assert!(
        differences.is_empty(),
        "the generated contract differs from the committed snapshots:\n\n{}\n\n\
         If the change is intended, regenerate them with\n\n    {UPDATE_COMMAND}\n\n\
         and review `git diff crates/mercato-contracts`. A breaking payload change needs a new \
         `.v2` type instead.",
        differences.join("\n\n")
    );
}

#[test]
fn every_event_schema_matches_its_committed_snapshot() {
    let folder = crate_dir().join("schemas");
    let mut differences = Vec::new();
    for info in mercato_contracts::catalog() {
        let path = folder.join(format!("{}.json", info.type_name));
        differences.extend(check(&path, &pretty(&info.schema)));
    }
    let envelope = pretty(&mercato_contracts::envelope_schema());
    differences.extend(check(&folder.join("envelope.json"), &envelope));
    assert_no_differences(differences);
}

#[test]
fn the_asyncapi_document_matches_its_committed_snapshot() {
    let document = pretty(&mercato_contracts::asyncapi("mercato"));
    assert_no_differences(
        check(&crate_dir().join("asyncapi.json"), &document).into_iter().collect(),
    );
}

/// A schema file without an event is a payload that was removed or renamed without anyone
/// noticing that its consumers lost their contract.
#[test]
fn no_committed_schema_outlives_its_event() {
    let folder = crate_dir().join("schemas");
    let expected: BTreeSet<String> = mercato_contracts::catalog()
        .iter()
        .map(|info| format!("{}.json", info.type_name))
        .chain(["envelope.json".to_owned()])
        .collect();
    let Ok(entries) = fs::read_dir(&folder) else {
        assert!(updating(), "{} is missing; run {UPDATE_COMMAND}", folder.display());
        return;
    };
    let mut stale = Vec::new();
    for entry in entries {
        let path = entry.expect("the schema folder can be listed").path();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned());
        if name.is_some_and(|name| !expected.contains(&name)) {
            stale.push(path);
        }
    }
    if updating() {
        for path in &stale {
            fs::remove_file(path).expect("a stale schema can be removed");
        }
        return;
    }
    assert!(
        stale.is_empty(),
        "committed schemas without an event: {stale:?}\n\
         Remove them deliberately, or run {UPDATE_COMMAND}"
    );
}
