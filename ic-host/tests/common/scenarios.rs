//! Behaviour every IC backend must show with the test canister, asserted on replies only (no
//! instruction counts or log wording, which only the embedded host reports).

use candid::{CandidType, Decode, Encode, Principal};

use super::backend::Backend;

#[derive(CandidType)]
pub struct InitArg {
    pub greeting: String,
}

pub fn init_arg() -> Vec<u8> {
    Encode!(&InitArg { greeting: "hello".into() }).unwrap()
}

fn user() -> Principal {
    Principal::self_authenticating(b"some user")
}

fn get(b: &mut dyn Backend, key: &str) -> Option<String> {
    Decode!(&b.query("get", Encode!(&key).unwrap(), user()).unwrap(), Option<String>).unwrap()
}

fn counter(b: &mut dyn Backend) -> u64 {
    Decode!(&b.query("counter", Encode!().unwrap(), user()).unwrap(), u64).unwrap()
}

pub fn updates_and_queries(b: &mut dyn Backend) {
    let greeting = b.query("greeting", Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(&greeting, String).unwrap(), "hello", "{}", b.name());
    b.update("set", Encode!(&"k", &"v").unwrap(), user()).unwrap();
    assert_eq!(get(b, "k").as_deref(), Some("v"), "{}", b.name());
}

pub fn trap_rolls_back(b: &mut dyn Backend) {
    b.update("stable_write", Encode!(&0u64, &b"original".to_vec()).unwrap(), user()).unwrap();
    let err = b.update("set_then_trap", Encode!(&"k", &"v").unwrap(), user()).unwrap_err();
    assert!(err.contains("deliberate trap after writing"), "{}: {err}", b.name());
    assert_eq!(get(b, "k"), None, "{}: heap change survived a trap", b.name());
    let read = b.query("stable_read", Encode!(&0u64, &8u64).unwrap(), user()).unwrap();
    assert_eq!(Decode!(&read, Vec<u8>).unwrap(), b"original", "{}: stable change survived a trap", b.name());
    let n = b.update("inc", Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(&n, u64).unwrap(), 1, "{}", b.name());
}

pub fn queries_do_not_persist(b: &mut dyn Backend) {
    let seen = b.query("set_in_query", Encode!(&"q", &"1").unwrap(), user()).unwrap();
    assert_eq!(Decode!(&seen, Option<String>).unwrap().as_deref(), Some("1"));
    assert_eq!(get(b, "q"), None, "{}", b.name());
}

pub fn controllers_and_callers(b: &mut dyn Backend) {
    #[derive(candid::Deserialize, CandidType)]
    struct Env {
        caller: Principal,
        caller_is_controller: bool,
    }
    let controller = b.controller();
    let env = Decode!(&b.query("env", Encode!().unwrap(), controller).unwrap(), Env).unwrap();
    assert_eq!(env.caller, controller);
    assert!(env.caller_is_controller, "{}", b.name());
    let env = Decode!(&b.query("env", Encode!().unwrap(), Principal::anonymous()).unwrap(), Env).unwrap();
    assert!(!env.caller_is_controller, "{}", b.name());
}

pub fn upgrade_keeps_stable_memory(b: &mut dyn Backend, wasm: &[u8]) {
    b.update("inc", Encode!().unwrap(), user()).unwrap();
    b.update("stable_write", Encode!(&100u64, &b"kept".to_vec()).unwrap(), user()).unwrap();
    b.upgrade(wasm, Encode!().unwrap()).unwrap();
    assert_eq!(counter(b), 0, "{}: the heap survived an upgrade", b.name());
    let read = b.query("stable_read", Encode!(&100u64, &4u64).unwrap(), user()).unwrap();
    assert_eq!(Decode!(&read, Vec<u8>).unwrap(), b"kept", "{}", b.name());
    let greeting = b.query("greeting", Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(&greeting, String).unwrap(), "hello", "{}", b.name());
}

pub fn raw_rand(b: &mut dyn Backend) {
    let x = Decode!(&b.update("random", Encode!().unwrap(), user()).unwrap(), Vec<u8>).unwrap();
    let y = Decode!(&b.update("random", Encode!().unwrap(), user()).unwrap(), Vec<u8>).unwrap();
    assert_eq!(x.len(), 32, "{}", b.name());
    assert_ne!(x, y, "{}", b.name());
}

pub fn timers(b: &mut dyn Backend) {
    let fired = |b: &mut dyn Backend| Decode!(&b.query("timer_fired", Encode!().unwrap(), user()).unwrap(), u64).unwrap();
    b.update("start_timer", Encode!(&10u64).unwrap(), user()).unwrap();
    b.advance_seconds(5);
    assert_eq!(fired(b), 0, "{}: fired early", b.name());
    b.advance_seconds(6);
    assert_eq!(fired(b), 1, "{}: did not fire", b.name());
}

pub fn inspect_message(b: &mut dyn Backend) {
    assert!(b.update("refused_by_inspect", Encode!().unwrap(), user()).is_err(), "{}", b.name());
    assert!(b.update("burn_in_inspect", Encode!().unwrap(), user()).is_err(), "{}", b.name());
    assert!(b.update("inc", Encode!().unwrap(), user()).is_ok());
}

pub fn instruction_limits(b: &mut dyn Backend) {
    // 2 B loop rounds are about 18 B instructions: over the query limit (5 B).
    assert!(b.query("burn_query", Encode!(&2_000_000_000u64).unwrap(), user()).is_err(), "{}", b.name());
    // 1 B rounds (~9 B instructions) fit an update (40 B), 10 B rounds do not and roll back.
    b.update("burn", Encode!(&1_000_000_000u64).unwrap(), user()).unwrap();
    let before = counter(b);
    assert!(b.update("burn", Encode!(&10_000_000_000u64).unwrap(), user()).is_err(), "{}", b.name());
    assert_eq!(counter(b), before, "{}", b.name());
}
