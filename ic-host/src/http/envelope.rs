//! Request envelopes: the CBOR body of a `call`, `query` or `read_state` request, decoded into typed
//! fields without ever panicking, and its request id.
//!
//! The body is read by a strict CBOR decoder of our own into a [`serde_cbor::Value`] tree, bounded in
//! nesting and in the number of data items, rejecting truncated input, trailing bytes, text that is
//! not UTF-8, non-text or duplicate map keys. The request id is the representation-independent hash
//! ([`hash_of_map`]) of that *raw* `content` map, so fields this module does not know (`sender_info`,
//! future fields) are hashed exactly as the client hashed them; the typed [`Content`] is read from the
//! same map. The self-describe tag 55799 is optional; other tags are transparent, as they are to the
//! replica's `serde_cbor`, except the bignum tags 2 and 3, which are kept so that they hash as numbers.
//!
//! Limits and texts follow the replica (dfinity/ic): `rs/validator/src/ingress_validation.rs` for
//! nonces, paths and labels; `rs/http_endpoints/public/src/common.rs` for the "Failed to deserialize
//! cbor request: " prefix of decoding errors, which the replica answers with HTTP 400.

use candid::Principal;
use serde_cbor::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Principals are at most 29 bytes (interface specification, "Principals").
pub const MAX_PRINCIPAL_BYTES: usize = 29;
/// The replica's `MAXIMUM_NUMBER_OF_BYTES_IN_NONCE`.
pub const MAX_NONCE_BYTES: usize = 32;
/// The replica's `MAXIMUM_NUMBER_OF_PATHS` of a read_state request.
pub const MAX_PATHS: usize = 1_000;
/// The replica's `MAXIMUM_NUMBER_OF_LABELS_PER_PATH`.
pub const MAX_LABELS_PER_PATH: usize = 127;
/// Nested arrays, maps and tags allowed in a body (not counting the self-describe tag). A delegation's
/// targets, the deepest structure of the specification, sit at depth 5 (envelope, sender_delegation,
/// signed delegation, delegation, targets); the rest is room for future fields.
pub const MAX_NESTING: usize = 8;
/// Data items allowed in a body: more than the largest legitimate body (1 000 paths of 127 labels, or
/// 20 delegations of 1 000 targets), few enough that a hostile body of tiny items stays small in memory.
pub const MAX_ITEMS: usize = 200_000;

const IC_REQUEST_DOMAIN_SEPARATOR: &[u8] = b"\x0Aic-request";

/// The request type an endpoint accepts, from its URL (`…/call`, `…/query`, `…/read_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Call,
    Query,
    ReadState,
}

impl RequestKind {
    /// The `request_type` text of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Call => "call",
            RequestKind::Query => "query",
            RequestKind::ReadState => "read_state",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded request: its content, request id and authentication fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub content: Content,
    pub request_id: RequestId,
    pub sender_pubkey: Option<Vec<u8>>,
    pub sender_sig: Option<Vec<u8>>,
    /// Empty when the field is absent (or null).
    pub sender_delegation: Vec<SignedDelegation>,
}

/// The `content` map of a request, typed. Unknown fields are not kept here, but are part of the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Call {
        canister_id: Principal,
        method_name: String,
        arg: Vec<u8>,
        sender: Principal,
        ingress_expiry: u64,
        nonce: Option<Vec<u8>>,
    },
    Query {
        canister_id: Principal,
        method_name: String,
        arg: Vec<u8>,
        sender: Principal,
        ingress_expiry: u64,
        nonce: Option<Vec<u8>>,
    },
    /// A read_state request's nonce, if any, is checked (at most 32 bytes) and hashed but not kept.
    ReadState {
        paths: Vec<Vec<Vec<u8>>>,
        sender: Principal,
        ingress_expiry: u64,
    },
}

impl Content {
    pub fn sender(&self) -> Principal {
        match self {
            Content::Call { sender, .. } | Content::Query { sender, .. } | Content::ReadState { sender, .. } => *sender,
        }
    }

    pub fn ingress_expiry(&self) -> u64 {
        match self {
            Content::Call { ingress_expiry, .. } | Content::Query { ingress_expiry, .. } | Content::ReadState { ingress_expiry, .. } => {
                *ingress_expiry
            }
        }
    }

