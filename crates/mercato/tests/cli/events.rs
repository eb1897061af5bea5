//! Events through the real binary: the users service's changes reach the bus (embedded log under
//! `up`, JetStream under `serve`), `mercato events tail` shows them, the AsyncAPI document is
//! served.

use std::process::Stdio;
use std::time::Duration;

use mercato_testkit::{Backend, TestDatabase};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use crate::process::{Mercato, command, login, post_json, run, up};

/// `mercato events tail ...` running, with its stdout.
struct Tail {
    _child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Tail {
    /// Starts a tail and waits until it says it is following.
    async fn start(args: &[&str]) -> Self {
        let mut tail = command(args);
        tail.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = tail.spawn().expect("mercato events tail starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut errors = BufReader::new(stderr).lines();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = errors.next_line().await {
                if line.contains("following events") {
                    return;
                }
            }
            panic!("the tail exited before following");
        })
        .await
        .expect("the tail is following within 30 s");
        let stdout = child.stdout.take().expect("stdout is piped");
        Self { _child: child, lines: BufReader::new(stdout).lines() }
    }

    /// The next printed line containing `needle` (within 30 s).
    async fn expect(&mut self, needle: &str) -> String {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the tail ended before printing {needle}");
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {needle} within 30 s"))
    }
}

#[tokio::test]
async fn up_publishes_user_events_that_events_tail_shows() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let mercato = Mercato::start(up(dir.path())).await;
    let mut tail = Tail::start(&["events", "tail", "--data-dir", &data]).await;

    let created: Value = post_json(
        &mercato.url("/api/users"),
        json!({"name": "Evt", "email": "evt@example.com", "password": "eventful!"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("an id").to_owned();
    let line = tail.expect("mercato.user.created.v1").await;
    assert!(line.contains(&format!("subject={id}")), "{line}");
    assert!(line.contains("\"email\":\"evt@example.com\""), "{line}");
    assert!(!line.to_lowercase().contains("password"), "events never carry passwords: {line}");

    let session: Value =
        login(&mercato, "evt@example.com", "eventful!").await.json().await.expect("json");
    let token = session["token"].as_str().expect("a token");
    let client = reqwest::Client::new();
    let renamed = client
        .patch(mercato.url(&format!("/api/users/{id}")))
        .bearer_auth(token)
        .json(&json!({"name": "Evt Renamed"}))
        .send()
        .await
        .expect("patch answers");
    assert_eq!(renamed.status(), StatusCode::OK);
    let line = tail.expect("mercato.user.updated.v1").await;
    assert!(line.contains("Evt Renamed"), "{line}");

    let deleted = client
        .delete(mercato.url(&format!("/api/users/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete answers");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let line = tail.expect("mercato.user.deleted.v1").await;
    assert!(line.contains(&id), "{line}");

    let ready: Value = reqwest::get(mercato.url("/health/ready"))
        .await
        .expect("ready")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    assert!(ready["checks"]["bus"].as_str().is_some_and(|d| d.contains("embedded log")), "{ready}");
    assert!(mercato.terminate().await.success());
}

#[tokio::test]
async fn the_asyncapi_document_lists_every_event() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = Mercato::start(up(dir.path())).await;
    let document: Value = reqwest::get(mercato.url("/api/asyncapi.json"))
        .await
        .expect("asyncapi answers")
        .json()
        .await
        .expect("json");
    assert_eq!(document["asyncapi"], "3.0.0");
    let channels = document["channels"].as_object().expect("channels");
    for event in
        ["user.created", "user.deleted", "order.placed", "inventory.reserved", "order.confirmed"]
    {
        assert!(channels.contains_key(event), "{event} is missing");
    }
    assert_eq!(channels["user.created"]["address"], "mercato.user.created");
    assert!(mercato.terminate().await.success());
}

#[tokio::test]
async fn an_empty_dead_letter_list_says_so() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let (ok, stdout, stderr) = run(command(&["events", "dlq", "list", "--data-dir", &data])).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("no dead letters"), "{stdout}");
    let (ok, _, stderr) =
        run(command(&["events", "tail", "--type", "user.exploded", "--data-dir", &data])).await;
    assert!(!ok);
    assert!(stderr.contains("unknown event type"), "{stderr}");
}

#[tokio::test]
async fn serve_users_publishes_to_jetstream_under_its_prefix() {
    let Some(nats) = mercato_testkit::reachable_shared_nats().await else { return };
    let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
    let prefix = mercato_testkit::unique_prefix();
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let users = Mercato::start(command(&[
        "serve",
        "users",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
        "--data-dir",
        &data,
        "--nats-url",
        &nats,
        "--nats-prefix",
        &prefix,
    ]))
    .await;
    let mut tail =
        Tail::start(&["events", "tail", "--nats-url", &nats, "--nats-prefix", &prefix]).await;
    let created = post_json(
        &users.url("/api/users"),
        json!({"name": "Jet", "email": "jet@example.com", "password": "streaming"}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let line = tail.expect("mercato.user.created.v1").await;
    assert!(line.contains("jet@example.com"), "{line}");
    let ready: Value =
        reqwest::get(users.url("/health/ready")).await.expect("ready").json().await.expect("json");
    assert!(
        ready["checks"]["bus"].as_str().is_some_and(|d| d.contains("nats connected")),
        "{ready}"
    );
    assert!(users.terminate().await.success());
}
