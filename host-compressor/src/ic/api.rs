//! The walsh canister's Candid interface (`canister/walsh.did`) as its clients see it. The canister
//! crate has the same types for its side; these are kept apart so that the `walsh` command does not
//! link the canister. Candid decoding checks every reply against them, and the tests run them
//! against the real canister.

use std::fmt;

use candid::{CandidType, Deserialize};

#[derive(CandidType, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Model,
    Tokenizer,
}

impl BlobKind {
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Model => "model",
            BlobKind::Tokenizer => "tokenizer",
        }
    }
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub kind: BlobKind,
    pub in_progress: bool,
    pub received: u64,
    pub active_size: Option<u64>,
    pub active_sha256: Option<serde_bytes::ByteBuf>,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub enum Error {
    NotAuthorized,
    NoModel,
    NoTokenizer,
    UploadNotStarted,
    ChunkTooLarge { max: u64 },
    ChunkOutOfOrder { expected_offset: u64 },
    ChunkMismatch { offset: u64 },
    BlobTooLarge { max: u64 },
    StableMemoryFull,
    SizeMismatch { expected: u64, received: u64 },
    HashMismatch { expected: serde_bytes::ByteBuf, actual: serde_bytes::ByteBuf },
    InvalidModel(String),
    InvalidTokenizer(String),
    Incompatible(String),
    AnonymousCaller,
    HeapBudgetExceeded { needed: u64, available: u64 },
    Internal(String),
    EmptyPrompt,
    PromptTooLong { tokens: u64, limit: u64 },
    InvalidArgument(String),
    UnknownSession,
    NotYourSession,
    TooManySessions { limit: u64 },
    PromptNeedsSession,
}

/// The canister's typed errors in words (one line each).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAuthorized => write!(f, "not a controller of the canister (uploads and configuration are for controllers only)"),
            Error::NoModel => write!(f, "the canister has no model yet (upload one with `walsh upload`)"),
            Error::NoTokenizer => write!(f, "the canister has no tokenizer yet (upload one with `walsh upload --tokenizer`)"),
            Error::UploadNotStarted => write!(f, "no upload in progress"),
            Error::ChunkTooLarge { max } => write!(f, "chunk larger than the canister's {max} bytes"),
            Error::ChunkOutOfOrder { expected_offset } => write!(f, "chunk out of order (the canister expects offset {expected_offset})"),
            Error::ChunkMismatch { offset } => write!(f, "the bytes at offset {offset} differ from those the canister already has"),
            Error::BlobTooLarge { max } => write!(f, "the file is larger than the canister accepts ({max} bytes)"),
            Error::StableMemoryFull => write!(f, "the canister's stable memory cannot grow to hold the file"),
            Error::SizeMismatch { expected, received } => write!(f, "size mismatch: the file has {expected} bytes, the canister received {received}"),
            Error::HashMismatch { expected, actual } => {
                write!(f, "sha256 mismatch: the file's is {}, the canister computed {}", hex::encode(expected), hex::encode(actual))
            }
            Error::InvalidModel(why) => write!(f, "the canister refused the model: {why}"),
            Error::InvalidTokenizer(why) => write!(f, "the canister refused the tokenizer: {why}"),
            Error::Incompatible(why) => write!(f, "the model and tokenizer do not fit together: {why}"),
            Error::AnonymousCaller => write!(f, "sessions are for authenticated callers: use an identity (--identity), not the anonymous one"),
            Error::HeapBudgetExceeded { needed, available } => write!(
                f,
                "the canister's heap budget has {available} bytes free, the generation may need {needed}: try later or ask for fewer tokens"
            ),
            Error::Internal(why) => write!(f, "the canister failed internally: {why}"),
            Error::EmptyPrompt => write!(f, "the prompt is empty (after tokenization)"),
            Error::PromptTooLong { tokens, limit } => write!(f, "the prompt has {tokens} tokens, more than the model's context of {limit}"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::UnknownSession => write!(f, "unknown session (finished sessions expire, and an upgrade ends them all)"),
            Error::NotYourSession => write!(f, "the session belongs to another caller"),
            Error::TooManySessions { limit } => {
                write!(f, "too many sessions open (limit {limit}); finished ones expire after the canister's session timeout")
            }
            Error::PromptNeedsSession => {
                write!(f, "the prompt does not fit in one query's instruction budget: generate without --query (through a session)")
            }
        }
    }
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

#[derive(CandidType, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    ContextFull,
    Budget,
}

impl StopReason {
    /// The names `walsh generate` uses for a local model (plus `budget`, a query's limit).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxTokens => "max_tokens",
            StopReason::EndOfText => "end_of_text",
            StopReason::ContextFull => "context_limit",
            StopReason::Budget => "budget",
        }
    }
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub ids: Vec<u32>,
    pub prompt_ids: Vec<u32>,
    pub stop: StopReason,
    pub instructions: u64,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionChunk {
    pub session: u64,
    pub text: String,
    pub ids: Vec<u32>,
    pub prompt_remaining: u64,
    pub stop: Option<StopReason>,
    pub instructions: u64,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session: u64,
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub stop: Option<StopReason>,
    pub heap_bytes: u64,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub config_json: String,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_embd: u32,
    pub block_size: u32,
    pub vocab_size: u32,
    pub head_mixing: bool,
    pub model_bytes: u64,
    pub model_sha256: serde_bytes::ByteBuf,
    pub tokenizer: Option<TokenizerInfo>,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct TokenizerInfo {
    pub kind: String,
    pub vocab_size: u32,
    pub bytes: u64,
    pub sha256: serde_bytes::ByteBuf,
    /// Model ids the tokenizer has no token for (absent from canisters before it was reported).
    pub unknown_ids: Option<u32>,
}
