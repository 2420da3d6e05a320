//! Instruction counts of small modules against sums computed by hand from the IC's cost table
//! (`../shared/spec/ic-platform.md` A4). Rules used: a function pays 1 on entry; each basic block
//! pays the sum of its operators when it starts; bulk memory operations also pay their size;
//! System API calls pay their overhead (msg_reply 500, performance_counter 200, stable access
//! 20 + 1 per byte, stable64_grow 500, a newly written 4 KiB stable page 1000, reply data 500 + 1
//! per byte). These are the 2025 rules (`Accounting::Ic2025`); `pages.rs` tests the page charges
//! of 2026.

use ic_host::host::{Accounting, Host, HostConfig, Response, default_controller};
use ic_host::validate::ValidationError;

/// Installs the module and returns (instructions of `run`, its reply).
fn run(wat: &str) -> (u64, Vec<u8>) {
    let wasm = wat::parse_str(wat).expect("valid WAT");
    let config = HostConfig { accounting: Accounting::Ic2025, ..HostConfig::default() };
    let (mut host, _) = Host::install(&wasm, &[], config).expect("install");
    let out = host.update("run", &[], default_controller()).expect("run");
    match out.response {
        Response::Reply(bytes) => (out.instructions, bytes),
        other => panic!("run did not reply: {other:?}"),
    }
}

const REPLY: &str = r#"(import "ic0" "msg_reply" (func $reply))"#;
const REPLY_COST: u64 = 5 + 500; // call + System API overhead

#[test]
fn straight_line_code() {
    let wat = format!(
        r#"(module {REPLY}
            (func (export "canister_update run")
              i32.const 1  i32.const 2  i32.add  drop   ;; 4
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 4 + REPLY_COST);
}

#[test]
fn loops_pay_per_iteration() {
    let wat = format!(
        r#"(module {REPLY}
            (func (export "canister_update run") (local $i i32)
              i32.const 10  local.set $i                 ;; 2, then `loop` ends the block
              (loop $l
                local.get $i  i32.const 1  i32.sub  local.tee $i
                br_if $l)                                ;; 4 + 2 = 6, ten times
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 2 + 10 * 6 + REPLY_COST);
}

#[test]
fn calls_pay_the_call_and_the_callee() {
    let wat = format!(
        r#"(module {REPLY}
            (func $add (param i32 i32) (result i32)
              local.get 0  local.get 1  i32.add)         ;; entry 1 + 3
            (func (export "canister_update run")
              i32.const 2  i32.const 3  call $add  drop  ;; 1 + 1 + 5 + 1
              i32.const 4  i32.const 5  call $add  drop  ;; 8
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 8 + 8 + 2 * (1 + 3) + REPLY_COST);
}

#[test]
fn br_table_takes_only_the_chosen_path() {
    let module = |index: u32| {
        format!(
            r#"(module {REPLY}
                (func (export "canister_update run")
                  (block $a
                    (block $b
                      i32.const {index}                     ;; 1
                      br_table $a $b $a)                    ;; 2
                    i32.const 7  drop)                      ;; 2, only when $b was chosen
                  call $reply))"#
        )
    };
    assert_eq!(run(&module(1)).0, 1 + 3 + 2 + REPLY_COST);
    assert_eq!(run(&module(0)).0, 1 + 3 + REPLY_COST);
    assert_eq!(run(&module(5)).0, 1 + 3 + REPLY_COST); // out of range: the default, $a
}

#[test]
fn simd_operations_use_their_table_costs() {
    let wat = format!(
        r#"(module {REPLY}
            (func (export "canister_update run")
              v128.const i32x4 1 2 3 4
              v128.const i32x4 5 6 7 8
              i32x4.mul                                    ;; 1 + 1 + 2
              v128.const i32x4 1 1 1 1
              i32x4.dot_i16x8_s                            ;; 1 + 1
              v128.const i32x4 0 0 0 0
              i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15   ;; 1 + 3
              i32x4.extract_lane 0  drop                   ;; 1 + 1
              f32.const 1.5  f32x4.splat
              f32.const 2.0  f32x4.splat
              f32x4.add                                    ;; 1 + 1 + 1 + 1 + 2
              f32x4.extract_lane 0  drop                   ;; 1 + 1
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 4 + 2 + 4 + 2 + 6 + 2 + REPLY_COST);
}

#[test]
fn bulk_memory_pays_its_size() {
    let wat = format!(
        r#"(module {REPLY}
            (memory (export "memory") 1)
            (func (export "canister_update run")
              i32.const 0    i32.const 7  i32.const 100  memory.fill   ;; 3 + 100, + 100 bytes
              i32.const 200  i32.const 0  i32.const 50   memory.copy   ;; 3 + 100, + 50 bytes
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 103 + 103 + 100 + 50 + REPLY_COST);
}

#[test]
fn system_api_calls_pay_their_overhead() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
            (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
            (import "ic0" "stable64_read" (func $read (param i64 i64 i64)))
            (import "ic0" "performance_counter" (func $counter (param i32) (result i64)))
            (memory (export "memory") 1)
            (func (export "canister_update run")
              i64.const 1  call $grow  drop                             ;; 7, + 500
              i64.const 0  i64.const 0  i64.const 10  call $write       ;; 8, + 20 + 10 + 1000 (new page)
              i64.const 8  i64.const 0  i64.const 10  call $write       ;; 8, + 20 + 10 (same page)
              i64.const 100  i64.const 0  i64.const 10  call $read      ;; 8, + 20 + 10
              i32.const 0  call $counter  drop                          ;; 7, + 200
              call $reply))"#
    );
    let overheads = 500 + 1030 + 30 + 30 + 200;
    assert_eq!(run(&wat).0, 1 + 7 + 8 + 8 + 8 + 7 + overheads + REPLY_COST);
}

#[test]
fn performance_counter_sees_the_block_charged_up_front() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "performance_counter" (func $counter (param i32) (result i64)))
            (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "canister_update run")
              i32.const 0
              i32.const 0  call $counter
              i64.store                                   ;; 1 + 1 + 5 + 1
              i32.const 0  i32.const 8  call $append      ;; 1 + 1 + 5, + 500 + 8 bytes
              call $reply))"#
    );
    let (instructions, reply) = run(&wat);
    // One block: 1 + 8 + 7 + 5 = 21 charged on entry; the counter call adds its 200 first.
    let seen = u64::from_le_bytes(reply.try_into().unwrap());
    assert_eq!(seen, 21 + 200);
    assert_eq!(instructions, 21 + 200 + 508 + 500);
}

