//! Running the real `mercato` binary and talking to it over HTTP.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// A running `mercato` process and what it printed until it was ready.
pub struct Mercato {
    pub child: Child,
    pub base_url: String,
    pub printed: Vec<String>,
    stdout: BufReader<ChildStdout>,
}

pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mercato"));
    command.args(args).env_remove("MERCATO_ADMIN_EMAIL").env_remove("MERCATO_ADMIN_PASSWORD");
    command.env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

impl Mercato {
    /// Starts `mercato <args>` and waits (at most 60 s) for its "running at" line.
    pub async fn start(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the mercato binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout);
        let mut printed = Vec::new();
        let base_url = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut line = String::new();
                let read = stdout.read_line(&mut line).await.expect("reading stdout");
                assert!(read > 0, "mercato exited before it was ready; it printed {printed:?}");
                let line = line.trim_end().to_owned();
                printed.push(line.clone());
                if let Some((_, url)) = line.split_once("running at ") {
                    return url.trim().to_owned();
                }
            }
        })
        .await
        .expect("mercato prints its URL within 60 s");
        // What follows the URL (the admin credentials) is printed right after it.
        let mut rest = String::new();
        while let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(300), stdout.read_line(&mut rest)).await
        {
            if read == 0 {
                break;
            }
            printed.push(rest.trim_end().to_owned());
            rest.clear();
        }
        Self { child, base_url, printed, stdout }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn printed_text(&self) -> String {
        self.printed.join("\n")
    }

    /// Sends SIGTERM and returns the exit status (at most 15 s).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = &mut self.stdout;
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("mercato stops within 15 s of SIGTERM")
            .expect("waiting for mercato")
    }
}

/// Runs `mercato <args>` to completion and returns (success, stdout, stderr).
pub async fn run(mut command: Command) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the command finishes within 120 s")
        .expect("the mercato binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn up_args(data_dir: &Path) -> Vec<String> {
    vec![
        "up".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

pub fn up(data_dir: &Path) -> Command {
    let args = up_args(data_dir);
    command(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub async fn post_json(url: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new().post(url).json(&body).send().await.expect("the request is answered")
}

pub async fn login(base: &Mercato, email: &str, password: &str) -> reqwest::Response {
    post_json(
        &base.url("/api/auth/login"),
        serde_json::json!({"email": email, "password": password}),
    )
    .await
}
