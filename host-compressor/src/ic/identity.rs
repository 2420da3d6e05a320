//! Who `walsh` calls the canister as: a PEM file, or an identity stored by icp-cli or dfx, found by
//! name, as those tools store them.
//!
//! - icp-cli: `$ICP_HOME/identity/` (default `$XDG_DATA_HOME/icp-cli/identity/`, i.e.
//!   `~/.local/share/icp-cli/identity/`): `identity_list.json` names each identity and its storage,
//!   `keys/NAME.pem` holds plaintext keys, `identity_defaults.json` the default.
//! - dfx: `$DFX_CONFIG_ROOT/.config/dfx/` (default `~/.config/dfx/`): `identity/NAME/identity.pem`,
//!   `identity.json` the default.
//!
//! Keys kept encrypted or in the system keyring are read through the owning tool (`icp identity
//! export NAME`, `dfx identity export NAME`), which asks for the password itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candid::Principal;
use ic_agent::Identity;
use ic_agent::identity::{AnonymousIdentity, BasicIdentity, Prime256v1Identity, Secp256k1Identity};

pub struct LoadedIdentity {
    pub identity: Arc<dyn Identity>,
    /// Where it came from, for messages: "icp-cli identity alice", "key.pem", "anonymous".
    pub label: String,
    pub principal: Principal,
}

impl LoadedIdentity {
    pub fn anonymous(label: &str) -> LoadedIdentity {
        LoadedIdentity { identity: Arc::new(AnonymousIdentity), label: label.to_string(), principal: Principal::anonymous() }
    }

    /// A fresh Ed25519 key for this run only: what a session needs (an authenticated caller that
    /// owns it) when no identity is at hand. Nothing is stored; the canister sees a new principal.
    pub fn ephemeral() -> Result<LoadedIdentity> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for an ephemeral key: {e}"))?;
        let identity = BasicIdentity::from_raw_key(&key);
        let principal = identity.sender().map_err(|e| anyhow::anyhow!("ephemeral key: {e}"))?;
        Ok(LoadedIdentity { identity: Arc::new(identity), label: "an ephemeral key".into(), principal })
    }

    pub fn is_anonymous(&self) -> bool {
        self.principal == Principal::anonymous()
    }

    fn from_pem(pem: &[u8], label: String) -> Result<LoadedIdentity> {
        let identity: Arc<dyn Identity> = if let Ok(id) = Secp256k1Identity::from_pem(pem) {
            Arc::new(id)
        } else if let Ok(id) = BasicIdentity::from_pem(pem) {
            Arc::new(id)
        } else if let Ok(id) = Prime256v1Identity::from_pem(pem) {
            Arc::new(id)
        } else if String::from_utf8_lossy(pem).contains("ENCRYPTED") {
            bail!("{label} is an encrypted key: decrypt it first (e.g. `icp identity export NAME > key.pem`)");
        } else {
            bail!("{label} holds no secp256k1, Ed25519 or P-256 private key in PEM form");
        };
        let principal = identity.sender().map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        Ok(LoadedIdentity { identity, label, principal })
    }
}

/// Where icp-cli keeps identities.
pub fn icp_cli_identity_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("ICP_HOME") {
        return Some(PathBuf::from(home).join("identity"));
    }
    let data = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| home().map(|h| h.join(".local/share")))?;
    Some(data.join("icp-cli/identity"))
}

