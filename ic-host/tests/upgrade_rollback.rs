//! A refused upgrade leaves the canister exactly as it was before `canister_pre_upgrade`: the
//! IC reverts pre_upgrade's changes (heap, globals, stable memory, certified data, timer) along
//! with everything else when post_upgrade traps or the new module cannot start.

use ic_host::host::{Host, HostConfig, HostError, Response, default_controller};

/// Heap byte 0 holds 'A' and a global 7 until `canister_pre_upgrade` drains them (as a canister
/// that moves its state to stable memory does) and sets stable memory, certified data and the
/// timer; `get` replies with heap byte 0 and the global.
const OLD: &str = r#"(module
    (import "ic0" "msg_reply" (func $reply))
    (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
    (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
    (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
    (import "ic0" "certified_data_set" (func $certify (param i32 i32)))
    (import "ic0" "global_timer_set" (func $timer (param i64) (result i64)))
    (memory (export "memory") 1)
    (global $g (mut i32) (i32.const 7))
    (data (i32.const 0) "A")
    (func (export "canister_pre_upgrade")
        (i32.store8 (i32.const 0) (i32.const 88))
        (global.set $g (i32.const 99))
        (drop (call $grow (i64.const 1)))
        (call $write (i64.const 0) (i64.const 0) (i64.const 1))
        (call $certify (i32.const 0) (i32.const 1))
        (drop (call $timer (i64.const 5))))
    (func (export "canister_query get")
        (i32.store8 (i32.const 1) (global.get $g))
        (call $append (i32.const 0) (i32.const 2))
        (call $reply)))"#;

fn get(host: &mut Host) -> Vec<u8> {
    match host.query("get", &[], default_controller()).unwrap().response {
        Response::Reply(bytes) => bytes,
        other => panic!("{other:?}"),
    }
}

fn refused_upgrade_changes_nothing(new: &str) -> HostError {
    let (mut host, _) = Host::install(&wat::parse_str(OLD).unwrap(), &[], HostConfig::default()).unwrap();
    let before = host.state();
    assert_eq!(get(&mut host), b"A\x07");
    let error = host.upgrade(&wat::parse_str(new).unwrap(), &[]).expect_err("the upgrade must fail");
    assert_eq!(get(&mut host), b"A\x07", "pre_upgrade's heap or global survived the refused upgrade");
    assert_eq!(host.certified_data(), b"", "pre_upgrade's certified data survived");
    assert!(host.state() == before, "the refused upgrade changed the canister");
    error
}

#[test]
fn a_trapping_post_upgrade_reverts_pre_upgrade() {
    let new = r#"(module (memory (export "memory") 1) (func (export "canister_post_upgrade") unreachable))"#;
    assert!(matches!(refused_upgrade_changes_nothing(new), HostError::Trapped { method, .. } if method == "post_upgrade"));
}

#[test]
fn a_module_that_cannot_start_reverts_pre_upgrade() {
    let new = r#"(module (memory (export "memory") 1) (func $start unreachable) (start $start))"#;
    assert!(matches!(refused_upgrade_changes_nothing(new), HostError::Instantiate(_)));
}
