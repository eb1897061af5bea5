//! The `mercato` binary: parses the command line and wires services together; no business logic
//! lives here.
//!
//! - [`cli`]: the commands and flags.
//! - [`config`]: layered settings (defaults < TOML < `MERCATO_*` < flags), validated at start.
//! - [`embedded`]: `mercato up`, every service in one process on one port.
//! - [`serve`]: `mercato serve <service>`, one service per process.
//! - [`admin`]: the bootstrap admin of `mercato up` and `mercato users create-admin`.
//! - [`migrate`]: `mercato migrate`.
//! - [`backbone`]: the bus of each shape and the background tasks (outbox relays).
//! - [`events`]: `mercato events tail|dlq`, and the AsyncAPI route.

mod admin;
mod backbone;
mod cli;
mod config;
mod embedded;
mod events;
mod migrate;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, UsersCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    mercato_platform::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    let outcome = runtime.block_on(async {
        match cli.command {
            None => embedded::run(config, cli::UpArgs::default()).await,
            Some(Command::Up(args)) => embedded::run(config, args).await,
            Some(Command::Serve(args)) => serve::run(config, args).await,
            Some(Command::Migrate(args)) => migrate::run(config, args).await,
            Some(Command::Users(UsersCommand::CreateAdmin(args))) => {
                admin::create_admin(config, args).await
            }
            Some(Command::Events(args)) => events::run(config, args).await,
            // A client of the API: it never loads this process's settings.
            Some(Command::Bench(args)) => mercato_bench::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
