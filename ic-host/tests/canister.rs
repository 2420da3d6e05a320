//! The embedded host running a real ic-cdk 0.20 canister: every implemented System API function,
//! trap rollback, query non-persistence, upgrades, timers, raw_rand, inspect_message and each
//! instruction limit.

mod common;

use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use ic_host::host::{Host, HostConfig, Outcome, RejectCode, Response, default_controller};

#[derive(CandidType)]
struct InitArg {
    greeting: String,
}

#[derive(CandidType, Deserialize, Debug)]
struct Env {
    caller: Principal,
    me: Principal,
    caller_is_controller: bool,
    time: u64,
    instructions: u64,
    call_context_instructions: u64,
    balance: u128,
}

fn install() -> Host {
    let arg = Encode!(&InitArg { greeting: "hello".into() }).unwrap();
    let (host, outcome) = Host::install(common::test_canister_wasm(), &arg, HostConfig::default()).expect("install");
    assert!(outcome.instructions > 0);
    host
}

fn reply(outcome: &Outcome) -> &[u8] {
    match &outcome.response {
        Response::Reply(bytes) => bytes,
        Response::Reject { code, message } => panic!("rejected ({code:?}): {message}"),
    }
}

fn user() -> Principal {
    Principal::self_authenticating(b"some user")
}

fn get(host: &mut Host, key: &str) -> Option<String> {
    let out = host.query("get", &Encode!(&key).unwrap(), user()).unwrap();
    Decode!(reply(&out), Option<String>).unwrap()
}

#[test]
fn init_argument_updates_and_queries() {
    let mut host = install();
    let out = host.query("greeting", &Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), String).unwrap(), "hello");
    let out = host.update("set", &Encode!(&"k", &"v").unwrap(), user()).unwrap();
    reply(&out);
    assert!(out.instructions > 1000 && out.slices == 1, "{out:?}");
    assert_eq!(get(&mut host, "k").as_deref(), Some("v"));
}

#[test]
fn trap_rolls_back_heap_and_stable_memory() {
    let mut host = install();
    host.update("stable_write", &Encode!(&0u64, &b"original".to_vec()).unwrap(), user()).unwrap();
    let out = host.update("set_then_trap", &Encode!(&"k", &"v").unwrap(), user()).unwrap();
    match &out.response {
        Response::Reject { code, message } => {
            assert_eq!(*code, RejectCode::CanisterError);
            assert!(message.contains("deliberate trap after writing"), "{message}");
        }
        other => panic!("expected a reject, got {other:?}"),
    }
    assert_eq!(get(&mut host, "k"), None, "heap change survived a trap");
    let out = host.query("stable_read", &Encode!(&0u64, &8u64).unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), Vec<u8>).unwrap(), b"original", "stable change survived a trap");
    // Two traps in a row leave the canister working.
    host.update("set_then_trap", &Encode!(&"k", &"v").unwrap(), user()).unwrap();
    let out = host.update("inc", &Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), u64).unwrap(), 1);
    assert!(host.log().iter().any(|l| l.contains("deliberate trap")));
}

#[test]
fn queries_never_persist() {
    let mut host = install();
    let out = host.query("set_in_query", &Encode!(&"q", &"1").unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), Option<String>).unwrap().as_deref(), Some("1"));
    assert_eq!(get(&mut host, "q"), None);
}

#[test]
fn a_query_method_called_as_an_update_runs_replicated_and_commits_nothing() {
    let mut host = install();
    let version = host.canister_version();
    let replicated = Decode!(reply(&host.update("replicated_in_query", &Encode!().unwrap(), user()).unwrap()), bool).unwrap();
    assert!(replicated, "a query called as an update runs in replicated mode");
    let out = host.update("set_in_query", &Encode!(&"q", &"1").unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), Option<String>).unwrap().as_deref(), Some("1"), "it replies with what it saw");
    assert_eq!(get(&mut host, "q"), None, "its changes are discarded");
    assert_eq!(host.canister_version(), version, "and the canister version stays");
}

