//! `mercato up`'s GraphiQL page, loaded by headless Chromium: its files come from the binary
//! itself, its JavaScript runs, and it draws GraphiQL's editor.
//!
//! Chromium is `/usr/bin/chromium` (Debian's package, installed by `.ci/run`) or
//! `MERCATO_TEST_CHROMIUM`. Without it the test is skipped with a loud message, or fails when
//! `MERCATO_REQUIRE_SERVERS=1`, as the database tests do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::process::{Mercato, up};

const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

/// Chromium's path, or the path where it was looked for and is not.
fn chromium() -> Result<PathBuf, PathBuf> {
    let path = std::env::var_os("MERCATO_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.is_file() { Ok(path) } else { Err(path) }
}

/// The values of `attribute="..."` in an HTML text.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, found)| html[at + found.len()..].split_once('"').map(|(value, _)| value))
        .collect()
}

/// The text (tags left out) at the start of an HTML fragment, to quote in a failure.
fn text_from(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
        if text.len() >= 400 {
            break;
        }
    }
    let text = text.replace("&nbsp;", " ").replace("&quot;", "\"").replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs Chromium headless on `url` with `args`, in its own profile and home under `dir`, killed
/// after [`CHROMIUM_TIMEOUT`]. Returns its stdout; panics with its stderr when it fails.
async fn run_chromium(chromium: &Path, dir: &Path, args: &[String], url: &str) -> String {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("a home for chromium");
    let output = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CHROMIUM_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("chromium {args:?} did not finish within {CHROMIUM_TIMEOUT:?}"))
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium {args:?} failed ({}):\n{stderr}", output.status);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A decoded screenshot: its size, how many distinct colours it has, and the share of its pixels
/// that are not (nearly) white. GraphiQL's light grey background counts as not white: a drawn
/// GraphiQL is about half not white, a blank or "Loading…" page almost all white.
struct Screenshot {
    width: u32,
    height: u32,
    colours: usize,
    not_white: f64,
}

fn decode(png_file: &Path) -> Screenshot {
    let file = std::fs::File::open(png_file).expect("the screenshot exists");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
    let samples = info.color_type.samples();
    let mut colours = HashSet::new();
    let mut not_white = 0_usize;
    let mut total = 0_usize;
    for row in pixels[..info.buffer_size()].chunks_exact(info.line_size) {
        for pixel in row.chunks_exact(samples) {
            let rgb = match samples {
                1 | 2 => [pixel[0]; 3],
                _ => [pixel[0], pixel[1], pixel[2]],
            };
            colours.insert(rgb);
            total += 1;
            if rgb.iter().any(|&channel| channel < 250) {
                not_white += 1;
            }
        }
    }
    let not_white = not_white as f64 / total.max(1) as f64;
    Screenshot { width: info.width, height: info.height, colours: colours.len(), not_white }
}

#[tokio::test]
async fn graphiql_page_loads_its_embedded_files_and_renders_in_chromium() {
    let chromium = match chromium() {
        Ok(chromium) => chromium,
        Err(missing) => {
            mercato_testkit::skip_or_fail(&format!(
                "chromium is not installed: no {} (install Debian's chromium, or set \
                 MERCATO_TEST_CHROMIUM)",
                missing.display()
            ));
            return;
        }
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let mercato = Mercato::start(up(&dir.path().join("data"))).await;
    let client = reqwest::Client::new();

    // The page, for a browser.
    let page = client
        .get(mercato.url("/graphql"))
        .header(ACCEPT, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        .send()
        .await
        .expect("the page answers");
    assert_eq!(page.status(), StatusCode::OK);
    let content_type = page.headers()[CONTENT_TYPE].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.expect("the page's body");
    assert!(html.contains("<title>Mercato GraphQL</title>"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page names no other host:\n{html}"
    );

    // Everything it loads is embedded and served from the same origin.
    let scripts = attribute_values(&html, "src");
    let links = attribute_values(&html, "href");
    assert!(scripts.len() >= 3 && !links.is_empty(), "scripts {scripts:?}, links {links:?}");
    for (reference, expected_type) in scripts
        .iter()
        .map(|src| (src, "text/javascript"))
        .chain(links.iter().map(|href| (href, "text/css")))
    {
        assert!(reference.starts_with("/graphql/assets/"), "{reference} is not an embedded asset");
        let asset = client.get(mercato.url(reference)).send().await.expect("the asset answers");
        assert_eq!(asset.status(), StatusCode::OK, "{reference}");
        let content_type = asset.headers()[CONTENT_TYPE].to_str().expect("ascii").to_owned();
        assert!(content_type.starts_with(expected_type), "{reference}: {content_type}");
        assert!(!asset.bytes().await.expect("the asset's body").is_empty(), "{reference}");
    }
    let unknown =
        client.get(mercato.url("/graphql/assets/no-such-file.js")).send().await.expect("an answer");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // An API client asking the same URL does not get the page.
    let api = client
        .get(mercato.url("/graphql"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("an answer");
    let api_type = api.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(!api_type.starts_with("text/html"), "an API client got the page");

    // The JavaScript runs: GraphiQL replaces "Loading…" with its editor.
    let page_url = mercato.url("/graphql");
    let dom = run_chromium(
        &chromium,
        dir.path(),
        &["--virtual-time-budget=15000".into(), "--dump-dom".into()],
        &page_url,
    )
    .await;
    assert!(!dom.contains("id=\"graphiql-load-error\""), "a script did not load:\n{dom}");
    assert!(dom.contains("graphiql-container"), "GraphiQL did not render:\n{dom}");
    assert!(dom.contains("graphiql-query-editor"), "no query editor:\n{dom}");
    assert!(dom.contains("class=\"CodeMirror"), "the editor is not CodeMirror:\n{dom}");
    // GraphiQL shows a failed schema introspection in its result pane.
    if let Some(at) = dom.find("\"errors\"") {
        panic!("GraphiQL shows an error (its schema introspection?): {}", text_from(&dom[at..]));
    }

    // What it draws is not a blank page.
    let png_file = dir.path().join("graphiql.png");
    run_chromium(
        &chromium,
        dir.path(),
        &[
            "--virtual-time-budget=15000".into(),
            format!("--window-size={WIDTH},{HEIGHT}"),
            format!("--screenshot={}", png_file.display()),
        ],
        &page_url,
    )
    .await;
    let screenshot = decode(&png_file);
    assert_eq!((screenshot.width, screenshot.height), (WIDTH, HEIGHT));
    assert!(
        screenshot.colours >= 100,
        "the screenshot has {} colours: nothing was drawn",
        screenshot.colours
    );
    assert!(
        screenshot.not_white > 0.25,
        "only {:.1}% of the screenshot is not white: GraphiQL was not drawn",
        screenshot.not_white * 100.0
    );

    assert!(mercato.terminate().await.success());
}
