//! `ic-host serve` against hostile or broken HTTP requests: every one gets the IC's 4xx answer
//! (or 413 for oversized bodies, 404 for unknown paths), never a crash, and the server keeps
//! serving afterwards.

use std::collections::BTreeMap;

use ic_host::http::server::{ServeConfig, start};
use serde_cbor::Value;

fn envelope(content: Vec<(&str, Value)>) -> Vec<u8> {
    let content: BTreeMap<Value, Value> = content.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect();
    let mut outer = BTreeMap::new();
    outer.insert(Value::Text("content".into()), Value::Map(content));
    let mut out = vec![0xd9, 0xd9, 0xf7];
    out.extend(serde_cbor::to_vec(&Value::Map(outer)).unwrap());
    out
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn anonymous_query(canister: &[u8], expiry: u64) -> Vec<u8> {
    anonymous("query", canister, expiry)
}

fn anonymous(request_type: &str, canister: &[u8], expiry: u64) -> Vec<u8> {
    envelope(vec![
        ("request_type", Value::Text(request_type.into())),
        ("canister_id", Value::Bytes(canister.to_vec())),
        ("method_name", Value::Text("greeting".into())),
        ("arg", Value::Bytes(b"DIDL\x00\x00".to_vec())),
        ("sender", Value::Bytes(vec![4])),
        ("ingress_expiry", Value::Integer(expiry as i128)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_answers_and_the_server_keeps_serving() {
    let server = start(ServeConfig { port: 0, state_dir: None, controller: None }).unwrap();
    let client = reqwest::Client::new();
    let canister = ic_host::replica::canister_id_of(0x10_0000);
    let base = format!("{}/api/v3/canister/{}", server.url, canister.to_text());
    let post = |path: &str, body: Vec<u8>| client.post(format!("{base}/{path}")).header("content-type", "application/cbor").body(body).send();

    // Not CBOR, truncated CBOR, CBOR of the wrong shape.
    for body in [b"hello".to_vec(), vec![0xd9, 0xd9, 0xf7, 0xa1], serde_cbor::to_vec(&Value::Array(vec![])).unwrap(), Vec::new()] {
        for path in ["query", "call", "read_state"] {
            let response = post(path, body.clone()).await.unwrap();
            assert_eq!(response.status(), 400, "{path} with {body:?}");
        }
    }

    // An expiry in the past (the replica checks it on every call, and on queries of signed
    // senders): the replica's text, whose prefix agent-js looks for.
    let response = post("call", anonymous("call", canister.as_slice(), 1)).await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("Invalid request expiry: "), "{text}");

    // A query envelope sent to the call endpoint.
    let response = post("call", anonymous_query(canister.as_slice(), now_ns() + 60_000_000_000)).await.unwrap();
    assert_eq!(response.status(), 400);

    // A canister id in the content that is not the URL's.
    let other = ic_host::replica::canister_id_of(0x10_0001);
    let response = post("query", anonymous_query(other.as_slice(), now_ns() + 60_000_000_000)).await.unwrap();
    assert_eq!(response.status(), 400);

    // Oversized bodies are refused before they are read.
    let response = post("call", vec![0u8; ic_host::http::server::MAX_BODY_BYTES + 1]).await.unwrap();
    assert_eq!(response.status(), 413);

    // Unknown paths and a bad principal in the URL.
    assert_eq!(client.get(format!("{}/api/v9/nothing", server.url)).send().await.unwrap().status(), 404);
    let response = client.post(format!("{}/api/v3/canister/not-a-principal/query", server.url)).body(Vec::new()).send().await.unwrap();
    assert_eq!(response.status(), 400);

    // Pages of other origins may call the API (preflight, then the response allows them).
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{base}/call"))
        .header("origin", "http://example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));
    let status = client.get(format!("{}/api/v2/status", server.url)).header("origin", "http://example.org").send().await.unwrap();
    assert_eq!(status.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));

    // Still serving: the status endpoint answers with the root key.
    let status = client.get(format!("{}/api/v2/status", server.url)).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let body = status.bytes().await.unwrap();
    assert!(body.starts_with(&[0xd9, 0xd9, 0xf7]), "status carries the self-describe tag");
    let Value::Map(map) = serde_cbor::from_slice(&body[3..]).unwrap() else { panic!("status is a map") };
    let Some(Value::Bytes(root_key)) = map.get(&Value::Text("root_key".into())) else { panic!("root_key present") };
    assert_eq!(root_key.len(), 133);
    assert_eq!(root_key.as_slice(), server.subnet.keys.root_key_der().as_slice());
}
