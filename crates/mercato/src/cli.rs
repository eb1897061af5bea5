//! The command line (clap). Every flag also has a `MERCATO_*` environment variable and a key in
//! the TOML config file; see [`crate::config`] for the order in which they win.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mercato",
    version,
    about = "Mercato: an event-driven commerce backend",
    long_about = "Mercato: an event-driven commerce backend.\n\n\
        With no command, runs `mercato up`: the whole system in one process on 127.0.0.1:8080, \
        with its data under ./mercato-data and no server to install."
)]
pub struct Cli {
    /// A TOML config file (values there are overridden by MERCATO_* variables and flags).
    #[arg(long, global = true, env = "MERCATO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process on one port (embedded SQLite and event log).
    Up(UpArgs),
    /// Run one service in its own process (PostgreSQL, MySQL/MariaDB or SQLite).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Manage user accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Watch events and manage dead letters (JetStream with --nats-url, else the embedded log).
    Events(EventsArgs),
    /// Load a running Mercato through its API and report latency, throughput and errors.
    ///
    /// Fixtures are made through the API as the admin named by MERCATO_ADMIN_EMAIL and
    /// MERCATO_ADMIN_PASSWORD; after `settle` and `mixed` the invariants are checked (no order
    /// left pending, stock conserved) and a failure exits non-zero.
    Bench(mercato_bench::BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
    /// The embedded log's data dir (when no NATS URL is configured).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// NATS server(s): use JetStream instead of the embedded log.
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Subject prefix [default: mercato].
    #[arg(long, global = true, value_name = "PREFIX")]
    pub nats_prefix: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Print events as they are published, one line each.
    Tail {
        /// Only this type (`mercato.user.created.v1` or `user.created`); repeatable.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
    },
    /// Dead letters: events a consumer gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish a dead letter again and remove it from the list.
    Redrive {
        /// The dead letter's number (from `list`).
        id: u64,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct UpArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the databases, event log and keys live [default: ./mercato-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    Users,
    Products,
    Orders,
    Gateway,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The service to run.
    pub service: Service,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The service's database: sqlite://..., postgres://... or mysql://...
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// NATS server(s) for the event bus.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Subject prefix (and stream name) on NATS [default: mercato].
    #[arg(long, value_name = "PREFIX")]
    pub nats_prefix: Option<String>,
    /// The users service's base URL (JWKS for token verification; the gateway's upstream).
    #[arg(long, value_name = "URL")]
    pub users_url: Option<String>,
    /// The products service's base URL (gateway).
    #[arg(long, value_name = "URL")]
    pub products_url: Option<String>,
    /// The orders service's base URL (gateway).
    #[arg(long, value_name = "URL")]
    pub orders_url: Option<String>,
    /// The users service's Ed25519 signing key (PKCS#8 PEM), generated there if absent.
    #[arg(long, value_name = "FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// Folder for files a service keeps (the generated signing key by default).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Load and check the settings this service needs, print them (secrets redacted) and exit,
    /// without connecting anywhere.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Migrate only this service's database (needs --database-url); by default every embedded
    /// database under --data-dir.
    #[arg(long, requires = "database_url")]
    pub service: Option<Service>,
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an admin account, or promote an existing one and set its password.
    ///
    /// The password comes from MERCATO_ADMIN_PASSWORD, or standard input with
    /// --password-stdin; otherwise one is generated and printed once.
    CreateAdmin(CreateAdminArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateAdminArgs {
    /// The admin's email.
    #[arg(long)]
    pub email: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The users database [default: the embedded one under --data-dir].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}
