//! An embedded Internet Computer host: runs canister wasm locally with the IC's System API,
//! message semantics and instruction accounting, with no replica and no downloads.
//!
//! The layers, each using only those above it:
//! - [`types`]: the shared vocabulary (responses, reject codes, outcomes, configuration, errors).
//! - `message`: message kinds, which System API function each kind may call (one table), the
//!   running message.
//! - `state`: the system state the System API reads and writes, call contexts and calls.
//! - [`ic0`]: the System API functions, one file per group.
//! - `canister`: the engine, compile cache and instance; one execution, committed or rolled back.
//! - `calls`: the call tree of a message (calls to itself, callbacks); `management`: `raw_rand`.
//! - [`host`]: the public API: install, update, query, upgrade, timers, state snapshots.
//!
//! Beside them: [`validate`] (the IC's module checks), [`instrument`] and [`cost`] (instruction
//! metering as the replica instruments modules), [`stable`] (stable memory), [`persist`] (a
//! canister's state between messages and its files on disk).
//!
//! Above the host, the local replica (`ic-host serve`): [`replica`] (a subnet of canisters, the
//! management canister, request statuses, the state directory) and [`http`] over it (the IC's
//! HTTP interface: envelopes, authentication, certificates, endpoints).
//!
//! ```no_run
//! use ic_host::host::{Host, HostConfig, default_controller};
//! let wasm = std::fs::read("canister.wasm")?;
//! let (mut host, _) = Host::install(&wasm, &candid::encode_args(())?, HostConfig::default())?;
//! let out = host.update("inc", &candid::encode_args(())?, default_controller())?;
//! println!("{} instructions", out.instructions);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod calls;
mod canister;
pub mod cost;
pub mod host;
pub mod http;
pub mod ic0;
pub mod instrument;
mod management;
mod message;
pub mod persist;
pub mod replica;
pub mod stable;
mod state;
pub mod types;
pub mod validate;
