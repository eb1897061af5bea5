//! Fault drills on the distributed shape (issue 7): `mercato serve users`, `serve products`, two
//! `serve orders` replicas (one database, one durable consumer) and `serve gateway` (in front of
//! the second replica), each a process of its own, with their databases in a private PostgreSQL
//! cluster and their events on a private `nats-server`, which a drill may stop and start again
//! ([`mercato_testkit::servers`]; the machine's shared servers are never touched).
//!
//! Customers place orders concurrently over REST, each placement with an `Idempotency-Key` and
//! sent again with it when its answer is lost or is `503`, while the drill kills an orders replica
//! (hung with SIGSTOP, then `kill -9`, so that it dies holding events it never acked), restarts
//! NATS (a crash, then a graceful stop) or restarts PostgreSQL (an immediate shutdown, the
//! services left running). Afterwards, through the API only: every placement answered `201` is
//! exactly one order and every order listed was answered `201` (nothing lost, nothing applied
//! twice), no order is left `pending`, no event was dead-lettered, and for every product initial
//! stock = stock + units held by confirmed orders, stock never below 0 (promises 1-4, 6 and 7 of
//! DESIGN.md).
//!
//! Settlement is polled (`GET /api/orders?status=pending`), not awaited with `Prefer: wait`: what
//! is checked is the state every order reaches, whichever process applied it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mercato_testkit::client::Client;
use mercato_testkit::http::{json_body, problem, text};
use mercato_testkit::servers::{self, PrivateNats, PrivatePostgres, Shutdown};
use mercato_testkit::{unique_prefix, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::orders::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Customer, all_orders, assert_stock_conserved, items, sign_in,
};
use crate::process::{command, run};

/// How long every order may take to leave `pending` after a fault: events a killed replica had
/// fetched come back only after the consumer's `ack_wait` (30 s), then with backoff.
const SETTLE_AFTER_FAULT: Duration = Duration::from_secs(180);
/// A request not answered within this long counts as hanging, which no fault excuses.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a step of the drill (load reaching a mark, a service coming back) may take.
const STEP: Duration = Duration::from_secs(90);
const PASSWORD: &str = "correct horse battery";

/// An HTTP client for one process that gives up after [`REQUEST_TIMEOUT`].
fn client(base_url: &str) -> Client {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client");
    Client { base_url: base_url.to_owned(), http }
}

