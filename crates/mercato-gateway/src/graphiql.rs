//! The GraphiQL page on `GET /graphql` for a browser, and the files it loads.
//!
//! A browser asking for `/graphql` (its `Accept` has `text/html`, see [`wants_page`]) gets
//! [`page`]: GraphiQL, which sends queries and mutations as `POST /graphql` and subscriptions over
//! `/graphql/ws` (`ws://` or `wss://` as the page itself was loaded) with `graphql-transport-ws`.
//! A token typed into GraphiQL's headers editor as `{"Authorization": "Bearer ..."}` goes with
//! every HTTP request as that header, and in the `connection_init` payload of the WebSocket as
//! `{"Authorization": "Bearer ..."}`: the socket is reopened when the header changes.
//!
//! GraphiQL, React, ReactDOM and the `graphql-ws` client are vendored under
//! `assets/graphiql/` (the README there names each npm package, its version, its checksum and its
//! license) and embedded in the binary, served by [`assets`] under `/graphql/assets/{file}`. So
//! the page loads nothing from another host: it works offline, behind a firewall, and under a
//! strict network policy, nothing is fetched at build or run time, and what the browser runs is
//! what was reviewed in the repository.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// Where the vendored files are served.
pub const ASSETS_PATH: &str = "/graphql/assets";

/// A vendored file served under [`ASSETS_PATH`].
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file name carries its package's version, so a file never changes under its name and
/// browsers may keep it for a year.
const ASSETS: &[Asset] = &[
    Asset {
        name: "react-18.3.1.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/react-18.3.1.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/react-dom-18.3.1.production.min.js"),
    },
    Asset {
        name: "graphql-ws-5.16.2.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/graphql-ws-5.16.2.min.js"),
    },
    Asset {
        name: "graphiql-3.9.0.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql/graphiql-3.9.0.min.js"),
    },
    Asset {
        name: "graphiql-3.9.0.min.css",
        content_type: CSS,
        bytes: include_bytes!("../assets/graphiql/graphiql-3.9.0.min.css"),
    },
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The page. Its script and style are inline; everything else comes from [`ASSETS_PATH`]. If a
/// file fails to load, the page says so in an element with the id `graphiql-load-error`.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Mercato GraphQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql-3.9.0.min.css">
<style>
  html, body { height: 100%; margin: 0; overflow: hidden; }
  #graphiql { height: 100vh; }
  #graphiql-load-error { font: 16px/1.5 sans-serif; margin: 2em; color: #b00020; }
</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphql/assets/react-18.3.1.production.min.js"></script>
<script src="/graphql/assets/react-dom-18.3.1.production.min.js"></script>
<script src="/graphql/assets/graphql-ws-5.16.2.min.js"></script>
<script src="/graphql/assets/graphiql-3.9.0.min.js"></script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var missing = [];
  if (typeof React === "undefined") missing.push("React");
  if (typeof ReactDOM === "undefined") missing.push("ReactDOM");
  if (typeof graphqlWs === "undefined") missing.push("graphql-ws");
  if (typeof GraphiQL === "undefined") missing.push("GraphiQL");
  if (missing.length > 0) {
    var error = document.createElement("p");
    error.id = "graphiql-load-error";
    error.textContent = "GraphiQL could not start: " + missing.join(", ") +
      " did not load from /graphql/assets/.";
    root.replaceChildren(error);
    return;
  }

  var httpUrl = "/graphql";
  var wsUrl = (window.location.protocol === "https:" ? "wss://" : "ws://") +
    window.location.host + "/graphql/ws";

  // The Authorization header from GraphiQL's headers editor, whatever its case, or null.
  function authorization(headers) {
    if (!headers || typeof headers !== "object") return null;
    for (var name in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, name) &&
          name.toLowerCase() === "authorization" && headers[name] != null &&
          String(headers[name]) !== "") {
        return String(headers[name]);
      }
    }
    return null;
  }

  // Whether the operation GraphiQL runs is a subscription (as GraphiQL decides it).
  function isSubscription(params, opts) {
    var document = opts && opts.documentAST;
    if (!document || !document.definitions) return false;
    var wanted = params.operationName || undefined;
    return document.definitions.some(function (definition) {
      return definition.kind === "OperationDefinition" &&
        definition.operation === "subscription" &&
        (definition.name ? definition.name.value : undefined) === wanted;
    });
  }

  // The WebSocket client is made for one Authorization value, sent in connection_init; when the
  // header changes, the next subscription gets a new client (and socket) with the new value.
  var socketAuthorization = null;
  var wsClient = null;
  var fetcher = null;

  function fetcherFor(auth) {
    if (fetcher === null || auth !== socketAuthorization) {
      if (wsClient !== null) wsClient.dispose();
      socketAuthorization = auth;
      wsClient = graphqlWs.createClient({
        url: wsUrl,
        lazy: true,
        connectionParams: function () {
          return auth === null ? {} : { Authorization: auth };
        }
      });
      fetcher = GraphiQL.createFetcher({
        url: httpUrl,
        wsClient: wsClient,
        enableIncrementalDelivery: false
      });
    }
    return fetcher;
  }

  function mercatoFetcher(params, opts) {
    var auth = authorization(opts && opts.headers);
    if (isSubscription(params, opts)) return fetcherFor(auth)(params, opts);
    // Queries and mutations go over HTTP with the editor's headers; the socket stays as it is.
    return fetcherFor(fetcher === null ? auth : socketAuthorization)(params, opts);
  }

  var defaultQuery = [
    "# Mercato's GraphQL API.",
    "#",
    "# Sign in with the login mutation, then put",
    "# its token in the Headers tab below:",
    "#   {\"Authorization\": \"Bearer <token>\"}",
    "# It goes with queries, mutations and",
    "# subscriptions.",
    "",
    "query Products {",
    "  products(first: 10) {",
    "    edges { node { id sku name price stock } }",
    "    pageInfo { hasNextPage endCursor }",
    "  }",
    "}",
    ""
  ].join("\n");

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: mercatoFetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true
    })
  );
})();
</script>
</body>
</html>
"##;

