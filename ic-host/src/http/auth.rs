//! Authentication of a decoded [`Envelope`] as the replica does it (dfinity/ic
//! `rs/validator/src/ingress_validation.rs`): the ingress expiry window, the sender's
//! self-authenticating principal, the sender signature over the request id, and delegation chains
//! (length, expiry, cycles, signatures, targets, permissions).
//!
//! Keys: Ed25519, ECDSA secp256k1 and ECDSA P-256 in SubjectPublicKeyInfo DER (signatures `r ‖ s` over
//! SHA-256 for ECDSA). WebAuthn, canister-signature, RSA and BLS keys are recognised and refused with an
//! "Algorithm not supported" error; any other bytes are a malformed key, never a panic.
//!
//! Error texts are the replica's `RequestValidationError` texts; the replica answers all of them with
//! HTTP 400 and the text as the body (`rs/http_endpoints/public/src/common.rs`,
//! `validation_error_to_http_error`), and agent-js resynchronises its clock on a 4xx body that starts
//! with `Invalid request expiry: `.

use super::envelope::{DelegationPermissions, Envelope, RequestKind};
use candid::Principal;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

const NS_PER_SEC: u64 = 1_000_000_000;
/// The replica's `MAX_INGRESS_TTL` (`rs/limits`): 5 minutes.
pub const MAX_INGRESS_TTL_NS: u64 = 5 * 60 * NS_PER_SEC;
/// The replica's `PERMITTED_DRIFT_AT_VALIDATOR` (`rs/limits`), added to the TTL at the HTTP handler for
/// clients whose clock runs a little ahead: 30 seconds.
pub const PERMITTED_DRIFT_AT_VALIDATOR_NS: u64 = 30 * NS_PER_SEC;
/// The replica's `MAXIMUM_NUMBER_OF_DELEGATIONS` (also the specification's limit).
pub const MAX_DELEGATIONS: usize = 20;
/// The replica's `MAXIMUM_NUMBER_OF_TARGETS_PER_DELEGATION` (also the specification's limit).
pub const MAX_TARGETS_PER_DELEGATION: usize = 1_000;

const IC_REQUEST_AUTH_DELEGATION_DOMAIN_SEPARATOR: &[u8] = b"\x1Aic-request-auth-delegation";

/// Who sent an authenticated request and what its delegations allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub sender: Principal,
    /// The intersection of the targets of all delegations, sorted; `None` if no delegation restricts them.
    /// Already checked against the effective canister id (and a call's or query's `canister_id`); the
    /// server may use it for its own checks (e.g. the canister of a `request_status` path).
    pub targets: Option<Vec<Principal>>,
    /// A delegation has `permissions = "queries"`: only queries and read_state requests are allowed
    /// (calls are already refused).
    pub queries_only: bool,
}

impl Authenticated {
    /// Whether the delegations allow a request to `canister`.
    pub fn allows(&self, canister: &Principal) -> bool {
        self.targets.as_ref().is_none_or(|targets| targets.binary_search(canister).is_ok())
    }
}

/// A public key that is not one this host verifies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Algorithm not supported: {0} public keys are not supported by this local replica (only Ed25519, ECDSA secp256k1 and ECDSA P-256 are)")]
    Unsupported(String),
    #[error("Malformed public key {key}: {reason}")]
    Malformed { key: String, reason: &'static str },
}

/// A signature that does not verify, or whose key does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Invalid public key: {0}")]
    InvalidPublicKey(KeyError),
    #[error("Invalid basic signature: {algorithm} signature could not be verified: public key {public_key}, signature {signature}, error: {reason}")]
    Verification { algorithm: &'static str, public_key: String, signature: String, reason: &'static str },
}

/// A delegation chain that the replica refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    #[error("Chain of delegations is too long: got {length} delegations, but at most {maximum} are allowed.")]
    TooLong { length: usize, maximum: usize },
    #[error("Chain of delegations contains at least one cycle: first repeating public key encountered {}", hex::encode(.public_key))]
    Cycle { public_key: Vec<u8> },
    #[error("Delegation target error: expected at most {maximum} targets per delegation, but got {length}")]
    TooManyTargets { length: usize, maximum: usize },
    #[error(transparent)]
    Signature(SignatureError),
}

