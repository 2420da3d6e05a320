//! Helpers for the canister's tests: the wasm (from test-support), a typed call wrapper, uploads.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use candid::{CandidType, Decode, Encode, Principal};
use ic_host::host::{Host, HostConfig, Response, default_controller};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use walsh_canister::api::*;

pub fn canister_wasm() -> &'static [u8] {
    test_support::canister_wasm()
}

pub struct Canister {
    pub host: Host,
}

impl Canister {
    pub fn install() -> Canister {
        let (host, _) = Host::install(canister_wasm(), &Encode!(&None::<Settings>).unwrap(), HostConfig::default()).expect("install");
        Canister { host }
    }

    pub fn update<T: DeserializeOwned + CandidType>(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> T {
        let out = self.host.update(method, &arg, caller).expect("call");
        match out.response {
            Response::Reply(bytes) => Decode!(&bytes, T).unwrap_or_else(|e| panic!("{method}: {e}")),
            Response::Reject { message, .. } => {
                panic!("{method} trapped or was rejected: {message}")
            }
        }
    }

    pub fn query<T: DeserializeOwned + CandidType>(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> T {
        let out = self.host.query(method, &arg, caller).expect("call");
        match out.response {
            Response::Reply(bytes) => Decode!(&bytes, T).unwrap_or_else(|e| panic!("{method}: {e}")),
            Response::Reject { message, .. } => {
                panic!("{method} trapped or was rejected: {message}")
            }
        }
    }

    /// Uploads a blob in chunks of `chunk` bytes and activates it.
    pub fn upload(&mut self, kind: BlobKind, bytes: &[u8], chunk: usize) -> Result<ModelInfo, Error> {
        let me = default_controller();
        self.update::<Result<UploadStatus, Error>>("upload_start", Encode!(&kind).unwrap(), me)?;
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            let offset = (i * chunk) as u64;
            self.update::<Result<UploadStatus, Error>>(
                "upload_chunk",
                Encode!(&kind, &offset, &serde_bytes::ByteBuf::from(piece.to_vec())).unwrap(),
                me,
            )?;
        }
        let sha = serde_bytes::ByteBuf::from(Sha256::digest(bytes).to_vec());
        self.update("upload_finish", Encode!(&kind, &(bytes.len() as u64), &sha).unwrap(), me)
    }
}

/// The tokenizer.json a reference set ships, or one converted from its meta.pkl.
pub fn tokenizer_json(set_dir: &std::path::Path) -> Vec<u8> {
    let json = set_dir.join("tokenizer.json");
    if json.exists() {
        return std::fs::read(json).unwrap();
    }
    let vocab = host_compressor::meta_pkl::read_char_vocab(&std::fs::read(set_dir.join("meta.pkl")).unwrap()).unwrap();
    vocab.to_tokenizer_json().into_bytes()
}

pub fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), max_tokens, temperature: Some(0.0), top_k: None, top_p: None, seed: Some(0) }
}