/// True when the request comes from a browser that wants the page: its `Accept` header names
/// `text/html` (with a non-zero quality, if it gives one).
pub fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("text/html")
                && parts.all(|param| {
                    let (name, value) = param.split_once('=').unwrap_or((param, ""));
                    !name.trim().eq_ignore_ascii_case("q")
                        || value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
                })
        })
}

/// The GraphiQL HTML page: talks to `/graphql` over HTTP POST and to `/graphql/ws` (derived from
/// `window.location`: `ws://` or `wss://`) for subscriptions with the `graphql-transport-ws`
/// protocol.
pub fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::VARY, HeaderValue::from_static("accept")),
        ],
        PAGE,
    )
        .into_response()
}

/// Routes serving the vendored files under `/graphql/assets/{file}`, with their content type and
/// a year's caching (their names are versioned); `404` for any other name.
pub fn assets() -> Router {
    Router::new().route(&format!("{ASSETS_PATH}/{{file}}"), get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == file) else {
        return (StatusCode::NOT_FOUND, "no such GraphiQL asset\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).expect("a header value"));
        headers
    }

    #[test]
    fn a_browser_wants_the_page_and_an_api_client_does_not() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_page(&accept(firefox)));
        assert!(wants_page(&accept("TEXT/HTML; charset=utf-8")));
        assert!(!wants_page(&accept("application/json")));
        assert!(!wants_page(&accept("application/graphql-response+json, application/json")));
        assert!(!wants_page(&accept("*/*")));
        assert!(!wants_page(&accept("text/html;q=0, application/json")));
        assert!(!wants_page(&HeaderMap::new()));
    }

    /// The `src` and `href` values in the page.
    fn references(page: &str) -> Vec<&str> {
        ["src=\"", "href=\""]
            .iter()
            .flat_map(|attribute| {
                page.match_indices(attribute).filter_map(|(at, found)| {
                    let rest = &page[at + found.len()..];
                    rest.split_once('"').map(|(value, _)| value)
                })
            })
            .collect()
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        let references = references(PAGE);
        assert_eq!(references.len(), ASSETS.len(), "{references:?}");
        for reference in references {
            let name = reference
                .strip_prefix("/graphql/assets/")
                .unwrap_or_else(|| panic!("{reference} is not under /graphql/assets/"));
            assert!(ASSETS.iter().any(|asset| asset.name == name), "{name} is not embedded");
        }
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"), "no absolute URLs");
        assert!(PAGE.contains("<title>Mercato GraphQL</title>"));
    }

    #[test]
    fn every_asset_name_is_versioned() {
        for asset in ASSETS {
            assert!(
                asset.name.split('-').any(|part| part.starts_with(|c: char| c.is_ascii_digit())),
                "{} has no version, so it may not be cached as immutable",
                asset.name
            );
            assert!(!asset.bytes.is_empty());
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_unknown_names_are_not_found() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let app = assets().route("/graphql", get(|| async { page() }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let base = format!("http://{address}");

        let page = client.get(format!("{base}/graphql")).send().await.expect("the page");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.text().await.expect("a body").contains("Mercato GraphQL"));

        for asset in ASSETS {
            let response = client
                .get(format!("{base}{ASSETS_PATH}/{}", asset.name))
                .send()
                .await
                .expect("the asset");
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(response.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(response.headers()[header::CACHE_CONTROL], IMMUTABLE);
            assert_eq!(response.bytes().await.expect("a body").as_ref(), asset.bytes);
        }
        for unknown in ["graphiql.min.js", "README.md", "..%2FCargo.toml"] {
            let response = client
                .get(format!("{base}{ASSETS_PATH}/{unknown}"))
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{unknown}");
        }
        server.abort();
    }
}
