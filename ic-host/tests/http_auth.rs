//! Envelope decoding and authentication of requests signed by a real client: ic-agent 0.49's identities
//! (Ed25519, secp256k1, P-256, anonymous, delegated), its `Agent` request builders and its own CBOR
//! serialization, with request ids checked against ic-transport-types' `to_request_id`. The negative
//! cases tamper with those real bodies one field at a time.

use candid::Principal;
use ic_agent::agent::{Envelope as AgentEnvelope, EnvelopeContent};
use ic_agent::identity::{
    AnonymousIdentity, BasicIdentity, DelegatedIdentity, Delegation, DelegationPermissions, Prime256v1Identity, Secp256k1Identity, SenderInfo,
    SignedDelegation,
};
use ic_agent::{Agent, Identity, to_request_id};
use ic_certification::Label;
use ic_host::http::auth::{self, AuthError, Authenticated, DelegationError, KeyError, SignatureError};
use ic_host::http::envelope::{self, Content, EnvelopeError, RequestKind};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_cbor::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MINUTE: u64 = 60_000_000_000;

fn canister() -> Principal {
    Principal::from_text("lxzze-o7777-77777-aaaaa-cai").unwrap()
}

fn other_canister() -> Principal {
    Principal::from_text("rkp4c-7iaaa-aaaaa-aaaca-cai").unwrap()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn ed25519(seed: u8) -> BasicIdentity {
    BasicIdentity::from_raw_key(&[seed; 32])
}

fn secp256k1(seed: u8) -> Secp256k1Identity {
    Secp256k1Identity::from_private_key(k256::SecretKey::from_slice(&[seed; 32]).unwrap())
}

fn p256(seed: u8) -> Prime256v1Identity {
    Prime256v1Identity::from_private_key(p256::SecretKey::from_slice(&[seed; 32]).unwrap())
}

fn agent(identity: impl Identity + 'static) -> Agent {
    Agent::builder().with_url("http://127.0.0.1:4943").with_identity(identity).build().unwrap()
}

/// A call as ic-agent signs it for `/api/v4/canister/<cid>/call` (nonce, 3-minute expiry rounded to the minute).
fn signed_call(agent: &Agent) -> (Vec<u8>, [u8; 32]) {
    let signed = agent.update(&canister(), "greet").with_arg(b"DIDL\x01\x71\x05world".to_vec()).sign().unwrap();
    (signed.signed_update, *signed.request_id)
}

/// The body and the ic-transport-types request id of content signed by `identity`, serialized as ic-agent does.
fn sign(identity: &dyn Identity, content: &EnvelopeContent) -> (Vec<u8>, [u8; 32]) {
    let signature = identity.sign(content).unwrap();
    let envelope = AgentEnvelope {
        content: Cow::Borrowed(content),
        sender_pubkey: signature.public_key,
        sender_sig: signature.signature,
        sender_delegation: signature.delegations,
    };
    (envelope.encode_bytes(), *to_request_id(content).unwrap())
}

fn call_content(sender: Principal, ingress_expiry: u64) -> EnvelopeContent {
    EnvelopeContent::Call {
        nonce: Some(vec![7; 16]),
        ingress_expiry,
        sender,
        canister_id: canister(),
        method_name: "greet".into(),
        arg: b"DIDL\0\0".to_vec(),
        sender_info: None,
    }
}

fn query_content(sender: Principal, ingress_expiry: u64) -> EnvelopeContent {
    EnvelopeContent::Query {
        ingress_expiry,
        sender,
        canister_id: canister(),
        method_name: "hello".into(),
        arg: b"DIDL\0\0".to_vec(),
        nonce: None,
        sender_info: None,
    }
}

fn accept(body: &[u8], kind: RequestKind, expected_id: [u8; 32], now: u64) -> Authenticated {
    let envelope = envelope::decode(body, kind).unwrap();
    assert_eq!(envelope.request_id.0, expected_id, "request id differs from ic-transport-types'");
    auth::authenticate(&envelope, now, canister()).unwrap()
}

fn reject(body: &[u8], kind: RequestKind, now: u64) -> AuthError {
    let envelope = envelope::decode(body, kind).unwrap();
    let error = auth::authenticate(&envelope, now, canister()).unwrap_err();
    assert_eq!(error.http_status(), 400);
    error
}

/// Edits the raw CBOR of a real body (through our decoder, which equals serde_cbor on valid input) and writes it back as ic-agent does.
fn tamper(body: &[u8], edit: impl FnOnce(&mut BTreeMap<Value, Value>)) -> Vec<u8> {
    let Value::Map(mut map) = envelope::decode_value(body).unwrap() else { panic!("not a map") };
    edit(&mut map);
    let mut serializer = serde_cbor::Serializer::new(Vec::new());
    serializer.self_describe().unwrap();
    serde::Serialize::serialize(&Value::Map(map), &mut serializer).unwrap();
    serializer.into_inner()
}

fn key(name: &str) -> Value {
    Value::Text(name.to_string())
}

fn content_of(map: &mut BTreeMap<Value, Value>) -> &mut BTreeMap<Value, Value> {
    match map.get_mut(&key("content")) {
        Some(Value::Map(content)) => content,
        _ => panic!("no content"),
    }
}

#[test]
fn spec_worked_example_through_the_decoder() {
    let content = Value::Map(BTreeMap::from([
        (key("request_type"), key("call")),
        (key("sender"), Value::Bytes(vec![0x04])),
        (key("ingress_expiry"), Value::Integer(1_685_570_400_000_000_000)),
        (key("canister_id"), Value::Bytes(b"\x00\x00\x00\x00\x00\x00\x04\xD2".to_vec())),
        (key("method_name"), key("hello")),
        (key("arg"), Value::Bytes(b"DIDL\x00\xFD*".to_vec())),
    ]));
    let body = serde_cbor::to_vec(&Value::Map(BTreeMap::from([(key("content"), content)]))).unwrap();
    let envelope = envelope::decode(&body, RequestKind::Call).unwrap();
    assert_eq!(envelope.request_id.to_string(), "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101");
    assert_eq!(envelope.request_id.signable()[..11], *b"\x0Aic-request");
    let Content::Call { canister_id, sender, method_name, .. } = &envelope.content else { panic!() };
    assert_eq!((canister_id.as_slice(), *sender, method_name.as_str()), (&b"\x00\x00\x00\x00\x00\x00\x04\xD2"[..], Principal::anonymous(), "hello"));
    // Anonymous: accepted at its expiry, refused a nanosecond later (calls are always expiry-checked).
    let expiry = 1_685_570_400_000_000_000;
    assert_eq!(
        auth::authenticate(&envelope, expiry, canister()).unwrap(),
        Authenticated { sender: Principal::anonymous(), targets: None, queries_only: false }
    );
    assert!(matches!(auth::authenticate(&envelope, expiry + 1, canister()), Err(AuthError::Expiry { .. })));
}

#[test]
fn every_key_kind_signs_calls_queries_and_read_states_that_authenticate() {
    let identities = [
        ("ed25519", agent(ed25519(1)), ed25519(1).sender().unwrap()),
        ("secp256k1", agent(secp256k1(2)), secp256k1(2).sender().unwrap()),
        ("p256", agent(p256(3)), p256(3).sender().unwrap()),
        ("anonymous", agent(AnonymousIdentity), Principal::anonymous()),
    ];
    for (name, agent, sender) in identities {
        let (body, id) = signed_call(&agent);
        assert_eq!(&body[..3], [0xd9, 0xd9, 0xf7], "{name}: ic-agent writes the self-describe tag");
        let envelope = envelope::decode(&body, RequestKind::Call).unwrap();
        assert_eq!(envelope.request_id.0, id, "{name}");
        let Content::Call { nonce, canister_id, .. } = &envelope.content else { panic!("{name}") };
        assert!(nonce.is_some(), "{name}: ic-agent sends a nonce on calls");
        assert_eq!(*canister_id, canister());
        assert_eq!(
            auth::authenticate(&envelope, now_ns(), canister()).unwrap(),
            Authenticated { sender, targets: None, queries_only: false },
            "{name}"
        );

        let query = agent.query(&canister(), "hello").with_arg(b"DIDL\0\0".to_vec()).sign().unwrap();
        let content = EnvelopeContent::Query {
            ingress_expiry: query.ingress_expiry,
            sender: query.sender,
            canister_id: query.canister_id,
            method_name: query.method_name,
            arg: query.arg,
            nonce: query.nonce,
            sender_info: None,
        };
        assert_eq!(accept(&query.signed_query, RequestKind::Query, *to_request_id(&content).unwrap(), now_ns()).sender, sender, "{name}");

        let status = agent.sign_request_status(canister(), ic_agent::RequestId::new(&id)).unwrap();
        let paths = vec![vec![Label::from("request_status"), Label::from(id.to_vec())]];
        let content = EnvelopeContent::ReadState { ingress_expiry: status.ingress_expiry, sender: status.sender, paths };
        let envelope = envelope::decode(&status.signed_request_status, RequestKind::ReadState).unwrap();
        assert_eq!(envelope.request_id.0, *to_request_id(&content).unwrap(), "{name}");
        assert_eq!(
            envelope.content,
            Content::ReadState { paths: vec![vec![b"request_status".to_vec(), id.to_vec()]], sender, ingress_expiry: status.ingress_expiry }
        );
        assert_eq!(auth::authenticate(&envelope, now_ns(), canister()).unwrap().sender, sender, "{name}");
    }
}

/// root (Ed25519) → middle (secp256k1) → leaf (P-256), with targets on the second delegation.
fn chain_of_two(expiration: u64, targets: Option<Vec<Principal>>, permissions: Option<DelegationPermissions>) -> DelegatedIdentity {
    let (root, middle, leaf) = (ed25519(10), secp256k1(11), p256(12));
    let first = Delegation { pubkey: middle.public_key().unwrap(), expiration, targets: None, permissions: None };
    let second = Delegation { pubkey: leaf.public_key().unwrap(), expiration, targets, permissions };
    let chain = vec![
        SignedDelegation { signature: root.sign_delegation(&first).unwrap().signature.unwrap(), delegation: first },
        SignedDelegation { signature: middle.sign_delegation(&second).unwrap().signature.unwrap(), delegation: second },
    ];
    DelegatedIdentity::new(root.public_key().unwrap(), Box::new(leaf), chain).unwrap()
}

#[test]
fn a_delegation_chain_of_two_authenticates_as_its_root() {
    let now = now_ns();
    let root = ed25519(10).sender().unwrap();
    let identity = chain_of_two(now + 60 * MINUTE, Some(vec![other_canister(), canister()]), None);
    assert_eq!(identity.sender().unwrap(), root);
    let (body, id) = signed_call(&agent(identity));
    let envelope = envelope::decode(&body, RequestKind::Call).unwrap();
    assert_eq!(envelope.sender_delegation.len(), 2);
    assert_eq!(envelope.sender_delegation[1].targets, Some(vec![other_canister(), canister()]));
    let authenticated = accept(&body, RequestKind::Call, id, now);
    assert_eq!(authenticated.sender, root);
    let mut sorted = vec![other_canister(), canister()];
    sorted.sort();
    assert_eq!(authenticated.targets, Some(sorted));
    assert!(authenticated.allows(&canister()) && !authenticated.allows(&Principal::anonymous()));
    // The same chain without targets allows every canister.
    let (body, id) = signed_call(&agent(chain_of_two(now + 60 * MINUTE, None, None)));
    assert_eq!(accept(&body, RequestKind::Call, id, now).targets, None);
    // `permissions: "all"` changes nothing but the hash of the delegation.
    let (body, id) = signed_call(&agent(chain_of_two(now + 60 * MINUTE, None, Some(DelegationPermissions::All))));
    assert!(!accept(&body, RequestKind::Call, id, now).queries_only);
}

#[test]
fn a_queries_only_delegation_allows_queries_and_refuses_calls() {
    let now = now_ns();
    let agent = agent(chain_of_two(now + 60 * MINUTE, None, Some(DelegationPermissions::Queries)));
    let (body, _) = signed_call(&agent);
    assert_eq!(reject(&body, RequestKind::Call, now), AuthError::UpdateNotPermitted);
    let query = agent.query(&canister(), "hello").with_arg(b"DIDL\0\0".to_vec()).sign().unwrap();
    let envelope = envelope::decode(&query.signed_query, RequestKind::Query).unwrap();
    assert!(auth::authenticate(&envelope, now, canister()).unwrap().queries_only);
}

#[test]
fn delegation_targets_must_contain_the_canister_and_the_effective_canister_id() {
    let now = now_ns();
    let (body, _) = signed_call(&agent(chain_of_two(now + 60 * MINUTE, Some(vec![other_canister()]), None)));
    let error = reject(&body, RequestKind::Call, now);
    assert_eq!(error, AuthError::CanisterNotInDelegationTargets(canister()));
    assert_eq!(error.to_string(), "Canister 'lxzze-o7777-77777-aaaaa-cai' is not one of the delegation targets.");
    let (body, _) = signed_call(&agent(chain_of_two(now + 60 * MINUTE, Some(vec![canister()]), None)));
    let envelope = envelope::decode(&body, RequestKind::Call).unwrap();
    assert_eq!(auth::authenticate(&envelope, now, other_canister()), Err(AuthError::CanisterNotInDelegationTargets(other_canister())));
    assert!(auth::authenticate(&envelope, now, canister()).is_ok());
}

#[test]
fn an_expired_delegation_is_refused() {
    let now = now_ns();
    let (body, _) = signed_call(&agent(chain_of_two(now - 1, None, None)));
    let error = reject(&body, RequestKind::Call, now);
    assert!(matches!(error, AuthError::DelegationExpired { .. }), "{error:?}");
    assert!(error.to_string().starts_with("Invalid delegation expiry: Specified sender delegation has expired:\nProvided expiry:    "), "{error}");
    // A delegation expiring exactly now is still valid (the replica refuses `expiration < now`).
    let (body, id) = signed_call(&agent(chain_of_two(now, None, None)));
    accept(&body, RequestKind::Call, id, now);
}

/// A chain of `length` Ed25519 delegations, each signed by the previous key.
fn long_chain(length: usize, now: u64) -> DelegatedIdentity {
    let keys: Vec<BasicIdentity> = (0..=length).map(|i| ed25519(100 + i as u8)).collect();
    let leaf = ed25519(100 + length as u8);
    let chain = keys
        .windows(2)
        .map(|pair| {
            let delegation = Delegation { pubkey: pair[1].public_key().unwrap(), expiration: now + 60 * MINUTE, targets: None, permissions: None };
            SignedDelegation { signature: pair[0].sign_delegation(&delegation).unwrap().signature.unwrap(), delegation }
        })
        .collect();
    DelegatedIdentity::new_unchecked(keys[0].public_key().unwrap(), Box::new(leaf), chain)
}

#[test]
fn at_most_twenty_delegations() {
    let now = now_ns();
    let (body, id) = signed_call(&agent(long_chain(20, now)));
    assert_eq!(accept(&body, RequestKind::Call, id, now).sender, ed25519(100).sender().unwrap());
    let (body, _) = signed_call(&agent(long_chain(21, now)));
    let error = reject(&body, RequestKind::Call, now);
    assert_eq!(error, AuthError::InvalidDelegation(DelegationError::TooLong { length: 21, maximum: 20 }));
    assert_eq!(error.to_string(), "Invalid delegation: Chain of delegations is too long: got 21 delegations, but at most 20 are allowed.");
}

#[test]
fn a_cycle_in_the_chain_is_refused() {
    let now = now_ns();
    let (a, b) = (ed25519(30), ed25519(31));
    let to_b = Delegation { pubkey: b.public_key().unwrap(), expiration: now + MINUTE, targets: None, permissions: None };
    let to_a = Delegation { pubkey: a.public_key().unwrap(), expiration: now + MINUTE, targets: None, permissions: None };
    let chain = vec![
        SignedDelegation { signature: a.sign_delegation(&to_b).unwrap().signature.unwrap(), delegation: to_b },
        SignedDelegation { signature: b.sign_delegation(&to_a).unwrap().signature.unwrap(), delegation: to_a },
    ];
    let identity = DelegatedIdentity::new_unchecked(a.public_key().unwrap(), Box::new(ed25519(30)), chain);
    let (body, _) = signed_call(&agent(identity));
    assert_eq!(reject(&body, RequestKind::Call, now), AuthError::InvalidDelegation(DelegationError::Cycle { public_key: a.public_key().unwrap() }));
}

#[test]
fn a_delegation_signed_by_the_wrong_key_is_refused() {
    let now = now_ns();
    let (root, stranger, leaf) = (ed25519(40), ed25519(41), ed25519(42));
    let delegation = Delegation { pubkey: leaf.public_key().unwrap(), expiration: now + MINUTE, targets: None, permissions: None };
    let chain = vec![SignedDelegation { signature: stranger.sign_delegation(&delegation).unwrap().signature.unwrap(), delegation }];
    let (body, _) = signed_call(&agent(DelegatedIdentity::new_unchecked(root.public_key().unwrap(), Box::new(leaf), chain)));
    let error = reject(&body, RequestKind::Call, now);
    assert!(
        matches!(error, AuthError::InvalidDelegation(DelegationError::Signature(SignatureError::Verification { algorithm: "Ed25519", .. }))),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("Invalid delegation: Invalid basic signature: Ed25519 signature could not be verified"), "{error}");
}

#[test]
fn a_tampered_delegation_no_longer_verifies() {
    let now = now_ns();
    let (body, _) = signed_call(&agent(chain_of_two(now + 60 * MINUTE, Some(vec![other_canister()]), None)));
    // Widen the targets of the second delegation to the called canister: its hash, hence its signature, breaks.
    let body = tamper(&body, |map| {
        let Some(Value::Array(delegations)) = map.get_mut(&key("sender_delegation")) else { panic!() };
        let Value::Map(signed) = &mut delegations[1] else { panic!() };
        let Some(Value::Map(delegation)) = signed.get_mut(&key("delegation")) else { panic!() };
        delegation.insert(key("targets"), Value::Array(vec![Value::Bytes(canister().as_slice().to_vec())]));
    });
    let error = reject(&body, RequestKind::Call, now);
    assert!(
        matches!(error, AuthError::InvalidDelegation(DelegationError::Signature(SignatureError::Verification { algorithm: "EcdsaSecp256k1", .. }))),
        "{error:?}"
    );
}

#[test]
fn wrong_key_tampered_arg_and_foreign_sender_are_refused() {
    let now = now_ns();
    for (name, identity) in
        [("ed25519", Box::new(ed25519(1)) as Box<dyn Identity>), ("secp256k1", Box::new(secp256k1(2))), ("p256", Box::new(p256(3)))]
    {
        let (body, _) = sign(identity.as_ref(), &call_content(identity.sender().unwrap(), now + 2 * MINUTE));
        // Tampered arg: the request id changes, the signature no longer matches it.
        let tampered = tamper(&body, |map| {
            content_of(map).insert(key("arg"), Value::Bytes(b"DIDL\0\x01\x7e\x01".to_vec()));
        });
        let error = reject(&tampered, RequestKind::Call, now);
        assert!(matches!(error, AuthError::InvalidSignature(SignatureError::Verification { .. })), "{name}: {error:?}");
        assert!(error.to_string().starts_with("Invalid signature: Invalid basic signature: "), "{name}: {error}");
        assert!(error.to_string().ends_with(", error: verification failed"), "{name}: {error}");
        // Wrong key: another key's DER and principal, with the first key's signature.
        let other = ed25519(99);
        let wrong_key = tamper(&body, |map| {
            map.insert(key("sender_pubkey"), Value::Bytes(other.public_key().unwrap()));
            content_of(map).insert(key("sender"), Value::Bytes(other.sender().unwrap().as_slice().to_vec()));
        });
        assert!(matches!(reject(&wrong_key, RequestKind::Call, now), AuthError::InvalidSignature(SignatureError::Verification { .. })), "{name}");
        // A sender that is not the key's principal.
        let (body, _) = sign(identity.as_ref(), &call_content(ed25519(98).sender().unwrap(), now + 2 * MINUTE));
        let error = reject(&body, RequestKind::Call, now);
        assert!(matches!(error, AuthError::SenderMismatch { .. }), "{name}: {error:?}");
        assert!(
            error.to_string().starts_with(&format!("The user id '{}' does not match the public key '", ed25519(98).sender().unwrap())),
            "{name}: {error}"
        );
    }
}

/// `n - s` for a 32-byte big-endian `s` and group order `n`: the other valid `s` of an ECDSA signature.
fn negate_s(signature: &[u8], order: &str) -> Vec<u8> {
    let n = hex::decode(order).unwrap();
    let (r, s) = signature.split_at(32);
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    [r, &out].concat()
}

#[test]
fn secp256k1_signatures_need_a_low_s_and_p256_ones_do_not() {
    let now = now_ns();
    let cases = [
        (Box::new(secp256k1(2)) as Box<dyn Identity>, "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", false),
        (Box::new(p256(3)), "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", true),
    ];
    for (identity, order, both) in cases {
        let (body, id) = sign(identity.as_ref(), &call_content(identity.sender().unwrap(), now + MINUTE));
        accept(&body, RequestKind::Call, id, now);
        let flipped = tamper(&body, |map| {
            let Some(Value::Bytes(signature)) = map.get_mut(&key("sender_sig")) else { panic!() };
            *signature = negate_s(signature, order);
        });
        let envelope = envelope::decode(&flipped, RequestKind::Call).unwrap();
        let result = auth::authenticate(&envelope, now, canister());
        assert_eq!(result.is_ok(), both, "{result:?}");
        if let Err(error) = result {
            assert!(
                error
                    .to_string()
                    .starts_with("Invalid signature: Invalid basic signature: EcdsaSecp256k1 signature could not be verified: public key 04"),
                "{error}"
            );
        }
    }
}

#[test]
fn our_decoder_reads_real_bodies_as_serde_cbor_does() {
    let now = now_ns();
    let delegated = agent(chain_of_two(now + MINUTE, Some(vec![canister()]), Some(DelegationPermissions::All)));
    let query = agent(p256(3)).query(&canister(), "hello").with_arg(b"DIDL\0\0".to_vec()).sign().unwrap();
    let status = delegated.sign_request_status(canister(), ic_agent::RequestId::new(&[9; 32])).unwrap();
    for body in [signed_call(&delegated).0, query.signed_query, status.signed_request_status] {
        let theirs = match serde_cbor::from_slice::<Value>(&body).unwrap() {
            Value::Tag(55799, inner) => *inner,
            value => value,
        };
        assert_eq!(envelope::decode_value(&body).unwrap(), theirs);
    }
}

#[test]
fn the_expiry_window_is_now_to_five_and_a_half_minutes() {
    let now = 1_767_225_600_000_000_000;
    let identity = secp256k1(2);
    let max = now + 5 * MINUTE + 30_000_000_000;
    for (expiry, ok) in [(now - 1, false), (now, true), (now + 4 * MINUTE, true), (max, true), (max + 1, false), (now + 10 * MINUTE, false)] {
        let (body, id) = sign(&identity, &call_content(identity.sender().unwrap(), expiry));
        if ok {
            accept(&body, RequestKind::Call, id, now);
        } else {
            let error = reject(&body, RequestKind::Call, now);
            assert_eq!(error, AuthError::Expiry { provided: expiry, min: now, max });
            assert!(error.to_string().starts_with("Invalid request expiry: "), "{error}");
        }
    }
    let error = reject(&sign(&identity, &call_content(identity.sender().unwrap(), now - 1)).0, RequestKind::Call, now);
    assert_eq!(
        error.to_string(),
        "Invalid request expiry: Specified ingress_expiry not within expected range: Minimum allowed expiry: 2026-01-01 00:00:00.000000000 UTC, Maximum allowed expiry: 2026-01-01 00:05:30.000000000 UTC, Provided expiry:        2025-12-31 23:59:59.999999999 UTC"
    );
}

#[test]
fn expired_requests_from_a_real_agent() {
    let agent = agent(ed25519(1));
    let past = SystemTime::now() - Duration::from_secs(600);
    let signed = agent.update(&canister(), "greet").with_arg(b"DIDL\0\0".to_vec()).expire_at(past).sign().unwrap();
    assert!(reject(&signed.signed_update, RequestKind::Call, now_ns()).to_string().starts_with("Invalid request expiry: "));
    let signed = agent.update(&canister(), "greet").with_arg(b"DIDL\0\0".to_vec()).expire_after(Duration::from_secs(3600)).sign().unwrap();
    assert!(matches!(reject(&signed.signed_update, RequestKind::Call, now_ns()), AuthError::Expiry { .. }));
    let signed = agent.query(&canister(), "hello").with_arg(b"DIDL\0\0".to_vec()).expire_at(past).sign().unwrap();
    assert!(matches!(reject(&signed.signed_query, RequestKind::Query, now_ns()), AuthError::Expiry { .. }));
}

#[test]
fn anonymous_queries_and_read_states_are_not_expiry_checked_but_calls_are() {
    let now = now_ns();
    let anonymous = Principal::anonymous();
    let (body, id) = sign(&AnonymousIdentity, &query_content(anonymous, now - 60 * MINUTE));
    accept(&body, RequestKind::Query, id, now);
    let read_state = EnvelopeContent::ReadState { ingress_expiry: now + 600 * MINUTE, sender: anonymous, paths: vec![vec![Label::from("time")]] };
    let (body, id) = sign(&AnonymousIdentity, &read_state);
    accept(&body, RequestKind::ReadState, id, now);
    let (body, _) = sign(&AnonymousIdentity, &call_content(anonymous, now - 60 * MINUTE));
    assert!(matches!(reject(&body, RequestKind::Call, now), AuthError::Expiry { .. }));
    // An authenticated query is checked.
    let identity = p256(3);
    let (body, _) = sign(&identity, &query_content(identity.sender().unwrap(), now - MINUTE));
    assert!(matches!(reject(&body, RequestKind::Query, now), AuthError::Expiry { .. }));
}

#[test]
fn signatures_must_be_present_exactly_for_non_anonymous_senders() {
    let now = now_ns();
    let identity = ed25519(1);
    let (body, _) = sign(&identity, &call_content(identity.sender().unwrap(), now + MINUTE));
    let unsigned = tamper(&body, |map| {
        map.remove(&key("sender_pubkey"));
        map.remove(&key("sender_sig"));
    });
    let error = reject(&unsigned, RequestKind::Call, now);
    assert_eq!(error, AuthError::MissingSignature(identity.sender().unwrap()));
    assert_eq!(error.to_string(), format!("Missing signature from user: {}", identity.sender().unwrap()));
    let half = tamper(&body, |map| {
        map.remove(&key("sender_sig"));
    });
    assert_eq!(reject(&half, RequestKind::Call, now), AuthError::IncompleteSignature { pubkey: true, signature: false, delegation: false });
    let anonymous_signed = tamper(&body, |map| {
        content_of(map).insert(key("sender"), Value::Bytes(vec![0x04]));
    });
    let error = reject(&anonymous_signed, RequestKind::Call, now);
    assert_eq!(error, AuthError::AnonymousSignatureNotAllowed);
    assert_eq!(error.to_string(), "Signature is not allowed for the anonymous user.");
}

/// A SubjectPublicKeyInfo with the given algorithm OID contents and key bytes.
fn spki(oid: &[u8], key: &[u8]) -> Vec<u8> {
    let algorithm = [&[0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8][..], oid].concat();
    let bits = [&[0x03, key.len() as u8 + 1, 0x00][..], key].concat();
    [&[0x30, (algorithm.len() + bits.len()) as u8][..], &algorithm, &bits].concat()
}

#[test]
fn unsupported_and_unparseable_keys_are_typed_errors() {
    let now = now_ns();
    let (body, _) = sign(&ed25519(1), &call_content(ed25519(1).sender().unwrap(), now + MINUTE));
    let canister_signature_key = spki(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x02], &[10; 40]);
    let webauthn_key = spki(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x01], &[0xa5; 60]);
    type Check = fn(&KeyError) -> bool;
    let cases: [(Vec<u8>, Check); 4] = [
        (canister_signature_key, |e| *e == KeyError::Unsupported("canister signature".into())),
        (webauthn_key, |e| *e == KeyError::Unsupported("WebAuthn (COSE)".into())),
        (vec![0xde, 0xad, 0xbe, 0xef], |e| matches!(e, KeyError::Malformed { .. })),
        (spki(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], &[4; 65]), |e| matches!(e, KeyError::Malformed { .. })),
    ];
    for (der, expected) in cases {
        let der_c = der.clone();
        let body = tamper(&body, move |map| {
            map.insert(key("sender_pubkey"), Value::Bytes(der_c.clone()));
            content_of(map).insert(key("sender"), Value::Bytes(Principal::self_authenticating(&der_c).as_slice().to_vec()));
        });
        match reject(&body, RequestKind::Call, now) {
            AuthError::InvalidSignature(SignatureError::InvalidPublicKey(key_error)) => {
                assert!(expected(&key_error), "{}: {key_error:?}", hex::encode(&der))
            }
            other => panic!("{}: {other:?}", hex::encode(&der)),
        }
    }
    let body = tamper(&body, |map| {
        let der = spki(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x02], &[10; 40]);
        content_of(map).insert(key("sender"), Value::Bytes(Principal::self_authenticating(&der).as_slice().to_vec()));
        map.insert(key("sender_pubkey"), Value::Bytes(der));
    });
    assert!(
        reject(&body, RequestKind::Call, now)
            .to_string()
            .starts_with("Invalid signature: Invalid public key: Algorithm not supported: canister signature public keys are not supported")
    );
}

