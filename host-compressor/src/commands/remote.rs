//! What the commands that talk to a deployed canister share: `--canister`, `--network`, `--identity`.

use anyhow::{Result, bail};
use host_compressor::ic::client::Walsh;
use host_compressor::ic::identity::{self, LoadedIdentity};
use host_compressor::ic::network::{self, Network};

#[derive(clap::Args)]
pub struct Target {
    /// The walsh canister: its id, or its name in the icp-cli or dfx project here (`backend`).
    #[arg(long)]
    pub canister: Option<String>,
    /// `local` (http://127.0.0.1:4943, e.g. `ic-host serve`), `ic` (mainnet) or a URL. Off the
    /// mainnet the root key is fetched from the network.
    #[arg(long, default_value = "local")]
    pub network: String,
    /// An icp-cli or dfx identity's name, a PEM key file, or `anonymous` [icp-cli's default
    /// identity, else dfx's].
    #[arg(long)]
    pub identity: Option<String>,
}

impl Target {
    pub fn identity(&self) -> Result<LoadedIdentity> {
        identity::load(self.identity.as_deref())
    }

    pub async fn connect(&self, identity: &LoadedIdentity) -> Result<Walsh> {
        let Some(name) = &self.canister else { bail!("--canister ID|NAME is required") };
        let network = Network::parse(&self.network)?;
        let canister = network::resolve_canister(name, &network)?;
        let agent = network::connect(&network, identity).await?;
        Ok(Walsh { agent, canister, network })
    }
}
