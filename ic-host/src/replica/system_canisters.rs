//! The two system canisters `icp deploy` talks to before it installs anything: the cycles
//! minting canister (CMC), asked which subnets new canisters go to, and the cycles ledger,
//! through which icp-cli creates canisters (it never calls
//! `provisional_create_canister_with_cycles`). Only what deployment needs; every other method
//! is "not found", as on a canister without it. Interfaces: the CMC's and the cycles ledger's
//! published Candid (`get_default_subnets : () -> (vec principal) query`,
//! `create_canister : (CreateCanisterArgs) -> (variant { Ok : CreateCanisterSuccess; Err : CreateCanisterError })`).

use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use ic_management_canister_types::CanisterSettings;

use super::Replica;
use super::reject::{CallResult, ErrorCode, Reject};

/// `rkp4c-7iaaa-aaaaa-aaaca-cai`.
pub fn cycles_minting_canister() -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 4, 1, 1])
}

/// `um5iw-rqaaa-aaaaq-qaaba-cai`.
pub fn cycles_ledger() -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 2, 0x10, 0, 2, 1, 1])
}

pub fn is_system_canister(id: &Principal) -> bool {
    *id == cycles_ledger() || *id == cycles_minting_canister()
}

#[derive(CandidType, Deserialize)]
enum SubnetSelection {
    Subnet { subnet: Principal },
    Filter(SubnetFilter),
}

#[derive(CandidType, Deserialize)]
struct SubnetFilter {
    subnet_type: Option<String>,
}

#[derive(CandidType, Deserialize)]
struct CmcCreateCanisterArgs {
    subnet_selection: Option<SubnetSelection>,
    settings: Option<CanisterSettings>,
}

#[derive(CandidType, Deserialize)]
struct CreateCanisterArgs {
    from_subaccount: Option<serde_bytes::ByteBuf>,
    created_at_time: Option<u64>,
    amount: Nat,
    creation_args: Option<CmcCreateCanisterArgs>,
}

#[derive(CandidType)]
struct CreateCanisterSuccess {
    block_id: Nat,
    canister_id: Principal,
}

#[derive(CandidType)]
enum CreateCanisterError {
    GenericError { error_code: Nat, message: String },
}

#[derive(CandidType)]
enum CreateCanisterResult {
    Ok(CreateCanisterSuccess),
    Err(CreateCanisterError),
}

fn no_method(canister: Principal, method: &str) -> Reject {
    Reject::new(ErrorCode::CanisterMethodNotFound, format!("Error from Canister {canister}: Canister has no method '{method}'."))
}

/// An update call to a system canister, or `None` if `canister` is not one.
pub fn call(replica: &Replica, sender: Principal, canister: Principal, method: &str, arg: &[u8]) -> Option<CallResult> {
    if canister == cycles_ledger() {
        return Some(match method {
            "create_canister" => create_canister(replica, sender, arg),
            _ => Err(no_method(canister, method)),
        });
    }
    if canister == cycles_minting_canister() {
        return Some(Err(no_method(canister, method)));
    }
    None
}

/// A query to a system canister, or `None` if `canister` is not one.
pub fn query(replica: &Replica, _sender: Principal, canister: Principal, method: &str, _arg: &[u8]) -> Option<CallResult> {
    if canister == cycles_minting_canister() {
        return Some(match method {
            "get_default_subnets" => {
                Encode!(&vec![replica.subnet_id()]).map_err(|e| Reject::new(ErrorCode::CanisterContractViolation, e.to_string()))
            }
            _ => Err(no_method(canister, method)),
        });
    }
    if canister == cycles_ledger() {
        return Some(Err(no_method(canister, method)));
    }
    None
}

/// Creates a canister for `sender` as the cycles ledger does (the cycles come from nowhere
/// here: a local replica's users have unlimited cycles).
fn create_canister(replica: &Replica, sender: Principal, arg: &[u8]) -> CallResult {
    let args = Decode!(arg, CreateCanisterArgs).map_err(|e| {
        Reject::new(
            ErrorCode::CanisterContractViolation,
            format!("Error from Canister {}: decoding create_canister's argument failed: {e}", cycles_ledger()),
        )
    })?;
    let creation = args.creation_args.unwrap_or(CmcCreateCanisterArgs { subnet_selection: None, settings: None });
    if let Some(SubnetSelection::Subnet { subnet }) = &creation.subnet_selection
        && *subnet != replica.subnet_id()
    {
        let error = CreateCanisterError::GenericError {
            error_code: Nat::from(1u32),
            message: format!("Subnet {subnet} does not exist; this replica has only {}", replica.subnet_id()),
        };
        return Encode!(&CreateCanisterResult::Err(error)).map_err(|e| Reject::new(ErrorCode::CanisterContractViolation, e.to_string()));
    }
    let cycles = u128::try_from(args.amount.0).unwrap_or(super::DEFAULT_PROVISIONAL_CYCLES);
    let settings = creation.settings;
    let reply = super::management::create_for(replica, sender, settings, cycles)?;
    let result = CreateCanisterResult::Ok(CreateCanisterSuccess { block_id: Nat::from(replica.next_block()), canister_id: reply });
    Encode!(&result).map_err(|e| Reject::new(ErrorCode::CanisterContractViolation, e.to_string()))
}