#[test]
fn unknown_content_fields_are_part_of_the_request_id() {
    let now = now_ns();
    let identity = secp256k1(2);
    let sender_info = SenderInfo { info: b"some info".to_vec(), signer: canister().as_slice().to_vec(), sig: vec![1, 2, 3] };
    let content = EnvelopeContent::Call {
        nonce: None,
        ingress_expiry: now + MINUTE,
        sender: identity.sender().unwrap(),
        canister_id: canister(),
        method_name: "m".into(),
        arg: vec![],
        sender_info: Some(sender_info),
    };
    let (body, id) = sign(&identity, &content);
    let authenticated = accept(&body, RequestKind::Call, id, now);
    assert_eq!(authenticated.sender, identity.sender().unwrap());
    // Hashing the typed fields alone (what a re-serialized struct would give) is a different id.
    let EnvelopeContent::Call { ingress_expiry, sender, canister_id, method_name, arg, .. } = content else { panic!() };
    let typed = EnvelopeContent::Call { nonce: None, ingress_expiry, sender, canister_id, method_name, arg, sender_info: None };
    assert_ne!(*to_request_id(&typed).unwrap(), id);
}

#[test]
fn the_request_type_must_match_the_endpoint() {
    let now = now_ns();
    let (body, _) = signed_call(&agent(ed25519(1)));
    assert_eq!(
        envelope::decode(&body, RequestKind::Query).unwrap_err(),
        EnvelopeError::WrongRequestType { expected: RequestKind::Query, found: RequestKind::Call }
    );
    assert_eq!(
        envelope::decode(&body, RequestKind::ReadState).unwrap_err(),
        EnvelopeError::WrongRequestType { expected: RequestKind::ReadState, found: RequestKind::Call }
    );
    let (body, _) = sign(&AnonymousIdentity, &query_content(Principal::anonymous(), now));
    assert!(matches!(envelope::decode(&body, RequestKind::Call), Err(EnvelopeError::WrongRequestType { .. })));
    let unknown = tamper(&body, |map| {
        content_of(map).insert(key("request_type"), key("update"));
    });
    assert_eq!(envelope::decode(&unknown, RequestKind::Call).unwrap_err(), EnvelopeError::UnknownRequestType("update".into()));
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let (body, _) = signed_call(&agent(ed25519(1)));
    let decode = |body: &[u8]| envelope::decode(body, RequestKind::Call);
    // Every truncation of a real body is an error, never a panic.
    for len in 0..body.len() {
        assert!(matches!(decode(&body[..len]), Err(EnvelopeError::Cbor { .. })), "truncated at {len}");
    }
    assert!(decode(&[body.as_slice(), &[0x00]].concat()).is_err());
    assert!(matches!(decode(b"garbage, not CBOR at all"), Err(EnvelopeError::Cbor { .. }) | Err(EnvelopeError::WrongType { .. })));
    assert_eq!(
        decode(&serde_cbor::to_vec(&Value::Array(vec![])).unwrap()).unwrap_err(),
        EnvelopeError::WrongType { field: "envelope", expected: "a map" }
    );
    let deep = [vec![0xd9, 0xd9, 0xf7, 0xa1, 0x67], b"content".to_vec(), vec![0x81; 100_000], vec![0x00]].concat();
    assert_eq!(decode(&deep).unwrap_err(), EnvelopeError::Cbor { offset: 3 + 1 + 8 + envelope::MAX_NESTING - 1, reason: "nesting too deep" });
    let edits: Vec<(&str, Value, EnvelopeError)> = vec![
        ("arg", key("text, not bytes"), EnvelopeError::WrongType { field: "content.arg", expected: "a byte string" }),
        ("method_name", Value::Bytes(b"greet".to_vec()), EnvelopeError::WrongType { field: "content.method_name", expected: "a text string" }),
        ("ingress_expiry", Value::Integer(-1), EnvelopeError::WrongType { field: "content.ingress_expiry", expected: "a natural number" }),
        ("ingress_expiry", Value::Float(1e18), EnvelopeError::WrongType { field: "content.ingress_expiry", expected: "a natural number" }),
        ("canister_id", Value::Bytes(vec![1; 30]), EnvelopeError::PrincipalTooLong { field: "content.canister_id", length: 30 }),
        ("sender", Value::Bytes(vec![1; 64]), EnvelopeError::PrincipalTooLong { field: "content.sender", length: 64 }),
        ("nonce", Value::Bytes(vec![0; 33]), EnvelopeError::NonceTooBig { num_bytes: 33, maximum: 32 }),
        ("method_name", Value::Null, EnvelopeError::MissingField("method_name")),
    ];
    for (field, value, expected) in edits {
        let edited = tamper(&body, |map| {
            content_of(map).insert(key(field), value);
        });
        let error = decode(&edited).unwrap_err();
        assert_eq!(error, expected);
        assert_eq!(error.http_status(), 400);
    }
    // Bignums (tag 2): read as natural numbers when they fit in 64 bits.
    let as_bignum = |magnitude: &[u8]| {
        let mut edited = tamper(&body, |map| {
            content_of(map).insert(key("ingress_expiry"), Value::Bytes(magnitude.to_vec()));
        });
        let encoded = [&[0x40 + magnitude.len() as u8][..], magnitude].concat();
        let at = edited.windows(encoded.len()).position(|w| w == encoded).unwrap();
        edited.insert(at, 0xc2);
        edited
    };
    assert_eq!(decode(&as_bignum(&[1, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap_err(), EnvelopeError::IntegerTooLarge("content.ingress_expiry"));
    assert_eq!(decode(&as_bignum(&[0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0])).unwrap().content.ingress_expiry(), 0x1234_5678_9abc_def0);
    let no_content = tamper(&body, |map| {
        map.remove(&key("content"));
    });
    assert_eq!(decode(&no_content).unwrap_err(), EnvelopeError::MissingField("content"));
    let bool_field = tamper(&body, |map| {
        content_of(map).insert(key("future_flag"), Value::Bool(true));
    });
    assert!(matches!(decode(&bool_field), Err(EnvelopeError::Unhashable(_))));
    let bad_delegations = tamper(&body, |map| {
        map.insert(key("sender_delegation"), Value::Array(vec![Value::Map(BTreeMap::from([(key("signature"), Value::Bytes(vec![]))]))]));
    });
    assert_eq!(decode(&bad_delegations).unwrap_err(), EnvelopeError::MissingField("delegation"));
    // Text that is not UTF-8: the method name's bytes patched in place.
    let at = body.windows(6).position(|w| w == b"\x65greet").unwrap();
    let mut not_utf8 = body.clone();
    not_utf8[at + 1] = 0xff;
    assert_eq!(decode(&not_utf8).unwrap_err(), EnvelopeError::Cbor { offset: at + 6, reason: "text string is not UTF-8" });
    // The text of a decoding error, as the replica words it.
    assert!(decode(&body[..10]).unwrap_err().to_string().starts_with("Failed to deserialize cbor request: unexpected end of input at byte "));
}

#[test]
fn read_state_paths_are_bounded() {
    let now = now_ns();
    let anonymous = Principal::anonymous();
    let paths = |count: usize, labels: usize| -> Vec<Vec<Label>> { (0..count).map(|_| (0..labels).map(|_| Label::from("time")).collect()).collect() };
    let content = |count, labels| EnvelopeContent::ReadState { ingress_expiry: now, sender: anonymous, paths: paths(count, labels) };
    for (count, labels, expected) in [
        (1_000, 1, None),
        (1_001, 1, Some(EnvelopeError::TooManyPaths { length: 1_001, maximum: 1_000 })),
        (1, 127, None),
        (2, 128, Some(EnvelopeError::PathTooLong { length: 128, maximum: 127 })),
    ] {
        let (body, id) = sign(&AnonymousIdentity, &content(count, labels));
        match expected {
            None => assert_eq!(envelope::decode(&body, RequestKind::ReadState).unwrap().request_id.0, id),
            Some(expected) => assert_eq!(envelope::decode(&body, RequestKind::ReadState).unwrap_err(), expected),
        }
    }
    let error = envelope::decode(&sign(&AnonymousIdentity, &content(1_001, 0)).0, RequestKind::ReadState).unwrap_err();
    assert_eq!(error.to_string(), "Too many paths in read state request: got 1001 paths, but at most 1000 are allowed.");
}

#[test]
fn random_mutations_of_real_bodies_never_panic() {
    let now = now_ns();
    let delegated = agent(chain_of_two(now + 60 * MINUTE, Some(vec![canister()]), None));
    let status = delegated.sign_request_status(canister(), ic_agent::RequestId::new(&[3; 32])).unwrap();
    let query = agent(secp256k1(2)).query(&canister(), "hello").with_arg(b"DIDL\0\0".to_vec()).sign().unwrap();
    let seeds = [
        (signed_call(&delegated).0, RequestKind::Call),
        (status.signed_request_status, RequestKind::ReadState),
        (query.signed_query, RequestKind::Query),
    ];
    let mut rng = StdRng::seed_from_u64(0x1c_4057);
    let (mut decoded, mut authenticated) = (0, 0);
    for round in 0..6_000 {
        let (seed, kind) = &seeds[round % seeds.len()];
        let mut body = seed.clone();
        for _ in 0..rng.gen_range(1..=4) {
            let at = rng.gen_range(0..body.len());
            match rng.gen_range(0..6) {
                0 => body[at] ^= 1 << rng.gen_range(0..8),
                1 => body[at] = rng.r#gen(),
                2 => body.insert(at, rng.r#gen()),
                3 => {
                    body.remove(at);
                }
                4 => body.truncate(at.max(1)),
                _ => {
                    let end = (at + rng.gen_range(1..16)).min(body.len());
                    let slice = body[at..end].to_vec();
                    body.splice(at..at, slice);
                }
            }
            if body.is_empty() {
                body.push(0);
            }
        }
        for expected in [RequestKind::Call, RequestKind::Query, RequestKind::ReadState] {
            if let Ok(envelope) = envelope::decode(&body, expected) {
                decoded += 1;
                assert_eq!(envelope.content.kind(), expected);
                if auth::authenticate(&envelope, now, canister()).is_ok() {
                    authenticated += 1;
                    assert_eq!(expected, *kind);
                }
            }
        }
    }
    // Some mutations keep the body decodable (a flipped bit in a nonce or a signature); few keep it authentic.
    assert!(decoded > 0, "no mutation decoded");
    assert!(authenticated < decoded, "{authenticated} of {decoded} decoded mutations authenticated");
}
