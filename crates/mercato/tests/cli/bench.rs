//! `mercato bench` against a real `mercato up`: every scenario runs for two seconds and must
//! report a non-zero throughput without unexpected errors, write its JSON, its Markdown report
//! and the SVG chart beside it; `settle` and `mixed` must find their invariants holding. Also
//! the open loop, an exact `--requests` count, a rate-limited login reported with its hint, and
//! the clear errors (missing admin variables, unreachable URL, wrong admin password, bad flags).
//!
//! No timing is asserted: these tests prove the tool measures and reports, not how fast.

use std::path::Path;

use serde_json::Value;
use tokio::process::Command;

use crate::orders::{ADMIN_EMAIL, ADMIN_PASSWORD, up_with_admin};
use crate::process::{Mercato, command, run};

/// `mercato up` with the login and GraphQL rate limits out of the way (every request of the
/// bench comes from 127.0.0.1).
async fn shop(data: &Path) -> Mercato {
    let mut up = up_with_admin(data);
    up.env("MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE", "1000000")
        .env("MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE", "0");
    Mercato::start(up).await
}

/// `mercato bench <args>` as the configured admin.
fn bench(args: &[&str]) -> Command {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    let mut bench = command(&argv);
    bench.env("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL).env("MERCATO_ADMIN_PASSWORD", ADMIN_PASSWORD);
    bench
}

/// What one run wrote.
struct Run {
    json: Value,
    stdout: String,
    report: String,
    chart: String,
}

/// Runs `scenario` with `extra` flags, expecting success, and reads its files.
async fn run_bench(mercato: &Mercato, out: &Path, scenario: &str, extra: &[&str]) -> Run {
    let json_path = out.join(format!("{scenario}.json"));
    let report_path = out.join(format!("{scenario}.md"));
    let (json_arg, report_arg) =
        (json_path.display().to_string(), report_path.display().to_string());
    let mut args =
        vec![scenario, "--url", &mercato.base_url, "--json", &json_arg, "--report", &report_arg];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = run(bench(&args)).await;
    assert!(ok, "mercato bench {scenario} fails:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path).expect("the JSON file is written"),
    )
    .expect("the JSON file parses");
    let report = std::fs::read_to_string(&report_path).expect("the report is written");
    let chart_name = format!("{scenario}.svg");
    assert!(
        report.contains(&format!("]({chart_name})")),
        "the report references its chart:\n{report}"
    );
    let chart = std::fs::read_to_string(out.join(&chart_name)).expect("the chart is written");
    Run { json, stdout, report, chart }
}

/// What every successful run must show.
fn assert_measured(run: &Run, scenario: &str) {
    let json = &run.json;
    assert_eq!(json["scenario"], scenario, "{json}");
    let throughput = json["throughput"].as_f64().expect("a throughput");
    assert!(throughput > 0.0, "{json}");
    assert!(json["ok"].as_u64().is_some_and(|ok| ok > 0), "{json}");
    assert_eq!(json["failed"], 0, "no request failed: {}", json["errors"]);
    assert_eq!(json["errors"], Value::Array(vec![]), "{json}");
    for percentile in ["p50", "p90", "p99", "p99.9", "max"] {
        let value = json["latencyMs"][percentile].as_f64();
        assert!(value.is_some_and(|ms| ms > 0.0), "{percentile} in {}", json["latencyMs"]);
    }
    let p50 = json["latencyMs"]["p50"].as_f64().unwrap_or_default();
    let max = json["latencyMs"]["max"].as_f64().unwrap_or_default();
    assert!(p50 <= max, "{}", json["latencyMs"]);
    let series = json["series"].as_array().expect("a per-second series");
    assert!(!series.is_empty(), "{json}");
    let per_second: u64 = series.iter().map(|s| s["ok"].as_u64().unwrap_or_default()).sum();
    assert_eq!(Some(per_second), json["ok"].as_u64(), "the series adds up to the total");
    assert_eq!(json["settings"]["url"].as_str().map(|url| url.starts_with("http://")), Some(true));

    // The summary on stdout.
    assert!(
        run.stdout.starts_with(&format!("mercato bench {scenario} against ")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("p99.9 ms"), "{}", run.stdout);
    assert!(run.stdout.contains("errors: none"), "{}", run.stdout);

    // The report's summary table and the chart with its two series.
    assert!(
        run.report.contains("| operation | requests | errors | ok/s | p50 ms |"),
        "{}",
        run.report
    );
    assert!(run.report.contains("## Errors\n\nNone."), "{}", run.report);
    let chart = run.chart.trim();
    assert!(chart.starts_with("<svg") && chart.ends_with("</svg>"), "{chart}");
    assert_eq!(chart.matches("<svg").count(), 1);
    let points = |id: &str| {
        let start = chart
            .find(&format!("<polyline id=\"{id}\""))
            .unwrap_or_else(|| panic!("the chart has the {id} series: {chart}"));
        let rest = &chart[start..];
        let from = rest.find("points=\"").expect("points") + "points=\"".len();
        rest[from..].split('"').next().unwrap_or_default().split_whitespace().count()
    };
    // One point per second; a last second shorter than half a second (the drain) is left out.
    let charted = series
        .iter()
        .filter(|s| s["lengthSeconds"].as_f64().is_some_and(|length| length >= 0.5))
        .count();
    assert_eq!(points("throughput"), charted.max(1).min(series.len()), "{chart}");
    assert!(points("p99") >= 1, "{chart}");
}

fn assert_invariants_hold(run: &Run) {
    let invariants = &run.json["invariants"];
    assert_eq!(invariants["holds"], true, "{invariants}");
    assert_eq!(invariants["noPending"], true, "{invariants}");
    assert_eq!(invariants["stockConserved"], true, "{invariants}");
    assert_eq!(invariants["pending"], 0);
    assert!(invariants["orders"].as_u64().is_some_and(|orders| orders > 0), "{invariants}");
    let products = invariants["products"].as_array().expect("the books per product");
    assert_eq!(products.len(), 20);
    assert!(products.iter().any(|ledger| ledger["held"].as_i64().is_some_and(|h| h > 0)));
    assert!(run.stdout.contains("invariants: hold"), "{}", run.stdout);
    assert!(run.stdout.contains("holds: no order left pending"), "{}", run.stdout);
    assert!(run.report.contains("**All hold.**"), "{}", run.report);
}

/// Runs `scenario` for two seconds with four workers on a fresh `mercato up`.
async fn two_seconds_of(scenario: &str) -> Run {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = shop(&dir.path().join("data")).await;
    let run =
        run_bench(&mercato, dir.path(), scenario, &["--duration", "2s", "--concurrency", "4"])
            .await;
    assert_measured(&run, scenario);
    assert_eq!(run.json["settings"]["mode"], "closed");
    assert_eq!(run.json["settings"]["concurrency"], 4);
    assert_eq!(run.json["settings"]["durationSeconds"], 2.0);
    run
}

fn operations(run: &Run) -> Vec<String> {
    run.json["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| op["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn bench_read_measures_product_reads() {
    let run = two_seconds_of("read").await;
    assert_eq!(operations(&run), ["read"]);
    assert!(run.json["invariants"].is_null(), "reads move no stock");
    assert!(run.report.contains("Not checked"), "{}", run.report);
}

#[tokio::test]
async fn bench_list_measures_product_pages() {
    let run = two_seconds_of("list").await;
    assert_eq!(operations(&run), ["list"]);
}

#[tokio::test]
async fn bench_login_measures_logins() {
    let run = two_seconds_of("login").await;
    assert_eq!(operations(&run), ["login"]);
}

#[tokio::test]
async fn bench_place_measures_placements() {
    let run = two_seconds_of("place").await;
    assert_eq!(operations(&run), ["place"]);
}

#[tokio::test]
async fn bench_settle_measures_the_saga_and_finds_the_invariants_holding() {
    let run = two_seconds_of("settle").await;
    assert_eq!(operations(&run), ["place-held"]);
    assert_invariants_hold(&run);
    let statuses = &run.json["invariants"]["statuses"];
    assert_eq!(statuses[0][0], "confirmed", "every held placement was confirmed: {statuses}");
    assert_eq!(statuses.as_array().map(Vec::len), Some(1), "{statuses}");
    assert_eq!(statuses[0][1], run.json["ok"], "one confirmed order per settled request");
}

#[tokio::test]
async fn bench_graphql_product_measures_product_queries() {
    let run = two_seconds_of("graphql-product").await;
    assert_eq!(operations(&run), ["graphql-product"]);
}

#[tokio::test]
async fn bench_graphql_orders_measures_the_nested_order_page() {
    let run = two_seconds_of("graphql-orders").await;
    assert_eq!(operations(&run), ["graphql-orders"]);
}

#[tokio::test]
async fn bench_mixed_blends_browsing_and_ordering_and_finds_the_invariants_holding() {
    let run = two_seconds_of("mixed").await;
    let operations = operations(&run);
    for expected in ["read", "list", "place-held"] {
        assert!(operations.iter().any(|op| op == expected), "{expected} in {operations:?}");
    }
    for op in &operations {
        assert!(
            ["read", "list", "place-held", "update-items", "cancel"].contains(&op.as_str()),
            "{op}"
        );
    }
    // A total row beside the operations.
    assert!(run.stdout.lines().any(|line| line.starts_with("all ")), "{}", run.stdout);
    assert_invariants_hold(&run);
}

#[tokio::test]
async fn bench_open_loop_sends_on_schedule_and_accounts_for_every_send() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = shop(&dir.path().join("data")).await;
    let args = ["--rate", "100", "--duration", "2s", "--concurrency", "4"];
    let run = run_bench(&mercato, dir.path(), "read", &args).await;
    assert_measured(&run, "read");
    assert_eq!(run.json["settings"]["mode"], "open");
    assert_eq!(run.json["settings"]["rate"], 100.0);
    let open = &run.json["openLoop"];
    assert_eq!(open["scheduled"], 200, "{open}");
    let sent = open["sent"].as_u64().expect("sent");
    let dropped = open["dropped"].as_u64().expect("dropped");
    assert_eq!(sent + dropped, 200, "{open}");
    assert!(open["late"].as_u64().is_some_and(|late| late <= sent), "{open}");
    assert_eq!(run.json["requests"].as_u64(), Some(sent), "every send was answered once");
    assert!(run.stdout.contains("open loop at 100.0/s"), "{}", run.stdout);
    assert!(run.stdout.contains("sends scheduled"), "{}", run.stdout);
}

#[tokio::test]
async fn bench_requests_sends_exactly_that_many_and_a_wrong_admin_password_is_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = shop(&dir.path().join("data")).await;
    let measured =
        run_bench(&mercato, dir.path(), "read", &["--requests", "37", "--concurrency", "4"]).await;
    assert_measured(&measured, "read");
    assert_eq!(measured.json["requests"], 37);
    assert_eq!(measured.json["ok"], 37);
    assert_eq!(measured.json["settings"]["requests"], 37);
    assert!(measured.json["settings"]["durationSeconds"].is_null());

    let mut wrong = bench(&["read", "--url", &mercato.base_url, "--requests", "1"]);
    wrong.env("MERCATO_ADMIN_PASSWORD", "not the admin password");
    let (ok, stdout, stderr) = run(wrong).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("cannot sign in as the admin"), "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("invalid_credentials"), "{stderr}");
    assert!(stderr.contains("MERCATO_ADMIN_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn bench_reports_rate_limited_logins_apart_with_the_setting_to_raise() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut up = up_with_admin(&dir.path().join("data"));
    // The fixtures sign in five times (the admin, four customers); the run gets the rest.
    up.env("MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE", "20");
    let mercato = Mercato::start(up).await;
    let json_path = dir.path().join("login.json");
    let json_arg = json_path.display().to_string();
    let args = [
        "login",
        "--url",
        &mercato.base_url,
        "--requests",
        "40",
        "--concurrency",
        "2",
        "--json",
        &json_arg,
    ];
    let (ok, stdout, stderr) = run(bench(&args)).await;
    assert!(ok, "some logins succeeded:\n{stdout}\n{stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("written")).expect("JSON");
    assert_eq!(json["requests"], 40);
    let errors = json["errors"].as_array().expect("errors");
    let limited = errors
        .iter()
        .find(|error| error["status"] == 429)
        .unwrap_or_else(|| panic!("a 429 group: {errors:?}"));
    assert_eq!(limited["operation"], "login");
    assert_eq!(limited["code"], "rate_limited");
    assert_eq!(limited["rateLimited"], true);
    let hint = limited["hint"].as_str().expect("a hint");
    assert!(hint.contains("MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE"), "{hint}");
    assert!(stdout.contains("rate limited: logins are limited per client address"), "{stdout}");
    assert!(json["failed"].as_u64().is_some_and(|failed| failed >= 5), "{json}");
}

#[tokio::test]
async fn bench_without_the_admin_variables_says_which_is_missing() {
    let (ok, stdout, stderr) =
        run(command(&["bench", "read", "--url", "http://127.0.0.1:9", "--requests", "1"])).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("MERCATO_ADMIN_EMAIL is not set"), "{stderr}");
    assert!(stderr.contains("MERCATO_ADMIN_PASSWORD"), "{stderr}");

    let mut no_password = command(&["bench", "read", "--url", "http://127.0.0.1:9"]);
    no_password.env("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL);
    let (ok, _, stderr) = run(no_password).await;
    assert!(!ok);
    assert!(stderr.contains("MERCATO_ADMIN_PASSWORD is not set"), "{stderr}");
}

#[tokio::test]
async fn bench_against_an_unreachable_url_fails_clearly() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, stdout, stderr) = run(bench(&["read", "--url", &url, "--requests", "1"])).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains(&format!("cannot sign in as the admin at {url}")), "{stderr}");
    assert!(stderr.contains("no answer from the server"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.is_empty(), "no summary without a run: {stdout}");
}

#[tokio::test]
async fn bench_refuses_bad_flags_before_sending_anything() {
    for (args, expected) in [
        (vec!["browse", "--url", "http://127.0.0.1:9"], "invalid value 'browse'"),
        (
            vec!["read", "--url", "http://127.0.0.1:9", "--duration", "2s", "--requests", "5"],
            "cannot be used with",
        ),
        (vec!["read", "--url", "127.0.0.1:9"], "expected an http:// URL"),
        (vec!["read", "--url", "http://127.0.0.1:9", "--rate", "0"], "--rate"),
        (vec!["read", "--url", "http://127.0.0.1:9", "--duration", "soon"], "--duration"),
    ] {
        let (ok, _, stderr) = run(bench(&args)).await;
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