/// Why a request is not authenticated. Every variant is answered with HTTP 400 ([`AuthError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The text starts with `Invalid request expiry: `, which agent-js matches to resynchronise its clock.
    #[error("Invalid request expiry: Specified ingress_expiry not within expected range: Minimum allowed expiry: {}, Maximum allowed expiry: {}, Provided expiry:        {}", format_time(*.min), format_time(*.max), format_time(*.provided))]
    Expiry { provided: u64, min: u64, max: u64 },
    #[error("Invalid delegation expiry: Specified sender delegation has expired:\nProvided expiry:    {}\nLocal replica time: {}", format_time(*.expiration), format_time(*.now))]
    DelegationExpired { expiration: u64, now: u64 },
    #[error("The user id '{sender}' does not match the public key '{}'", hex::encode(.public_key))]
    SenderMismatch { sender: Principal, public_key: Vec<u8> },
    #[error("Missing signature from user: {0}")]
    MissingSignature(Principal),
    /// Only one of `sender_pubkey` and `sender_sig`, or delegations without both.
    #[error("Malformed request: missing pubkey or signature: sender_pubkey {}, sender_sig {}, sender_delegation {}", present(*.pubkey), present(*.signature), present(*.delegation))]
    IncompleteSignature { pubkey: bool, signature: bool, delegation: bool },
    #[error("Signature is not allowed for the anonymous user.")]
    AnonymousSignatureNotAllowed,
    #[error("Invalid signature: {0}")]
    InvalidSignature(SignatureError),
    #[error("Invalid delegation: {0}")]
    InvalidDelegation(DelegationError),
    #[error("Canister '{0}' is not one of the delegation targets.")]
    CanisterNotInDelegationTargets(Principal),
    #[error("Invalid delegation: the delegation chain permits only query calls and read_state requests (permissions \"queries\"), not update calls.")]
    UpdateNotPermitted,
}

fn present(yes: bool) -> &'static str {
    if yes { "present" } else { "absent" }
}