/// One `mercato serve` process; its stderr (the log) goes to a file, shown when the test fails.
struct Node {
    name: String,
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Node {
    /// Starts `command` and waits (at most 60 s) for its "running at" line.
    async fn start(name: &str, mut command: Command, logs: &Path) -> Self {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        command.stdout(Stdio::piped()).stderr(file);
        let mut child = command.spawn().expect("the mercato binary starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, url)) = line.split_once("running at ") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await;
        let Ok(Some(base_url)) = ready else {
            let _ = child.kill().await;
            panic!(
                "mercato {name} did not print its URL within 60 s; its log:\n{}",
                servers::log_tail(&log, 80)
            );
        };
        // Whatever it prints later is read, so that a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { name: name.to_owned(), child, base_url, log }
    }

    fn client(&self) -> Client {
        client(&self.base_url)
    }

    /// SIGSTOP: the process hangs, holding its connections and whatever it had fetched.
    fn freeze(&self) {
        let pid = self.child.id().expect("the process is running").to_string();
        let status = std::process::Command::new("kill").args(["-STOP", &pid]).status();
        assert!(status.is_ok_and(|status| status.success()), "SIGSTOP is sent to {}", self.name);
    }

    /// SIGTERM: the process drains and stops on its own.
    fn terminate(&self) {
        let pid = self.child.id().expect("the process is running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.is_ok_and(|status| status.success()), "SIGTERM is sent to {}", self.name);
    }

    /// Waits (at most 30 s) until the process has exited on its own.
    async fn exited(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} exits within 30 s of SIGTERM", self.name))
            .expect("waiting for mercato")
    }

    /// SIGKILL, and waits until the process is gone.
    async fn kill(&mut self) -> std::process::ExitStatus {
        self.child.start_kill().expect("SIGKILL is sent");
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the killed process is reaped within 15 s")
            .expect("waiting for mercato")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        servers::print_log_if_failing(&format!("mercato {}", self.name), &self.log);
    }
}

/// The whole system, one process per service. Fields drop in order: the services first, then
/// the servers under them, then the folder with the logs.
struct Cluster {
    gateway: Node,
    /// Two replicas of the orders service; the gateway forwards to the second.
    orders: Vec<Node>,
    products: Node,
    users: Node,
    postgres: PrivatePostgres,
    nats: PrivateNats,
    /// The gateway's address: the API every check goes through.
    api: Client,
    admin: String,
    /// The NATS subject prefix (and stream name) of this cluster.
    prefix: String,
    /// The services' logs (and the users service's signing key), kept until the end.
    _dir: tempfile::TempDir,
}

fn serve(service: &str, database: Option<&str>, nats: &str, prefix: &str) -> Command {
    let mut args = vec!["serve", service, "--listen", "127.0.0.1:0"];
    if let Some(database) = database {
        args.extend(["--database-url", database]);
    }
    args.extend(["--nats-url", nats, "--nats-prefix", prefix]);
    let mut command = command(&args);
    // A drain long enough for the stop drill to see readiness red while the process still answers.
    command.env("MERCATO_SHUTDOWN_DRAIN_SECS", "5");
    command
}

impl Cluster {
    /// `None` (after a loud message) when a server binary is missing and servers are not
    /// required.
    async fn start() -> Option<Self> {
        let nats = PrivateNats::start().await?;
        let postgres = PrivatePostgres::start().await?;
        let prefix = unique_prefix();
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = dir.path();
        let nats_url = nats.url();
        let users_db = postgres.create_database("users").await;
        let products_db = postgres.create_database("products").await;
        let orders_db = postgres.create_database("orders").await;

        let mut users_command = serve("users", Some(&users_db), &nats_url, &prefix);
        users_command
            .args(["--data-dir", &logs.display().to_string()])
            .env("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("MERCATO_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let users = Node::start("users", users_command, logs).await;
        let with_users = |mut command: Command| {
            command.args(["--users-url", &users.base_url]);
            command
        };
        let products_command = serve("products", Some(&products_db), &nats_url, &prefix);
        let products = Node::start("products", with_users(products_command), logs).await;
        // One after the other: both would run the same migrations at start.
        let mut orders = Vec::new();
        for name in ["orders-a", "orders-b"] {
            let command = serve("orders", Some(&orders_db), &nats_url, &prefix);
            orders.push(Node::start(name, with_users(command), logs).await);
        }
        let mut gateway_command = with_users(serve("gateway", None, &nats_url, &prefix));
        gateway_command
            .args(["--products-url", &products.base_url])
            .args(["--orders-url", &orders[1].base_url]);
        let gateway = Node::start("gateway", gateway_command, logs).await;
        let api = gateway.client();
        let admin = sign_in(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        Some(Self {
            gateway,
            orders,
            products,
            users,
            postgres,
            nats,
            api,
            admin,
            prefix,
            _dir: dir,
        })
    }

    /// Registers `name@example.com` through the gateway and signs them in.
    async fn customer(&self, name: &str) -> Customer {
        let email = format!("{name}@example.com");
        let body = json!({"name": name, "email": email, "password": PASSWORD});
        let created =
            json_body(self.api.post_json("/api/users", &body, None).await, StatusCode::CREATED)
                .await;
        let token = sign_in(&self.api, &email, PASSWORD).await;
        Customer { id: text(&created["id"]), token }
    }

    async fn customers(&self, count: usize) -> Vec<Customer> {
        let mut customers = Vec::new();
        for index in 0..count {
            customers.push(self.customer(&format!("shopper{index}")).await);
        }
        customers
    }

    /// Creates the products (name, price in cents, stock) and returns the shelf.
    async fn shelf(&self, products: &[(&str, i64, i64)]) -> Shelf {
        let mut shelf = Shelf::default();
        for (name, cents, stock) in products {
            let price = format!("{}.{:02}", cents / 100, cents % 100);
            let body = json!({"name": name, "price": price, "stock": stock});
            let created = json_body(
                self.api.post_json("/api/products", &body, Some(&self.admin)).await,
                StatusCode::CREATED,
            )
            .await;
            let id = text(&created["id"]);
            shelf.ids.push(id.clone());
            shelf.initial.insert(id.clone(), *stock);
            shelf.cents.insert(id, *cents);
        }
        shelf
    }

    /// Every service's process: users, products, both orders replicas, the gateway.
    fn nodes(&self) -> [&Node; 5] {
        [&self.users, &self.products, &self.orders[0], &self.orders[1], &self.gateway]
    }
}

/// The products of a drill: ids, initial stock and price in cents.
#[derive(Debug, Default, Clone)]
struct Shelf {
    ids: Vec<String>,
    initial: BTreeMap<String, i64>,
    cents: BTreeMap<String, i64>,
}

/// SplitMix64, so that each customer's orders are the same from run to run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// One or two distinct products, 1..=3 units each.
fn random_items(rng: &mut Rng, products: &[String]) -> Value {
    let first = rng.below(products.len());
    let mut lines = vec![(products[first].as_str(), 1 + rng.below(3) as i64)];
    if rng.below(3) == 0 {
        let second = (first + 1 + rng.below(products.len() - 1)) % products.len();
        lines.push((products[second].as_str(), 1 + rng.below(3) as i64));
    }
    items(&lines)
}

/// What one customer does: places orders, each with its own idempotency key, at `targets[0]`;
/// a request that gets no answer is sent again with its key to the next target (there must be
/// one), and a `503 not_ready` is sent again to the same target a moment later.
#[derive(Clone)]
struct Shopper {
    index: usize,
    customer: Customer,
    targets: Vec<Client>,
    quota: Quota,
}

/// How many orders a shopper places.
#[derive(Debug, Clone, Copy)]
enum Quota {
    /// Until the first target stops answering, then this many at the next.
    UntilFailureThen(usize),
    /// One per permit the drill hands out ([`Progress::permit`]), until it closes them.
    Permitted,
}

/// At most this many placements per shopper, whatever its quota: a drill that never stops its
/// shoppers fails instead of running forever.
const MOST_PLACEMENTS: usize = 400;

/// Counters the drill watches while the shoppers run, and the permits it hands out.
#[derive(Debug)]
struct Progress {
    accepted: AtomicUsize,
    /// Placements accepted for `Permitted` shoppers.
    accepted_permitted: AtomicUsize,
    /// Placements accepted by the first target of an `UntilFailureThen` shopper.
    accepted_by_doomed: AtomicUsize,
    unavailable: AtomicUsize,
    /// One per placement `Permitted` shoppers may start; closed when they are done.
    permits: tokio::sync::Semaphore,
    /// Permits handed out so far.
    permitted: AtomicUsize,
    /// Set when a shopper panics, so that the drill fails at once instead of waiting for it.
    failed: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            accepted: AtomicUsize::new(0),
            accepted_permitted: AtomicUsize::new(0),
            accepted_by_doomed: AtomicUsize::new(0),
            unavailable: AtomicUsize::new(0),
            permits: tokio::sync::Semaphore::new(0),
            permitted: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        }
    }
}

impl Progress {
    /// Panics when a shopper has (its own panic is printed above).
    fn healthy(&self) {
        assert!(!self.failed.load(Ordering::SeqCst), "a shopper failed; see its panic above");
    }

    /// Placements accepted so far.
    fn accepted(&self) -> usize {
        self.healthy();
        self.accepted.load(Ordering::SeqCst)
    }

    /// Placements accepted for `Permitted` shoppers so far.
    fn accepted_permitted(&self) -> usize {
        self.healthy();
        self.accepted_permitted.load(Ordering::SeqCst)
    }

    /// Placements accepted at the first target of `UntilFailureThen` shoppers so far.
    fn accepted_by_doomed(&self) -> usize {
        self.healthy();
        self.accepted_by_doomed.load(Ordering::SeqCst)
    }

    /// `503` answers so far.
    fn unavailable(&self) -> usize {
        self.healthy();
        self.unavailable.load(Ordering::SeqCst)
    }

    /// Placements answered, `201` or `503`.
    fn answered(&self) -> usize {
        self.accepted() + self.unavailable()
    }

    /// Lets `Permitted` shoppers start `count` more placements; returns how many they may have
    /// started in all.
    fn permit(&self, count: usize) -> usize {
        self.permits.add_permits(count);
        self.permitted.fetch_add(count, Ordering::SeqCst) + count
    }

    /// Lets `Permitted` shoppers start `count` more placements and waits until every placement
    /// permitted so far is accepted.
    async fn place(&self, count: usize) {
        let permitted = self.permit(count);
        wait_until(&format!("{permitted} placements are accepted"), STEP, || async {
            (self.accepted_permitted() >= permitted).then_some(())
        })
        .await;
    }

    /// Waits until every permitted placement is accepted, then lets the shoppers go home.
    async fn finish(&self) {
        self.place(0).await;
        self.permits.close();
    }
}

/// What one shopper saw.
#[derive(Debug, Default)]
struct Placed {
    /// (idempotency key, the id of the order its `201` named), in the order placed.
    orders: Vec<(String, String)>,
    /// `201`s that were replays (`Idempotent-Replayed: true`).
    replayed: usize,
    /// Requests that got no answer and were sent again elsewhere.
    unanswered: usize,
    /// `503 not_ready` answers.
    unavailable: usize,
}

/// How a placement request ended.
enum Answer {
    Placed {
        id: String,
        replayed: bool,
    },
    Unavailable,
    /// The connection failed or broke before the whole answer came.
    Lost(String),
}

async fn place_once(target: &Client, token: &str, key: &str, body: &Value) -> Answer {
    let sent = target
        .request(Method::POST, "/api/orders", Some(token))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            assert!(!error.is_timeout(), "{key}: no answer within {REQUEST_TIMEOUT:?} (a hang)");
            return Answer::Lost(error.to_string());
        }
    };
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let content_type = response.headers().get("content-type").cloned();
    let answer = match response.text().await {
        Ok(answer) => answer,
        Err(error) => {
            assert!(!error.is_timeout(), "{key}: no answer within {REQUEST_TIMEOUT:?} (a hang)");
            return Answer::Lost(error.to_string());
        }
    };
    let json: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    match status {
        StatusCode::CREATED => {
            assert!(json["status"].is_string(), "{key}: {answer}");
            Answer::Placed { id: text(&json["id"]), replayed }
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(json["code"], "not_ready", "{key}: {answer}");
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "{key}: {answer}"
            );
            Answer::Unavailable
        }
        _ => panic!("{key}: placement answered {status} (only 201 or 503 are allowed): {answer}"),
    }
}

