//! The page the canister serves itself (`http_request`): the files of `frontend/dist`, embedded
//! at build time (`canister/build.rs`), certified with `ic-asset-certification` so that HTTP
//! gateways can verify every response (response verification v2) against the canister's
//! certified data.

use ic_asset_certification::{Asset, AssetConfig, AssetEncoding, AssetFallbackConfig, AssetRouter};
use ic_http_certification::{HttpRequest, HttpResponse, StatusCode};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Whether the real page was embedded (`false`: the placeholder that says how to build it).
pub const BUILT: bool = embedded::BUILT;

/// The embedded files, as (path, bytes); a `.gz` twin follows each compressed one.
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    embedded::FILES
}

/// Headers served, and certified, with every file. The page talks to the IC's API only: its own
/// origin (local replicas, boundary nodes that serve the API on the canister's domain) or
/// icp-api.io.
fn security_headers() -> Vec<(String, String)> {
    [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // The full URL (with `?canisterId=`) reaches the gateway for the page's own files.
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' https://icp-api.io https://icp0.io https://*.icp0.io; \
             object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'none'",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn content_type(extension: &str) -> Option<&'static str> {
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript",
        "css" => "text/css",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// Certifies every embedded file: `index.html` at `/` and as the answer to any other path
/// (no cache), the rest at their paths (Vite's hashed names under `assets/` are immutable).
pub fn router() -> AssetRouter<'static> {
    let mut assets = Vec::new();
    let mut configs = Vec::new();
    for (path, bytes) in files() {
        assets.push(Asset::new(*path, *bytes));
        if path.ends_with(".gz") {
            continue;
        }
        let extension = path.rsplit('.').next().unwrap_or("");
        let mut headers = security_headers();
        let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "public, no-cache" };
        headers.push(("cache-control".to_string(), cache.to_string()));
        let encodings = if files().iter().any(|(p, _)| *p == format!("{path}.gz")) { vec![AssetEncoding::Gzip.default_config()] } else { vec![] };
        let (fallback_for, aliased_by) = if *path == "index.html" {
            let fallback = AssetFallbackConfig { scope: "/".to_string(), status_code: Some(StatusCode::OK) };
            (vec![fallback], vec!["/".to_string()])
        } else {
            (vec![], vec![])
        };
        configs.push(AssetConfig::File {
            path: path.to_string(),
            content_type: content_type(extension).map(str::to_string),
            headers,
            fallback_for,
            aliased_by,
            encodings,
        });
    }
    let mut router = AssetRouter::default();
    router.certify_assets(assets, configs).expect("the embedded files certify (build.rs gives each a unique path)");
    router
}

/// The response to `request`, with its certificate header built over `data_certificate` (the
/// canister's, from `ic0.data_certificate_copy`). Requests no asset answers (only methods other
/// than GET and HEAD: every path falls back to `index.html`) get an uncertified 405 or 404,
/// which gateways refuse to pass on as the page.
pub fn serve(router: &AssetRouter<'static>, data_certificate: &[u8], request: &HttpRequest) -> HttpResponse<'static> {
    let method = request.method().as_str();
    if method != "GET" && method != "HEAD" {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Only GET and HEAD are served.");
    }
    match router.serve_asset(data_certificate, request) {
        Ok(response) => response,
        Err(e) => plain(StatusCode::NOT_FOUND, &format!("Not found: {e}")),
    }
}

fn plain(status: StatusCode, text: &str) -> HttpResponse<'static> {
    HttpResponse::builder()
        .with_status_code(status)
        .with_headers(vec![("content-type".to_string(), "text/plain; charset=utf-8".to_string())])
        .with_body(text.as_bytes().to_vec())
        .build()
}
