//! What a run tells: [`Results`] (also the `--json` document), the summary [`table`] printed on
//! stdout, the Markdown report ([`markdown`]) and its chart ([`svg`]: throughput and p99
//! latency per second, written by hand: a chart crate would be the largest dependency here).

use std::fmt::Write as _;

use serde::Serialize;

use crate::invariants::Invariants;
use crate::load::OpenLoopStats;
use crate::stats::{Latency, SecondSummary, Summary};

/// The settings of a run, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub url: String,
    /// `closed` or `open`.
    pub mode: &'static str,
    pub concurrency: usize,
    pub duration_seconds: Option<f64>,
    pub requests: Option<u64>,
    /// Requests per second (open loop).
    pub rate: Option<f64>,
    pub products: usize,
    pub customers: usize,
}

/// Everything a run reports; serialised as the `--json` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    pub scenario: &'static str,
    pub command_line: String,
    pub started_at: String,
    pub run_id: String,
    pub settings: Settings,
    #[serde(flatten)]
    pub summary: Summary,
    pub open_loop: Option<OpenLoopStats>,
    /// `null` for scenarios that do not move stock.
    pub invariants: Option<Invariants>,
}

/// `12345` as `12,345`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A rate with one decimal, grouped: `1,234.5`.
fn rate(value: f64) -> String {
    let tenths = (value * 10.0).round().max(0.0) as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

fn ms(value: f64) -> String {
    if value >= 100.0 { format!("{value:.1}") } else { format!("{value:.2}") }
}

/// The command line as typed, quoted where a shell would need it.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain { arg } else { format!("'{}'", arg.replace('\'', r"'\''")) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const COLUMNS: [&str; 10] = [
    "operation",
    "requests",
    "errors",
    "ok/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "mean ms",
];

/// The rows of the summary: one per operation, and a total when there are several.
fn rows(summary: &Summary) -> Vec<[String; 10]> {
    let row =
        |name: &str, requests: u64, failed: u64, throughput: f64, latency: &Option<Latency>| {
            let cell = |pick: fn(&Latency) -> f64| {
                latency.as_ref().map_or("-".to_owned(), |l| ms(pick(l)))
            };
            [
                name.to_owned(),
                thousands(requests),
                thousands(failed),
                rate(throughput),
                cell(|l| l.p50),
                cell(|l| l.p90),
                cell(|l| l.p99),
                cell(|l| l.p99_9),
                cell(|l| l.max),
                cell(|l| l.mean),
            ]
        };
    let mut rows: Vec<[String; 10]> = summary
        .operations
        .iter()
        .map(|op| row(&op.name, op.requests, op.failed, op.throughput, &op.latency_ms))
        .collect();
    if summary.operations.len() != 1 {
        rows.push(row(
            "all",
            summary.requests,
            summary.failed,
            summary.throughput,
            &summary.latency_ms,
        ));
    }
    rows
}

fn mode_line(results: &Results) -> String {
    let settings = &results.settings;
    let stop = match (settings.duration_seconds, settings.requests) {
        (_, Some(requests)) => format!("{} requests", thousands(requests)),
        (Some(seconds), None) => format!("{seconds} s"),
        (None, None) => String::new(),
    };
    match &results.open_loop {
        None => format!("closed loop, {} workers, {stop}", settings.concurrency),
        Some(open) => format!(
            "open loop at {}/s, at most {} in flight, {stop}",
            rate(open.rate),
            settings.concurrency
        ),
    }
}

fn open_loop_line(open: &OpenLoopStats) -> String {
    format!(
        "{} sends scheduled, {} sent, {} late (more than {} ms after their intended time), {} \
         dropped; latency is measured from the intended send time",
        thousands(open.scheduled),
        thousands(open.sent),
        thousands(open.late),
        open.late_after_ms,
        thousands(open.dropped)
    )
}

fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "no answer".to_owned(), |status| status.to_string())
}

