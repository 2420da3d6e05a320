//! Certificates signed by the subnet's root key, and the response bodies that carry them or the
//! node's signatures (IC interface specification, "Certification" and "The HTTP interface").
//!
//! Every body is CBOR with the self-describe tag, as the replica writes them. A certificate has
//! no delegation: this is a root subnet, whose key is the root key the clients hold.

use candid::Principal;
use ic_certification::HashTree;
use serde::Serialize;

use super::keys::SubnetKeys;
use super::state_tree::{certified_data_tree, tagged_cbor};

/// Domain separator of query response signatures: `domain_sep("ic-response")`.
pub const RESPONSE_DOMAIN: &[u8] = b"\x0Bic-response";

/// A certificate of `tree`: CBOR `{tree, signature}`, the signature BLS over
/// `"\x0Dic-state-root" ‖ digest(tree)` by the root key.
pub fn certificate(keys: &SubnetKeys, tree: HashTree) -> Vec<u8> {
    let signature = keys.sign_root(&tree.digest()).to_vec();
    tagged_cbor(&ic_certification::Certificate { tree, signature, delegation: None })
}

/// The body of a `read_state` response: `{certificate}`.
pub fn read_state_response(keys: &SubnetKeys, tree: HashTree) -> Vec<u8> {
    tagged_cbor(&ic_transport_types::ReadStateResponse { certificate: certificate(keys, tree) })
}

/// The body of a v4/v3 sync call that completed: `{status: "replied", certificate}`, `tree`
/// holding `/request_status/<rid>` (replied or rejected: the clients read the outcome there).
pub fn call_replied(keys: &SubnetKeys, tree: HashTree) -> Vec<u8> {
    tagged_cbor(&ic_transport_types::TransportCallResponse::Replied { certificate: certificate(keys, tree) })
}

#[derive(Serialize)]
struct CallRejected<'a> {
    status: &'static str,
    reject_code: u64,
    reject_message: &'a str,
    error_code: &'a str,
}

#[derive(Serialize)]
struct Reject<'a> {
    reject_code: u64,
    reject_message: &'a str,
    error_code: &'a str,
}

/// The body of a v4/v3 call refused before execution (HTTP 200):
/// `{status: "non_replicated_rejection", reject_code, reject_message, error_code}`.
pub fn call_rejected(reject_code: u64, message: &str, error_code: &str) -> Vec<u8> {
    tagged_cbor(&CallRejected { status: "non_replicated_rejection", reject_code, reject_message: message, error_code })
}

/// The body of a v2 call refused before execution (HTTP 200): `{reject_code, reject_message, error_code}`.
pub fn call_rejected_v2(reject_code: u64, message: &str, error_code: &str) -> Vec<u8> {
    tagged_cbor(&Reject { reject_code, reject_message: message, error_code })
}

#[derive(Serialize)]
struct ReplyArg<'a> {
    #[serde(with = "serde_bytes")]
    arg: &'a [u8],
}

#[derive(Serialize)]
struct NodeSignature<'a> {
    timestamp: u64,
    #[serde(with = "serde_bytes")]
    signature: &'a [u8],
    identity: Principal,
}

#[derive(Serialize)]
struct QueryReplied<'a> {
    status: &'static str,
    reply: ReplyArg<'a>,
    signatures: [NodeSignature<'a>; 1],
}

#[derive(Serialize)]
struct QueryRejected<'a> {
    status: &'static str,
    reject_code: u64,
    reject_message: &'a str,
    error_code: &'a str,
    signatures: [NodeSignature<'a>; 1],
}

// The maps the node signs (IC interface specification, "Request: Query call"), hashed as
// request ids are: the replied one holds `reply: {arg}`.
#[derive(Serialize)]
struct RepliedSignable<'a> {
    status: &'static str,
    reply: ReplyArg<'a>,
    timestamp: u64,
    #[serde(with = "serde_bytes")]
    request_id: &'a [u8; 32],
}

#[derive(Serialize)]
struct RejectedSignable<'a> {
    status: &'static str,
    reject_code: u64,
    reject_message: &'a str,
    error_code: &'a str,
    timestamp: u64,
    #[serde(with = "serde_bytes")]
    request_id: &'a [u8; 32],
}

fn signable<T: Serialize>(map: &T) -> Vec<u8> {
    let hash = ic_transport_types::to_request_id(map).expect("maps of text, blobs and nats always hash");
    [RESPONSE_DOMAIN, hash.as_slice()].concat()
}

/// What the node signs for a query reply: `"\x0Bic-response" ‖ hash_of_map({status: "replied", reply: {arg}, timestamp, request_id})`.
pub fn query_reply_signable(request_id: &[u8; 32], reply: &[u8], timestamp_ns: u64) -> Vec<u8> {
    signable(&RepliedSignable { status: "replied", reply: ReplyArg { arg: reply }, timestamp: timestamp_ns, request_id })
}

