//! The command line of `mercato bench` ([`BenchArgs`]) and the validated [`Plan`] a run follows.
//!
//! Every check that can be made before touching the network is made here, by clap's value
//! parsers, so a bad flag is refused with clap's usual message naming it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::scenario::Scenario;

/// How long a run lasts when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// `mercato bench <scenario> --url URL [--concurrency N] [--duration D | --requests N] [--rate R]`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The server's base URL: `mercato up`, or the gateway under `mercato serve`.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub url: String,
    /// Workers, each sending its next request when the last one is answered; with --rate, the
    /// cap on requests in flight.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// How long to send requests (`30s`, `2m`) [default: 10s].
    #[arg(long, value_name = "D", value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send exactly N requests, then stop.
    #[arg(long, value_name = "N", value_parser = parse_requests)]
    pub requests: Option<u64>,
    /// Open loop: R requests per second at fixed intended send times, latency measured from
    /// the intended time (so a stalled server is not hidden by a stalled client).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a Markdown report to FILE, and its chart beside it (FILE with an `.svg` extension).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// How many products to create for the run (3..=100).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = parse_products)]
    pub products: usize,
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// A run, as validated from [`BenchArgs`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    /// Without a trailing slash.
    pub url: String,
    pub concurrency: usize,
    pub stop: Stop,
    /// `Some` for the open loop.
    pub rate: Option<f64>,
    pub json: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub products: usize,
    pub customers: usize,
}

impl BenchArgs {
    pub fn plan(&self) -> Plan {
        let stop = match (self.requests, self.duration) {
            (Some(count), _) => Stop::Requests(count),
            (None, duration) => Stop::After(duration.unwrap_or(DEFAULT_DURATION)),
        };
        Plan {
            scenario: self.scenario,
            url: self.url.trim_end_matches('/').to_owned(),
            concurrency: self.concurrency,
            stop,
            rate: self.rate,
            json: self.json.clone(),
            report: self.report.clone(),
            products: self.products,
            customers: customers_for(self.concurrency),
        }
    }
}

/// One customer per worker, at least 4 and at most 32. Worker `i` acts as customer
/// `i % customers`, so at 32 customers one account has at most `concurrency / 32` logins in
/// flight: the users service counts an attempt in flight against the account's failed-login
/// budget (10 by default), which 320 workers would reach.
pub fn customers_for(concurrency: usize) -> usize {
    concurrency.clamp(4, 32)
}

fn parse_url(value: &str) -> Result<String, String> {
    let rest = if let Some(rest) = value.strip_prefix("http://") {
        rest
    } else if value.starts_with("https://") {
        return Err("https:// is not supported by this build (no TLS); use http://".to_owned());
    } else {
        return Err("expected an http:// URL, such as http://127.0.0.1:8080".to_owned());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    Ok(value.to_owned())
}

fn parse_concurrency(value: &str) -> Result<usize, String> {
    let count: usize = value.parse().map_err(|_| format!("`{value}` is not a whole number"))?;
    if count == 0 || count > 10_000 {
        return Err("must be between 1 and 10000".to_owned());
    }
    Ok(count)
}

fn parse_requests(value: &str) -> Result<u64, String> {
    let count: u64 = value.parse().map_err(|_| format!("`{value}` is not a whole number"))?;
    if count == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(count)
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|error| format!("`{value}` is not a duration such as 30s or 2m ({error})"))?;
    if duration.is_zero() {
        return Err("must be longer than 0s".to_owned());
    }
    Ok(duration)
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    if !rate.is_finite() || rate <= 0.0 || rate > 1_000_000.0 {
        return Err("must be a number of requests per second above 0 (at most 1000000)".to_owned());
    }
    Ok(rate)
}

fn parse_products(value: &str) -> Result<usize, String> {
    let count: usize = value.parse().map_err(|_| format!("`{value}` is not a whole number"))?;
    if !(3..=100).contains(&count) {
        return Err("must be between 3 (an order has three lines) and 100".to_owned());
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.args.plan()).map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_a_ten_second_closed_loop_of_32_workers() {
        let plan = parse(&["read", "--url", "http://127.0.0.1:8080/"]).expect("valid");
        assert_eq!(plan.scenario, Scenario::Read);
        assert_eq!(plan.url, "http://127.0.0.1:8080");
        assert_eq!(plan.concurrency, 32);
        assert_eq!(plan.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(plan.rate, None);
        assert_eq!(plan.products, 20);
        assert_eq!(plan.customers, 32);
    }

    #[test]
    fn every_scenario_name_parses() {
        for (name, scenario) in [
            ("read", Scenario::Read),
            ("list", Scenario::List),
            ("login", Scenario::Login),
            ("place", Scenario::Place),
            ("settle", Scenario::Settle),
            ("graphql-product", Scenario::GraphqlProduct),
            ("graphql-orders", Scenario::GraphqlOrders),
            ("mixed", Scenario::Mixed),
        ] {
            let plan = parse(&[name, "--url", "http://localhost:1"]).expect(name);
            assert_eq!(plan.scenario, scenario);
            assert_eq!(scenario.name(), name);
        }
    }

    #[test]
    fn an_unknown_scenario_is_refused_with_the_possible_ones() {
        let error = parse(&["browse", "--url", "http://localhost:1"]).expect_err("refused");
        assert!(error.contains("invalid value 'browse'"), "{error}");
        assert!(error.contains("graphql-orders"), "{error}");
    }

    #[test]
    fn duration_and_requests_together_are_refused() {
        let error = parse(&["read", "--url", "http://h:1", "--duration", "2s", "--requests", "9"])
            .expect_err("refused");
        assert!(error.contains("cannot be used with"), "{error}");
    }

    #[test]
    fn requests_duration_and_rate_are_taken() {
        let plan = parse(&["place", "--url", "http://h:1", "--requests", "50", "--rate", "12.5"])
            .expect("valid");
        assert_eq!(plan.stop, Stop::Requests(50));
        assert_eq!(plan.rate, Some(12.5));
        let plan = parse(&["place", "--url", "http://h:1", "--duration", "1m30s"]).expect("ok");
        assert_eq!(plan.stop, Stop::After(Duration::from_secs(90)));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (args, flag) in [
            (vec!["--url", "ftp://h"], "--url"),
            (vec!["--url", "https://h"], "--url"),
            (vec!["--url", "http://"], "--url"),
            (vec!["--url", "http://h", "--concurrency", "0"], "--concurrency"),
            (vec!["--url", "http://h", "--duration", "0s"], "--duration"),
            (vec!["--url", "http://h", "--duration", "soon"], "--duration"),
            (vec!["--url", "http://h", "--requests", "0"], "--requests"),
            (vec!["--url", "http://h", "--rate", "0"], "--rate"),
            (vec!["--url", "http://h", "--rate=-3"], "--rate"),
            (vec!["--url", "http://h", "--rate", "NaN"], "--rate"),
            (vec!["--url", "http://h", "--products", "2"], "--products"),
        ] {
            let mut argv = vec!["read"];
            argv.extend(args.iter().copied());
            let error = parse(&argv).expect_err(&format!("{args:?} is refused"));
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }

    #[test]
    fn the_url_is_required() {
        let error = parse(&["read"]).expect_err("refused");
        assert!(error.contains("--url"), "{error}");
    }

    #[test]
    fn customers_follow_concurrency_within_bounds() {
        assert_eq!(customers_for(1), 4);
        assert_eq!(customers_for(8), 8);
        assert_eq!(customers_for(500), 32);
    }
}
