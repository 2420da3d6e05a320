//! Typed calls to a walsh canister through ic-agent. Each call gives `Ok(Ok(_))`, the canister's
//! typed error `Ok(Err(_))`, or a one-line error from the network, the IC or the decoding.

use anyhow::{Result, anyhow};
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Deserialize, Principal};
use ic_agent::Agent;

use super::api::*;
use super::network::{Network, describe};

pub type Reply<T> = Result<std::result::Result<T, Error>>;

#[derive(Clone)]
pub struct Walsh {
    pub agent: Agent,
    pub canister: Principal,
    pub network: Network,
}

impl Walsh {
    async fn update<A: ArgumentEncoder, R: for<'de> Deserialize<'de> + CandidType>(&self, method: &str, args: A) -> Result<R> {
        let arg = candid::encode_args(args).map_err(|e| anyhow!("encoding the {method} arguments: {e}"))?;
        let reply = self
            .agent
            .update(&self.canister, method)
            .with_arg(arg)
            .call_and_wait()
            .await
            .map_err(|e| describe(&self.network, &self.canister, method, e))?;
        self.decode(method, &reply)
    }

    async fn query<A: ArgumentEncoder, R: for<'de> Deserialize<'de> + CandidType>(&self, method: &str, args: A) -> Result<R> {
        let arg = candid::encode_args(args).map_err(|e| anyhow!("encoding the {method} arguments: {e}"))?;
        let reply =
            self.agent.query(&self.canister, method).with_arg(arg).call().await.map_err(|e| describe(&self.network, &self.canister, method, e))?;
        self.decode(method, &reply)
    }

    fn decode<R: for<'de> Deserialize<'de> + CandidType>(&self, method: &str, reply: &[u8]) -> Result<R> {
        candid::decode_one(reply).map_err(|e| self.not_walsh(method, e))
    }

    fn not_walsh(&self, method: &str, e: candid::Error) -> anyhow::Error {
        anyhow!(
            "canister {} does not have the walsh interface: its {method} reply does not decode ({})",
            self.canister,
            super::network::one_line(&e.to_string())
        )
    }

    pub async fn upload_status(&self, kind: BlobKind) -> Result<UploadStatus> {
        self.query("upload_status", (kind,)).await
    }

    pub async fn upload_start(&self, kind: BlobKind) -> Reply<UploadStatus> {
        self.update("upload_start", (kind,)).await
    }

    pub async fn upload_chunk(&self, kind: BlobKind, offset: u64, bytes: &[u8]) -> Reply<UploadStatus> {
        self.update("upload_chunk", (kind, offset, serde_bytes::Bytes::new(bytes))).await
    }

    pub async fn upload_finish(&self, kind: BlobKind, size: u64, sha256: &[u8]) -> Reply<ModelInfo> {
        self.update("upload_finish", (kind, size, serde_bytes::Bytes::new(sha256))).await
    }

    pub async fn model_info(&self) -> Reply<ModelInfo> {
        self.query("model_info", ()).await
    }

    pub async fn generate(&self, request: &GenerateRequest) -> Reply<Generation> {
        self.query("generate", (request,)).await
    }

    pub async fn session_start(&self, request: &GenerateRequest) -> Reply<SessionChunk> {
        self.update("session_start", (request,)).await
    }

    pub async fn session_continue(&self, session: u64) -> Reply<SessionChunk> {
        self.update("session_continue", (session,)).await
    }

    pub async fn session_get(&self, session: u64) -> Reply<SessionView> {
        self.query("session_get", (session,)).await
    }

    pub async fn session_cancel(&self, session: u64) -> Reply<()> {
        self.update("session_cancel", (session,)).await
    }
}
