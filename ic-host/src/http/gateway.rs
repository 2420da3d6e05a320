//! The HTTP gateway of `ic-host serve`: `http://<canister-id>.localhost:PORT/…` and
//! `http://127.0.0.1:PORT/…?canisterId=<canister-id>` answer with the canister's `http_request`,
//! as the IC's gateways serve `https://<canister-id>.icp0.io/…`. It is DFINITY's gateway library
//! (`ic-http-gateway`): it asks the canister through the IC's API with an ic-agent (to this same
//! server, root key fetched, query signatures checked) and verifies each response's certification
//! with `ic-response-verification` against the root key; a response that does not verify is
//! refused with 500 and never reaches the browser. `/api/…` stays the IC's API on every host
//! name, as on the IC, so a page's agent can talk to its own origin.
//!
//! `ic-http-gateway` 0.4.3, its newest release, pins ic-agent 0.46 (no release works with 0.49),
//! so the gateway's agent is that version; the two speak the same HTTP interface.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use candid::Principal;
use ic_agent_046::Agent;
use ic_http_gateway::{HttpGatewayClient, HttpGatewayRequestArgs};
use tokio::sync::OnceCell;

/// Largest request body passed to a canister (the 2 MiB ingress limit).
const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024;

const NOT_FOUND: &str = "Not found: this is the IC HTTP interface of ic-host serve (/api/v2/status, /api/v{2,3,4}/canister/<id>/{call,query,read_state}); a canister's pages are at http://<canister-id>.localhost:<port>/ or /?canisterId=<canister-id>";

/// The gateway in front of one API endpoint (the server's own URL; tests point it elsewhere).
pub struct Gateway {
    api_url: String,
    client: OnceCell<HttpGatewayClient>,
}

impl Gateway {
    pub fn new(api_url: impl Into<String>) -> Gateway {
        Gateway { api_url: api_url.into(), client: OnceCell::new() }
    }

    /// The client, made on first use: the API must be listening before the root key is fetched.
    async fn client(&self) -> Result<&HttpGatewayClient, String> {
        self.client
            .get_or_try_init(|| async {
                let agent = Agent::builder().with_url(self.api_url.clone()).build().map_err(|e| format!("the gateway's agent: {e}"))?;
                agent.fetch_root_key().await.map_err(|e| format!("the gateway could not fetch the root key from {}: {e}", self.api_url))?;
                HttpGatewayClient::builder().with_agent(agent).build().map_err(|e| format!("the gateway: {e}"))
            })
            .await
    }

    /// Answers `request` with canister `canister_id`'s `http_request`, verified.
    pub async fn serve(&self, canister_id: Principal, request: Request) -> Response {
        let client = match self.client().await {
            Ok(client) => client,
            Err(e) => return text(StatusCode::BAD_GATEWAY, e),
        };
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
            Ok(body) => body,
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, format!("Request bodies are limited to {MAX_REQUEST_BODY} bytes")),
        };
        let canister_request = axum::http::Request::from_parts(parts, body);
        let answer = client.request(HttpGatewayRequestArgs { canister_request, canister_id }).send().await;
        if let Some(error) = &answer.metadata.internal_error {
            eprintln!("ic-host serve: gateway, canister {canister_id}: {error}");
        }
        let (parts, body) = answer.canister_response.into_parts();
        Response::from_parts(parts, Body::new(body))
    }
}

/// What the server answers outside the IC's API routes: a canister's page when the request
/// names a canister (host name, `?canisterId=`, or the `?canisterId=` of the page that asks for
/// its own files), else 404.
pub async fn fallback(gateway: Arc<Gateway>, request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        return text(StatusCode::NOT_FOUND, NOT_FOUND.to_string());
    }
    match canister_of(request.headers(), request.uri()) {
        Some(Ok(id)) => gateway.serve(id, request).await,
        Some(Err(e)) => text(StatusCode::BAD_REQUEST, e),
        None => text(StatusCode::NOT_FOUND, NOT_FOUND.to_string()),
    }
}

/// The canister a gateway request is for: `<id>.localhost` (any port), else the URL's
/// `canisterId`, else the Referer's (a page opened as `/?canisterId=…` loads `/assets/…`).
/// `None` when the request names none; `Err` when it names one that is not a principal.
pub fn canister_of(headers: &HeaderMap, uri: &Uri) -> Option<Result<Principal, String>> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(uri.host());
    if let Some(host) = host {
        let name = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(name, _)| name);
        if let Some(label) = name.strip_suffix(".localhost").filter(|l| !l.is_empty() && !l.contains('.')) {
            return Some(Principal::from_text(label).map_err(|e| format!("The host name {host:?} names no canister: {e}")));
        }
    }
    if let Some(id) = uri.query().and_then(canister_id_param) {
        return Some(Principal::from_text(&id).map_err(|e| format!("canisterId={id:?} is not a canister id: {e}")));
    }
    let referer = headers.get(header::REFERER).and_then(|r| r.to_str().ok())?;
    let query = referer.split_once('?')?.1;
    let id = canister_id_param(query.split('#').next().unwrap_or(query))?;
    Some(Principal::from_text(&id).map_err(|e| format!("The referring page's canisterId={id:?} is not a canister id: {e}")))
}

fn canister_id_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| pair.strip_prefix("canisterId=")).map(str::to_string)
}

fn text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(host: &str, uri: &str, referer: Option<&str>) -> Option<Result<Principal, String>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(r) = referer {
            headers.insert(header::REFERER, HeaderValue::from_str(r).unwrap());
        }
        canister_of(&headers, &uri.parse().unwrap())
    }

    #[test]
    fn the_canister_comes_from_the_host_the_query_or_the_referer() {
        let id = Principal::from_text("lxzze-o7777-77777-aaaaa-cai").unwrap();
        assert_eq!(of("lxzze-o7777-77777-aaaaa-cai.localhost:4943", "/", None), Some(Ok(id)));
        assert_eq!(of("lxzze-o7777-77777-aaaaa-cai.localhost", "/x", None), Some(Ok(id)));
        assert_eq!(of("127.0.0.1:4943", "/?canisterId=lxzze-o7777-77777-aaaaa-cai", None), Some(Ok(id)));
        assert_eq!(of("127.0.0.1:4943", "/?a=1&canisterId=lxzze-o7777-77777-aaaaa-cai&b", None), Some(Ok(id)));
        assert_eq!(of("127.0.0.1:4943", "/assets/a.js", Some("http://127.0.0.1:4943/?canisterId=lxzze-o7777-77777-aaaaa-cai#x")), Some(Ok(id)));
        assert_eq!(of("127.0.0.1:4943", "/", None), None);
        assert_eq!(of("localhost:4943", "/", Some("http://localhost:4943/")), None);
        assert!(matches!(of("nope.localhost:4943", "/", None), Some(Err(_))));
        assert!(matches!(of("127.0.0.1:4943", "/?canisterId=nope", None), Some(Err(_))));
    }
}