/// Tells the drill when the shopper holding it panics.
struct Alarm(Arc<Progress>);

impl Drop for Alarm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
        }
    }
}

async fn go_shopping(shopper: Shopper, products: Vec<String>, progress: Arc<Progress>) -> Placed {
    let _alarm = Alarm(progress.clone());
    let mut rng = Rng(0xd811_0000 + shopper.index as u64);
    let mut placed = Placed::default();
    let mut target = 0;
    let mut after_switch = 0;
    for number in 0.. {
        assert!(
            number < MOST_PLACEMENTS,
            "shopper {} was never done: {:?}",
            shopper.index,
            shopper.quota
        );
        let done = match shopper.quota {
            Quota::UntilFailureThen(orders) => target > 0 && after_switch >= orders,
            Quota::Permitted => match progress.permits.acquire().await {
                Ok(permit) => {
                    permit.forget();
                    false
                }
                Err(_) => true,
            },
        };
        if done {
            break;
        }
        let key = format!("shopper{}-order{number}", shopper.index);
        let body = json!({"items": random_items(&mut rng, &products)});
        for attempt in 0.. {
            assert!(attempt < 2_000, "{key} was never accepted");
            match place_once(&shopper.targets[target], &shopper.customer.token, &key, &body).await {
                Answer::Placed { id, replayed } => {
                    placed.orders.push((key.clone(), id));
                    placed.replayed += usize::from(replayed);
                    progress.accepted.fetch_add(1, Ordering::SeqCst);
                    if matches!(shopper.quota, Quota::Permitted) {
                        progress.accepted_permitted.fetch_add(1, Ordering::SeqCst);
                    }
                    if target == 0 && matches!(shopper.quota, Quota::UntilFailureThen(_)) {
                        progress.accepted_by_doomed.fetch_add(1, Ordering::SeqCst);
                    }
                    if target > 0 {
                        after_switch += 1;
                    }
                    break;
                }
                Answer::Unavailable => {
                    placed.unavailable += 1;
                    progress.unavailable.fetch_add(1, Ordering::SeqCst);
                    // A client backing off before it tries again; not a wait for a condition.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Answer::Lost(error) => {
                    assert!(
                        target + 1 < shopper.targets.len(),
                        "{key}: {} did not answer and nothing may fail here: {error}",
                        shopper.targets[target].base_url
                    );
                    placed.unanswered += 1;
                    target += 1;
                }
            }
        }
    }
    placed
}

