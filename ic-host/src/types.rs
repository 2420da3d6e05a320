//! The host's vocabulary, shared by every layer: how a call ended ([`Response`], [`RejectCode`],
//! [`Outcome`]), how a canister is set up ([`HostConfig`], [`Accounting`]) and what can go wrong
//! ([`HostError`]).

use std::sync::atomic::{AtomicU8, Ordering};

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
    /// What the executions paid for memory pages.
    pub pages: PageUse,
    /// `debug_print` output of this call.
    pub log: Vec<String>,
}

/// Memory pages one or more executions touched, and what they paid for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageUse {
    /// Of the instructions, those charged for memory pages: under [`Accounting::Ic2026`] the
    /// first access and first write of each page and the copy of dirty pages after each
    /// execution (not the execution state's base cost of install and upgrade); under
    /// [`Accounting::Ic2025`] the 1 000 per newly written 4 KiB stable page.
    pub instructions: u64,
    /// 64 KiB pages (heap and stable) first accessed in an execution, summed over executions
    /// (2026 accounting).
    pub accessed: u64,
    /// Of those, pages written (whether or not the execution paid for writes).
    pub written: u64,
}

impl std::ops::Add for PageUse {
    type Output = PageUse;
    fn add(self, other: PageUse) -> PageUse {
        PageUse {
            instructions: self.instructions + other.instructions,
            accessed: self.accessed + other.accessed,
            written: self.written + other.written,
        }
    }
}

impl std::ops::AddAssign for PageUse {
    fn add_assign(&mut self, other: PageUse) {
        *self = *self + other;
    }
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

/// How the host charges memory: the IC's rules since mid-2026 (the deterministic memory
/// tracker, the default) or those before (for comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// Per 64 KiB page of the heap or of stable memory: [`crate::cost::pages::FIRST_ACCESS`] on
    /// its first access in a message, [`crate::cost::pages::FIRST_WRITE`] on its first write,
    /// [`crate::cost::pages::COPY`] per dirty page after the message (in the message's
    /// instructions, never seen by `performance_counter`); queries and `inspect_message` pay the
    /// first access only. Creating the execution state on install and upgrade costs
    /// [`crate::cost::pages::EXECUTION_STATE`].
    Ic2026,
    /// Before: 1 000 per stable 4 KiB page a message writes for the first time, nothing for
    /// heap pages (as this host counted until 2026).
    Ic2025,
}

/// The process-wide default (`ic-host --accounting`): 0 for 2026, 1 for 2025, 2 until set (then
/// the environment decides).
static DEFAULT_ACCOUNTING: AtomicU8 = AtomicU8::new(2);

impl Accounting {
    /// Makes `accounting` what [`Accounting::default`] (and so [`HostConfig::default`] and
    /// [`crate::host::Host::from_state`]) gives from now on, in this process.
    pub fn set_default(accounting: Accounting) {
        DEFAULT_ACCOUNTING.store(accounting as u8, Ordering::Relaxed);
    }

    /// The name the command line takes: `ic-2026` or `ic-2025`.
    pub fn name(self) -> &'static str {
        match self {
            Accounting::Ic2026 => "ic-2026",
            Accounting::Ic2025 => "ic-2025",
        }
    }
}

impl std::str::FromStr for Accounting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ic-2026" => Ok(Accounting::Ic2026),
            "ic-2025" => Ok(Accounting::Ic2025),
            other => Err(format!("unknown accounting {other:?} (ic-2026 or ic-2025)")),
        }
    }
}

/// What [`Accounting::set_default`] said; before that, `IC_HOST_ACCOUNTING` (`ic-2025` or
/// `ic-2026`) if set, so that whole test suites can run under either; else [`Accounting::Ic2026`].
impl Default for Accounting {
    fn default() -> Self {
        match DEFAULT_ACCOUNTING.load(Ordering::Relaxed) {
            0 => Accounting::Ic2026,
            1 => Accounting::Ic2025,
            _ => {
                let from_env = match std::env::var("IC_HOST_ACCOUNTING") {
                    Ok(v) => v.parse().unwrap_or_else(|e| panic!("IC_HOST_ACCOUNTING: {e}")),
                    Err(_) => Accounting::Ic2026,
                };
                // A concurrent set_default wins.
                let _ = DEFAULT_ACCOUNTING.compare_exchange(2, from_env as u8, Ordering::Relaxed, Ordering::Relaxed);
                Accounting::default()
            }
        }
    }
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
    /// How memory pages are charged.
    pub accounting: Accounting,
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
            accounting: Accounting::default(),
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
