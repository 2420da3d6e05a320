//! The canister on the embedded IC host, driven like a client would: install, chunked
//! sha256-checked uploads, and calls with their instruction counts. Shared by `walsh-local`
//! (the README's main job) and `walsh-bench` (the instruction benchmark).

use anyhow::{Result, bail};
use candid::{CandidType, Decode, Encode};
use ic_host::host::{Host, Outcome, Response, default_controller};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use walsh_canister::api::*;

/// Upload chunk size: the canister's maximum, under the IC's 2 MiB ingress limit.
pub const CHUNK: usize = 1_900_000;

#[derive(Serialize)]
pub struct Call {
    pub method: String,
    pub instructions: u64,
    /// Of those, the charges for memory pages, and the 64 KiB pages the call accessed and
    /// wrote (see `ic_host::types::PageUse`).
    pub page_instructions: u64,
    pub pages_accessed: u64,
    pub pages_written: u64,
}

impl Call {
    pub fn new(method: &str, out: &Outcome) -> Call {
        Call {
            method: method.to_string(),
            instructions: out.instructions,
            page_instructions: out.pages.instructions,
            pages_accessed: out.pages.accessed,
            pages_written: out.pages.written,
        }
    }
}

pub struct Local {
    pub host: Host,
    pub calls: Vec<Call>,
}

impl Local {
    pub fn call<T: DeserializeOwned + CandidType>(&mut self, method: &str, arg: Vec<u8>, update: bool) -> Result<T> {
        let me = default_controller();
        let out = if update { self.host.update(method, &arg, me)? } else { self.host.query(method, &arg, me)? };
        self.calls.push(Call::new(method, &out));
        match out.response {
            Response::Reply(bytes) => Ok(Decode!(&bytes, T)?),
            Response::Reject { message, .. } => bail!("{method} failed: {message}"),
        }
    }

    pub fn upload(&mut self, kind: BlobKind, bytes: &[u8]) -> Result<ModelInfo> {
        let api = |r: Result<UploadStatus, Error>| r.map_err(|e| anyhow::anyhow!("{e:?}"));
        api(self.call("upload_start", Encode!(&kind)?, true)?)?;
        for (i, piece) in bytes.chunks(CHUNK).enumerate() {
            let offset = (i * CHUNK) as u64;
            api(self.call("upload_chunk", Encode!(&kind, &offset, &serde_bytes::ByteBuf::from(piece.to_vec()))?, true)?)?;
        }
        let sha = serde_bytes::ByteBuf::from(Sha256::digest(bytes).to_vec());
        let finished: Result<ModelInfo, Error> = self.call("upload_finish", Encode!(&kind, &(bytes.len() as u64), &sha)?, true)?;
        finished.map_err(|e| anyhow::anyhow!("upload_finish: {e:?}"))
    }
}

/// A tokenizer file as the canister takes it: `tokenizer.json` as is, a char-level `meta.pkl`
/// converted (as `walsh tokenizer` does).
pub fn tokenizer_json(path: &std::path::Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.first() == Some(&0x80) || path.extension().is_some_and(|e| e == "pkl") {
        Ok(host_compressor::meta_pkl::read_char_vocab(&bytes)?.to_tokenizer_json().into_bytes())
    } else {
        Ok(bytes)
    }
}
