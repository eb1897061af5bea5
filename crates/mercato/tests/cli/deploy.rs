//! The deployment files under `deploy/` checked against the code. No container engine runs here,
//! so this is what keeps them honest: every environment a container gets is given to the real
//! binary (`mercato serve <service> --check-config`, which connects nowhere), and ports, probes,
//! service URLs, images and the Dockerfile's toolchain must agree with the code and each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::process::{Mercato, run};

/// Values for the variables `compose.yaml` requires (`${NAME:?...}`): what an operator exports.
const COMPOSE_VARIABLES: &[(&str, &str)] =
    &[("POSTGRES_PASSWORD", "pgTestSecret4242"), ("MERCATO_ADMIN_PASSWORD", "adminTestSecret4242")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// Every YAML document of `text`.
fn documents(text: &str, file: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{file} is not valid YAML: {error}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

static NULL: Value = Value::Null;

/// The value at a dotted path (`spec.template.spec`), or null.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |value, key| value.get(key).unwrap_or(&NULL))
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn text(value: &Value, what: &str) -> String {
    scalar(value).unwrap_or_else(|| panic!("{what} should be a string or number, not {value:?}"))
}

fn items(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

fn entries(value: &Value) -> Vec<(String, &Value)> {
    value
        .as_mapping()
        .map(|mapping| {
            mapping
                .iter()
                .filter_map(|(key, value)| Some((key.as_str()?.to_owned(), value)))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(value: &Value, what: &str) -> Vec<String> {
    items(value).iter().map(|item| text(item, what)).collect()
}

/// `host` and `port` of `scheme://[user[:password]@]host:port[/...]`.
fn host_and_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = host_port
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} should name its port explicitly"));
    (host.to_owned(), port.parse().unwrap_or_else(|_| panic!("{url}: the port is not a number")))
}

/// The password of a URL with one (`postgres://user:password@host/db`).
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (info, _) = authority.rsplit_once('@')?;
    info.split_once(':').map(|(_, password)| password).filter(|password| !password.is_empty())
}

/// What `--check-config` must not print: secret-named values, and passwords inside URLs.
fn secret_parts(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut parts = Vec::new();
    for (name, value) in env {
        if name.contains("PASSWORD") || name.ends_with("_KEY") || name.contains("SECRET") {
            parts.push(value.trim().to_owned());
        }
        if let Some(password) = url_password(value) {
            parts.push(password.to_owned());
        }
    }
    parts.retain(|part| part.len() >= 3);
    parts
}

/// The services `mercato serve` accepts, as the binary itself lists them.
async fn services() -> BTreeSet<String> {
    let (ok, _, stderr) = run(crate::process::command(&["serve", "no-such-service"])).await;
    assert!(!ok, "`serve no-such-service` should be refused");
    let list = stderr
        .split_once("[possible values: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("clap should list the services: {stderr}"));
    let services: BTreeSet<String> = list.split(", ").map(str::to_owned).collect();
    assert!(services.contains("users") && services.contains("gateway"), "{services:?}");
    services
}

/// Runs `mercato <args> --check-config` with exactly `env` and returns what it printed, after
/// checking that it succeeded, applied the environment and hid every secret.
async fn check_config(args: &[String], env: &BTreeMap<String, String>, what: &str) -> String {
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{what}: {args:?} is not `serve`");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mercato"));
    command.args(args).arg("--check-config").env_clear().envs(env).env("RUST_LOG", "warn");
    command.kill_on_drop(true);
    let (ok, stdout, stderr) = run(command).await;
    assert!(
        ok,
        "{what}: `mercato {} --check-config` refuses its environment {env:#?}:\n{stderr}",
        args.join(" ")
    );
    if let Some(listen) = env.get("MERCATO_LISTEN") {
        assert!(
            stdout.contains(&format!("listen: {listen},")),
            "{what}: listen not applied:\n{stdout}"
        );
    }
    let secrets = secret_parts(env);
    for secret in &secrets {
        assert!(
            !stdout.contains(secret.as_str()),
            "{what}: --check-config printed a secret:\n{stdout}"
        );
    }
    if !secrets.is_empty() {
        assert!(stdout.contains("[REDACTED]"), "{what}: nothing redacted:\n{stdout}");
    }
    stdout
}

/// Seconds a service needs after SIGTERM: its readiness drain (from `--check-config`'s output),
/// the background tasks' 8 s, and 5 s for requests in flight.
fn shutdown_secs(check_config_output: &str) -> u64 {
    let drain = check_config_output
        .split_once("shutdown_drain_secs: ")
        .and_then(|(_, rest)| rest.split(',').next()?.trim().parse().ok())
        .unwrap_or(0);
    drain + 8 + 5
}

fn listen_port(env: &BTreeMap<String, String>, what: &str) -> u16 {
    let listen = env.get("MERCATO_LISTEN").unwrap_or_else(|| panic!("{what}: no MERCATO_LISTEN"));
    let (host, port) = listen.rsplit_once(':').unwrap_or_else(|| panic!("{what}: {listen}"));
    assert_eq!(host, "0.0.0.0", "{what}: a container must listen on every interface");
    port.parse().unwrap_or_else(|_| panic!("{what}: {listen}"))
}

/// The service an URL setting points at: `MERCATO_USERS_URL` is the users service's.
fn url_target<'a>(name: &str, services: &'a BTreeSet<String>) -> Option<&'a String> {
    let service = name.strip_prefix("MERCATO_")?.strip_suffix("_URL")?.to_lowercase();
    services.get(&service)
}

