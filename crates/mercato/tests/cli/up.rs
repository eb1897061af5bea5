//! `mercato up`: starts on an empty data dir, serves, keeps its data across restarts.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::process::{Mercato, command, login, post_json, run, up};

fn credentials(printed: &str) -> Option<(String, String)> {
    let email = printed.lines().find_map(|l| l.trim().strip_prefix("email:"))?.trim().to_owned();
    let password =
        printed.lines().find_map(|l| l.trim().strip_prefix("password:"))?.trim().to_owned();
    Some((email, password))
}

#[tokio::test]
async fn up_starts_on_an_empty_data_dir_and_prints_the_admin_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    let mercato = Mercato::start(up(&data)).await;

    let ready = reqwest::get(mercato.url("/health/ready")).await.expect("ready answers");
    assert_eq!(ready.status(), StatusCode::OK);
    let live = reqwest::get(mercato.url("/health/live")).await.expect("live answers");
    assert_eq!(live.status(), StatusCode::OK);

    let printed = mercato.printed_text();
    let (email, password) = credentials(&printed).expect("the admin credentials are printed");
    assert_eq!(email, "admin@mercato.local");
    let file =
        std::fs::read_to_string(data.join("admin-credentials.txt")).expect("the file exists");
    assert_eq!(file, format!("email: {email}\npassword: {password}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(data.join("admin-credentials.txt")).map(|m| m.permissions().mode());
        assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o600));
    }
    let session: Value = login(&mercato, &email, &password).await.json().await.expect("json");
    assert_eq!(session["user"]["role"], "admin");

    assert!(mercato.terminate().await.success(), "SIGTERM ends with exit 0");

    let again = Mercato::start(up(&data)).await;
    assert!(
        credentials(&again.printed_text()).is_none(),
        "a second start prints no password: {:?}",
        again.printed
    );
    assert!(again.terminate().await.success());
}

#[tokio::test]
async fn up_keeps_accounts_and_tokens_across_a_restart() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = Mercato::start(up(dir.path())).await;
    let registered = post_json(
        &mercato.url("/api/users"),
        json!({"name": "Grace", "email": "grace@example.com", "password": "hopper1906"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let session: Value =
        login(&mercato, "grace@example.com", "hopper1906").await.json().await.expect("json");
    let token = session["token"].as_str().expect("a token").to_owned();
    assert!(mercato.terminate().await.success());

    let restarted = Mercato::start(up(dir.path())).await;
    let me = reqwest::Client::new()
        .get(restarted.url("/api/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me answers");
    assert_eq!(me.status(), StatusCode::OK, "the signing key persisted, so the token still works");
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["email"], "grace@example.com");
    assert_eq!(login(&restarted, "grace@example.com", "hopper1906").await.status(), StatusCode::OK);
    assert!(restarted.terminate().await.success());
}

#[tokio::test]
async fn a_configured_admin_is_created_instead_of_a_generated_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up(dir.path());
    command
        .env("MERCATO_ADMIN_EMAIL", "Boss@Example.com")
        .env("MERCATO_ADMIN_PASSWORD", "a long admin secret");
    let mercato = Mercato::start(command).await;
    assert!(credentials(&mercato.printed_text()).is_none(), "nothing generated is printed");
    assert!(!dir.path().join("admin-credentials.txt").exists());
    let session: Value = login(&mercato, "boss@example.com", "a long admin secret")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(session["user"]["role"], "admin");
    assert!(mercato.terminate().await.success());
}

#[tokio::test]
async fn a_bad_setting_stops_the_start_with_an_error_naming_its_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut bad_env = up(dir.path());
    bad_env.env("MERCATO_USERS__RATE_LIMIT__FAILED_PER_EMAIL", "lots");
    let (ok, _, stderr) = run(bad_env).await;
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("failed_per_email"), "{stderr}");

    let config = dir.path().join("mercato.toml");
    std::fs::write(&config, "currency = \"dollars\"\n").expect("writing the config");
    let mut bad_file = up(dir.path());
    bad_file.arg("--config").arg(&config);
    let (ok, _, stderr) = run(bad_file).await;
    assert!(!ok);
    assert!(stderr.contains("currency"), "{stderr}");
}

#[tokio::test]
async fn create_admin_promotes_an_account_and_sets_its_password() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let mercato = Mercato::start(up(dir.path())).await;
    post_json(
        &mercato.url("/api/users"),
        json!({"name": "Linus", "email": "linus@example.com", "password": "penguins!"}),
    )
    .await;
    assert!(mercato.terminate().await.success());

    let mut create =
        command(&["users", "create-admin", "--email", "linus@example.com", "--data-dir", &data]);
    create.env("MERCATO_ADMIN_PASSWORD", "new admin password");
    let (ok, stdout, stderr) = run(create).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("linus@example.com is an admin"), "{stdout}");
    assert!(!stdout.contains("new admin password"), "a given password is never echoed");

    let restarted = Mercato::start(up(dir.path())).await;
    let session: Value = login(&restarted, "linus@example.com", "new admin password")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(session["user"]["role"], "admin");
    assert!(restarted.terminate().await.success());
}

#[tokio::test]
async fn migrate_prepares_the_embedded_databases() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().display().to_string();
    let (ok, stdout, stderr) = run(command(&["migrate", "--data-dir", &data])).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("Users: migrations applied (sqlite)"), "{stdout}");
    assert!(dir.path().join("users.db").exists());
    assert!(stdout.contains("Products: migrations applied (sqlite)"), "{stdout}");
    assert!(dir.path().join("products.db").exists());
    assert!(stdout.contains("Orders: migrations applied (sqlite)"), "{stdout}");
    assert!(dir.path().join("orders.db").exists());
}

#[tokio::test]
async fn sigterm_turns_readiness_red_first_and_keeps_serving_until_the_drain_ends() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = up(dir.path());
    command.env("MERCATO_SHUTDOWN_DRAIN_SECS", "4");
    let mut mercato = Mercato::start(command).await;
    let client = reqwest::Client::new();
    let ready = client.get(mercato.url("/health/ready")).send().await.expect("answers");
    assert_eq!(ready.status(), reqwest::StatusCode::OK);

    let pid = mercato.child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill runs").success());
    // Red readiness, while the API still answers: a load balancer takes the instance out
    // before its listener closes.
    let red = mercato_testkit::wait_until("readiness turns red", Duration::from_secs(3), || {
        let url = mercato.url("/health/ready");
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.ok()?;
            (response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(response)
        }
    })
    .await;
    let problem: serde_json::Value = red.json().await.expect("a problem document");
    assert!(problem.to_string().contains("shutting down"), "{problem}");
    let products = client.get(mercato.url("/api/products")).send().await.expect("still served");
    assert_eq!(products.status(), reqwest::StatusCode::OK);
    let live = client.get(mercato.url("/health/live")).send().await.expect("still served");
    assert_eq!(live.status(), reqwest::StatusCode::OK);

    let status = tokio::time::timeout(Duration::from_secs(20), mercato.child.wait())
        .await
        .expect("mercato stops after the drain")
        .expect("waiting for mercato");
    assert!(status.success(), "a drained shutdown exits 0: {status}");
}
