//! A canister's state between messages: snapshots (`Host::state`), hosts made from them
//! (`Host::from_state`), rollback (`Host::restore_state`), their files on disk, and what the
//! replica built on the host needs besides (certificates in queries, canister versions,
//! controllers).

mod common;

use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use ic_host::host::{CanisterState, Host, HostConfig, HostError, Outcome, Response, default_controller};

#[derive(CandidType)]
struct InitArg {
    greeting: String,
}

fn install() -> Host {
    let arg = Encode!(&InitArg { greeting: "hello".into() }).unwrap();
    Host::install(common::test_canister_wasm(), &arg, HostConfig::default()).expect("install").0
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
    Decode!(reply(&host.query("get", &Encode!(&key).unwrap(), user()).unwrap()), Option<String>).unwrap()
}

fn counter(host: &mut Host) -> u64 {
    Decode!(reply(&host.query("counter", &Encode!().unwrap(), user()).unwrap()), u64).unwrap()
}

fn stable_read(host: &mut Host, offset: u64, len: u64) -> Vec<u8> {
    Decode!(reply(&host.query("stable_read", &Encode!(&offset, &len).unwrap(), user()).unwrap()), Vec<u8>).unwrap()
}

/// Some heap, stable memory, a timer and certified data.
fn busy() -> Host {
    let mut host = install();
    host.update("set", &Encode!(&"k", &"v").unwrap(), user()).unwrap();
    host.update("inc", &Encode!().unwrap(), user()).unwrap();
    host.update("stable_write", &Encode!(&70_000u64, &vec![7u8; 100_000]).unwrap(), user()).unwrap();
    host.update("start_timer", &Encode!(&60u64).unwrap(), user()).unwrap();
    host.update("more", &Encode!().unwrap(), user()).unwrap();
    host
}

#[test]
fn a_host_made_from_a_state_is_the_same_canister() {
    let mut host = busy();
    let state = host.state();
    assert!(!state.heap.is_empty() && !state.globals.is_empty() && state.stable.size() == 3);
    assert_eq!(state.certified_data, b"certified");
    assert_ne!(state.timer, 0);
    let mut copy = Host::from_state(&state).unwrap();
    assert!(copy.state() == state, "heap, globals, stable memory or system state differ");
    assert_eq!(copy.wasm(), common::test_canister_wasm());
    assert_eq!((copy.canister_version(), copy.certified_data()), (host.canister_version(), &b"certified"[..]));
    // The same replies and the same instructions afterwards, for queries and updates.
    for h in [&mut host, &mut copy] {
        assert_eq!(get(h, "k").as_deref(), Some("v"));
        assert_eq!(stable_read(h, 70_000, 3), [7, 7, 7]);
    }
    let a = host.update("inc", &Encode!().unwrap(), user()).unwrap();
    let b = copy.update("inc", &Encode!().unwrap(), user()).unwrap();
    assert_eq!((reply(&a), a.instructions), (reply(&b), b.instructions));
    assert_eq!(Decode!(reply(&b), u64).unwrap(), 2);
    // The timer survived: it fires in the copy.
    copy.advance_time(61_000_000_000).unwrap().expect("the timer is due");
    assert_eq!(Decode!(reply(&copy.query("timer_fired", &Encode!().unwrap(), user()).unwrap()), u64).unwrap(), 1);
}