impl AuthError {
    /// The HTTP status the replica answers with: 400 for every validation error, including a canister
    /// outside the delegation targets (older replicas answered 403 for all but the expiry errors).
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// Authenticates a request received at `now_ns` (nanoseconds since the epoch) on an endpoint of
/// `effective_canister_id`, in the replica's order: expiry, presence of the signature, sender, delegation
/// chain (length, expiry, cycles, targets, signatures), sender signature, permissions, targets.
///
/// The expiry window is `[now, now + MAX_INGRESS_TTL + PERMITTED_DRIFT_AT_VALIDATOR]`; it applies to every
/// call, and to queries and read_state requests unless the sender is anonymous (the replica's rule).
pub fn authenticate(envelope: &Envelope, now_ns: u64, effective_canister_id: Principal) -> Result<Authenticated, AuthError> {
    let content = &envelope.content;
    let kind = content.kind();
    let sender = content.sender();
    let anonymous = sender == Principal::anonymous();
    if kind == RequestKind::Call || !anonymous {
        let (min, max) = (now_ns, now_ns.saturating_add(MAX_INGRESS_TTL_NS + PERMITTED_DRIFT_AT_VALIDATOR_NS));
        let provided = content.ingress_expiry();
        if !(min..=max).contains(&provided) {
            return Err(AuthError::Expiry { provided, min, max });
        }
    }
    let delegations = &envelope.sender_delegation;
    let (pubkey, signature) = match (&envelope.sender_pubkey, &envelope.sender_sig) {
        (None, None) if delegations.is_empty() => {
            return if anonymous {
                Ok(Authenticated { sender, targets: None, queries_only: false })
            } else {
                Err(AuthError::MissingSignature(sender))
            };
        }
        (Some(pubkey), Some(signature)) => (pubkey, signature),
        (pubkey, signature) => {
            return Err(AuthError::IncompleteSignature {
                pubkey: pubkey.is_some(),
                signature: signature.is_some(),
                delegation: !delegations.is_empty(),
            });
        }
    };
    if anonymous {
        return Err(AuthError::AnonymousSignatureNotAllowed);
    }
    if Principal::self_authenticating(pubkey) != sender {
        return Err(AuthError::SenderMismatch { sender, public_key: pubkey.clone() });
    }
    if delegations.len() > MAX_DELEGATIONS {
        return Err(AuthError::InvalidDelegation(DelegationError::TooLong { length: delegations.len(), maximum: MAX_DELEGATIONS }));
    }
    if let Some(expired) = delegations.iter().find(|d| d.expiration < now_ns) {
        return Err(AuthError::DelegationExpired { expiration: expired.expiration, now: now_ns });
    }
    let mut seen = HashSet::from([pubkey.as_slice()]);
    if let Some(repeated) = delegations.iter().find(|d| !seen.insert(d.pubkey.as_slice())) {
        return Err(AuthError::InvalidDelegation(DelegationError::Cycle { public_key: repeated.pubkey.clone() }));
    }
    if let Some(length) = delegations.iter().filter_map(|d| d.targets.as_ref().map(Vec::len)).find(|&n| n > MAX_TARGETS_PER_DELEGATION) {
        return Err(AuthError::InvalidDelegation(DelegationError::TooManyTargets { length, maximum: MAX_TARGETS_PER_DELEGATION }));
    }
    let mut signer = pubkey.as_slice();
    let mut targets: Option<BTreeSet<Principal>> = None;
    let mut queries_only = false;
    for delegation in delegations {
        let message = [IC_REQUEST_AUTH_DELEGATION_DOMAIN_SEPARATOR, &delegation.hash].concat();
        verify_signature(signer, &message, &delegation.signature).map_err(|e| AuthError::InvalidDelegation(DelegationError::Signature(e)))?;
        if let Some(these) = &delegation.targets {
            let these: BTreeSet<Principal> = these.iter().copied().collect();
            targets = Some(match targets {
                None => these,
                Some(before) => before.intersection(&these).copied().collect(),
            });
        }
        queries_only |= delegation.permissions == Some(DelegationPermissions::Queries);
        signer = &delegation.pubkey;
    }
    verify_signature(signer, &envelope.request_id.signable(), signature).map_err(AuthError::InvalidSignature)?;
    if queries_only && kind == RequestKind::Call {
        return Err(AuthError::UpdateNotPermitted);
    }
    if let Some(targets) = &targets {
        for canister in content.canister_id().into_iter().chain([effective_canister_id]) {
            if !targets.contains(&canister) {
                return Err(AuthError::CanisterNotInDelegationTargets(canister));
            }
        }
    }
    Ok(Authenticated { sender, targets: targets.map(|t| t.into_iter().collect()), queries_only })
}

/// A public key this host verifies signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The raw key: 32 bytes for Ed25519, the uncompressed SEC1 point for ECDSA.
    pub fn raw(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(key) => key.to_bytes().to_vec(),
            PublicKey::Secp256k1(key) => key.to_encoded_point(false).as_bytes().to_vec(),
            PublicKey::P256(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// The replica's `AlgorithmId` name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Secp256k1(_) => "EcdsaSecp256k1",
            PublicKey::P256(_) => "EcdsaP256",
        }
    }
}

// DER contents of the object identifiers of SubjectPublicKeyInfo algorithms and curves.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70]; // 1.3.101.112
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a]; // 1.3.132.0.10
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
const OID_IC_COSE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x01]; // 1.3.6.1.4.1.56387.1.1 (WebAuthn)
const OID_IC_CANISTER_SIGNATURE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x02]; // 1.3.6.1.4.1.56387.1.2
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]; // 1.2.840.113549.1.1.1
const OID_IC_BLS: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03, 0x01, 0x02, 0x01]; // 1.3.6.1.4.1.44668.5.3.1.2.1

