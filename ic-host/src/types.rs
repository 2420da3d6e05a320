//! The host's vocabulary, shared by every layer: how a call ended ([`Response`], [`RejectCode`],
//! [`Outcome`]), how a canister is set up ([`HostConfig`]) and what can go wrong ([`HostError`]).

use candid::Principal;

use crate::instrument::InstrumentError;
use crate::validate::ValidationError;

/// The IC's reject codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
}

/// How a call ended: a reply, or a reject with its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Reply(Vec<u8>),
    Reject { code: RejectCode, message: String },
}

/// The result of one call (an ingress update or query, or a system task).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response: Response,
    /// Instructions of every execution the call needed (the method and any callbacks).
    pub instructions: u64,
    /// DTS slices of 2 B instructions the executions used (at least one per execution).
    pub slices: u64,
    /// `debug_print` output of this call.
    pub log: Vec<String>,
}

impl Outcome {
    pub fn reply(&self) -> Option<&[u8]> {
        match &self.response {
            Response::Reply(r) => Some(r),
            Response::Reject { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("instrumentation failed: {0}")]
    Instrument(#[from] InstrumentError),
    #[error("compiling the module failed: {0}")]
    Compile(String),
    #[error("instantiating the module failed: {0}")]
    Instantiate(String),
    #[error("{method} trapped: {message}")]
    Trapped { method: String, message: String },
    #[error("the canister has no method {0:?}")]
    NoMethod(String),
    /// A [`CanisterState`](crate::persist::CanisterState) that does not fit its own module (globals, heap size).
    #[error("the state does not fit the module: {0}")]
    State(String),
}

pub struct HostConfig {
    pub controllers: Vec<Principal>,
    pub canister_id: Principal,
    /// `wasm_memory_limit` of the canister settings (the IC's default is 3 GiB).
    pub wasm_memory_limit: u64,
    /// Nanoseconds since the epoch at install time.
    pub start_time_ns: u64,
    pub cycles: u128,
    /// Seed of the deterministic `raw_rand` stream.
    pub random_seed: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            controllers: vec![default_controller()],
            canister_id: Principal::from_text("lxzze-o7777-77777-aaaaa-cai").expect("valid principal"),
            wasm_memory_limit: 3 << 30,
            start_time_ns: 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
            cycles: 100_000_000_000_000,
            random_seed: 0,
        }
    }
}

/// The principal that installs canisters unless told otherwise.
pub fn default_controller() -> Principal {
    Principal::self_authenticating(b"ic-host default controller")
}

/// The heap limit of wasm32 (4 GiB).
pub const MAX_WASM_MEMORY: u64 = 4 << 30;

/// The error a host function returns when the instruction budget is spent.
#[derive(Debug)]
pub struct OutOfInstructions;

impl std::fmt::Display for OutOfInstructions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of instructions")
    }
}

impl std::error::Error for OutOfInstructions {}