/// What the node signs for a query reject: the map `{status: "rejected", reject_code,
/// reject_message, error_code, timestamp, request_id}` (`error_code` always present, as the
/// replica sends it and ic-agent hashes it when present).
pub fn query_reject_signable(request_id: &[u8; 32], reject_code: u64, message: &str, error_code: &str, timestamp_ns: u64) -> Vec<u8> {
    signable(&RejectedSignable { status: "rejected", reject_code, reject_message: message, error_code, timestamp: timestamp_ns, request_id })
}

/// The body of a v3/v2 query reply: `{status: "replied", reply: {arg}, signatures: [{timestamp, signature, identity}]}`,
/// signed by the node at wall-clock `now_ns`.
pub fn query_reply(keys: &SubnetKeys, request_id: &[u8; 32], reply: &[u8], now_ns: u64) -> Vec<u8> {
    let signature = keys.sign_node(&query_reply_signable(request_id, reply, now_ns));
    let signatures = [NodeSignature { timestamp: now_ns, signature: &signature, identity: keys.node_id() }];
    tagged_cbor(&QueryReplied { status: "replied", reply: ReplyArg { arg: reply }, signatures })
}

/// The body of a v3/v2 query reject: `{status: "rejected", reject_code, reject_message, error_code, signatures}`.
pub fn query_reject(keys: &SubnetKeys, request_id: &[u8; 32], reject_code: u64, message: &str, error_code: &str, now_ns: u64) -> Vec<u8> {
    let signature = keys.sign_node(&query_reject_signable(request_id, reject_code, message, error_code, now_ns));
    let signatures = [NodeSignature { timestamp: now_ns, signature: &signature, identity: keys.node_id() }];
    tagged_cbor(&QueryRejected { status: "rejected", reject_code, reject_message: message, error_code, signatures })
}