// --- Dockerfile ---------------------------------------------------------------------------------

struct Stage {
    from: String,
    name: Option<String>,
    /// (instruction in upper case, its arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &'static str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, args)| args.as_str())
    }

    fn last(&self, instruction: &'static str) -> Option<&str> {
        self.all(instruction).last()
    }

    /// `ENV` as a map (the `KEY=value` form).
    fn env(&self) -> BTreeMap<String, String> {
        self.all("ENV")
            .flat_map(str::split_whitespace)
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or_else(|| {
                    panic!("deploy/Dockerfile: write ENV as KEY=value, not `{pair}`")
                });
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }
}

fn dockerfile() -> Vec<Stage> {
    let text = read(&deploy().join("Dockerfile"));
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let (instruction, args) = (instruction.to_uppercase(), args.trim().to_owned());
        if instruction == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage { from: words[0].to_owned(), name, instructions: Vec::new() });
        } else {
            let stage = stages.last_mut().expect("deploy/Dockerfile starts with FROM");
            stage.instructions.push((instruction, args));
        }
    }
    stages
}

fn toolchain_channel() -> String {
    let file: toml::Value = toml::from_str(&read(&root().join("rust-toolchain.toml")))
        .expect("rust-toolchain.toml is TOML");
    file["toolchain"]["channel"].as_str().expect("rust-toolchain.toml has a channel").to_owned()
}

/// The runtime image's environment, under which every container of the deployment starts.
fn image_env() -> BTreeMap<String, String> {
    dockerfile().last().expect("deploy/Dockerfile has a stage").env()
}