fn invariant_lines(invariants: &Invariants) -> Vec<String> {
    let mut lines = Vec::new();
    let statuses: Vec<String> = invariants
        .statuses
        .iter()
        .map(|(status, count)| format!("{} {status}", thousands(*count)))
        .collect();
    lines.push(if invariants.no_pending {
        format!(
            "holds: no order left pending ({} orders: {})",
            thousands(invariants.orders),
            statuses.join(", ")
        )
    } else {
        format!(
            "FAILS: {} of {} orders still pending after {:.1} s (e.g. {})",
            thousands(invariants.pending),
            thousands(invariants.orders),
            invariants.waited_seconds,
            invariants.pending_ids.join(", ")
        )
    });
    let balanced = invariants.products.iter().filter(|ledger| ledger.holds).count();
    if invariants.stock_conserved {
        lines.push(format!(
            "holds: stock conserved for all {balanced} products (initial − units held by \
             confirmed, shipped and delivered orders = stock)"
        ));
    } else {
        lines.push(format!(
            "FAILS: stock conserved for {balanced} of {} products",
            invariants.products.len()
        ));
        for ledger in invariants.products.iter().filter(|ledger| !ledger.holds) {
            lines.push(format!(
                "  product {}: initial {} − held {} = {}, but the stock is {}",
                ledger.product_id,
                ledger.initial_stock,
                ledger.held,
                ledger.expected_stock,
                ledger.stock
            ));
        }
    }
    lines
}

