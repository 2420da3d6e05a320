//! How the replica says no: the IC's reject codes with its error codes (`IC0301` …), which
//! clients branch on (icp-cli tells "canister not found" from "method not found" by them).
//! Numbers from the IC's `ErrorCode` (rs/types/error_types); the first digit is the reject code.

use crate::host::{RejectCode, Response};
use candid::Principal;

/// The IC error codes this host emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    CanisterNotFound = 301,
    CanisterRejectedMessage = 406,
    UnknownManagementMessage = 407,
    InvalidManagementPayload = 408,
    CanisterTrapped = 502,
    CanisterCalledTrap = 503,
    CanisterContractViolation = 504,
    CanisterInvalidWasm = 505,
    CanisterDidNotReply = 506,
    CanisterOutOfMemory = 507,
    CanisterStopped = 508,
    CanisterStopping = 509,
    CanisterNotStopped = 510,
    CanisterInvalidController = 512,
    CanisterInstructionLimitExceeded = 522,
    CanisterMethodNotFound = 536,
    CanisterWasmModuleNotFound = 537,
    CanisterNonEmpty = 514,
}

impl ErrorCode {
    /// `IC0301` and so on, as replies carry it.
    pub fn text(self) -> String {
        format!("IC{:04}", self as u16)
    }

    pub fn reject_code(self) -> RejectCode {
        match self as u16 / 100 {
            3 => RejectCode::DestinationInvalid,
            4 => RejectCode::CanisterReject,
            _ => RejectCode::CanisterError,
        }
    }
}

/// A reject as the HTTP interface reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
    pub error_code: String,
}

impl Reject {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Reject {
        Reject { code: error.reject_code(), message: message.into(), error_code: error.text() }
    }

    pub fn canister_not_found(id: &Principal) -> Reject {
        Reject::new(ErrorCode::CanisterNotFound, format!("Canister {id} not found"))
    }

    pub fn not_controller(id: &Principal, method: &str) -> Reject {
        Reject::new(ErrorCode::CanisterInvalidController, format!("Only controllers of canister {id} can call ic00 method {method}"))
    }

    pub fn invalid_payload(method: &str, error: impl std::fmt::Display) -> Reject {
        Reject::new(ErrorCode::InvalidManagementPayload, format!("Error decoding candid of {method}: {error}"))
    }
}

/// Gives a canister's reject (from the embedded host) the code the replica would attach, and
/// the replica's "Error from Canister …" wording for errors of the canister itself.
pub fn from_canister(canister: &Principal, code: RejectCode, message: &str) -> Reject {
    if code == RejectCode::CanisterReject {
        // msg_reject, or inspect_message refusing: the canister's own words.
        return Reject { code, message: message.to_string(), error_code: ErrorCode::CanisterRejectedMessage.text() };
    }
    let error = if message.starts_with("Canister called `ic0.trap`") {
        ErrorCode::CanisterCalledTrap
    } else if message.starts_with("Canister exceeded the limit") {
        ErrorCode::CanisterInstructionLimitExceeded
    } else if message.starts_with("Canister did not reply") {
        ErrorCode::CanisterDidNotReply
    } else if message.contains("out of memory") || message.contains("memory limit") {
        ErrorCode::CanisterOutOfMemory
    } else if message.contains("cannot be called") || message.contains("contract violation") {
        ErrorCode::CanisterContractViolation
    } else {
        ErrorCode::CanisterTrapped
    };
    Reject { code: error.reject_code(), message: format!("Error from Canister {canister}: {message}"), error_code: error.text() }
}

/// A finished message as the request status records it.
pub type CallResult = Result<Vec<u8>, Reject>;

pub fn from_response(canister: &Principal, response: &Response) -> CallResult {
    match response {
        Response::Reply(bytes) => Ok(bytes.clone()),
        Response::Reject { code, message } => Err(from_canister(canister, *code, message)),
    }
}