#[test]
fn environment_functions() {
    let mut host = install();
    host.set_time(1_800_000_000_000_000_000);
    let out = host.query("env", &Encode!().unwrap(), default_controller()).unwrap();
    let env = Decode!(reply(&out), Env).unwrap();
    assert_eq!(env.caller, default_controller());
    assert!(env.caller_is_controller);
    assert_eq!(env.me, host.canister_id());
    assert_eq!(env.time, 1_800_000_000_000_000_000);
    assert_eq!(env.balance, HostConfig::default().cycles);
    assert!(env.instructions > 0 && env.instructions <= out.instructions);
    assert!(env.call_context_instructions >= env.instructions);
    assert!(out.log.iter().any(|l| l.contains(&default_controller().to_text())), "{:?}", out.log);
    let anonymous = host.query("env", &Encode!().unwrap(), Principal::anonymous()).unwrap();
    let env = Decode!(reply(&anonymous), Env).unwrap();
    assert_eq!(env.caller, Principal::anonymous());
    assert!(!env.caller_is_controller);
}

#[test]
fn stable_memory_grows_reads_and_writes() {
    let mut host = install();
    let size = |h: &mut Host| Decode!(reply(&h.query("stable_size", &Encode!().unwrap(), user()).unwrap()), u64).unwrap();
    assert_eq!(size(&mut host), 0);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    host.update("stable_write", &Encode!(&70_000u64, &data).unwrap(), user()).unwrap();
    assert_eq!(size(&mut host), 5);
    let out = host.query("stable_read", &Encode!(&70_000u64, &200_000u64).unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), Vec<u8>).unwrap(), data);
    // 500 GiB is the limit: growing past it fails without trapping.
    let out = host.update("stable_grow", &Encode!(&(500u64 * 16384)).unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), i64).unwrap(), -1);
    let out = host.update("stable_grow", &Encode!(&(500u64 * 16384 - 5)).unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), i64).unwrap(), 5);
    // Reading out of bounds traps.
    let out = host.query("stable_read", &Encode!(&(500u64 << 30), &1u64).unwrap(), user()).unwrap();
    assert!(matches!(&out.response, Response::Reject { message, .. } if message.contains("out of bounds")), "{:?}", out.response);
}

#[test]
fn upgrade_keeps_stable_memory_and_resets_the_heap() {
    let mut host = install();
    host.update("inc", &Encode!().unwrap(), user()).unwrap();
    host.update("inc", &Encode!().unwrap(), user()).unwrap();
    host.update("stable_write", &Encode!(&100u64, &b"kept".to_vec()).unwrap(), user()).unwrap();
    let out = host.upgrade(common::test_canister_wasm(), &Encode!().unwrap()).unwrap();
    assert!(out.instructions > 0);
    let counter = Decode!(reply(&host.query("counter", &Encode!().unwrap(), user()).unwrap()), u64).unwrap();
    assert_eq!(counter, 0, "the heap survived an upgrade");
    let out = host.query("stable_read", &Encode!(&100u64, &4u64).unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), Vec<u8>).unwrap(), b"kept");
    // pre_upgrade saved the greeting to stable memory, post_upgrade restored it.
    let out = host.query("greeting", &Encode!().unwrap(), user()).unwrap();
    assert_eq!(Decode!(reply(&out), String).unwrap(), "hello");
}

