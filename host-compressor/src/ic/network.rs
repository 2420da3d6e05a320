//! Which network `walsh` talks to, the agent for it, which canister a name means, and the
//! client's errors in one line each.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use candid::Principal;
use ic_agent::{Agent, AgentError};

use super::identity::LoadedIdentity;

/// Where `--network local` points: the port `ic-host serve` is started on in this project's README
/// (and dfx's default). Another port: pass the URL.
pub const LOCAL_URL: &str = "http://127.0.0.1:4943";
pub const MAINNET_URL: &str = "https://icp-api.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub url: String,
    /// `local`, `ic`, or the URL: the environment whose canister ids a name is looked up in.
    pub name: String,
    pub mainnet: bool,
}

impl Network {
    /// `local`, `ic`, or a URL (`http://127.0.0.1:4943`). Only the IC's own key is trusted without
    /// asking: every other network's root key is fetched from it.
    pub fn parse(text: &str) -> Result<Network> {
        match text {
            "local" => Ok(Network { url: LOCAL_URL.into(), name: "local".into(), mainnet: false }),
            "ic" | "mainnet" => Ok(Network { url: MAINNET_URL.into(), name: "ic".into(), mainnet: true }),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                let mainnet = ["https://icp-api.io", "https://ic0.app", "https://icp0.io"].iter().any(|m| url.trim_end_matches('/') == *m);
                Ok(Network { url: url.trim_end_matches('/').to_string(), name: if mainnet { "ic".into() } else { "local".into() }, mainnet })
            }
            other => bail!("--network takes local, ic or a URL (http://HOST:PORT), not {other:?}"),
        }
    }
}

/// An agent for `network` acting as `identity`; off the mainnet the root key is fetched (as
/// icp-cli's `root-key: fetch` and dfx do for local networks).
pub async fn connect(network: &Network, identity: &LoadedIdentity) -> Result<Agent> {
    let agent = Agent::builder()
        .with_url(network.url.as_str())
        .with_arc_identity(identity.identity.clone())
        // Ingress expiry as icp-cli sets it; long DTS updates are answered by polling.
        .with_ingress_expiry(std::time::Duration::from_secs(4 * 60))
        .build()
        .map_err(|e| anyhow!("cannot use the network {}: {}", network.url, one_line(&e.to_string())))?;
    if !network.mainnet {
        agent.fetch_root_key().await.map_err(|e| unreachable_or(network, e))?;
    }
    Ok(agent)
}

fn unreachable_or(network: &Network, e: AgentError) -> anyhow::Error {
    match e {
        AgentError::TransportError(t) => anyhow!("cannot reach the network at {}: {}", network.url, one_line(&transport(&t))),
        other => anyhow!("the network at {} answered badly: {}", network.url, one_line(&other.to_string())),
    }
}

