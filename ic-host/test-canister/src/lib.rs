//! Test canister for the embedded IC host: one endpoint per behaviour the host must get right.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use candid::{CandidType, Deserialize, Principal};

thread_local! {
    static MAP: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    static COUNTER: RefCell<u64> = const { RefCell::new(0) };
    static TIMER_FIRED: RefCell<u64> = const { RefCell::new(0) };
    static GREETING: RefCell<String> = const { RefCell::new(String::new()) };
}

#[derive(CandidType, Deserialize)]
struct InitArg {
    greeting: String,
}

#[ic_cdk::init]
fn init(arg: InitArg) {
    GREETING.with(|g| *g.borrow_mut() = arg.greeting);
}

#[ic_cdk::query]
fn greeting() -> String {
    GREETING.with(|g| g.borrow().clone())
}

#[ic_cdk::update]
fn set(key: String, value: String) {
    MAP.with(|m| m.borrow_mut().insert(key, value));
}

#[ic_cdk::query]
fn get(key: String) -> Option<String> {
    MAP.with(|m| m.borrow().get(&key).cloned())
}

/// Changes heap and stable memory, then traps: the IC rolls both back.
#[ic_cdk::update]
fn set_then_trap(key: String, value: String) {
    MAP.with(|m| m.borrow_mut().insert(key, value));
    if ic_cdk::stable::stable_size() == 0 {
        ic_cdk::stable::stable_grow(1).unwrap();
    }
    ic_cdk::stable::stable_write(0, b"trapped write");
    ic_cdk::trap("deliberate trap after writing");
}

/// A query that changes state: the change must not persist.
#[ic_cdk::query]
fn set_in_query(key: String, value: String) -> Option<String> {
    MAP.with(|m| {
        m.borrow_mut().insert(key.clone(), value);
        m.borrow().get(&key).cloned()
    })
}

#[ic_cdk::update]
fn inc() -> u64 {
    COUNTER.with(|c| {
        *c.borrow_mut() += 1;
        *c.borrow()
    })
}

#[ic_cdk::query]
fn counter() -> u64 {
    COUNTER.with(|c| *c.borrow())
}

#[ic_cdk::update]
fn stable_write(offset: u64, data: Vec<u8>) {
    let end = offset + data.len() as u64;
    let pages = end.div_ceil(65536);
    let size = ic_cdk::stable::stable_size();
    if pages > size {
        ic_cdk::stable::stable_grow(pages - size).unwrap();
    }
    ic_cdk::stable::stable_write(offset, &data);
}

#[ic_cdk::query]
fn stable_read(offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0; len as usize];
    ic_cdk::stable::stable_read(offset, &mut buf);
    buf
}

#[ic_cdk::query]
fn stable_size() -> u64 {
    ic_cdk::stable::stable_size()
}

#[ic_cdk::update]
fn stable_grow(pages: u64) -> i64 {
    match ic_cdk::stable::stable_grow(pages) {
        Ok(old) => old as i64,
        Err(_) => -1,
    }
}

#[derive(CandidType, Deserialize)]
struct Env {
    caller: Principal,
    me: Principal,
    caller_is_controller: bool,
    time: u64,
    instructions: u64,
    call_context_instructions: u64,
    balance: u128,
}

#[ic_cdk::query]
fn env() -> Env {
    let caller = ic_cdk::api::msg_caller();
    ic_cdk::api::debug_print(format!("env called by {caller}"));
    Env {
        caller,
        me: ic_cdk::api::canister_self(),
        caller_is_controller: ic_cdk::api::is_controller(&caller),
        time: ic_cdk::api::time(),
        instructions: ic_cdk::api::instruction_counter(),
        call_context_instructions: ic_cdk::api::call_context_instruction_counter(),
        balance: ic_cdk::api::canister_cycle_balance(),
    }
}