/// Starts the shoppers; each is a task of `running`.
fn start_shopping(
    shoppers: Vec<Shopper>,
    shelf: &Shelf,
    progress: &Arc<Progress>,
) -> JoinSet<Placed> {
    let mut running = JoinSet::new();
    for shopper in shoppers {
        running.spawn(go_shopping(shopper, shelf.ids.clone(), progress.clone()));
    }
    running
}

/// Waits until every order has settled and checks the books: each key placed exactly one order
/// and the orders listed are exactly those; no order pending; confirmed orders priced from the
/// shelf, rejected ones for want of stock; initial stock = stock + held, stock ≥ 0. Returns a
/// count of the orders by status.
async fn assert_settled_once(
    cluster: &Cluster,
    shelf: &Shelf,
    placed: &[(String, String)],
) -> BTreeMap<String, usize> {
    let mut by_key = BTreeMap::new();
    for (key, id) in placed {
        assert!(by_key.insert(key.clone(), id.clone()).is_none(), "{key} was placed twice");
    }
    let accepted: BTreeSet<String> = by_key.values().cloned().collect();
    assert_eq!(accepted.len(), by_key.len(), "two keys were answered with one order: {by_key:?}");

    wait_until("no order is pending", SETTLE_AFTER_FAULT, || async {
        all_orders(&cluster.api, &cluster.admin, "&status=pending").await.is_empty().then_some(())
    })
    .await;
    let settled = assert_stock_conserved(&cluster.api, &cluster.admin, &shelf.initial).await;
    let listed: BTreeSet<String> = settled.iter().map(|order| text(&order["id"])).collect();
    let lost: Vec<&String> = accepted.difference(&listed).collect();
    let extra: Vec<&String> = listed.difference(&accepted).collect();
    assert!(lost.is_empty(), "orders answered 201 but not listed: {lost:?}");
    assert!(extra.is_empty(), "orders listed that no 201 named (placed twice?): {extra:?}");

    // Nothing was given up on: a dead letter would be an event some consumer never applied.
    let nats = cluster.nats.url();
    let dlq = ["events", "dlq", "list", "--nats-url", &nats, "--nats-prefix", &cluster.prefix];
    let (ok, stdout, stderr) = run(command(&dlq)).await;
    assert!(ok, "mercato events dlq list failed: {stderr}");
    assert_eq!(stdout.trim(), "no dead letters", "{stderr}");

    let mut statuses = BTreeMap::new();
    for order in &settled {
        let status = text(&order["status"]);
        match status.as_str() {
            "confirmed" => {
                let mut cents = 0;
                for line in order["items"].as_array().expect("items") {
                    let price = shelf.cents[&text(&line["productId"])];
                    cents += price * line["quantity"].as_i64().expect("a quantity");
                }
                let total = format!("{}.{:02}", cents / 100, cents % 100);
                assert_eq!(order["total"], total.as_str(), "priced once, from the shelf: {order}");
            }
            "rejected" => assert_eq!(order["rejectionReason"], "insufficient_stock", "{order}"),
            _ => panic!("an order ended neither confirmed nor rejected: {order}"),
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.contains_key("confirmed"), "some orders get their stock: {statuses:?}");
    assert!(statuses.contains_key("rejected"), "the stock runs out for some: {statuses:?}");
    statuses
}

/// Every placement the shoppers saw accepted, and their tallies summed.
fn gather(placed: &[Placed]) -> (Vec<(String, String)>, Placed) {
    let mut all = Vec::new();
    let mut sum = Placed::default();
    for one in placed {
        all.extend(one.orders.iter().cloned());
        sum.replayed += one.replayed;
        sum.unanswered += one.unanswered;
        sum.unavailable += one.unavailable;
    }
    (all, sum)
}

async fn join_shoppers(running: JoinSet<Placed>) -> Vec<Placed> {
    tokio::time::timeout(STEP * 2, running.join_all())
        .await
        .expect("the shoppers finish their placements")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_orders_replica_mid_load_loses_nothing_and_applies_nothing_twice() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let shelf = cluster.shelf(&[("Mug", 450, 40), ("Lamp", 1000, 30), ("Kettle", 3299, 20)]).await;
    let customers = cluster.customers(6).await;
    let witness = customers[0].clone();
    let (doomed, survivor) = (cluster.orders[0].client(), cluster.orders[1].client());
    // Two customers at replica A until it dies, then at the gateway (in front of replica B);
    // two at replica B itself; two at the gateway.
    let shoppers: Vec<Shopper> = customers
        .into_iter()
        .enumerate()
        .map(|(index, customer)| {
            let (targets, quota) = match index % 3 {
                0 => (vec![doomed.clone(), cluster.api.clone()], Quota::UntilFailureThen(4)),
                1 => (vec![survivor.clone()], Quota::Permitted),
                _ => (vec![cluster.api.clone()], Quota::Permitted),
            };
            Shopper { index, customer, targets, quota }
        })
        .collect();
    let progress = Arc::new(Progress::default());
    let running = start_shopping(shoppers, &shelf, &progress);

    progress.place(16).await;
    wait_until("replica A has taken orders", STEP, || async {
        (progress.accepted_by_doomed() >= 5).then_some(())
    })
    .await;
    // An answer of replica A's that its client never saw (whether one was in flight at the kill
    // is luck): sent again with its key after the kill, replica B answers it again.
    let body = json!({"items": items(&[(&shelf.ids[0], 1)])});
    let key = [("Idempotency-Key", "answer-lost-with-replica-a")];
    let token = Some(witness.token.as_str());
    let first = doomed.send_with(Method::POST, "/api/orders", Some(&body), token, &key).await;
    let first = json_body(first, StatusCode::CREATED).await;
    // Hung first, then killed: while it hangs, the pull requests it had open still take events,
    // which it never acks, so they come back to replica B after the ack_wait. (Usually: whether
    // its requests are still open and reached in the window is up to JetStream; the drill prints
    // how long settling took.)
    cluster.orders[0].freeze();
    progress.place(24).await;
    let status = cluster.orders[0].kill().await;
    let killed_at = Instant::now();
    assert!(!status.success(), "killed, not exited: {status:?}");
    let again = cluster.api.send_with(Method::POST, "/api/orders", Some(&body), token, &key).await;
    let replayed = again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok());
    assert_eq!(replayed, Some("true"), "the key is known to every replica");
    assert_eq!(json_body(again, StatusCode::CREATED).await["id"], first["id"]);

    progress.permit(12);
    progress.finish().await;
    let placed = join_shoppers(running).await;
    let (mut accepted, sum) = gather(&placed);
    assert!(sum.unanswered >= 2, "both of replica A's customers lost an answer: {sum:?}");
    accepted.push((key[0].1.to_owned(), text(&first["id"])));

    let statuses = assert_settled_once(&cluster, &shelf, &accepted).await;
    eprintln!(
        "replica kill drill: {} placed ({} by replica A before the kill), {} answers lost and \
         sent again, {} of those replayed; orders {statuses:?}, all settled {:?} after the kill",
        accepted.len(),
        progress.accepted_by_doomed(),
        sum.unanswered,
        sum.replayed,
        killed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_orders_replica_under_load_drains_it_first_and_loses_nothing() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let shelf = cluster.shelf(&[("Mug", 450, 40), ("Lamp", 1000, 30), ("Kettle", 3299, 20)]).await;
    let customers = cluster.customers(6).await;
    let (leaving, staying) = (cluster.orders[0].client(), cluster.orders[1].client());
    // Two customers at replica A until it is gone, then at the gateway; two at replica B; two at
    // the gateway. All place as permits allow, so the drain's length does not change the load.
    let shoppers: Vec<Shopper> = customers
        .into_iter()
        .enumerate()
        .map(|(index, customer)| {
            let targets = match index % 3 {
                0 => vec![leaving.clone(), cluster.api.clone()],
                1 => vec![staying.clone()],
                _ => vec![cluster.api.clone()],
            };
            Shopper { index, customer, targets, quota: Quota::Permitted }
        })
        .collect();
    let progress = Arc::new(Progress::default());
    let running = start_shopping(shoppers, &shelf, &progress);
    progress.place(16).await;

    // SIGTERM under load: readiness turns red while replica A still answers (its drain), then it
    // stops taking connections, finishes what it holds, settles its events, and exits 0.
    cluster.orders[0].terminate();
    let ready = format!("{}/health/ready", cluster.orders[0].base_url);
    let red = wait_until("replica A's readiness turns red", Duration::from_secs(4), || async {
        let response = reqwest::get(&ready).await.ok()?;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    let detail = red.text().await.unwrap_or_default();
    assert!(detail.contains("shutting down"), "{detail}");
    progress.place(24).await;
    let status = cluster.orders[0].exited().await;
    assert!(status.success(), "a drained replica exits 0: {status:?}");

    progress.permit(12);
    progress.finish().await;
    let placed = join_shoppers(running).await;
    let (accepted, sum) = gather(&placed);
    let statuses = assert_settled_once(&cluster, &shelf, &accepted).await;
    eprintln!(
        "replica stop drill: {} placed, {} answers lost and sent again; orders {statuses:?}",
        accepted.len(),
        sum.unanswered,
    );
}

/// Shoppers placing on replica A, replica B and the gateway in turn, each as permits allow.
fn spread_over_replicas_and_gateway(cluster: &Cluster, customers: Vec<Customer>) -> Vec<Shopper> {
    let targets = [cluster.orders[0].client(), cluster.orders[1].client(), cluster.api.clone()];
    customers
        .into_iter()
        .enumerate()
        .map(|(index, customer)| Shopper {
            index,
            customer,
            targets: vec![targets[index % 3].clone()],
            quota: Quota::Permitted,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_while_orders_are_placed_loses_no_event() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let shelf = cluster.shelf(&[("Mug", 450, 35), ("Lamp", 1000, 25), ("Kettle", 3299, 15)]).await;
    let customers = cluster.customers(6).await;
    let shoppers = spread_over_replicas_and_gateway(&cluster, customers);
    let progress = Arc::new(Progress::default());
    let running = start_shopping(shoppers, &shelf, &progress);

    // A crash of the broker, then a graceful stop; placements go on meanwhile (their events wait
    // in the outboxes), and the server comes back on the same port and store each time.
    progress.place(16).await;
    cluster.nats.kill().await;
    let mark = progress.answered();
    progress.permit(16);
    wait_until("placements are answered while NATS is down", STEP, || async {
        (progress.answered() >= mark + 16).then_some(())
    })
    .await;
    cluster.nats.start_again().await;
    progress.place(16).await;
    cluster.nats.stop().await;
    let mark = progress.answered();
    progress.permit(16);
    wait_until("placements are answered while NATS is stopped", STEP, || async {
        (progress.answered() >= mark + 16).then_some(())
    })
    .await;
    cluster.nats.start_again().await;
    progress.permit(16);
    progress.finish().await;
    let placed = join_shoppers(running).await;
    let (accepted, sum) = gather(&placed);
    assert_eq!(accepted.len(), 5 * 16);

    let statuses = assert_settled_once(&cluster, &shelf, &accepted).await;
    eprintln!(
        "NATS restart drill: {} placed, {} answers 503 while NATS was down; orders {statuses:?}",
        accepted.len(),
        sum.unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgres_answers_503_meanwhile_and_the_same_processes_recover() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let shelf = cluster.shelf(&[("Mug", 450, 30), ("Lamp", 1000, 20), ("Kettle", 3299, 12)]).await;
    let customers = cluster.customers(6).await;
    let prober = customers[0].clone();
    let shoppers = spread_over_replicas_and_gateway(&cluster, customers);
    let progress = Arc::new(Progress::default());
    let running = start_shopping(shoppers, &shelf, &progress);
    progress.place(24).await;
    let known_order = all_orders(&cluster.api, &cluster.admin, "").await[0]["id"].clone();
    let known_order = text(&known_order);

    cluster.postgres.stop(Shutdown::Immediate).await;
    progress.permit(12);
    // Every request that needs a database answers 503 not_ready (problem details), never a 500
    // and never a hang (the client gives up after REQUEST_TIMEOUT): through the gateway and at
    // each orders replica, reads and writes, and sign-in at the users service.
    let probe = json!({"items": items(&[(&shelf.ids[0], 1)])});
    let key = [("Idempotency-Key", "probe-during-the-outage")];
    let token = Some(prober.token.as_str());
    for api in [&cluster.api, &cluster.orders[0].client(), &cluster.orders[1].client()] {
        let refused = api.send_with(Method::POST, "/api/orders", Some(&probe), token, &key).await;
        problem(refused, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
        let read = api.get(&format!("/api/orders/{known_order}"), Some(&cluster.admin)).await;
        problem(read, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
        let list = api.get("/api/orders", token).await;
        problem(list, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    }
    let product = cluster.api.get(&format!("/api/products/{}", shelf.ids[0]), None).await;
    problem(product, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    let login = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let login = cluster.api.post_json("/api/auth/login", &login, None).await;
    problem(login, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    for node in &cluster.nodes()[..4] {
        let ready = node.client().get("/health/ready", None).await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "{} is not ready", node.name);
    }
    // The shoppers meet the outage too (and back off and try again with their keys).
    let mark = progress.unavailable();
    wait_until("the shoppers are answered 503", STEP, || async {
        (progress.unavailable() >= mark + 6).then_some(())
    })
    .await;

    cluster.postgres.start_again().await;
    // The same processes, not restarted, serve again.
    for node in cluster.nodes() {
        let api = node.client();
        wait_until(&format!("{} is ready again", node.name), STEP, || async {
            let ready = api.get("/health/ready", None).await;
            (ready.status() == StatusCode::OK).then_some(())
        })
        .await;
    }
    progress.permit(14);
    progress.finish().await;
    // The refused probe left nothing behind: its key is free, and places now.
    let placed_probe =
        cluster.api.send_with(Method::POST, "/api/orders", Some(&probe), token, &key).await;
    assert!(placed_probe.headers().get("idempotent-replayed").is_none());
    let placed_probe = json_body(placed_probe, StatusCode::CREATED).await;
    let signed_in = sign_in(&cluster.api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(!signed_in.is_empty());

    let placed = join_shoppers(running).await;
    let (mut accepted, sum) = gather(&placed);
    assert_eq!(accepted.len(), 24 + 12 + 14);
    accepted.push((key[0].1.to_owned(), text(&placed_probe["id"])));
    let statuses = assert_settled_once(&cluster, &shelf, &accepted).await;
    eprintln!(
        "PostgreSQL restart drill: {} placed, {} answers 503 during the outage; orders \
         {statuses:?}",
        accepted.len(),
        sum.unavailable
    );
}
