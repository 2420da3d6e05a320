//! The `walsh` command as a client of a walsh canister on the Internet Computer (or a local
//! replica such as `ic-host serve`): identities, networks, canister names, typed calls.

pub mod api;
pub mod client;
pub mod identity;
pub mod network;
