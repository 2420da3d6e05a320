//! The canister serves its page through `http_request` with certified responses: each verifies
//! as an HTTP gateway verifies it (ic-response-verification, v2) against a certificate of the
//! canister's certified data, and a changed body does not.

mod common;

use candid::{Decode, Encode};
use common::Canister;
use ic_host::host::{Response, default_controller};
use ic_host::http::certificate::data_certificate;
use ic_host::http::keys::SubnetKeys;
use ic_http_certification::{HttpRequest, HttpResponse};

/// What a gateway does: the query with a fresh data certificate, then verification.
fn get(c: &mut Canister, keys: &SubnetKeys, url: &str, headers: &[(&str, &str)]) -> (HttpResponse<'static>, Result<u8, String>) {
    let request =
        HttpRequest::get(url).with_headers(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).with_certificate_version(2).build();
    let now = ic_host::replica::now_ns();
    let certificate = data_certificate(keys, c.host.canister_id(), c.host.certified_data(), now);
    let out = c
        .host
        .query_with_certificate("http_request", &Encode!(&request).unwrap(), default_controller(), Some(certificate))
        .expect("http_request runs");
    let Response::Reply(bytes) = out.response else { panic!("http_request was rejected: {:?}", out.response) };
    let response = Decode!(&bytes, HttpResponse<'static>).expect("an HttpResponse");
    let verified = verify(c, keys, request, response.clone(), now);
    (response, verified)
}

fn verify(c: &Canister, keys: &SubnetKeys, request: HttpRequest, response: HttpResponse, now: u64) -> Result<u8, String> {
    ic_response_verification::verify_request_response_pair(
        request,
        response,
        c.host.canister_id().as_slice(),
        now as u128,
        300_000_000_000,
        &keys.root_key_der(),
        2,
    )
    .map(|info| info.verification_version as u8)
    .map_err(|e| e.to_string())
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response.headers().iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[test]
fn the_page_is_served_certified() {
    let mut c = Canister::install();
    let keys = SubnetKeys::random();
    let (index, verified) = get(&mut c, &keys, "/", &[]);
    assert_eq!(verified, Ok(2), "the page verifies with response verification v2");
    assert_eq!(index.status_code().as_u16(), 200);
    assert_eq!(header(&index, "content-type"), Some("text/html; charset=utf-8"));
    assert!(header(&index, "content-security-policy").is_some());
    let html = String::from_utf8(index.body().to_vec()).unwrap();
    assert!(html.contains("<title>Walsh"), "{html}");
    // Any other path is the page too (the app reads its state from the URL), also certified;
    // so is the query string a gateway passes on (`?canisterId=`).
    let (other, verified) = get(&mut c, &keys, "/some/where?canisterId=aaaaa-aa", &[]);
    assert_eq!(verified, Ok(2));
    assert_eq!(other.body(), index.body());
    // Every embedded file, in each encoding it has, verifies.
    for (path, _) in walsh_canister::assets::files().iter().filter(|(p, _)| !p.ends_with(".gz")) {
        let (plain, verified) = get(&mut c, &keys, &format!("/{path}"), &[]);
        assert_eq!(verified, Ok(2), "{path}");
        assert_eq!(header(&plain, "content-encoding"), None, "{path}");
        if walsh_canister::assets::files().iter().any(|(p, _)| *p == format!("{path}.gz")) {
            let (gz, verified) = get(&mut c, &keys, &format!("/{path}"), &[("accept-encoding", "gzip, deflate, br, identity")]);
            assert_eq!(verified, Ok(2), "{path}.gz");
            assert_eq!(header(&gz, "content-encoding"), Some("gzip"), "{path}");
            let mut unzipped = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.body()), &mut unzipped).unwrap();
            assert_eq!(unzipped, plain.body(), "{path}: the gzip twin is the same file");
        }
    }
}

#[test]
fn a_changed_response_does_not_verify() {
    let mut c = Canister::install();
    let keys = SubnetKeys::random();
    let (index, verified) = get(&mut c, &keys, "/", &[]);
    assert_eq!(verified, Ok(2));
    let now = ic_host::replica::now_ns();
    let request = HttpRequest::get("/").with_certificate_version(2).build();
    let mut body = index.body().to_vec();
    body[0] ^= 1;
    let tampered = HttpResponse::builder().with_status_code(index.status_code()).with_headers(index.headers().to_vec()).with_body(body).build();
    assert!(verify(&c, &keys, request.clone(), tampered, now).is_err(), "a changed body verifies");
    let mut headers = index.headers().to_vec();
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-security-policy"));
    let stripped = HttpResponse::builder().with_status_code(index.status_code()).with_headers(headers).with_body(index.body().to_vec()).build();
    assert!(verify(&c, &keys, request.clone(), stripped, now).is_err(), "a dropped security header verifies");
    // Another subnet's key does not certify this canister's data.
    assert!(verify(&c, &SubnetKeys::random(), request, index, now).is_err());
}

#[test]
fn upgrades_keep_the_page_certified() {
    let mut c = Canister::install();
    let keys = SubnetKeys::random();
    c.host.upgrade(common::canister_wasm(), &Encode!().unwrap()).expect("upgrade");
    assert_eq!(get(&mut c, &keys, "/", &[]).1, Ok(2));
}
