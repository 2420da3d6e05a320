//! The Candid types of the canister's interface (`canister/walsh.did`).

use candid::{CandidType, Deserialize};

/// Which blob an upload call addresses.
#[derive(CandidType, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Model,
    Tokenizer,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub kind: BlobKind,
    /// Whether an upload is in progress (started and not finished).
    pub in_progress: bool,
    /// Bytes received so far: the offset to resume from.
    pub received: u64,
    /// Size and sha256 of the active blob of this kind, if any.
    pub active_size: Option<u64>,
    pub active_sha256: Option<Vec<u8>>,
}

/// Every way a call can fail. A well-typed argument never makes the canister trap; an
/// ill-typed one (not Candid, or not this method's types) is refused by the IC's reject
/// (`CanisterError`, "failed to decode") before the method runs, so nothing changes.
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub enum Error {
    /// Uploads and configuration are for controllers only.
    NotAuthorized,
    NoModel,
    NoTokenizer,
    UploadNotStarted,
    ChunkTooLarge {
        max: u64,
    },
    /// Chunks must continue where the data stops (or repeat bytes already received).
    ChunkOutOfOrder {
        expected_offset: u64,
    },
    /// A repeated chunk differs from the bytes already received at that offset.
    ChunkMismatch {
        offset: u64,
    },
    /// Larger than a blob of this kind may be (a tokenizer: what one message can parse).
    BlobTooLarge {
        max: u64,
    },
    /// Stable memory cannot grow to hold the upload (the subnet's or the canister's limit).
    StableMemoryFull,
    SizeMismatch {
        expected: u64,
        received: u64,
    },
    HashMismatch {
        expected: Vec<u8>,
        actual: Vec<u8>,
    },
    InvalidModel(String),
    InvalidTokenizer(String),
    /// The tokenizer produces ids the model does not have.
    Incompatible(String),
    /// Sessions are for authenticated callers (any non-anonymous identity, e.g. an ephemeral key).
    AnonymousCaller,
    /// The heap the call would need (a session or query at its full context) does not fit in
    /// the heap budget the controller set: try later, or ask for fewer tokens.
    HeapBudgetExceeded {
        needed: u64,
        available: u64,
    },
    /// A failure of the canister itself, not of the arguments (a bug to report).
    Internal(String),
    EmptyPrompt,
    PromptTooLong {
        tokens: u64,
        limit: u64,
    },
    InvalidArgument(String),
    UnknownSession,
    NotYourSession,
    TooManySessions {
        limit: u64,
    },
    /// A query whose prompt does not fit its instruction budget: use a session.
    PromptNeedsSession,
}

/// Generation parameters. Optional fields take the defaults in brackets.
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    /// 1 ..= 4096.
    pub max_tokens: u32,
    /// [0.0 = greedy] finite and >= 0.
    pub temperature: Option<f32>,
    /// [all] >= 1.
    pub top_k: Option<u32>,
    /// [1.0] in (0, 1].
    pub top_p: Option<f32>,
    /// Same seed, same text. [drawn from raw_rand]
    pub seed: Option<u64>,
}

/// Options of one session call (`session_start`, `session_continue`), all optional.
#[derive(CandidType, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Instructions this call may use, at least 1 000 000; more than the controller's
    /// `call_budget` is cut to it. A smaller budget returns sooner with fewer tokens, so a page
    /// can show text as it comes (2 B: about one round of the IC). Given to `session_start`,
    /// it stays the session's budget for the calls that give none. [the controller's `call_budget`]
    pub call_budget: Option<u64>,
}

#[derive(CandidType, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    /// The model's context (block_size) is full.
    ContextFull,
    /// The call's instruction budget is spent (a query: continue with a session).
    Budget,
}

/// The answer of `generate`.
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub ids: Vec<u32>,
    pub prompt_ids: Vec<u32>,
    pub stop: StopReason,
    pub instructions: u64,
}

/// What one session call produced.
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionChunk {
    pub session: u64,
    /// Text completed by this call (never a split character).
    pub text: String,
    pub ids: Vec<u32>,
    /// Prompt tokens still to process before generation starts.
    pub prompt_remaining: u64,
    /// `Some` once the session is finished.
    pub stop: Option<StopReason>,
    pub instructions: u64,
}

/// A session as a query sees it.
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session: u64,
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub stop: Option<StopReason>,
    /// Heap held by the session's key/value cache (f32, grows with the context).
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
    pub model_sha256: Vec<u8>,
    pub tokenizer: Option<TokenizerInfo>,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct TokenizerInfo {
    pub kind: String,
    pub vocab_size: u32,
    pub bytes: u64,
    pub sha256: Vec<u8>,
    /// Model ids the tokenizer has no token for (a padded vocabulary): generated, they appear
    /// in `ids` and as U+FFFD in `text`.
    pub unknown_ids: u32,
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct Stats {
    pub sessions: u64,
    pub heap_bytes: u64,
    pub stable_bytes: u64,
    pub model_heap_bytes: u64,
    /// Heap held by all sessions' key/value caches.
    pub session_heap_bytes: u64,
    /// Instructions per generated token of recent calls (newest last).
    pub recent_instructions_per_token: Vec<u64>,
    pub call_budget: u64,
    /// The controller's heap budget, and how much of it the model, the tokenizer and the
    /// running sessions (each at its full context) hold.
    pub heap_budget_bytes: u64,
    pub heap_reserved_bytes: u64,
}

/// Settings a controller may change (`init`, `configure`).
#[derive(CandidType, Deserialize, Debug, Clone, PartialEq)]
pub struct Settings {
    /// Instructions one session call may use (at most 35 B: safely under the 40 B update limit).
    pub call_budget: Option<u64>,
    pub max_sessions: Option<u32>,
    pub max_sessions_per_caller: Option<u32>,
    /// Sessions idle longer than this end.
    pub session_timeout_seconds: Option<u64>,
    /// Heap that the model, the tokenizer and every running session at its full context may
    /// hold together; sessions and queries beyond it get `HeapBudgetExceeded`. Keep it below the
    /// canister's `wasm_memory_limit` by room for an upload's activation (the new model's file
    /// twice, while the old one still serves). [2 GiB, for the IC's default 3 GiB limit]
    pub heap_budget_bytes: Option<u64>,
}
