//! The HTTP gateway of `ic-host serve` (ic-http-gateway with ic-response-verification): the
//! walsh canister's page at `http://<id>.localhost:PORT/` and `/?canisterId=<id>`, its files
//! through the referring page's `canisterId`, the IC's API still on every host name; and a
//! response whose certification does not verify is refused. The refusal is shown with a lying
//! node: a proxy in front of the server that changes the canister's `http_request` replies and
//! signs them again with the node's own key, so the agent's query-signature check passes and only
//! the certification can tell.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use common::replica::{agent, create_and_install, ed25519, gzip, server};
use ic_host::http::envelope::{self, Content, RequestKind};
use ic_host::http::gateway::Gateway;
use ic_host::http::keys::SubnetKeys;
use ic_host::http::server::{RunningServer, Subnet};

#[derive(CandidType, Deserialize, Clone, Debug)]
struct HttpResponse {
    status_code: u16,
    headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    upgrade: Option<bool>,
}

async fn walsh(server: &RunningServer) -> Principal {
    let admin = agent(&server.url, ed25519(31)).await;
    create_and_install(&admin, &gzip(test_support::canister_wasm()), Encode!(&Option::<()>::None).unwrap()).await
}

fn port(server: &RunningServer) -> u16 {
    server.addr.port()
}