#[test]
fn a_state_survives_its_files() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("state-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut host = busy();
    let first = host.state();
    first.write_to(&dir, None).unwrap();
    host.update("stable_write", &Encode!(&140_000u64, &b"later".to_vec()).unwrap(), user()).unwrap();
    let second = host.state();
    second.write_to(&dir, Some(&first)).unwrap();
    let read = CanisterState::read_from(&dir).unwrap();
    assert!(read == second);
    let mut restored = Host::from_state(&read).unwrap();
    assert_eq!(stable_read(&mut restored, 140_000, 5), b"later");
    assert_eq!(get(&mut restored, "k").as_deref(), Some("v"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn restore_state_rolls_back() {
    let mut host = busy();
    let before = host.state();
    host.update("set", &Encode!(&"k", &"changed").unwrap(), user()).unwrap();
    host.update("inc", &Encode!().unwrap(), user()).unwrap();
    host.update("stable_write", &Encode!(&0u64, &b"overwritten".to_vec()).unwrap(), user()).unwrap();
    // A 4 MiB value grows the heap, so rolling back must shrink it.
    host.update("set", &Encode!(&"big", &"x".repeat(4 << 20)).unwrap(), user()).unwrap();
    assert!(host.heap_bytes() > before.heap.len() as u64);
    host.restore_state(&before).unwrap();
    assert_eq!(host.heap_bytes(), before.heap.len() as u64);
    assert!(host.state() == before);
    assert_eq!(get(&mut host, "k").as_deref(), Some("v"));
    assert_eq!(get(&mut host, "big"), None);
    assert_eq!(counter(&mut host), 1);
    assert_eq!(stable_read(&mut host, 0, 11), [0; 11]);
    // The rolled-back canister keeps working.
    assert_eq!(Decode!(reply(&host.update("inc", &Encode!().unwrap(), user()).unwrap()), u64).unwrap(), 2);
}

#[test]
fn a_state_that_does_not_fit_its_module_is_refused() {
    let mut host = busy();
    let good = host.state();
    let mut bad = good.clone();
    bad.globals.pop();
    assert!(matches!(Host::from_state(&bad), Err(HostError::State(_))));
    assert!(matches!(host.restore_state(&bad), Err(HostError::State(_))));
    let mut bad = good.clone();
    bad.heap = bad.heap[..1000].into();
    assert!(matches!(host.restore_state(&bad), Err(HostError::State(_))));
    // A refused state leaves the host as it was.
    assert!(host.state() == good);
}

#[test]
fn queries_see_the_certificate_they_are_given() {
    let mut host = install();
    let certificate = |out: &Outcome| Decode!(reply(out), Option<Vec<u8>>).unwrap();
    let out = host.query_with_certificate("certificate", &Encode!().unwrap(), user(), Some(b"a certificate".to_vec())).unwrap();
    assert_eq!(certificate(&out).as_deref(), Some(&b"a certificate"[..]));
    assert_eq!(certificate(&host.query("certificate", &Encode!().unwrap(), user()).unwrap()), None);
}

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

/// What `ic0.canister_version` says during an update.
fn version_inside(host: &mut Host) -> u64 {
    Decode!(reply(&host.update("more", &Encode!().unwrap(), user()).unwrap()), More).unwrap().version
}

#[test]
fn the_canister_version_grows_as_on_the_ic() {
    let mut host = install();
    assert_eq!(host.canister_version(), 1, "created at 0, installed at 1");
    // An update sees the version before it; committing it counts one.
    assert_eq!(version_inside(&mut host), 1);
    assert_eq!(host.canister_version(), 2);
    // Queries, traps and refusals by inspect_message change nothing.
    host.query("counter", &Encode!().unwrap(), user()).unwrap();
    host.update("set_then_trap", &Encode!(&"k", &"v").unwrap(), user()).unwrap();
    host.update("refused_by_inspect", &Encode!().unwrap(), user()).unwrap();
    assert_eq!(host.canister_version(), 2);
    // The reply callback of raw_rand is a second execution.
    host.update("random", &Encode!().unwrap(), user()).unwrap();
    assert_eq!(host.canister_version(), 4);
    host.upgrade(common::test_canister_wasm(), &Encode!().unwrap()).unwrap();
    assert_eq!(host.canister_version(), 5);
    host.bump_canister_version();
    assert_eq!(version_inside(&mut host), 6);
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

#[test]
fn set_controllers_is_what_is_controller_checks() {
    let mut host = install();
    let is_controller =
        |h: &mut Host, who: Principal| Decode!(reply(&h.query("env", &Encode!().unwrap(), who).unwrap()), Env).unwrap().caller_is_controller;
    assert!(is_controller(&mut host, default_controller()) && !is_controller(&mut host, user()));
    host.set_controllers(vec![user()]);
    assert_eq!(host.controllers(), [user()]);
    assert!(is_controller(&mut host, user()) && !is_controller(&mut host, default_controller()));
    assert_eq!(host.state().controllers, [user()]);
}
