//! The IC's HTTP interface over the embedded host: what `ic-host serve` answers, so that real
//! clients (icp-cli, agent-js, ic-agent) talk to it as to a replica with their checks on.
//! What the clients send and verify: `../shared/spec/ic-http-interface.md`; the rules followed
//! are the IC interface specification's ("HTTPS Interface").
//!
//! - [`envelope`]: CBOR envelopes of calls, queries and read_state requests, and their request ids.
//! - [`auth`]: sender signatures, delegation chains and the ingress expiry window.
//! - [`keys`]: the subnet's BLS root key and the node's Ed25519 key (persisted).
//! - [`state_tree`]: the certified state tree and read_state path rules.
//! - [`certificate`]: certificates signed by the root key, node signatures of query replies.
//! - [`gateway`]: the HTTP gateway (`<canister-id>.localhost`, `?canisterId=`), verifying.

pub mod auth;
pub mod certificate;
pub mod envelope;
pub mod gateway;
pub mod keys;
pub mod server;
pub mod state_tree;