/// Parses a DER SubjectPublicKeyInfo (interface specification, "Signatures").
pub fn parse_public_key(der: &[u8]) -> Result<PublicKey, KeyError> {
    let malformed = |reason| KeyError::Malformed { key: hex::encode(der), reason };
    let (spki, rest) = der_element(der, 0x30).ok_or_else(|| malformed("not a DER SubjectPublicKeyInfo"))?;
    let (algorithm, after) = der_element(spki, 0x30).ok_or_else(|| malformed("no algorithm identifier"))?;
    let (bits, after) = der_element(after, 0x03).ok_or_else(|| malformed("no public key bit string"))?;
    if !rest.is_empty() || !after.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    let (oid, parameters) = der_element(algorithm, 0x06).ok_or_else(|| malformed("no algorithm object identifier"))?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(malformed("the bit string has unused bits")),
    };
    match oid {
        OID_ED25519 => {
            let key: &[u8; 32] = key.try_into().map_err(|_| malformed("an Ed25519 key is 32 bytes"))?;
            if !parameters.is_empty() {
                return Err(malformed("an Ed25519 key has no algorithm parameters"));
            }
            ed25519_dalek::VerifyingKey::from_bytes(key).map(PublicKey::Ed25519).map_err(|_| malformed("not a point of Ed25519"))
        }
        OID_EC_PUBLIC_KEY => match der_element(parameters, 0x06) {
            Some((OID_SECP256K1, [])) => {
                k256::ecdsa::VerifyingKey::from_sec1_bytes(key).map(PublicKey::Secp256k1).map_err(|_| malformed("not a point of secp256k1"))
            }
            Some((OID_PRIME256V1, [])) => {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map(PublicKey::P256).map_err(|_| malformed("not a point of P-256"))
            }
            Some((curve, [])) => Err(KeyError::Unsupported(format!("ECDSA on the curve {}", oid_text(curve)))),
            _ => Err(malformed("an ECDSA key names its curve")),
        },
        OID_IC_COSE => Err(KeyError::Unsupported("WebAuthn (COSE)".to_string())),
        OID_IC_CANISTER_SIGNATURE => Err(KeyError::Unsupported("canister signature".to_string())),
        OID_RSA => Err(KeyError::Unsupported("RSA".to_string())),
        OID_IC_BLS => Err(KeyError::Unsupported("BLS12-381".to_string())),
        other => Err(KeyError::Unsupported(format!("algorithm {}", oid_text(other)))),
    }
}

/// Verifies `signature` over `message` with a DER public key: Ed25519, or ECDSA `r ‖ s` over SHA-256
/// (secp256k1 signatures must have a low `s`, as the replica requires; P-256 ones need not, since
/// WebCrypto does not normalise them). The error names the raw key, as the replica's does.
pub fn verify_signature(der_public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    use ed25519_dalek::Verifier as _; // signature 2's trait, shared by k256 and p256
    let key = parse_public_key(der_public_key).map_err(SignatureError::InvalidPublicKey)?;
    let failed = |reason| SignatureError::Verification {
        algorithm: key.algorithm(),
        public_key: hex::encode(key.raw()),
        signature: hex::encode(signature),
        reason,
    };
    match &key {
        PublicKey::Ed25519(key) => {
            let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| failed("an Ed25519 signature is 64 bytes"))?;
            key.verify(message, &signature).map_err(|_| failed("verification failed"))
        }
        PublicKey::Secp256k1(key) => {
            let signature =
                k256::ecdsa::Signature::from_slice(signature).map_err(|_| failed("an ECDSA signature is r ‖ s, 64 bytes, both non-zero"))?;
            key.verify(message, &signature).map_err(|_| failed("verification failed"))
        }
        PublicKey::P256(key) => {
            let signature =
                p256::ecdsa::Signature::from_slice(signature).map_err(|_| failed("an ECDSA signature is r ‖ s, 64 bytes, both non-zero"))?;
            key.verify(message, &signature).map_err(|_| failed("verification failed"))
        }
    }
}