#[test]
fn raw_rand_through_the_management_canister() {
    let mut host = install();
    let a = host.update("random", &Encode!().unwrap(), user()).unwrap();
    let b = host.update("random", &Encode!().unwrap(), user()).unwrap();
    let (a, b) = (Decode!(reply(&a), Vec<u8>).unwrap(), Decode!(reply(&b), Vec<u8>).unwrap());
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn timers_fire_when_time_advances() {
    let mut host = install();
    host.update("start_timer", &Encode!(&10u64).unwrap(), user()).unwrap();
    let fired = |h: &mut Host| Decode!(reply(&h.query("timer_fired", &Encode!().unwrap(), user()).unwrap()), u64).unwrap();
    assert!(host.advance_time(5_000_000_000).unwrap().is_none());
    assert_eq!(fired(&mut host), 0);
    let out = host.advance_time(6_000_000_000).unwrap().expect("the timer is due");
    assert!(matches!(out.response, Response::Reply(_)), "{:?}", out.response);
    assert_eq!(fired(&mut host), 1);
}

#[test]
fn inspect_message_can_refuse() {
    let mut host = install();
    let out = host.update("refused_by_inspect", &Encode!().unwrap(), user()).unwrap();
    assert!(matches!(&out.response, Response::Reject { code: RejectCode::CanisterReject, .. }), "{:?}", out.response);
    // inspect_message has 200 M instructions.
    let out = host.update("burn_in_inspect", &Encode!().unwrap(), user()).unwrap();
    match &out.response {
        Response::Reject { message, .. } => assert!(message.contains("200000000 instructions"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn instruction_limits() {
    let mut host = install();
    // A query stops at 5 B.
    let out = host.query("burn_query", &Encode!(&2_000_000_000u64).unwrap(), user()).unwrap();
    match &out.response {
        Response::Reject { code, message } => {
            assert_eq!(*code, RejectCode::CanisterError);
            assert!(message.contains("5000000000 instructions"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // An update may use more than 5 B (several 2 B slices) …
    let out = host.update("burn", &Encode!(&1_000_000_000u64).unwrap(), user()).unwrap();
    reply(&out);
    assert!(out.instructions > 5_000_000_000, "{}", out.instructions);
    assert_eq!(out.slices, out.instructions.div_ceil(2_000_000_000));
    // … but stops at 40 B, and its changes roll back.
    let before = Decode!(reply(&host.query("counter", &Encode!().unwrap(), user()).unwrap()), u64).unwrap();
    let out = host.update("burn", &Encode!(&10_000_000_000u64).unwrap(), user()).unwrap();
    match &out.response {
        Response::Reject { message, .. } => assert!(message.contains("40000000000 instructions"), "{message}"),
        other => panic!("{other:?}"),
    }
    let after = Decode!(reply(&host.query("counter", &Encode!().unwrap(), user()).unwrap()), u64).unwrap();
    assert_eq!(before, after);
}

#[derive(CandidType, Deserialize, Debug)]
struct More {
    cycles_available: u128,
    cycles_accepted: u128,
    liquid_balance: u128,
    status_running: bool,
    version: u64,
    replicated: bool,
    certificate_present: bool,
}

#[test]
fn cycles_status_version_certified_data_and_replication() {
    let mut host = install();
    let more = Decode!(reply(&host.update("more", &Encode!().unwrap(), user()).unwrap()), More).unwrap();
    assert_eq!((more.cycles_available, more.cycles_accepted), (0, 0)); // ingress carries no cycles
    assert_eq!(more.liquid_balance, HostConfig::default().cycles);
    assert!(more.status_running && more.replicated && !more.certificate_present);
    assert!(more.version >= 1);
    let replicated = Decode!(reply(&host.query("replicated_in_query", &Encode!().unwrap(), user()).unwrap()), bool).unwrap();
    assert!(!replicated);
}

#[test]
fn msg_reject_and_reject_callbacks() {
    let mut host = install();
    let out = host.update("reject_me", &Encode!(&"no thanks").unwrap(), user()).unwrap();
    assert_eq!(out.response, Response::Reject { code: RejectCode::CanisterReject, message: "no thanks".into() });
    let out = host.update("call_missing", &Encode!().unwrap(), user()).unwrap();
    let text = Decode!(reply(&out), String).unwrap();
    assert!(text.contains("ryjl3-tyaaa-aaaaa-aaaba-cai") && text.contains("refunded 0"), "{text}");
}

/// The test canister is the proof that the System API works with real ic-cdk code: it must call
/// every function the host implements.
#[test]
fn the_test_canister_imports_every_implemented_function() {
    let info = ic_host::validate::validate(common::test_canister_wasm()).unwrap();
    let missing: Vec<String> = ic_host::ic0::implemented().into_iter().filter(|f| !info.imports.contains(f)).collect();
    assert!(missing.is_empty(), "implemented but not exercised by the test canister: {missing:?}");
}