/// The summary printed on stdout.
pub fn table(results: &Results) -> String {
    let summary = &results.summary;
    let mut out = String::new();
    let _ = writeln!(out, "mercato bench {} against {}", results.scenario, results.settings.url);
    let _ = writeln!(
        out,
        "{}; {} requests in {:.2} s",
        mode_line(results),
        thousands(summary.requests),
        summary.elapsed_seconds
    );
    if let Some(open) = &results.open_loop {
        let _ = writeln!(out, "{}", open_loop_line(open));
    }
    let _ = writeln!(out);
    let rows = rows(summary);
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([COLUMNS[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column == 0 {
                let _ = write!(text, "{cell:<width$}", width = widths[0]);
            } else {
                let _ = write!(text, "  {cell:>width$}", width = widths[column]);
            }
        }
        text
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    let _ = writeln!(out, "{}", line(&header));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    if summary.errors.is_empty() {
        let _ = writeln!(out, "\nerrors: none");
    } else {
        let _ = writeln!(out, "\nerrors:");
        for error in &summary.errors {
            let code = if error.code.is_empty() { "-" } else { &error.code };
            let _ = writeln!(
                out,
                "  {:<16} {:>9}  {:<28} {:>9}",
                error.operation,
                status_text(error.status),
                code,
                thousands(error.count)
            );
            if let Some(hint) = &error.hint {
                let _ = writeln!(out, "    rate limited: {hint}");
            }
        }
    }
    if let Some(invariants) = &results.invariants {
        let _ = writeln!(out, "\ninvariants: {}", if invariants.holds { "hold" } else { "FAIL" });
        for line in invariant_lines(invariants) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// The Markdown report; `chart` is the SVG's file name, beside the report.
pub fn markdown(results: &Results, chart: &str) -> String {
    let summary = &results.summary;
    let settings = &results.settings;
    let mut out = String::new();
    let _ = writeln!(out, "# mercato bench {}\n", results.scenario);
    let _ = writeln!(
        out,
        "Run {} started {} against {}.\n",
        results.run_id, results.started_at, settings.url
    );
    let _ = writeln!(out, "```sh\n{}\n```\n", results.command_line);
    let _ = writeln!(out, "## Settings\n");
    let _ = writeln!(out, "| setting | value |\n|---|---|");
    let _ = writeln!(out, "| scenario | `{}` |", results.scenario);
    let _ = writeln!(out, "| load | {} |", mode_line(results));
    let _ = writeln!(
        out,
        "| fixtures | {} products, {} customers |",
        settings.products, settings.customers
    );
    let _ = writeln!(out, "| elapsed | {:.2} s |", summary.elapsed_seconds);
    let _ = writeln!(
        out,
        "| requests | {} ({} errors) |",
        thousands(summary.requests),
        thousands(summary.failed)
    );
    let _ = writeln!(out, "| throughput | {} successful requests/s |\n", rate(summary.throughput));
    if let Some(open) = &results.open_loop {
        let _ = writeln!(out, "Open loop: {}.\n", open_loop_line(open));
    }
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(COLUMNS.len() - 1));
    for row in rows(summary) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nLatency percentiles are over successful requests (HDR histograms, µs resolution).\n"
    );
    let _ = writeln!(out, "## Errors\n");
    if summary.errors.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        let _ =
            writeln!(out, "| operation | status | code | count | note |\n|---|---|---|---:|---|");
        for error in &summary.errors {
            let code = if error.code.is_empty() { "-" } else { &error.code };
            let note = error
                .hint
                .as_deref()
                .map(|hint| format!("rate limited: {hint}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | `{code}` | {} | {note} |",
                error.operation,
                status_text(error.status),
                thousands(error.count)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Invariants\n");
    match &results.invariants {
        None => {
            let _ = writeln!(
                out,
                "Not checked: the `{}` scenario does not move stock.\n",
                results.scenario
            );
        }
        Some(invariants) => {
            let _ = writeln!(
                out,
                "**{}**\n",
                if invariants.holds { "All hold." } else { "An invariant FAILS." }
            );
            for line in invariant_lines(invariants) {
                let _ = writeln!(out, "- {}", line.trim_start());
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out, "## Throughput and p99 latency per second\n");
    let _ = writeln!(out, "![throughput and p99 latency per second]({chart})\n");
    if charted(&summary.series).len() < summary.series.len() {
        let _ = writeln!(
            out,
            "The last second lasted less than {SHORTEST_CHARTED} s (the answers still in flight \
             when the run ended): it is in the table, not in the chart.\n"
        );
    }
    let _ = writeln!(
        out,
        "| second | ok | errors | ok/s | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|"
    );
    for second in &summary.series {
        let cell = |value: Option<f64>| value.map_or("-".to_owned(), ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            second.second,
            thousands(second.ok),
            thousands(second.failed),
            rate(second.throughput),
            cell(second.p50_ms),
            cell(second.p99_ms)
        );
    }
    out
}

/// The smallest "nice" step (1, 2 or 5 × 10^k) that divides `0..=max` into at most `ticks` parts.
pub fn nice_step(max: f64, ticks: u32) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / f64::from(ticks.max(1));
    let magnitude = 10_f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn label(value: f64) -> String {
    if value >= 1000.0 {
        thousands(value.round() as u64)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// The seconds the chart shows: a last, partial second shorter than [`SHORTEST_CHARTED`] is
/// only the tail of the requests in flight when the run ended, and its rate would be noise.
pub fn charted(series: &[SecondSummary]) -> Vec<&SecondSummary> {
    series
        .iter()
        .filter(|second| second.length_seconds >= SHORTEST_CHARTED || series.len() == 1)
        .collect()
}

/// See [`charted`].
pub const SHORTEST_CHARTED: f64 = 0.5;

/// The chart: throughput (left axis) and p99 latency (right axis) per second of the run.
pub fn svg(title: &str, series: &[SecondSummary]) -> String {
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 400.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 730.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 340.0;
    const THROUGHPUT: &str = "#1f6fb4";
    const P99: &str = "#d1495b";
    const TICKS: u32 = 5;

    let series = charted(series);
    let seconds = series.len().max(1) as f64;
    let max_throughput = series.iter().map(|s| s.throughput).fold(0.0, f64::max);
    let max_p99 = series.iter().filter_map(|s| s.p99_ms).fold(0.0, f64::max);
    let throughput_step = nice_step(max_throughput, TICKS);
    // Both axes share the grid lines: as many steps of p99 as of throughput.
    let steps = (max_throughput / throughput_step).ceil().max(1.0);
    let throughput_top = steps * throughput_step;
    let p99_step = nice_step(max_p99, steps as u32);
    let p99_top = steps * p99_step;
    let x = |second: f64| LEFT + (RIGHT - LEFT) * (second + 0.5) / seconds;
    let y = |value: f64, top: f64| BOTTOM - (BOTTOM - TOP) * (value / top);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and the two value axes.
    let mut tick = 0.0;
    while tick <= throughput_top + throughput_step / 2.0 {
        let fraction = tick / throughput_top;
        let py = BOTTOM - (BOTTOM - TOP) * fraction;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="#e5e5e5"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end" fill="{THROUGHPUT}">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            label(tick)
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" fill="{P99}">{}</text>"#,
            RIGHT + 6.0,
            py + 4.0,
            label(((fraction * p99_top) / p99_step).round() * p99_step)
        );
        tick += throughput_step;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r##"<line x1="{RIGHT}" y1="{TOP}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>"##
    );
    // Seconds along the bottom, at most ~10 labels.
    let every = nice_step(seconds, 10).max(1.0) as usize;
    for second in (0..series.len().max(1)).step_by(every) {
        let px = x(second as f64);
        let _ = writeln!(
            out,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle">{second}</text>"#,
            BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">second of the run</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 34.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle" fill="{THROUGHPUT}">successful requests/s</text>"#,
        (TOP + BOTTOM) / 2.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({} {}) rotate(90)" text-anchor="middle" fill="{P99}">p99 latency (ms)</text>"#,
        WIDTH - 14.0,
        (TOP + BOTTOM) / 2.0
    );
    // The series.
    let throughput_points: Vec<String> = series
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.second as f64), y(s.throughput, throughput_top)))
        .collect();
    let p99_points: Vec<String> = series
        .iter()
        .filter_map(|s| {
            s.p99_ms.map(|p99| format!("{:.1},{:.1}", x(s.second as f64), y(p99, p99_top)))
        })
        .collect();
    for (id, color, points) in
        [("throughput", THROUGHPUT, &throughput_points), ("p99", P99, &p99_points)]
    {
        let _ = writeln!(
            out,
            r#"<polyline id="{id}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for point in points.iter() {
            if let Some((px, py)) = point.split_once(',') {
                let _ = writeln!(out, r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{color}"/>"#);
            }
        }
    }
    if series.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">no answers were recorded</text>"##,
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    }
    // Legend.
    let _ = writeln!(out, r#"<rect x="{LEFT}" y="32" width="12" height="3" fill="{THROUGHPUT}"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="38">throughput (successful requests/s)</text>"#,
        LEFT + 16.0
    );
    let _ =
        writeln!(out, r#"<rect x="{}" y="32" width="12" height="3" fill="{P99}"/>"#, LEFT + 260.0);
    let _ = writeln!(out, r#"<text x="{}" y="38">p99 latency (ms)</text>"#, LEFT + 276.0);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Ledger;
    use crate::stats::{ErrorCount, OperationSummary};

    fn latency(p99: f64) -> Latency {
        Latency { p50: 1.0, p90: 2.0, p99, p99_9: p99 + 1.0, max: 250.5, mean: 1.25 }
    }

    fn second(second: u64, throughput: f64, p99: Option<f64>) -> SecondSummary {
        SecondSummary {
            second,
            length_seconds: 1.0,
            ok: throughput as u64,
            failed: 0,
            throughput,
            p50_ms: Some(1.0),
            p99_ms: p99,
        }
    }

    fn results() -> Results {
        Results {
            scenario: "settle",
            command_line: command_line(
                ["mercato", "bench", "settle", "--url", "http://h:1"].map(String::from),
            ),
            started_at: "2026-11-23T10:00:00Z".to_owned(),
            run_id: "abc".to_owned(),
            settings: Settings {
                url: "http://h:1".to_owned(),
                mode: "closed",
                concurrency: 4,
                duration_seconds: Some(2.0),
                requests: None,
                rate: None,
                products: 20,
                customers: 4,
            },
            summary: Summary {
                elapsed_seconds: 2.0,
                requests: 1235,
                ok: 1234,
                failed: 1,
                throughput: 617.0,
                latency_ms: Some(latency(9.5)),
                operations: vec![OperationSummary {
                    name: "place-held".to_owned(),
                    requests: 1235,
                    ok: 1234,
                    failed: 1,
                    throughput: 617.0,
                    latency_ms: Some(latency(9.5)),
                }],
                errors: vec![ErrorCount {
                    operation: "place-held".to_owned(),
                    status: Some(429),
                    code: "rate_limited".to_owned(),
                    count: 1,
                    rate_limited: true,
                    hint: Some("raise X".to_owned()),
                }],
                series: vec![second(0, 600.0, Some(9.0)), second(1, 634.0, Some(10.0))],
            },
            open_loop: None,
            invariants: Some(Invariants {
                holds: false,
                no_pending: true,
                stock_conserved: false,
                orders: 1234,
                statuses: vec![("confirmed".to_owned(), 1234)],
                pending: 0,
                pending_ids: vec![],
                products: vec![Ledger {
                    product_id: "p1".to_owned(),
                    initial_stock: 100,
                    held: 3,
                    expected_stock: 97,
                    stock: 96,
                    holds: false,
                }],
                waited_seconds: 0.5,
            }),
        }
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(1234.56), "1,234.6");
        assert_eq!(rate(0.04), "0.0");
    }

    #[test]
    fn the_command_line_is_quoted_where_a_shell_needs_it() {
        let line = command_line(
            ["mercato", "bench", "--report", "my report.md", "it's"].map(String::from),
        );
        assert_eq!(line, r"mercato bench --report 'my report.md' 'it'\''s'");
    }

    #[test]
    fn the_table_has_a_row_per_operation_errors_with_hints_and_invariants() {
        let table = table(&results());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "mercato bench settle against http://h:1");
        assert_eq!(lines[1], "closed loop, 4 workers, 2 s; 1,235 requests in 2.00 s");
        let header = lines.iter().position(|l| l.starts_with("operation")).expect("a header");
        assert!(lines[header].contains("p99.9 ms"));
        let row: Vec<&str> = lines[header + 1].split_whitespace().collect();
        assert_eq!(
            row,
            ["place-held", "1,235", "1", "617.0", "1.00", "2.00", "9.50", "10.50", "250.5", "1.25"]
        );
        // One operation: no total row.
        assert!(lines[header + 2].is_empty());
        assert!(table.contains("429  rate_limited"), "{table}");
        assert!(table.contains("rate limited: raise X"), "{table}");
        assert!(table.contains("invariants: FAIL"), "{table}");
        assert!(
            table.contains("product p1: initial 100 − held 3 = 97, but the stock is 96"),
            "{table}"
        );
    }

    #[test]
    fn the_markdown_report_has_settings_summary_errors_invariants_and_the_chart() {
        let report = markdown(&results(), "run.svg");
        assert!(report.starts_with("# mercato bench settle\n"));
        assert!(report.contains("mercato bench settle --url http://h:1"));
        assert!(report.contains("| operation | requests | errors | ok/s | p50 ms |"));
        assert!(report.contains(
            "| place-held | 1,235 | 1 | 617.0 | 1.00 | 2.00 | 9.50 | 10.50 | 250.5 | 1.25 |"
        ));
        assert!(
            report.contains("| place-held | 429 | `rate_limited` | 1 | rate limited: raise X |")
        );
        assert!(report.contains("**An invariant FAILS.**"));
        assert!(report.contains("![throughput and p99 latency per second](run.svg)"));
        assert!(report.contains("| 1 | 634 | 0 | 634.0 | 1.00 | 10.00 |"));
    }

    #[test]
    fn the_json_document_names_what_the_contract_of_the_tool_promises() {
        let json = serde_json::to_value(results()).expect("serialisable");
        assert_eq!(json["scenario"], "settle");
        assert_eq!(json["settings"]["concurrency"], 4);
        assert_eq!(json["throughput"], 617.0);
        assert_eq!(json["latencyMs"]["p99.9"], 10.5);
        assert_eq!(json["errors"][0]["code"], "rate_limited");
        assert_eq!(json["series"][1]["p99Ms"], 10.0);
        assert_eq!(json["invariants"]["holds"], false);
        assert_eq!(json["invariants"]["products"][0]["expectedStock"], 97);
        assert!(json["openLoop"].is_null());
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(617.0, 5), 200.0);
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(9.5, 5), 2.0);
        assert_eq!(nice_step(0.3, 5), 0.1);
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(nice_step(12.0, 10), 2.0);
    }

    #[test]
    fn the_chart_is_svg_with_both_series() {
        let chart = svg("a <chart> & more", &results().summary.series);
        assert!(chart.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(chart.trim_end().ends_with("</svg>"));
        assert!(chart.contains("a &lt;chart&gt; &amp; more"));
        // Two seconds: x at the middle of each half of the plot; throughput axis to 800/s.
        assert!(
            chart.contains(r##"<polyline id="throughput" fill="none" stroke="#1f6fb4" stroke-width="2" points="235.0,122.5 565.0,110.2"/>"##),
            "{chart}"
        );
        assert!(chart.contains(r#"<polyline id="p99""#));
        assert!(chart.contains("points=\"235.0,"));
        assert_eq!(chart.matches("<circle").count(), 4);
        // A last second of a few milliseconds (the drain) stays out of the chart.
        let mut series = results().summary.series;
        series.push(SecondSummary { length_seconds: 0.02, ..second(2, 50.0, Some(400.0)) });
        let chart = svg("drained", &series);
        assert_eq!(chart.matches("<circle").count(), 4, "{chart}");
        // Four throughput steps of 200/s, so four p99 steps: of 5 ms up to 20, not up to 400.
        assert!(chart.contains(r##"fill="#d1495b">20</text>"##), "{chart}");
        assert!(!chart.contains(r##"fill="#d1495b">400</text>"##), "{chart}");
        assert!(
            markdown(
                &Results { summary: Summary { series, ..results().summary }, ..results() },
                "c.svg"
            )
            .contains("it is in the table, not in the chart")
        );
        let empty = svg("nothing", &[]);
        assert!(empty.contains("no answers were recorded") && empty.trim_end().ends_with("</svg>"));
    }
}