/// One DER element of type `tag` at the start of `input`: its contents and what follows. Definite
/// lengths only, in their shortest form.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0x00..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (len >= 0x80).then_some((usize::from(len), rest))?
        }
        0x82 => {
            let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
            (len >= 0x100).then_some((len, &rest[2..]))?
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Dotted text of a DER object identifier's contents (for error messages).
fn oid_text(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut arc: u64 = 0;
    for &byte in oid.iter().take(32) {
        arc = (arc << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    let mut text = String::new();
    if let Some(&first) = arcs.first() {
        let (a, b) = if first < 80 { (first / 40, first % 40) } else { (2, first - 80) };
        let _ = write!(text, "{a}.{b}");
    }
    for arc in arcs.iter().skip(1) {
        let _ = write!(text, ".{arc}");
    }
    text
}

/// `YYYY-MM-DD hh:mm:ss.nnnnnnnnn UTC` of nanoseconds since the epoch.
fn format_time(ns: u64) -> String {
    let (secs, nanos) = (ns / NS_PER_SEC, ns % NS_PER_SEC);
    let (days, second_of_day) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{nanos:09} UTC", second_of_day / 3_600, second_of_day / 60 % 60, second_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_printed_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000000000 UTC");
        assert_eq!(format_time(1_767_225_600_000_000_000), "2026-01-01 00:00:00.000000000 UTC");
        assert_eq!(format_time(1_685_570_400_123_456_789), "2023-05-31 22:00:00.123456789 UTC");
        assert_eq!(format_time(951_782_400 * NS_PER_SEC), "2000-02-29 00:00:00.000000000 UTC");
        assert_eq!(format_time(u64::MAX), "2554-07-21 23:34:33.709551615 UTC");
    }

    #[test]
    fn object_identifiers_are_printed_dotted() {
        assert_eq!(oid_text(OID_IC_CANISTER_SIGNATURE), "1.3.6.1.4.1.56387.1.2");
        assert_eq!(oid_text(OID_PRIME256V1), "1.2.840.10045.3.1.7");
        assert_eq!(oid_text(OID_IC_BLS), "1.3.6.1.4.1.44668.5.3.1.2.1");
        assert_eq!(oid_text(&[]), "");
    }

    #[test]
    fn der_lengths_must_be_definite_and_shortest() {
        assert_eq!(der_element(&[0x04, 0x01, 0xaa, 0xbb], 0x04), Some((&[0xaa][..], &[0xbb][..])));
        assert_eq!(der_element(&[0x04, 0x81, 0x01, 0xaa], 0x04), None);
        assert_eq!(der_element(&[0x04, 0x80], 0x04), None);
        assert_eq!(der_element(&[0x04, 0x02, 0xaa], 0x04), None);
        assert_eq!(der_element(&[0x04, 0x82, 0x00], 0x04), None);
        assert_eq!(der_element(&[0x05, 0x00], 0x04), None);
        let long = [&[0x04, 0x81, 0x80][..], &[7; 0x80]].concat();
        assert_eq!(der_element(&long, 0x04).map(|(c, r)| (c.len(), r.len())), Some((0x80, 0)));
    }

    #[test]
    fn unknown_and_broken_keys_are_errors_not_panics() {
        for der in
            [&[][..], &[0x30], &[0x30, 0x00], &[0x30, 0x05, 0x30, 0x03, 0x06, 0x01, 0x2a], &[0x30, 0x07, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x00]]
        {
            assert!(matches!(parse_public_key(der), Err(KeyError::Malformed { .. })), "{der:02x?}");
        }
        let ed25519_prefix = hex::decode("302a300506032b6570032100").unwrap();
        assert!(matches!(parse_public_key(&[&ed25519_prefix[..], &[0u8; 31]].concat()), Err(KeyError::Malformed { .. })));
        let spki = |oid: &[u8], key: &[u8]| {
            let algorithm = [&[0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8][..], oid].concat();
            let bits = [&[0x03, key.len() as u8 + 1, 0x00][..], key].concat();
            [&[0x30, (algorithm.len() + bits.len()) as u8][..], &algorithm, &bits].concat()
        };
        assert_eq!(parse_public_key(&spki(OID_IC_CANISTER_SIGNATURE, &[1, 2, 3])), Err(KeyError::Unsupported("canister signature".to_string())));
        assert_eq!(parse_public_key(&spki(OID_IC_COSE, &[1, 2, 3])), Err(KeyError::Unsupported("WebAuthn (COSE)".to_string())));
        assert_eq!(parse_public_key(&spki(&[0x2a, 0x03], &[1])), Err(KeyError::Unsupported("algorithm 1.2.3".to_string())));
        assert!(
            verify_signature(&spki(OID_RSA, &[1]), b"m", &[0; 64])
                .unwrap_err()
                .to_string()
                .starts_with("Invalid public key: Algorithm not supported: RSA public keys")
        );
    }
}