/// Runs `n` rounds of a loop the optimiser cannot remove, to spend instructions.
fn spin(n: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x = x.rotate_left(7) ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

#[ic_cdk::update]
fn burn(n: u64) -> u64 {
    COUNTER.with(|c| *c.borrow_mut() += 1);
    spin(n)
}

#[ic_cdk::query]
fn burn_query(n: u64) -> u64 {
    spin(n)
}

#[ic_cdk::update]
async fn random() -> Vec<u8> {
    ic_cdk_management_canister::raw_rand().await.expect("raw_rand")
}

/// The rest of the System API: cycles, status, version, certified data, replicated execution.
#[derive(CandidType, Deserialize)]
struct More {
    cycles_available: u128,
    cycles_accepted: u128,
    liquid_balance: u128,
    status_running: bool,
    version: u64,
    replicated: bool,
    certificate_present: bool,
}

#[ic_cdk::update]
fn more() -> More {
    ic_cdk::api::certified_data_set(b"certified");
    More {
        cycles_available: ic_cdk::api::msg_cycles_available(),
        cycles_accepted: ic_cdk::api::msg_cycles_accept(1_000),
        liquid_balance: ic_cdk::api::canister_liquid_cycle_balance(),
        status_running: matches!(ic_cdk::api::canister_status(), ic_cdk::api::CanisterStatusCode::Running),
        version: ic_cdk::api::canister_version(),
        replicated: ic_cdk::api::in_replicated_execution(),
        certificate_present: ic_cdk::api::data_certificate().is_some(),
    }
}

/// The certificate a non-replicated query was given (ic0.data_certificate_*), if any.
#[ic_cdk::query]
fn certificate() -> Option<Vec<u8>> {
    ic_cdk::api::data_certificate()
}

#[ic_cdk::query]
fn replicated_in_query() -> bool {
    ic_cdk::api::in_replicated_execution()
}

/// Rejects the call with a message (ic0.msg_reject), in Candid's manual-reply style.
#[ic_cdk::update(manual_reply = true)]
fn reject_me(message: String) {
    ic_cdk::api::msg_reject(message);
}

/// Calls a canister that does not exist: the reject callback reads the code and message.
#[ic_cdk::update]
async fn call_missing() -> String {
    let missing = Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    match ic_cdk::call::Call::bounded_wait(missing, "anything").await {
        Ok(_) => "unexpected reply".into(),
        Err(e) => {
            let refunded = ic_cdk::api::msg_cycles_refunded();
            format!("{e} (refunded {refunded})")
        }
    }
}

#[ic_cdk::update]
fn start_timer(delay_seconds: u64) {
    ic_cdk_timers::set_timer(Duration::from_secs(delay_seconds), async {
        TIMER_FIRED.with(|t| *t.borrow_mut() += 1);
    });
}

#[ic_cdk::query]
fn timer_fired() -> u64 {
    TIMER_FIRED.with(|t| *t.borrow())
}

#[ic_cdk::inspect_message]
fn inspect_message() {
    if ic_cdk::api::msg_method_name() == "refused_by_inspect" {
        return; // not accepted
    }
    if ic_cdk::api::msg_method_name() == "burn_in_inspect" && spin(1_000_000_000) == 42 {
        return; // (practically never) — the result is used so the loop is not optimised away
    }
    ic_cdk::api::accept_message();
}

#[ic_cdk::update]
fn refused_by_inspect() {}

#[ic_cdk::update]
fn burn_in_inspect() {}

#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    let greeting = GREETING.with(|g| g.borrow().clone());
    let bytes = greeting.as_bytes();
    let size = ic_cdk::stable::stable_size();
    if size == 0 {
        ic_cdk::stable::stable_grow(1).unwrap();
    }
    // The last 1 KiB of page 0 holds the greeting across upgrades.
    ic_cdk::stable::stable_write(64512, &(bytes.len() as u32).to_le_bytes());
    ic_cdk::stable::stable_write(64516, bytes);
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    let mut len = [0u8; 4];
    ic_cdk::stable::stable_read(64512, &mut len);
    let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
    ic_cdk::stable::stable_read(64516, &mut bytes);
    GREETING.with(|g| *g.borrow_mut() = String::from_utf8_lossy(&bytes).into_owned());
}

ic_cdk::export_candid!();