async fn get(client: &reqwest::Client, url: String, headers: &[(&str, String)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_canisters_page_verified() {
    let server = server();
    let id = walsh(&server).await;
    let client = reqwest::Client::new();
    let at_host = format!("{id}.localhost:{}", port(&server));
    // http://<id>.localhost:PORT/ (resolved to the server, as browsers resolve *.localhost).
    let (status, headers, page) = get(&client, format!("{}/", server.url), &[("host", at_host.clone())]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&page));
    assert_eq!(header(&headers, "content-type"), Some("text/html; charset=utf-8"));
    assert!(header(&headers, "content-security-policy").is_some(), "the certified headers are passed on: {headers:?}");
    assert!(String::from_utf8_lossy(&page).contains("<title>Walsh"));
    // /?canisterId=<id> on the API's own host name, and a file the page loads from there.
    let (status, _, same) = get(&client, format!("{}/?canisterId={id}", server.url), &[]).await;
    assert_eq!((status, &same), (200, &page));
    // The page's own files (Vite's `/assets/…`; none in the placeholder page of a canister built
    // without the frontend), through the referring page's canisterId, gzip-encoded when asked.
    let html = String::from_utf8_lossy(&page).into_owned();
    if let Some(start) = html.find("\"/assets/") {
        let file = &html[start + 1..][..html[start + 1..].find('"').unwrap()];
        let referer = format!("{}/?canisterId={id}", server.url);
        let (status, headers, plain) = get(&client, format!("{}{file}", server.url), &[("referer", referer)]).await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(header(&headers, "content-encoding"), None, "{file}");
        let (status, headers, compressed) =
            get(&client, format!("{}{file}", server.url), &[("host", at_host.clone()), ("accept-encoding", "gzip".into())]).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"), "{file}");
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed.as_slice()), &mut unzipped).unwrap();
        assert_eq!(unzipped, plain, "{file}");
    } else {
        eprintln!("note: the canister was built without its page (frontend/dist); only the placeholder was checked");
    }
    // The IC's API stays on every host name (a page's agent calls its own origin).
    let (status, headers, _) = get(&client, format!("{}/api/v2/status", server.url), &[("host", at_host.clone())]).await;
    assert_eq!((status, header(&headers, "content-type")), (200, Some("application/cbor")));
    // No canister named: 404; a name that is no canister id: 400; an unknown canister: 404 from the gateway.
    assert_eq!(get(&client, format!("{}/", server.url), &[]).await.0, 404);
    assert_eq!(get(&client, format!("{}/", server.url), &[("host", "nope.localhost".into())]).await.0, 400);
    let unknown = ic_host::replica::canister_id_of(77);
    assert_eq!(get(&client, format!("{}/?canisterId={unknown}", server.url), &[]).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canister_without_http_request_gets_no_page() {
    let server = server();
    let admin = agent(&server.url, ed25519(32)).await;
    let other = create_and_install(&admin, common::test_canister_wasm(), Encode!(&common::replica::InitArg { greeting: "hi".into() }).unwrap()).await;
    let (status, _, body) = get(&reqwest::Client::new(), format!("{}/?canisterId={other}", server.url), &[]).await;
    assert!(status >= 400, "{status} {}", String::from_utf8_lossy(&body));
}

/// A proxy in front of `api_url` that passes everything on, except that it changes the replies of
/// `http_request` queries with `tamper` and signs them again with the node's key.
async fn lying_node(api_url: String, keys: Arc<Subnet>, tamper: fn(&mut HttpResponse)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, api_url, keys) = (client.clone(), api_url.clone(), keys.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 8 << 20).await.unwrap();
            let mut forward = client.request(parts.method.clone(), format!("{api_url}{}", parts.uri));
            if let Some(ct) = parts.headers.get("content-type") {
                forward = forward.header("content-type", ct.to_str().unwrap());
            }
            let answer = forward.body(body.to_vec()).send().await.unwrap();
            let status = answer.status();
            let mut reply = answer.bytes().await.unwrap().to_vec();
            if parts.uri.path().ends_with("/query")
                && let Ok(request) = envelope::decode(&body, RequestKind::Query)
                && let Content::Query { method_name, .. } = &request.content
                && method_name == "http_request"
            {
                reply = lie(&reply, &request.request_id.0, &keys.keys, tamper);
            }
            Response::builder().status(status).header("content-type", "application/cbor").body(Body::from(reply)).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The query reply `reply` with its HttpResponse changed by `tamper`, signed again.
fn lie(reply: &[u8], request_id: &[u8; 32], keys: &SubnetKeys, tamper: fn(&mut HttpResponse)) -> Vec<u8> {
    let value: serde_cbor::Value = serde_cbor::from_slice(reply).expect("a CBOR query reply");
    let serde_cbor::Value::Map(map) = value else { panic!("a query reply is a map") };
    let arg = map.iter().find_map(|(k, v)| match (k, v) {
        (serde_cbor::Value::Text(k), serde_cbor::Value::Map(reply)) if k == "reply" => reply.iter().find_map(|(k, v)| match (k, v) {
            (serde_cbor::Value::Text(k), serde_cbor::Value::Bytes(arg)) if k == "arg" => Some(arg.clone()),
            _ => None,
        }),
        _ => None,
    });
    let arg = arg.expect("the http_request query was replied");
    let mut response = Decode!(&arg, HttpResponse).expect("an HttpResponse");
    tamper(&mut response);
    ic_host::http::certificate::query_reply(keys, request_id, &Encode!(&response).unwrap(), ic_host::replica::now_ns())
}

async fn through(gateway: &Gateway, id: Principal) -> (u16, String) {
    let request = axum::http::Request::builder().uri("/").header("host", format!("{id}.localhost")).body(Body::empty()).unwrap();
    let response = gateway.serve(id, request).await;
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 8 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_responses_whose_certification_does_not_verify() {
    let server = server();
    let id = walsh(&server).await;
    // The lies are signed with the server's own node key.
    let keys = server.subnet.clone();
    // An honest proxy changes nothing: the page verifies through it.
    let honest = lying_node(server.url.clone(), keys.clone(), |_| {}).await;
    let (status, body) = through(&Gateway::new(honest), id).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<title>Walsh"));
    type Tamper = fn(&mut HttpResponse);
    let cases: [(&str, Tamper); 4] = [
        ("a changed body", |r| r.body = b"<!doctype html><title>Walsh</title><p>Send your keys to the attacker.".to_vec()),
        ("one flipped byte", |r| r.body[0] ^= 0x20),
        ("a dropped IC-Certificate header", |r| r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("ic-certificate"))),
        ("a dropped security header", |r| r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-security-policy"))),
    ];
    for (what, tamper) in cases {
        let liar = lying_node(server.url.clone(), keys.clone(), tamper).await;
        let (status, body) = through(&Gateway::new(liar), id).await;
        assert_eq!(status, 500, "{what}: {body}");
        assert!(body.contains("Response verification failed"), "{what}: {body}");
        assert!(!body.contains("attacker"), "{what}: the lie reached the browser");
    }
}
