//! An embedded Internet Computer host: runs canister wasm locally with the IC's System API,
//! message semantics and instruction accounting, with no replica and no downloads.
//!
//! - [`validate`]: the IC's module checks (imports only from `ic0`, export names, size limits).
//! - [`instrument`] and [`cost`]: instruction metering as the replica instruments modules.
//! - [`system_api`]: the `ic0` functions.
//! - [`host`]: install, update, query, upgrade and timers, with commit and rollback.
//! - [`persist`]: a canister's state between messages and its files on disk.
//!
//! ```no_run
//! use ic_host::host::{Host, HostConfig, default_controller};
//! let wasm = std::fs::read("canister.wasm")?;
//! let (mut host, _) = Host::install(&wasm, &candid::encode_args(())?, HostConfig::default())?;
//! let out = host.update("inc", &candid::encode_args(())?, default_controller())?;
//! println!("{} instructions", out.instructions);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cost;
pub mod host;
pub mod http;
pub mod replica;
pub mod instrument;
pub mod persist;
pub mod stable;
pub mod system_api;
pub mod validate;