/// Where dfx keeps its configuration (identities).
pub fn dfx_config_dir() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("DFX_CONFIG_ROOT") {
        return Some(PathBuf::from(root).join(".config/dfx"));
    }
    Some(home()?.join(".config/dfx"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The identity `--identity` names (a PEM file, `anonymous`, or a stored identity's name), or,
/// without it, icp-cli's default identity, else dfx's, else anonymous.
pub fn load(spec: Option<&str>) -> Result<LoadedIdentity> {
    let Some(spec) = spec else { return load_default() };
    if spec == "anonymous" {
        return Ok(LoadedIdentity::anonymous("anonymous"));
    }
    let path = Path::new(spec);
    if path.is_file() || spec.ends_with(".pem") || spec.contains('/') {
        let pem = std::fs::read(path).with_context(|| format!("cannot read the PEM file {spec}"))?;
        return LoadedIdentity::from_pem(&pem, spec.to_string());
    }
    if let Some(found) = load_icp_cli(spec)? {
        return Ok(found);
    }
    if let Some(found) = load_dfx(spec)? {
        return Ok(found);
    }
    let icp = icp_cli_identity_dir().map_or("-".into(), |d| d.display().to_string());
    let dfx = dfx_config_dir().map_or("-".into(), |d| d.join("identity").display().to_string());
    bail!("no identity {spec:?}: neither a PEM file nor a name in icp-cli's store ({icp}) or dfx's ({dfx})")
}

fn load_default() -> Result<LoadedIdentity> {
    if let Some(dir) = icp_cli_identity_dir().filter(|d| d.join("identity_list.json").is_file()) {
        let name = read_json(&dir.join("identity_defaults.json"))
            .and_then(|v| v["default"].as_str().map(str::to_string))
            .unwrap_or_else(|| "anonymous".into());
        if name == "anonymous" {
            return Ok(LoadedIdentity::anonymous("icp-cli's default identity (anonymous)"));
        }
        return load_icp_cli(&name)?.with_context(|| format!("icp-cli's default identity {name:?} is not in {}", dir.display()));
    }
    if let Some(dir) = dfx_config_dir().filter(|d| d.join("identity").is_dir()) {
        let name = read_json(&dir.join("identity.json")).and_then(|v| v["default"].as_str().map(str::to_string)).unwrap_or_else(|| "default".into());
        if name == "anonymous" {
            return Ok(LoadedIdentity::anonymous("dfx's default identity (anonymous)"));
        }
        return load_dfx(&name)?.with_context(|| format!("dfx's default identity {name:?} is not in {}", dir.display()));
    }
    Ok(LoadedIdentity::anonymous("anonymous (no icp-cli or dfx identity found)"))
}

fn load_icp_cli(name: &str) -> Result<Option<LoadedIdentity>> {
    let Some(dir) = icp_cli_identity_dir() else { return Ok(None) };
    let Some(list) = read_json(&dir.join("identity_list.json")) else { return Ok(None) };
    let entry = &list["identities"][name];
    if entry.is_null() {
        return Ok(None);
    }
    let label = format!("icp-cli identity {name:?}");
    match (entry["kind"].as_str(), entry["format"].as_str()) {
        (Some("anonymous"), _) => Ok(Some(LoadedIdentity::anonymous(&label))),
        (Some("pem"), Some("plaintext")) => {
            let path = dir.join("keys").join(format!("{name}.pem"));
            let pem = std::fs::read(&path).with_context(|| format!("{label}: cannot read {}", path.display()))?;
            LoadedIdentity::from_pem(&pem, label).map(Some)
        }
        (Some("pem" | "keyring"), _) => export_with("icp", name, label).map(Some),
        (kind, _) => bail!("{label} is of kind {} (only PEM, keyring and anonymous identities can be used; export a PEM key)", kind.unwrap_or("?")),
    }
}

fn load_dfx(name: &str) -> Result<Option<LoadedIdentity>> {
    let Some(dir) = dfx_config_dir().map(|d| d.join("identity").join(name)) else { return Ok(None) };
    if !dir.is_dir() {
        return Ok(None);
    }
    let label = format!("dfx identity {name:?}");
    let plain = dir.join("identity.pem");
    if plain.is_file() {
        let pem = std::fs::read(&plain).with_context(|| format!("{label}: cannot read {}", plain.display()))?;
        return LoadedIdentity::from_pem(&pem, label).map(Some);
    }
    // Encrypted (identity.pem.encrypted) or kept in the keyring: dfx decrypts it.
    export_with("dfx", name, label).map(Some)
}

/// Asks the tool that stores a protected key for it (it prompts for a password on the terminal).
fn export_with(tool: &str, name: &str, label: String) -> Result<LoadedIdentity> {
    let program = match tool {
        "icp" => find_icp().unwrap_or_else(|| PathBuf::from("icp")),
        _ => PathBuf::from(tool),
    };
    let output =
        Command::new(&program).args(["identity", "export", name]).env("DO_NOT_TRACK", "1").stdin(Stdio::inherit()).stderr(Stdio::inherit()).output();
    match output {
        Ok(out) if out.status.success() => LoadedIdentity::from_pem(&out.stdout, label),
        Ok(_) => bail!("{label} is protected and `{tool} identity export {name}` failed; export it to a PEM file and pass --identity FILE"),
        Err(e) => bail!("{label} is protected (encrypted or in the keyring) and `{tool}` cannot be run to export it ({e}); pass a PEM file instead"),
    }
}

/// The `icp` binary: on PATH, or where `npm install -g @icp-sdk/icp-cli-linux-x64` puts it.
pub fn find_icp() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ICP_BIN") {
        return Some(PathBuf::from(path));
    }
    let on_path =
        std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join("icp")).find(|p| p.is_file());
    on_path.or_else(|| {
        let root = Command::new("npm").args(["root", "-g"]).stderr(Stdio::null()).output().ok()?;
        let bin = PathBuf::from(String::from_utf8_lossy(&root.stdout).trim()).join("@icp-sdk/icp-cli-linux-x64/bin/icp");
        bin.is_file().then_some(bin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A secp256k1 key as icp-cli writes it (PKCS#8), and the principal icp-cli printed for it.
    const ICP_CLI_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgmpocoXVrsB/rnGwpCFLm\n47YkfPW6aXJWxoMvPpNg6KWhRANCAASatEJMt61fasPoVEbgrc43uvwrPm0f4NhC\ncW733/K/iY/S2kKOtVpjzaugsIndW27O8lyH3Jm/MVYRciBA5rVN\n-----END PRIVATE KEY-----\n";

    #[test]
    fn an_icp_cli_key_gives_the_principal_icp_cli_reports() {
        let id = LoadedIdentity::from_pem(ICP_CLI_PEM.as_bytes(), "test".into()).unwrap();
        assert_eq!(id.principal.to_text(), "mx5fr-32nyu-6cisx-dxjju-pmpml-ur6sy-3s3ta-n63x6-6fioj-3k4b6-uae");
    }

    #[test]
    fn garbage_and_encrypted_keys_are_refused_with_the_reason() {
        let err = LoadedIdentity::from_pem(b"not a key", "x.pem".into()).err().unwrap().to_string();
        assert!(err.contains("x.pem holds no"), "{err}");
        let err = LoadedIdentity::from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIHt\n-----END ENCRYPTED PRIVATE KEY-----\n", "y.pem".into())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("encrypted"), "{err}");
    }
}