#[test]
fn modules_breaking_ic_rules_are_refused_by_name() {
    let refuse = |wat: &str| match Host::install(&wat::parse_str(wat).unwrap(), &[], HostConfig::default()) {
        Err(ic_host::host::HostError::Invalid(e)) => e,
        Err(other) => panic!("expected a validation error, got {other}"),
        Ok(_) => panic!("module was accepted: {wat}"),
    };
    let e = refuse(r#"(module (import "env" "memset" (func)) (func (export "canister_update run")))"#);
    assert_eq!(e, ValidationError::ForeignImport { module: "env".into(), name: "memset".into() });
    assert!(e.to_string().contains("imports only from ic0"));
    let e = refuse(r#"(module (import "__wbindgen_placeholder__" "__wbindgen_describe" (func (param i32))))"#);
    assert!(e.to_string().contains("__wbindgen_placeholder__.__wbindgen_describe"), "{e}");

    let globals: String = (0..1001).map(|i| format!("(global $g{i} i32 (i32.const {i}))")).collect();
    let e = refuse(&format!("(module {globals})"));
    assert_eq!(e, ValidationError::TooManyGlobals { found: 1001, limit: 1000 });
    assert!(e.to_string().contains("number of globals"));

    let e = refuse(r#"(module (func (export "canister_updat run")))"#);
    assert_eq!(e, ValidationError::BadExportName { name: "canister_updat run".into() });
    assert!(e.to_string().contains("exported names"));
    let e = refuse(r#"(module (func (export "canister_update m")) (func (export "canister_query m")))"#);
    assert_eq!(e, ValidationError::DuplicateMethod { name: "m".into() });

    let e = refuse(r#"(module (import "ic0" "msg_reply" (global i32)))"#);
    assert!(matches!(e, ValidationError::ImportKind { kind: "global", .. }), "{e}");
    match Host::install(b"\0asm\x01\0\0\0garbage", &[], HostConfig::default()) {
        Err(ic_host::host::HostError::Invalid(ValidationError::Invalid(_))) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("garbage accepted"),
    }
}