fn transport(t: &ic_agent::agent::agent_error::TransportError) -> String {
    match t {
        ic_agent::agent::agent_error::TransportError::Reqwest(e) => root_cause(e),
        other => other.to_string(),
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An agent error of a call to `method` on the walsh canister `canister`, in one line that says
/// what went wrong in the user's terms.
pub fn describe(network: &Network, canister: &Principal, method: &str, e: AgentError) -> anyhow::Error {
    match e {
        AgentError::CertifiedReject { reject, .. } | AgentError::UncertifiedReject { reject, .. } => {
            let message = one_line(&reject.reject_message);
            match reject.error_code.as_deref() {
                Some("IC0301") => anyhow!("no canister {canister} on {}", network.url),
                Some("IC0536") => {
                    anyhow!("canister {canister} does not have the walsh interface (it has no method {method}): is it the walsh canister?")
                }
                Some("IC0537") => anyhow!("canister {canister} is empty (no code installed): deploy the walsh canister first (icp deploy)"),
                Some("IC0508" | "IC0509") => anyhow!("canister {canister} is stopped or stopping: start it (icp canister start)"),
                Some("IC0207") => anyhow!("canister {canister} is out of cycles: top it up ({message})"),
                Some("IC0502" | "IC0503") => anyhow!("canister {canister} trapped in {method}: {message}"),
                Some("IC0406") => anyhow!("canister {canister} refused {method}: {message}"),
                code => anyhow!("{method} on {canister} was rejected ({}): {message}", code.unwrap_or("no error code")),
            }
        }
        AgentError::TransportError(t) => anyhow!("cannot reach the network at {}: {}", network.url, one_line(&transport(&t))),
        AgentError::HttpError(payload) => {
            let body = one_line(&String::from_utf8_lossy(&payload.content));
            if payload.status == 400 && body.to_lowercase().contains("canister") && body.to_lowercase().contains("not found") {
                anyhow!("no canister {canister} on {}", network.url)
            } else {
                anyhow!("{method} on {canister}: HTTP {} from {}: {body}", payload.status, network.url)
            }
        }
        // A query answered by a subnet whose canister ranges do not hold the id.
        AgentError::CertificateNotAuthorized() => {
            anyhow!("no canister {canister} on {} (the id is outside the ranges of the subnet that answered)", network.url)
        }
        AgentError::TimeoutWaitingForResponse() => {
            anyhow!("{method} on {canister}: no answer from {} in time (the call may still complete)", network.url)
        }
        other => anyhow!("{method} on {canister}: {}", one_line(&other.to_string())),
    }
}

/// The canister `text` means: a principal, or a canister name looked up in the project's id files
/// (icp-cli's `.icp/{data,cache}/mappings/ENV.ids.json`, dfx's `canister_ids.json` and
/// `.dfx/NETWORK/canister_ids.json`), searched from the current directory upwards.
pub fn resolve_canister(text: &str, network: &Network) -> Result<Principal> {
    if let Ok(id) = Principal::from_text(text) {
        return Ok(id);
    }
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    for dir in start.ancestors() {
        if let Some(id) = lookup_in(dir, text, &network.name)? {
            return Ok(id);
        }
    }
    bail!(
        "--canister {text:?} is neither a canister id nor a canister name deployed to the {} environment of an icp-cli or dfx project here (looked for .icp/data/mappings/{}.ids.json, canister_ids.json, .dfx/{}/canister_ids.json)",
        network.name,
        network.name,
        network.name
    )
}

fn lookup_in(dir: &Path, name: &str, env: &str) -> Result<Option<Principal>> {
    let read = |path: PathBuf| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(path).ok()?).ok() };
    let parse = |id: &str, file: &Path| Principal::from_text(id).map_err(|e| anyhow!("{}: {name} has a bad id {id:?}: {e}", file.display()));
    for kind in ["data", "cache"] {
        let file = dir.join(".icp").join(kind).join("mappings").join(format!("{env}.ids.json"));
        if let Some(id) = read(file.clone()).and_then(|v| v[name].as_str().map(str::to_string)) {
            return parse(&id, &file).map(Some);
        }
    }
    let dfx_network = if env == "ic" { "ic" } else { "local" };
    let dfx_files = [dir.join("canister_ids.json"), dir.join(".dfx").join(dfx_network).join("canister_ids.json")];
    for file in dfx_files {
        if let Some(id) = read(file.clone()).and_then(|v| v[name][dfx_network].as_str().map(str::to_string)) {
            return parse(&id, &file).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse() {
        assert_eq!(Network::parse("local").unwrap().url, LOCAL_URL);
        assert!(Network::parse("ic").unwrap().mainnet);
        let n = Network::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!((n.url.as_str(), n.mainnet), ("http://127.0.0.1:8080", false));
        assert!(Network::parse("https://icp-api.io").unwrap().mainnet);
        assert!(Network::parse("staging").is_err());
    }

    #[test]
    fn names_are_found_in_icp_cli_and_dfx_id_files() {
        let dir = std::env::temp_dir().join(format!("walsh-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".icp/data/mappings")).unwrap();
        std::fs::create_dir_all(dir.join(".dfx/local")).unwrap();
        std::fs::write(dir.join(".icp/data/mappings/local.ids.json"), r#"{"backend": "5v3p4-iyaaa-aaaaa-qaaaa-cai"}"#).unwrap();
        std::fs::write(dir.join(".dfx/local/canister_ids.json"), r#"{"walsh_backend": {"local": "bkyz2-fmaaa-aaaaa-qaaaq-cai"}}"#).unwrap();
        std::fs::write(dir.join("canister_ids.json"), r#"{"walsh_backend": {"ic": "ryjl3-tyaaa-aaaaa-aaaba-cai"}}"#).unwrap();
        assert_eq!(lookup_in(&dir, "backend", "local").unwrap().unwrap().to_text(), "5v3p4-iyaaa-aaaaa-qaaaa-cai");
        assert_eq!(lookup_in(&dir, "walsh_backend", "local").unwrap().unwrap().to_text(), "bkyz2-fmaaa-aaaaa-qaaaq-cai");
        assert_eq!(lookup_in(&dir, "walsh_backend", "ic").unwrap().unwrap().to_text(), "ryjl3-tyaaa-aaaaa-aaaba-cai");
        assert!(lookup_in(&dir, "backend", "ic").unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