/// The certificate a canister gets from `ic0.data_certificate_copy` in a query: it certifies
/// `/canister/<canister_id>/certified_data` and `/time`.
pub fn data_certificate(keys: &SubnetKeys, canister_id: Principal, certified_data: &[u8], time_ns: u64) -> Vec<u8> {
    certificate(keys, certified_data_tree(canister_id, certified_data, time_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::LookupResult;
    use ic_transport_types::{
        NodeSignature as ClientNodeSignature, QueryResponse, ReadStateResponse, RejectCode, RejectResponse, ReplyResponse, RequestId,
        TransportCallResponse,
    };

    fn keys() -> SubnetKeys {
        SubnetKeys::random()
    }

    /// Verifies as ic-agent's `Agent::verify_cert` does with no delegation: decode, digest, BLS.
    fn verify(keys: &SubnetKeys, bytes: &[u8]) -> ic_certification::Certificate {
        let cert: ic_certification::Certificate = serde_cbor::from_slice(bytes).expect("a certificate");
        assert!(cert.delegation.is_none());
        let message = [b"\x0Dic-state-root".as_slice(), &cert.tree.digest()].concat();
        ic_verify_bls_signature::verify_bls_signature(&cert.signature, &message, &keys.root_key_der()[37..]).expect("the root key signed it");
        cert
    }

    #[test]
    fn certificates_are_tagged_cbor_signed_by_the_root_key() {
        let keys = keys();
        let c = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
        let bytes = data_certificate(&keys, c, b"data", 42);
        assert_eq!(&bytes[..3], [0xd9, 0xd9, 0xf7]);
        let cert = verify(&keys, &bytes);
        assert_eq!(cert.tree.lookup_path([b"canister".as_slice(), c.as_slice(), b"certified_data"]), LookupResult::Found(b"data"));
        assert_eq!(cert.tree.lookup_path([b"time".as_slice()]), LookupResult::Found(&[42]));
        assert_eq!(cert.signature.len(), 48);
        // Another key's certificate does not verify.
        let other = SubnetKeys::random();
        let cert: ic_certification::Certificate = serde_cbor::from_slice(&data_certificate(&other, c, b"data", 42)).unwrap();
        let message = [b"\x0Dic-state-root".as_slice(), &cert.tree.digest()].concat();
        assert!(ic_verify_bls_signature::verify_bls_signature(&cert.signature, &message, &keys.root_key_raw()).is_err());
    }

    #[test]
    fn read_state_and_call_bodies_decode_as_the_client_types() {
        let keys = keys();
        let tree = certified_data_tree(Principal::anonymous(), b"", 1);
        let body: ReadStateResponse = serde_cbor::from_slice(&read_state_response(&keys, tree.clone())).unwrap();
        verify(&keys, &body.certificate);
        let TransportCallResponse::Replied { certificate } = serde_cbor::from_slice(&call_replied(&keys, tree)).unwrap() else { panic!("replied") };
        verify(&keys, &certificate);
        match serde_cbor::from_slice(&call_rejected(3, "Canister x not found", "IC0301")).unwrap() {
            TransportCallResponse::NonReplicatedRejection(reject) => assert_eq!(
                reject,
                RejectResponse {
                    reject_code: RejectCode::DestinationInvalid,
                    reject_message: "Canister x not found".to_string(),
                    error_code: Some("IC0301".to_string())
                }
            ),
            other => panic!("{other:?}"),
        }
        let reject: RejectResponse = serde_cbor::from_slice(&call_rejected_v2(5, "trapped", "IC0503")).unwrap();
        assert_eq!((reject.reject_code, reject.error_code.as_deref()), (RejectCode::CanisterError, Some("IC0503")));
        let raw: serde_cbor::Value = serde_cbor::from_slice(&call_rejected_v2(5, "trapped", "IC0503")).unwrap();
        let serde_cbor::Value::Map(map) = raw else { panic!("a map") };
        assert!(!map.contains_key(&serde_cbor::Value::Text("status".to_string())), "v2 rejects carry no status");
    }

    fn verify_node_signature(keys: &SubnetKeys, signable: &[u8], signature: &ClientNodeSignature) {
        assert_eq!(signature.identity, keys.node_id());
        let der = keys.node_key_der();
        let key = ed25519_dalek::VerifyingKey::from_bytes(der[12..].try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&signature.signature).unwrap();
        key.verify_strict(signable, &sig).expect("the node signed the client's signable bytes");
    }

    #[test]
    fn query_replies_are_signed_over_the_clients_signable_bytes() {
        let keys = keys();
        let rid = [5u8; 32];
        let body = query_reply(&keys, &rid, b"DIDL\0\x01\x71\x02hi", 1_700_000_000_123_456_789);
        assert_eq!(&body[..3], [0xd9, 0xd9, 0xf7]);
        let response: QueryResponse = serde_cbor::from_slice(&body).unwrap();
        let QueryResponse::Replied { reply: ReplyResponse { arg }, signatures } = &response else { panic!("replied") };
        assert_eq!(arg, b"DIDL\0\x01\x71\x02hi");
        assert_eq!(signatures.len(), 1);
        assert_eq!(signatures[0].timestamp, 1_700_000_000_123_456_789);
        let client_signable = response.signable(RequestId::new(&rid), signatures[0].timestamp);
        assert_eq!(client_signable, query_reply_signable(&rid, arg, signatures[0].timestamp));
        verify_node_signature(&keys, &client_signable, &signatures[0]);
        // Over another request id the signature does not verify.
        let der = keys.node_key_der();
        let key = ed25519_dalek::VerifyingKey::from_bytes(der[12..].try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&signatures[0].signature).unwrap();
        assert!(key.verify_strict(&response.signable(RequestId::new(&[6; 32]), signatures[0].timestamp), &sig).is_err());
    }

    #[test]
    fn query_rejects_are_signed_with_the_error_code() {
        let keys = keys();
        let rid = [7u8; 32];
        let body = query_reject(&keys, &rid, 5, "Canister trapped", "IC0503", 99);
        let response: QueryResponse = serde_cbor::from_slice(&body).unwrap();
        let QueryResponse::Rejected { reject, signatures } = &response else { panic!("rejected") };
        assert_eq!(
            reject,
            &RejectResponse {
                reject_code: RejectCode::CanisterError,
                reject_message: "Canister trapped".to_string(),
                error_code: Some("IC0503".to_string())
            }
        );
        let client_signable = response.signable(RequestId::new(&rid), 99);
        assert_eq!(client_signable, query_reject_signable(&rid, 5, "Canister trapped", "IC0503", 99));
        verify_node_signature(&keys, &client_signable, &signatures[0]);
        // The client's bytes without the error code differ: the error code is signed.
        let without = QueryResponse::Rejected { reject: RejectResponse { error_code: None, ..reject.clone() }, signatures: vec![] };
        assert_ne!(without.signable(RequestId::new(&rid), 99), client_signable);
    }

    #[test]
    fn the_signable_hash_is_the_representation_independent_hash() {
        // hash_of_map by hand (IC interface specification, "Representation-independent hashing").
        use sha2::{Digest, Sha256};
        let h = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        let rid = [1u8; 32];
        let arg_map = h(&[h(b"arg"), h(b"xy")].concat());
        let mut pairs = [
            [h(b"status"), h(b"replied")].concat(),
            [h(b"reply"), arg_map].concat(),
            [h(b"timestamp"), h(&crate::http::state_tree::uleb128(300))].concat(),
            [h(b"request_id"), h(&rid)].concat(),
        ];
        pairs.sort();
        let expected = [RESPONSE_DOMAIN, &h(&pairs.concat())].concat();
        assert_eq!(query_reply_signable(&rid, b"xy", 300), expected);
    }

    #[test]
    fn reject_codes_outside_the_clients_enum_still_encode() {
        let keys = keys();
        let body = query_reject(&keys, &[0; 32], 6, "unknown", "IC0000", 1);
        let raw: serde_cbor::Value = serde_cbor::from_slice(&body).unwrap();
        let serde_cbor::Value::Map(map) = raw else { panic!("a map") };
        assert_eq!(map.get(&serde_cbor::Value::Text("reject_code".to_string())), Some(&serde_cbor::Value::Integer(6)));
    }
}