#[tokio::test]
async fn the_dockerfile_builds_the_binary_with_the_pinned_toolchain_and_runs_it_unprivileged() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "deploy/Dockerfile should be multi-stage (build, then runtime)");
    let builder = &stages[0];
    let channel = toolchain_channel();
    assert_eq!(
        builder.from,
        format!("rust:{channel}-bookworm"),
        "the builder should be the official Rust image of rust-toolchain.toml's channel"
    );
    assert!(
        builder.env().get("RUSTUP_TOOLCHAIN") == Some(&channel),
        "the builder should pin RUSTUP_TOOLCHAIN={channel}, else rustup downloads rust-toolchain.toml's components"
    );
    let build = builder
        .all("RUN")
        .find(|run| run.contains("cargo build"))
        .expect("the builder runs `cargo build`");
    let words: Vec<&str> = build.split_whitespace().collect();
    for flag in ["--release", "--locked"] {
        assert!(words.contains(&flag), "`cargo build` should use {flag}: {build}");
    }
    assert!(words.windows(2).any(|w| w == ["-p", "mercato"]), "should build -p mercato: {build}");
    for cache in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(build.contains(&format!("type=cache,target={cache}")), "no cache mount {cache}");
    }
    let workdir = builder.last("WORKDIR").expect("the builder has a WORKDIR");
    assert!(build.contains(&format!("target={workdir}/target")), "cache the target dir");

    let runtime = stages.last().expect("a runtime stage");
    let user = runtime.last("USER").expect("the runtime image sets USER");
    let uid: u32 =
        user.split(':').next().and_then(|uid| uid.parse().ok()).unwrap_or_else(|| {
            panic!("USER should be numeric (runAsNonRoot needs it), not {user}")
        });
    assert_ne!(uid, 0, "the runtime image must not run as root");
    let entrypoint: Vec<String> =
        serde_json::from_str(runtime.last("ENTRYPOINT").expect("an ENTRYPOINT"))
            .expect("exec form");
    assert_eq!(entrypoint, ["/usr/local/bin/mercato"]);
    let builder_name = builder.name.as_deref().expect("the builder stage is named");
    assert!(
        runtime.all("COPY").any(|copy| {
            copy.contains(&format!("--from={builder_name}"))
                && copy.ends_with(" /usr/local/bin/mercato")
        }),
        "the runtime stage copies the built binary to the ENTRYPOINT"
    );
    let env = runtime.env();
    let port = listen_port(&env, "deploy/Dockerfile");
    assert_eq!(runtime.last("EXPOSE"), Some(port.to_string().as_str()), "EXPOSE the listen port");
    let data_dir = env.get("MERCATO_DATA_DIR").expect("the image sets MERCATO_DATA_DIR");
    assert!(
        runtime.all("COPY").any(|copy| copy.contains(&format!("--chown={uid}:"))
            && data_dir.starts_with(copy.rsplit(' ').next().unwrap_or("-"))),
        "the data dir {data_dir} should be copied in owned by {uid}"
    );
    // The default command is one the binary accepts.
    let cmd: Vec<String> =
        serde_json::from_str(runtime.last("CMD").expect("a CMD")).expect("CMD in exec form");
    let mut help: Vec<&str> = cmd.iter().map(String::as_str).collect();
    help.push("--help");
    let (ok, _, stderr) = run(crate::process::command(&help)).await;
    assert!(ok, "the image's CMD {cmd:?} is not a mercato command: {stderr}");

    let ignored = read(&root().join(".dockerignore"));
    for entry in ["target/", ".git/"] {
        assert!(ignored.lines().any(|line| line.trim() == entry), ".dockerignore misses {entry}");
    }
}

// --- Docker Compose -----------------------------------------------------------------------------

/// Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}` and `$$`.
fn interpolate(text: &str) -> String {
    let variables: BTreeMap<&str, &str> = COMPOSE_VARIABLES.iter().copied().collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body.find('}').expect("an unclosed ${ in compose.yaml");
        let expression = &body[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        let default = operator.strip_prefix(":-").or_else(|| operator.strip_prefix('-'));
        let value = match (variables.get(name), default) {
            (Some(value), _) => (*value).to_owned(),
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                panic!("compose.yaml requires ${{{name}}}: add a test value to COMPOSE_VARIABLES")
            }
        };
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let environment = at(service, "environment");
    if let Some(list) = environment.as_sequence() {
        return list
            .iter()
            .map(|item| {
                let item = text(item, "an environment entry");
                let (key, value) = item.split_once('=').unwrap_or((&item, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect();
    }
    entries(environment).into_iter().map(|(key, value)| (key.clone(), text(value, &key))).collect()
}

/// The databases the init scripts mounted into `service` create.
fn created_databases(service: &Value) -> BTreeSet<String> {
    let mut databases = BTreeSet::new();
    for volume in strings(at(service, "volumes"), "a volume") {
        let mut parts = volume.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else { continue };
        if !target.starts_with("/docker-entrypoint-initdb.d") || !source.starts_with('.') {
            continue;
        }
        let sql = read(&deploy().join(source));
        for statement in sql.split(';') {
            let words: Vec<&str> = statement
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .flat_map(str::split_whitespace)
                .collect();
            if let [create, database, name, ..] = words.as_slice()
                && create.eq_ignore_ascii_case("create")
                && database.eq_ignore_ascii_case("database")
            {
                databases.insert(name.trim_matches('"').to_owned());
            }
        }
    }
    databases
}

#[tokio::test]
async fn the_compose_file_runs_every_service_with_settings_the_binary_accepts() {
    let services = services().await;
    let file = "deploy/compose.yaml";
    let compose = documents(&interpolate(&read(&deploy().join("compose.yaml"))), file)
        .pop()
        .expect("compose.yaml has a document");
    let all: BTreeMap<String, &Value> = entries(at(&compose, "services")).into_iter().collect();
    let built: Vec<(&String, &&Value)> =
        all.iter().filter(|(_, service)| !at(service, "build").is_null()).collect();
    let image = text(at(built.first().expect("a service builds the image").1, "image"), "image");
    assert_eq!(image, kubernetes_image(), "compose.yaml and deploy/kubernetes use one image");

    let mut served = BTreeMap::new();
    for (name, service) in &built {
        let what = format!("{file}: service `{name}`");
        assert_eq!(text(at(service, "image"), "image"), image, "{what}: the one image");
        let build = at(service, "build");
        let dockerfile = deploy()
            .join(text(at(build, "context"), "build.context"))
            .join(text(at(build, "dockerfile"), "build.dockerfile"));
        assert_eq!(
            dockerfile.canonicalize().ok(),
            deploy().join("Dockerfile").canonicalize().ok(),
            "{what}: builds deploy/Dockerfile"
        );
        let command = strings(at(service, "command"), "command");
        let target = command.get(1).cloned().unwrap_or_default();
        assert!(services.contains(&target), "{what}: `{command:?}` serves no known service");
        assert!(served.insert(target.clone(), name.as_str()).is_none(), "{target} served twice");

        let mut env = image_env();
        env.extend(compose_env(service));
        let checked = check_config(&command, &env, &what).await;
        let port = listen_port(&env, &what);
        let grace = scalar(at(service, "stop_grace_period")).unwrap_or_else(|| "10s".to_owned());
        let grace: u64 = grace.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(grace >= shutdown_secs(&checked), "{what}: stop_grace_period {grace} s is short");

        let published = items(at(service, "ports"));
        if target == "gateway" {
            let published = published.first().map(|p| text(p, "port")).unwrap_or_default();
            assert_eq!(
                published.rsplit(':').next(),
                Some(port.to_string().as_str()),
                "{what}: publish the listen port"
            );
        } else {
            assert!(published.is_empty(), "{what}: only the gateway is published");
        }

        let depends_on = at(service, "depends_on");
        for (dependency, condition) in entries(depends_on) {
            let other = all
                .get(&dependency)
                .unwrap_or_else(|| panic!("{what}: depends on `{dependency}`, which is not here"));
            let expected = if at(other, "healthcheck").is_null() {
                "service_started"
            } else {
                "service_healthy"
            };
            assert_eq!(
                text(at(condition, "condition"), "condition"),
                expected,
                "{what}: on {dependency}"
            );
        }
        let needs = |host: &str| {
            assert!(!at(depends_on, host).is_null(), "{what}: should depend on `{host}`");
        };
        for (key, value) in &env {
            let what = format!("{what}: {key}");
            if key == "MERCATO_DATABASE_URL" {
                let (host, port) = host_and_port(value);
                let database = all.get(&host).unwrap_or_else(|| panic!("{what}: no `{host}`"));
                let name = value.rsplit('/').next().unwrap_or_default();
                let created = created_databases(database);
                assert!(created.contains(name), "{what}: `{name}` is not in {created:?}");
                assert_eq!(port, 5432, "{what}");
                needs(&host);
            } else if key == "MERCATO_NATS_URL" {
                let (host, port) = host_and_port(value);
                let nats = all.get(&host).unwrap_or_else(|| panic!("{what}: no `{host}`"));
                let command = strings(at(nats, "command"), "command");
                assert!(command.contains(&"-js".to_owned()), "{what}: JetStream is off");
                assert!(command.contains(&"-sd".to_owned()), "{what}: JetStream has no store dir");
                assert_eq!(port, 4222, "{what}");
                needs(&host);
            } else if let Some(target) = url_target(key, &services) {
                let (host, url_port) = host_and_port(value);
                let other = all.get(&host).unwrap_or_else(|| panic!("{what}: no `{host}`"));
                let command = strings(at(other, "command"), "command");
                assert_eq!(command.get(1), Some(target), "{what}: `{host}` is not {target}");
                let mut other_env = image_env();
                other_env.extend(compose_env(other));
                assert_eq!(url_port, listen_port(&other_env, &what), "{what}: the wrong port");
                needs(&host);
            } else if key.ends_with("_FILE") {
                let secret = value.strip_prefix("/run/secrets/").unwrap_or_else(|| {
                    panic!("{what}: files come from compose secrets (/run/secrets/...)")
                });
                // Short syntax (`- name`) or long (`source:`, `target:`).
                let source = items(at(service, "secrets"))
                    .iter()
                    .find_map(|attached| {
                        let source = scalar(attached).or_else(|| scalar(at(attached, "source")))?;
                        let target = scalar(at(attached, "target")).unwrap_or(source.clone());
                        (target == secret).then_some(source)
                    })
                    .unwrap_or_else(|| panic!("{what}: no secret mounted as {secret}"));
                assert!(
                    !at(&compose, &format!("secrets.{source}.file")).is_null(),
                    "{what}: the secret `{source}` is not declared with a file"
                );
            }
        }
    }
    assert_eq!(
        served.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "compose.yaml should run every service"
    );
    for (name, service) in &all {
        if at(service, "build").is_null() {
            assert!(items(at(service, "ports")).is_empty(), "{file}: `{name}` is published");
        }
    }
    let orders = all[served["orders"]];
    let replicas = at(orders, "deploy.replicas").as_u64().unwrap_or(1);
    assert!(replicas >= 2, "{file}: run orders with replicas, which share durable consumers");
}

// --- Kubernetes ---------------------------------------------------------------------------------

struct Manifests {
    /// (file name, document)
    documents: Vec<(String, Value)>,
}

impl Manifests {
    fn load() -> Self {
        let folder = deploy().join("kubernetes");
        let kustomization =
            documents(&read(&folder.join("kustomization.yaml")), "kustomization.yaml").remove(0);
        let documents = strings(at(&kustomization, "resources"), "a resource")
            .into_iter()
            .flat_map(|file| {
                documents(&read(&folder.join(&file)), &file)
                    .into_iter()
                    .map(move |document| (file.clone(), document))
            })
            .collect();
        Self { documents }
    }

    fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = (String, &Value)> {
        self.documents
            .iter()
            .filter(move |(_, document)| at(document, "kind").as_str() == Some(kind))
            .map(|(_, document)| (text(at(document, "metadata.name"), "metadata.name"), document))
    }

    fn named(&self, kind: &'static str, name: &str) -> &Value {
        self.of_kind(kind)
            .find(|(found, _)| found == name)
            .map(|(_, document)| document)
            .unwrap_or_else(|| panic!("no {kind} named `{name}` in the kustomization"))
    }

    /// A key of a Secret or ConfigMap (`stringData` or `data`).
    fn key(&self, kind: &'static str, name: &str, key: &str) -> String {
        let object = self.named(kind, name);
        ["stringData", "data"]
            .iter()
            .find_map(|field| at(object, field).get(key).and_then(scalar))
            .unwrap_or_else(|| panic!("the {kind} `{name}` has no key `{key}`"))
    }

    /// A container's environment as the kubelet gives it (the image's `ENV` below it).
    fn env(&self, container: &Value, what: &str) -> BTreeMap<String, String> {
        let mut env = image_env();
        for source in items(at(container, "envFrom")) {
            let (kind, reference) = if at(source, "configMapRef").is_null() {
                ("Secret", at(source, "secretRef.name"))
            } else {
                ("ConfigMap", at(source, "configMapRef.name"))
            };
            let object = self.named(kind, &text(reference, "envFrom name"));
            for field in ["data", "stringData"] {
                for (key, value) in entries(at(object, field)) {
                    env.insert(key.clone(), text(value, &key));
                }
            }
        }
        for variable in items(at(container, "env")) {
            let name = text(at(variable, "name"), "env name");
            let value = if let Some(value) = scalar(at(variable, "value")) {
                value
            } else {
                let from = at(variable, "valueFrom");
                let (kind, reference) = if at(from, "secretKeyRef").is_null() {
                    ("ConfigMap", at(from, "configMapKeyRef"))
                } else {
                    ("Secret", at(from, "secretKeyRef"))
                };
                let object = text(at(reference, "name"), &format!("{what}: {name}"));
                self.key(kind, &object, &text(at(reference, "key"), "key"))
            };
            env.insert(name, value);
        }
        env
    }
}

fn kustomization() -> Value {
    let file = deploy().join("kubernetes/kustomization.yaml");
    documents(&read(&file), "kustomization.yaml").remove(0)
}

/// The image the Deployments run, as kustomize leaves it (`images:` may retag it).
fn kubernetes_image() -> String {
    let manifests = Manifests::load();
    let mut images = BTreeSet::new();
    for (name, deployment) in manifests.of_kind("Deployment") {
        for container in items(at(deployment, "spec.template.spec.containers")) {
            images.insert(text(at(container, "image"), &format!("Deployment {name}: image")));
        }
    }
    assert_eq!(images.len(), 1, "every Deployment should run the one image: {images:?}");
    let image = images.pop_first().unwrap_or_default();
    let (name, tag) = image.split_once(':').unwrap_or((&image, "latest"));
    let mut result = image.clone();
    for entry in items(at(&kustomization(), "images")) {
        if at(entry, "name").as_str() == Some(name) {
            let new_name = scalar(at(entry, "newName")).unwrap_or_else(|| name.to_owned());
            let new_tag = scalar(at(entry, "newTag")).unwrap_or_else(|| tag.to_owned());
            result = format!("{new_name}:{new_tag}");
        }
    }
    result
}

/// Resolves a probe's or Service's port (a name or a number) to the container's port number.
fn container_port(container: &Value, port: &Value, what: &str) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    let name = text(port, what);
    items(at(container, "ports"))
        .iter()
        .find(|p| at(p, "name").as_str() == Some(&name))
        .and_then(|p| at(p, "containerPort").as_u64())
        .unwrap_or_else(|| panic!("{what}: the container has no port named `{name}`"))
}

#[test]
fn the_kustomization_lists_every_manifest_in_its_folder() {
    let folder = deploy().join("kubernetes");
    let listed: BTreeSet<String> =
        strings(at(&kustomization(), "resources"), "a resource").into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(&folder)
        .expect("deploy/kubernetes exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        // Helm values are not manifests; the kustomization is not its own resource.
        .filter(|name| name != "kustomization.yaml" && !name.ends_with("-values.yaml"))
        .collect();
    assert_eq!(listed, present, "kustomization.yaml `resources` should list every manifest");

    let values = documents(&read(&folder.join("nats-values.yaml")), "nats-values.yaml").remove(0);
    assert_eq!(at(&values, "config.jetstream.enabled").as_bool(), Some(true), "JetStream on");
    assert_ne!(at(&values, "config.jetstream.fileStore.enabled").as_bool(), Some(false));
    let operations = read(&root().join("docs/operations.md"));
    assert!(
        operations.contains("helm upgrade --install nats")
            && operations.contains("nats-values.yaml"),
        "docs/operations.md should give the helm command for nats-values.yaml"
    );
}

#[tokio::test]
async fn the_kubernetes_manifests_run_every_service_with_settings_the_binary_accepts() {
    let services = services().await;
    let manifests = Manifests::load();
    // One image for every Deployment (compared with compose.yaml's in the compose test).
    kubernetes_image();
    let expose = image_env();
    let image_port = listen_port(&expose, "deploy/Dockerfile");
    let mut deployed = BTreeSet::new();
    for (name, deployment) in manifests.of_kind("Deployment") {
        let what = format!("Deployment `{name}`");
        let pod = at(deployment, "spec.template.spec");
        let containers = items(at(pod, "containers"));
        assert_eq!(containers.len(), 1, "{what}: one container");
        let container = &containers[0];
        let args = strings(at(container, "args"), "args");
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{what}: {args:?}");
        assert_eq!(args.get(1), Some(&name), "{what} should serve `{name}`: {args:?}");
        assert!(services.contains(&name), "{what}: not a service of the binary");
        deployed.insert(name.clone());

        let env = manifests.env(container, &what);
        let checked = check_config(&args, &env, &what).await;
        let port = listen_port(&env, &what);
        assert_eq!(port, image_port, "{what}: the port the image EXPOSEs");
        let ports = items(at(container, "ports"));
        assert!(
            ports.iter().any(|p| at(p, "containerPort").as_u64() == Some(u64::from(port))),
            "{what}: containerPort should be MERCATO_LISTEN's {port}"
        );

        // Probes: on the served port, on the routes the binary serves for them.
        for (probe, path) in
            [("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")]
        {
            let get = at(container, &format!("{probe}.httpGet"));
            assert_eq!(at(get, "path").as_str(), Some(path), "{what}: {probe}");
            let probe_port =
                container_port(container, at(get, "port"), &format!("{what}: {probe}"));
            assert_eq!(probe_port, u64::from(port), "{what}: {probe} port");
        }
        if !at(container, "startupProbe").is_null() {
            let get = at(container, "startupProbe.httpGet");
            assert_eq!(container_port(container, at(get, "port"), &what), u64::from(port));
        }

        // Resources, privileges, writable paths, shutdown.
        for limit in ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] {
            assert!(!at(container, &format!("resources.{limit}")).is_null(), "{what}: {limit}");
        }
        assert_eq!(at(pod, "securityContext.runAsNonRoot").as_bool(), Some(true), "{what}");
        assert_ne!(at(pod, "securityContext.runAsUser").as_u64(), Some(0), "{what}: root");
        let security = at(container, "securityContext");
        assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true), "{what}");
        assert_eq!(at(security, "allowPrivilegeEscalation").as_bool(), Some(false), "{what}");
        let volumes: BTreeMap<String, &Value> = items(at(pod, "volumes"))
            .iter()
            .map(|volume| (text(at(volume, "name"), "volume name"), volume))
            .collect();
        let mounts: Vec<(String, &Value)> = items(at(container, "volumeMounts"))
            .iter()
            .map(|mount| {
                let volume = text(at(mount, "name"), "mount name");
                let volume =
                    volumes.get(&volume).unwrap_or_else(|| panic!("{what}: no volume `{volume}`"));
                (text(at(mount, "mountPath"), "mountPath"), *volume)
            })
            .collect();
        let data_dir = env.get("MERCATO_DATA_DIR").expect("MERCATO_DATA_DIR is set");
        for writable in [data_dir.as_str(), "/tmp"] {
            assert!(
                mounts.iter().any(|(path, volume)| path == writable
                    && !(at(volume, "emptyDir").is_null()
                        && at(volume, "persistentVolumeClaim").is_null())),
                "{what}: {writable} should be a writable volume (the root filesystem is read-only)"
            );
        }
        // Files named by settings (the signing key) come from a mounted Secret that holds them.
        for (key, value) in &env {
            if !(key.ends_with("_FILE") || key.ends_with("_FILES")) {
                continue;
            }
            for path in value.trim_matches(['[', ']']).split(',').map(str::trim) {
                let (folder, file) = path.rsplit_once('/').unwrap_or_default();
                let volume = mounts
                    .iter()
                    .find(|(mount, _)| mount == folder)
                    .map(|(_, volume)| *volume)
                    .unwrap_or_else(|| panic!("{what}: {key}: nothing mounted at {folder}"));
                let secret = text(at(volume, "secret.secretName"), &format!("{what}: {key}"));
                manifests.key("Secret", &secret, file);
            }
        }
        let grace = at(pod, "terminationGracePeriodSeconds").as_u64();
        let pause = at(container, "lifecycle.preStop.sleep.seconds").as_u64();
        let (Some(grace), Some(pause)) = (grace, pause) else {
            panic!("{what}: set terminationGracePeriodSeconds and a preStop sleep");
        };
        let needed = pause + shutdown_secs(&checked);
        assert!(grace >= needed, "{what}: {grace} s of grace, {needed} s needed");
        let replicas = at(deployment, "spec.replicas").as_u64().unwrap_or(1);
        if name == "orders" {
            assert!(replicas >= 2, "{what}: orders runs replicas (they share durable consumers)");
        }

        // Its Service selects these pods and reaches the served port.
        let service = manifests.named("Service", &name);
        let labels = at(deployment, "spec.template.metadata.labels");
        for (key, value) in entries(at(service, "spec.selector")) {
            assert_eq!(labels.get(key.as_str()), Some(value), "Service `{name}` selects {key}");
        }
        for port_spec in items(at(service, "spec.ports")) {
            let target = at(port_spec, "targetPort");
            let target = if target.is_null() { at(port_spec, "port") } else { target };
            let resolved = container_port(container, target, &format!("Service `{name}`"));
            assert_eq!(resolved, u64::from(port), "Service `{name}`: targetPort");
        }

        // Service URLs name the Service of the right service, on its port.
        for (key, value) in &env {
            let Some(target) = url_target(key, &services) else { continue };
            let (host, url_port) = host_and_port(value);
            let host = host.split('.').next().unwrap_or_default();
            let service = manifests.named("Service", host);
            assert!(
                items(at(service, "spec.ports"))
                    .iter()
                    .any(|p| at(p, "port").as_u64() == Some(u64::from(url_port))),
                "{what}: {key}={value}: Service `{host}` has no port {url_port}"
            );
            let selector = entries(at(service, "spec.selector"));
            let served = manifests
                .of_kind("Deployment")
                .find_map(|(_, other)| {
                    let labels = at(other, "spec.template.metadata.labels");
                    let selected = selector
                        .iter()
                        .all(|(key, value)| labels.get(key.as_str()) == Some(*value));
                    let container = items(at(other, "spec.template.spec.containers")).first()?;
                    selected.then(|| strings(at(container, "args"), "args"))
                })
                .unwrap_or_default();
            assert_eq!(served.get(1), Some(target), "{what}: {key} reaches {served:?}");
        }
    }
    assert_eq!(deployed, services, "a Deployment per service");
}

#[tokio::test]
async fn every_probe_and_scrape_path_is_a_route_the_binary_serves() {
    let manifests = Manifests::load();
    let mut paths = BTreeSet::new();
    for (_, deployment) in manifests.of_kind("Deployment") {
        for container in items(at(deployment, "spec.template.spec.containers")) {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(path) = at(container, &format!("{probe}.httpGet.path")).as_str() {
                    paths.insert(path.to_owned());
                }
            }
        }
        let annotations = at(deployment, "spec.template.metadata.annotations");
        if let Some(path) = annotations.get("prometheus.io/path").and_then(Value::as_str) {
            paths.insert(path.to_owned());
        }
    }
    assert!(paths.len() >= 3, "probes and the metrics path: {paths:?}");
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = Mercato::start(crate::process::up(dir.path())).await;
    for path in &paths {
        // Readiness may take a moment after start; a route the binary lacks is a 404 for good.
        let url = mercato.url(path);
        let what = format!("GET {path} answers 200");
        mercato_testkit::wait_until(&what, std::time::Duration::from_secs(30), || async {
            let response = reqwest::get(&url).await.ok()?;
            assert_ne!(response.status(), reqwest::StatusCode::NOT_FOUND, "GET {path}");
            (response.status() == reqwest::StatusCode::OK).then_some(())
        })
        .await;
    }
    assert!(mercato.terminate().await.success());
}