    pub fn kind(&self) -> RequestKind {
        match self {
            Content::Call { .. } => RequestKind::Call,
            Content::Query { .. } => RequestKind::Query,
            Content::ReadState { .. } => RequestKind::ReadState,
        }
    }

    /// The `canister_id` of a call or query; `None` for read_state.
    pub fn canister_id(&self) -> Option<Principal> {
        match self {
            Content::Call { canister_id, .. } | Content::Query { canister_id, .. } => Some(*canister_id),
            Content::ReadState { .. } => None,
        }
    }
}

/// A request id: the representation-independent hash of the `content` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub [u8; 32]);

impl RequestId {
    /// What a sender signs: `"\x0Aic-request" ‖ id`.
    pub fn signable(&self) -> Vec<u8> {
        let mut signable = Vec::with_capacity(IC_REQUEST_DOMAIN_SEPARATOR.len() + 32);
        signable.extend_from_slice(IC_REQUEST_DOMAIN_SEPARATOR);
        signable.extend_from_slice(&self.0);
        signable
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Lower-case hex, without a `0x` prefix (as ic-transport-types prints request ids).
impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The `permissions` field of a delegation (newest specification; ic-transport-types 0.48+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DelegationPermissions {
    /// `"queries"`: only query calls and read_state requests.
    Queries,
    /// `"all"`: every request type.
    All,
}

/// One element of `sender_delegation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelegation {
    pub pubkey: Vec<u8>,
    /// Nanoseconds since the epoch.
    pub expiration: u64,
    pub targets: Option<Vec<Principal>>,
    pub permissions: Option<DelegationPermissions>,
    pub signature: Vec<u8>,
    /// [`hash_of_map`] of the raw `delegation` map (what the previous key signed, after
    /// `"\x1Aic-request-auth-delegation"`).
    pub hash: [u8; 32],
}

/// Why a value has no representation-independent hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("a {0} has no representation-independent hash")]
    Unhashable(&'static str),
    #[error("a map key is not a text string")]
    NonTextKey,
}

/// A body that is not a well-formed envelope of the expected kind. The replica answers these with
/// HTTP 400 and a text body ([`EnvelopeError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Malformed or hostile CBOR: truncated, trailing bytes, reserved encodings, not UTF-8, too deep, too many items…
    #[error("Failed to deserialize cbor request: {reason} at byte {offset}")]
    Cbor { offset: usize, reason: &'static str },
    #[error("Failed to deserialize cbor request: missing field `{0}`")]
    MissingField(&'static str),
    #[error("Failed to deserialize cbor request: invalid type of `{field}`, expected {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("Failed to deserialize cbor request: unknown request_type {0:?}, expected `call`, `query` or `read_state`")]
    UnknownRequestType(String),
    #[error("Failed to deserialize cbor request: a `{found}` request was sent to a {expected} endpoint")]
    WrongRequestType { expected: RequestKind, found: RequestKind },
    #[error("Failed to deserialize cbor request: `{field}` is not a principal: {length} bytes, but at most 29 are allowed")]
    PrincipalTooLong { field: &'static str, length: usize },
    #[error("Failed to deserialize cbor request: `{0}` does not fit in 64 bits")]
    IntegerTooLarge(&'static str),
    #[error("Failed to deserialize cbor request: unknown delegation permissions {0:?}, expected `queries` or `all`")]
    UnknownPermissions(String),
    #[error("Failed to deserialize cbor request: the content has no request id: {0}")]
    Unhashable(HashError),
    #[error("Too many paths in read state request: got {length} paths, but at most {maximum} are allowed.")]
    TooManyPaths { length: usize, maximum: usize },
    #[error("At least one path in read state request is too deep: got {length} labels, but at most {maximum} are allowed.")]
    PathTooLong { length: usize, maximum: usize },
    #[error("Nonce in request is too big: got {num_bytes} bytes, but at most {maximum} are allowed.")]
    NonceTooBig { num_bytes: usize, maximum: usize },
}

impl EnvelopeError {
    /// The HTTP status the replica answers with: 400 for every malformed or over-limit request.
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// Decodes an HTTP request body into an envelope of the kind the endpoint expects.
pub fn decode(body: &[u8], expected: RequestKind) -> Result<Envelope, EnvelopeError> {
    let Value::Map(envelope) = decode_value(body)? else { return Err(EnvelopeError::WrongType { field: "envelope", expected: "a map" }) };
    let content = as_map(required(&envelope, "content")?, "content")?;
    let kind = match as_text(required(content, "request_type")?, "content.request_type")? {
        "call" => RequestKind::Call,
        "query" => RequestKind::Query,
        "read_state" => RequestKind::ReadState,
        other => return Err(EnvelopeError::UnknownRequestType(other.chars().take(64).collect())),
    };
    if kind != expected {
        return Err(EnvelopeError::WrongRequestType { expected, found: kind });
    }
    let sender = as_principal(required(content, "sender")?, "content.sender")?;
    let ingress_expiry = as_nat64(required(content, "ingress_expiry")?, "content.ingress_expiry")?;
    let nonce = optional(content, "nonce").map(|v| as_bytes(v, "content.nonce")).transpose()?;
    if let Some(nonce) = nonce
        && nonce.len() > MAX_NONCE_BYTES
    {
        return Err(EnvelopeError::NonceTooBig { num_bytes: nonce.len(), maximum: MAX_NONCE_BYTES });
    }
    let nonce = nonce.map(<[u8]>::to_vec);
    let typed = match kind {
        RequestKind::Call | RequestKind::Query => {
            let canister_id = as_principal(required(content, "canister_id")?, "content.canister_id")?;
            let method_name = as_text(required(content, "method_name")?, "content.method_name")?.to_string();
            let arg = as_bytes(required(content, "arg")?, "content.arg")?.to_vec();
            if kind == RequestKind::Call {
                Content::Call { canister_id, method_name, arg, sender, ingress_expiry, nonce }
            } else {
                Content::Query { canister_id, method_name, arg, sender, ingress_expiry, nonce }
            }
        }
        RequestKind::ReadState => {
            let paths = as_array(required(content, "paths")?, "content.paths")?;
            if paths.len() > MAX_PATHS {
                return Err(EnvelopeError::TooManyPaths { length: paths.len(), maximum: MAX_PATHS });
            }
            let mut typed_paths = Vec::with_capacity(paths.len());
            for path in paths {
                let labels = as_array(path, "content.paths[]")?;
                if labels.len() > MAX_LABELS_PER_PATH {
                    return Err(EnvelopeError::PathTooLong { length: labels.len(), maximum: MAX_LABELS_PER_PATH });
                }
                typed_paths.push(labels.iter().map(|label| as_bytes(label, "content.paths[][]").map(<[u8]>::to_vec)).collect::<Result<Vec<_>, _>>()?);
            }
            Content::ReadState { paths: typed_paths, sender, ingress_expiry }
        }
    };
    let request_id = RequestId(hash_of_map(content).map_err(EnvelopeError::Unhashable)?);
    let sender_pubkey = optional(&envelope, "sender_pubkey").map(|v| as_bytes(v, "sender_pubkey").map(<[u8]>::to_vec)).transpose()?;
    let sender_sig = optional(&envelope, "sender_sig").map(|v| as_bytes(v, "sender_sig").map(<[u8]>::to_vec)).transpose()?;
    let sender_delegation = match optional(&envelope, "sender_delegation") {
        None => Vec::new(),
        Some(v) => as_array(v, "sender_delegation")?.iter().map(signed_delegation).collect::<Result<_, _>>()?,
    };
    Ok(Envelope { content: typed, request_id, sender_pubkey, sender_sig, sender_delegation })
}

fn signed_delegation(value: &Value) -> Result<SignedDelegation, EnvelopeError> {
    let signed = as_map(value, "sender_delegation[]")?;
    let delegation = as_map(required(signed, "delegation")?, "sender_delegation[].delegation")?;
    let signature = as_bytes(required(signed, "signature")?, "sender_delegation[].signature")?.to_vec();
    let pubkey = as_bytes(required(delegation, "pubkey")?, "sender_delegation[].delegation.pubkey")?.to_vec();
    let expiration = as_nat64(required(delegation, "expiration")?, "sender_delegation[].delegation.expiration")?;
    let targets = match optional(delegation, "targets") {
        None => None,
        Some(v) => Some(
            as_array(v, "sender_delegation[].delegation.targets")?
                .iter()
                .map(|t| as_principal(t, "sender_delegation[].delegation.targets[]"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let permissions = match optional(delegation, "permissions").map(|v| as_text(v, "sender_delegation[].delegation.permissions")).transpose()? {
        None => None,
        Some("queries") => Some(DelegationPermissions::Queries),
        Some("all") => Some(DelegationPermissions::All),
        Some(other) => return Err(EnvelopeError::UnknownPermissions(other.chars().take(64).collect())),
    };
    let hash = hash_of_map(delegation).map_err(EnvelopeError::Unhashable)?;
    Ok(SignedDelegation { pubkey, expiration, targets, permissions, signature, hash })
}

/// Looks a field up; a null value counts as absent (serde's `Option` reads null as `None`, and
/// [`hash_of_map`] omits it).
fn optional<'v>(map: &'v BTreeMap<Value, Value>, name: &str) -> Option<&'v Value> {
    map.get(&Value::Text(name.to_string())).filter(|v| !matches!(v, Value::Null))
}

fn required<'v>(map: &'v BTreeMap<Value, Value>, name: &'static str) -> Result<&'v Value, EnvelopeError> {
    optional(map, name).ok_or(EnvelopeError::MissingField(name))
}

fn as_map<'v>(value: &'v Value, field: &'static str) -> Result<&'v BTreeMap<Value, Value>, EnvelopeError> {
    match value {
        Value::Map(map) => Ok(map),
        _ => Err(EnvelopeError::WrongType { field, expected: "a map" }),
    }
}

fn as_array<'v>(value: &'v Value, field: &'static str) -> Result<&'v [Value], EnvelopeError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(EnvelopeError::WrongType { field, expected: "an array" }),
    }
}

fn as_bytes<'v>(value: &'v Value, field: &'static str) -> Result<&'v [u8], EnvelopeError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        _ => Err(EnvelopeError::WrongType { field, expected: "a byte string" }),
    }
}

fn as_text<'v>(value: &'v Value, field: &'static str) -> Result<&'v str, EnvelopeError> {
    match value {
        Value::Text(text) => Ok(text),
        _ => Err(EnvelopeError::WrongType { field, expected: "a text string" }),
    }
}

fn as_principal(value: &Value, field: &'static str) -> Result<Principal, EnvelopeError> {
    let bytes = as_bytes(value, field)?;
    if bytes.len() > MAX_PRINCIPAL_BYTES {
        return Err(EnvelopeError::PrincipalTooLong { field, length: bytes.len() });
    }
    Principal::try_from_slice(bytes).map_err(|_| EnvelopeError::PrincipalTooLong { field, length: bytes.len() })
}

/// A natural number that fits in 64 bits, as an unsigned integer or (non-canonically) a bignum.
fn as_nat64(value: &Value, field: &'static str) -> Result<u64, EnvelopeError> {
    match value {
        Value::Integer(n) if *n >= 0 => u64::try_from(*n).map_err(|_| EnvelopeError::IntegerTooLarge(field)),
        Value::Tag(2, inner) => match inner.as_ref() {
            Value::Bytes(be) => {
                let digits = strip_leading_zeros(be);
                if digits.len() > 8 {
                    return Err(EnvelopeError::IntegerTooLarge(field));
                }
                Ok(digits.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
            }
            _ => Err(EnvelopeError::WrongType { field, expected: "a natural number" }),
        },
        _ => Err(EnvelopeError::WrongType { field, expected: "a natural number" }),
    }
}

fn strip_leading_zeros(be: &[u8]) -> &[u8] {
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    &be[first..]
}

/// Decodes one CBOR data item that spans the whole body, with an optional leading self-describe tag.
pub fn decode_value(body: &[u8]) -> Result<Value, EnvelopeError> {
    let mut reader = Reader { input: body, pos: 0, items: 0 };
    // The self-describe tag 55799, as every client writes it; it does not count as nesting.
    if body.starts_with(&[0xd9, 0xd9, 0xf7]) {
        reader.pos = 3;
    }
    let value = reader.value(0)?;
    if reader.pos != body.len() {
        return Err(reader.error("trailing bytes after the data item"));
    }
    Ok(value)
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
}

const TRUNCATED: &str = "unexpected end of input";

impl<'a> Reader<'a> {
    fn error(&self, reason: &'static str) -> EnvelopeError {
        EnvelopeError::Cbor { offset: self.pos, reason }
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        let byte = *self.input.get(self.pos).ok_or_else(|| self.error(TRUNCATED))?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], EnvelopeError> {
        if len > self.remaining() as u64 {
            return Err(self.error(TRUNCATED));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.input[start..self.pos])
    }

    /// The argument of an initial byte whose additional information is `info` (0..=27).
    fn argument(&mut self, info: u8) -> Result<u64, EnvelopeError> {
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(self.error("reserved or indefinite additional information")),
        };
        Ok(self.take(width)?.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
    }

    /// Whether the next byte is a "break" (and consumes it if so).
    fn at_break(&mut self) -> Result<bool, EnvelopeError> {
        match self.input.get(self.pos) {
            None => Err(self.error(TRUNCATED)),
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// A byte or text string's bytes: definite, or indefinite as definite chunks of the same major type.
    fn string(&mut self, major: u8, info: u8) -> Result<Vec<u8>, EnvelopeError> {
        if info != 31 {
            let len = self.argument(info)?;
            let bytes = self.take(len)?;
            if major == 3 && std::str::from_utf8(bytes).is_err() {
                return Err(self.error("text string is not UTF-8"));
            }
            return Ok(bytes.to_vec());
        }
        let mut out = Vec::new();
        while !self.at_break()? {
            self.count_item()?;
            let initial = self.byte()?;
            if initial >> 5 != major || initial & 0x1f == 31 {
                return Err(self.error("indefinite-length string chunk of the wrong type"));
            }
            let len = self.argument(initial & 0x1f)?;
            let chunk = self.take(len)?;
            if major == 3 && std::str::from_utf8(chunk).is_err() {
                return Err(self.error("text string is not UTF-8"));
            }
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }

    fn count_item(&mut self) -> Result<(), EnvelopeError> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(self.error("too many data items"));
        }
        Ok(())
    }

    /// The length of a definite array or map, or `None` if indefinite; each announced item needs at least `per_item` bytes.
    fn container_len(&mut self, info: u8, per_item: u64) -> Result<Option<u64>, EnvelopeError> {
        if info == 31 {
            return Ok(None);
        }
        let len = self.argument(info)?;
        if len.saturating_mul(per_item) > self.remaining() as u64 {
            return Err(self.error(TRUNCATED));
        }
        Ok(Some(len))
    }

    fn value(&mut self, depth: usize) -> Result<Value, EnvelopeError> {
        self.count_item()?;
        let start = self.pos;
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if (4..=6).contains(&major) && depth >= MAX_NESTING {
            return Err(EnvelopeError::Cbor { offset: start, reason: "nesting too deep" });
        }
        match major {
            0 => Ok(Value::Integer(i128::from(self.argument(info)?))),
            1 => Ok(Value::Integer(-1 - i128::from(self.argument(info)?))),
            2 => Ok(Value::Bytes(self.string(2, info)?)),
            3 => Ok(Value::Text(String::from_utf8(self.string(3, info)?).map_err(|_| self.error("text string is not UTF-8"))?)),
            4 => {
                let len = self.container_len(info, 1)?;
                let mut items = Vec::with_capacity(len.unwrap_or(0) as usize);
                match len {
                    Some(len) => {
                        for _ in 0..len {
                            items.push(self.value(depth + 1)?);
                        }
                    }
                    None => {
                        while !self.at_break()? {
                            items.push(self.value(depth + 1)?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            5 => {
                let len = self.container_len(info, 2)?;
                let mut map = BTreeMap::new();
                let mut read = 0u64;
                loop {
                    match len {
                        Some(len) if read == len => break,
                        None if self.at_break()? => break,
                        _ => {}
                    }
                    let key_at = self.pos;
                    let key = self.value(depth + 1)?;
                    if !matches!(key, Value::Text(_)) {
                        return Err(EnvelopeError::Cbor { offset: key_at, reason: "map key is not a text string" });
                    }
                    let value = self.value(depth + 1)?;
                    if map.insert(key, value).is_some() {
                        return Err(EnvelopeError::Cbor { offset: key_at, reason: "duplicate map key" });
                    }
                    read += 1;
                }
                Ok(Value::Map(map))
            }
            6 => {
                let tag = self.argument(info)?;
                let inner_at = self.pos;
                let inner = self.value(depth + 1)?;
                match tag {
                    2 | 3 if matches!(inner, Value::Bytes(_)) => Ok(Value::Tag(tag, Box::new(inner))),
                    2 | 3 => Err(EnvelopeError::Cbor { offset: inner_at, reason: "bignum tag on a value that is not a byte string" }),
                    _ => Ok(inner),
                }
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 | 23 => Ok(Value::Null),
                25 => {
                    let bits = self.take(2)?;
                    Ok(Value::Float(f16_to_f64(u16::from_be_bytes([bits[0], bits[1]]))))
                }
                26 => {
                    let bits = self.take(4)?;
                    Ok(Value::Float(f64::from(f32::from_be_bytes([bits[0], bits[1], bits[2], bits[3]]))))
                }
                27 => {
                    let bits = self.take(8)?;
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bits);
                    Ok(Value::Float(f64::from_be_bytes(be)))
                }
                31 => Err(self.error("unexpected break")),
                _ => Err(self.error("unsupported simple value")),
            },
        }
    }
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// The representation-independent hash of a map (interface specification, "Representation-independent
/// hashing of structured data"): SHA-256 of the sorted concatenations `H(key) ‖ H(value)`. Keys must be
/// text; null values are omitted, as ic-transport-types omits `None` fields.
pub fn hash_of_map(map: &BTreeMap<Value, Value>) -> Result<[u8; 32], HashError> {
    let mut pairs: Vec<[u8; 64]> = Vec::with_capacity(map.len());
    for (key, value) in map {
        let Value::Text(key) = key else { return Err(HashError::NonTextKey) };
        if matches!(value, Value::Null) {
            continue;
        }
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&Sha256::digest(key.as_bytes()));
        pair[32..].copy_from_slice(&hash_value(value)?);
        pairs.push(pair);
    }
    pairs.sort_unstable();
    let mut hasher = Sha256::new();
    for pair in &pairs {
        hasher.update(pair);
    }
    Ok(hasher.finalize().into())
}

/// The representation-independent hash of one value: blobs as-is, text as UTF-8, natural numbers as
/// ULEB128, negative integers as SLEB128, arrays as the hash of their elements' hashes (nulls omitted),
/// maps by [`hash_of_map`]. Booleans, floats and nulls have none.
pub fn hash_value(value: &Value) -> Result<[u8; 32], HashError> {
    Ok(match value {
        Value::Bytes(bytes) => Sha256::digest(bytes).into(),
        Value::Text(text) => Sha256::digest(text.as_bytes()).into(),
        Value::Integer(n) if *n >= 0 => Sha256::digest(uleb128(&(*n as u128).to_be_bytes())).into(),
        Value::Integer(n) => Sha256::digest(sleb128(*n)).into(),
        Value::Array(items) => {
            let mut hasher = Sha256::new();
            for item in items.iter().filter(|item| !matches!(item, Value::Null)) {
                hasher.update(hash_value(item)?);
            }
            hasher.finalize().into()
        }
        Value::Map(map) => hash_of_map(map)?,
        Value::Tag(2, inner) => match inner.as_ref() {
            Value::Bytes(be) => Sha256::digest(uleb128(be)).into(),
            _ => return Err(HashError::Unhashable("bignum that is not a byte string")),
        },
        Value::Tag(3, inner) => match inner.as_ref() {
            // -1 - n for a big-endian n below 2^127.
            Value::Bytes(be) if strip_leading_zeros(be).len() < 16 || (strip_leading_zeros(be).len() == 16 && strip_leading_zeros(be)[0] < 0x80) => {
                let n = strip_leading_zeros(be).iter().fold(0i128, |n, &b| (n << 8) | i128::from(b));
                Sha256::digest(sleb128(-1 - n)).into()
            }
            _ => return Err(HashError::Unhashable("negative bignum below -2^127")),
        },
        Value::Tag(_, inner) => hash_value(inner)?,
        Value::Null => return Err(HashError::Unhashable("null")),
        Value::Bool(_) => return Err(HashError::Unhashable("boolean")),
        Value::Float(_) => return Err(HashError::Unhashable("floating-point number")),
        _ => return Err(HashError::Unhashable("value of an unknown kind")),
    })
}

/// Shortest unsigned LEB128 of a big-endian natural number of any length.
fn uleb128(be: &[u8]) -> Vec<u8> {
    let digits = strip_leading_zeros(be);
    let bits = digits.len() * 8 - digits.first().map_or(0, |b| b.leading_zeros() as usize);
    let bit = |i: usize| (digits[digits.len() - 1 - i / 8] >> (i % 8)) & 1;
    let groups = bits.div_ceil(7).max(1);
    (0..groups)
        .map(|g| {
            let low = (0..7).filter(|k| g * 7 + k < bits).fold(0u8, |acc, k| acc | (bit(g * 7 + k) << k));
            if g + 1 < groups { low | 0x80 } else { low }
        })
        .collect()
}

/// Shortest signed LEB128.
fn sleb128(mut n: i128) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        let done = (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    /// The interface specification's worked example ("Request ids").
    fn spec_example() -> BTreeMap<Value, Value> {
        BTreeMap::from([
            (text("request_type"), text("call")),
            (text("sender"), Value::Bytes(vec![0x04])),
            (text("ingress_expiry"), Value::Integer(1_685_570_400_000_000_000)),
            (text("canister_id"), Value::Bytes(b"\x00\x00\x00\x00\x00\x00\x04\xD2".to_vec())),
            (text("method_name"), text("hello")),
            (text("arg"), Value::Bytes(b"DIDL\x00\xFD*".to_vec())),
        ])
    }

    #[test]
    fn spec_worked_example() {
        assert_eq!(
            hex::encode(hash_value(&Value::Integer(1_685_570_400_000_000_000)).unwrap()),
            "db8e57abc8cda1525d45fdd2637af091bc1f28b35819a40df71517d1501f2c76"
        );
        assert_eq!(
            hex::encode(hash_value(&Value::Bytes(b"DIDL\x00\xFD*".to_vec())).unwrap()),
            "6c0b2ae49718f6995c02ac5700c9c789d7b7862a0d53e6d40a73f1fcd2f70189"
        );
        assert_eq!(hex::encode(hash_of_map(&spec_example()).unwrap()), "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101");
    }

    #[test]
    fn leb128_examples_of_the_spec() {
        assert_eq!(uleb128(&624_485u32.to_be_bytes()), [0xE5, 0x8E, 0x26]);
        assert_eq!(uleb128(&[0, 0]), [0x00]);
        assert_eq!(uleb128(&[0x7f]), [0x7f]);
        assert_eq!(uleb128(&[0x80]), [0x80, 0x01]);
        assert_eq!(uleb128(&u64::MAX.to_be_bytes()), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(sleb128(-123_456), [0xC0, 0xBB, 0x78]);
        assert_eq!(sleb128(0), [0x00]);
        assert_eq!(sleb128(-1), [0x7f]);
        assert_eq!(sleb128(63), [0x3f]);
        assert_eq!(sleb128(64), [0xc0, 0x00]);
        assert_eq!(sleb128(-64), [0x40]);
        assert_eq!(sleb128(-65), [0xbf, 0x7f]);
    }

    #[test]
    fn a_bignum_hashes_as_the_number_it_encodes() {
        let small = hash_value(&Value::Integer(624_485)).unwrap();
        assert_eq!(hash_value(&Value::Tag(2, Box::new(Value::Bytes(vec![0, 0x09, 0x87, 0x65])))).unwrap(), small);
        let big = u128::from(u64::MAX) + 1;
        assert_eq!(
            hash_value(&Value::Tag(2, Box::new(Value::Bytes(big.to_be_bytes().to_vec())))).unwrap(),
            hash_value(&Value::Integer(big as i128)).unwrap()
        );
        assert_eq!(
            hash_value(&Value::Tag(3, Box::new(Value::Bytes(vec![0x01, 0xe2, 0x3f])))).unwrap(),
            hash_value(&Value::Integer(-123_456)).unwrap()
        );
    }

    #[test]
    fn nulls_are_omitted_and_bools_floats_have_no_hash() {
        let mut with_null = spec_example();
        with_null.insert(text("nonce"), Value::Null);
        assert_eq!(hash_of_map(&with_null).unwrap(), hash_of_map(&spec_example()).unwrap());
        assert_eq!(hash_value(&Value::Bool(true)), Err(HashError::Unhashable("boolean")));
        assert_eq!(hash_value(&Value::Float(1.0)), Err(HashError::Unhashable("floating-point number")));
        assert_eq!(hash_of_map(&BTreeMap::from([(Value::Integer(1), Value::Integer(1))])), Err(HashError::NonTextKey));
    }

    #[test]
    fn the_decoder_reads_what_serde_cbor_writes() {
        let value = Value::Map(BTreeMap::from([
            (
                text("a"),
                Value::Array(vec![Value::Integer(0), Value::Integer(-1), Value::Integer(u64::MAX.into()), Value::Integer(-1 - i128::from(u64::MAX))]),
            ),
            (text("b"), Value::Bytes(vec![7; 300])),
            (text("c"), text("ünïcödé")),
            (text("d"), Value::Map(BTreeMap::from([(text("x"), Value::Null), (text("y"), Value::Bool(true)), (text("z"), Value::Float(1.5))]))),
        ]));
        let bytes = serde_cbor::to_vec(&value).unwrap();
        assert_eq!(decode_value(&bytes).unwrap(), value);
        let mut tagged = vec![0xd9, 0xd9, 0xf7];
        tagged.extend_from_slice(&bytes);
        assert_eq!(decode_value(&tagged).unwrap(), value);
    }

    #[test]
    fn indefinite_lengths_and_half_floats() {
        // {_ "a": [_ 1, 2], "b": (_ h'01', h'02'), "c": (_ "x", "y")} and 1.5 as a half float.
        let body = [
            0xbf, 0x61, b'a', 0x9f, 0x01, 0x02, 0xff, 0x61, b'b', 0x5f, 0x41, 0x01, 0x41, 0x02, 0xff, 0x61, b'c', 0x7f, 0x61, b'x', 0x61, b'y', 0xff,
            0x61, b'd', 0xf9, 0x3e, 0x00, 0xff,
        ];
        let expected = Value::Map(BTreeMap::from([
            (text("a"), Value::Array(vec![Value::Integer(1), Value::Integer(2)])),
            (text("b"), Value::Bytes(vec![1, 2])),
            (text("c"), text("xy")),
            (text("d"), Value::Float(1.5)),
        ]));
        assert_eq!(decode_value(&body).unwrap(), expected);
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    fn reason(body: &[u8]) -> &'static str {
        match decode_value(body) {
            Err(EnvelopeError::Cbor { reason, .. }) => reason,
            other => panic!("expected a CBOR error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_cbor_is_rejected_with_a_reason() {
        assert_eq!(reason(&[]), TRUNCATED);
        assert_eq!(reason(&[0xd9, 0xd9, 0xf7]), TRUNCATED);
        assert_eq!(reason(&[0x5a, 0xff, 0xff, 0xff, 0xff]), TRUNCATED);
        assert_eq!(reason(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), TRUNCATED);
        assert_eq!(reason(&[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]), TRUNCATED);
        assert_eq!(reason(&[0x00, 0x00]), "trailing bytes after the data item");
        assert_eq!(reason(&[0x1c]), "reserved or indefinite additional information");
        assert_eq!(reason(&[0x1f]), "reserved or indefinite additional information");
        assert_eq!(reason(&[0xff]), "unexpected break");
        assert_eq!(reason(&[0xf8, 0x20]), "unsupported simple value");
        assert_eq!(reason(&[0x62, 0xc3, 0x28]), "text string is not UTF-8");
        assert_eq!(reason(&[0x7f, 0x61, 0xc3, 0x61, 0xa9, 0xff]), "text string is not UTF-8");
        assert_eq!(reason(&[0x5f, 0x61, b'x', 0xff]), "indefinite-length string chunk of the wrong type");
        assert_eq!(reason(&[0xa1, 0x01, 0x02]), "map key is not a text string");
        assert_eq!(reason(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]), "duplicate map key");
        assert_eq!(reason(&[0xc2, 0x01]), "bignum tag on a value that is not a byte string");
        assert_eq!(reason(&[0x9f, 0x01]), TRUNCATED);
    }

    #[test]
    fn nesting_and_item_count_are_bounded() {
        let nested = |depth: usize| [vec![0x81; depth], vec![0x00]].concat();
        assert!(decode_value(&nested(MAX_NESTING)).is_ok());
        assert_eq!(reason(&nested(MAX_NESTING + 1)), "nesting too deep");
        assert_eq!(reason(&nested(100_000)), "nesting too deep");
        let tags = [vec![0xc6; MAX_NESTING + 1], vec![0x00]].concat();
        assert_eq!(reason(&tags), "nesting too deep");
        let mut many = vec![0x9a];
        many.extend_from_slice(&(MAX_ITEMS as u32).to_be_bytes());
        many.resize(many.len() + MAX_ITEMS, 0x00);
        assert_eq!(reason(&many), "too many data items");
        many[1..5].copy_from_slice(&(MAX_ITEMS as u32 - 1).to_be_bytes());
        many.pop();
        assert!(decode_value(&many).is_ok());
    }
}
