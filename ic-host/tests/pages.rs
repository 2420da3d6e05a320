//! The IC's memory page charges since mid-2026 (the deterministic memory tracker), against sums
//! computed by hand. Rules (issue 12; dfinity/ic PRs #10536, #10789, #11180, #10065): per 64 KiB
//! page of the heap or of stable memory, 80 000 instructions on its first access in a message
//! and 80 000 more on its first write; after the message 48 000 per dirty page for copying,
//! counted in the message's instructions but never seen by `performance_counter`; queries and
//! `inspect_message` pay the first access only; the old 1 000 per dirty stable page is gone;
//! creating the execution state on install and upgrade costs 20 M. The static costs are those
//! of `metering.rs` (entry 1, each block its operators, System API overheads).

use ic_host::host::{Accounting, Host, HostConfig, Inspection, Outcome, Response, default_controller};

const ACCESS: u64 = 80_000;
const WRITE: u64 = 80_000;
const COPY: u64 = 48_000;
const EXECUTION_STATE: u64 = 20_000_000;

const REPLY: &str = r#"(import "ic0" "msg_reply" (func $reply))"#;
const REPLY_COST: u64 = 5 + 500; // call + System API overhead

fn config(accounting: Accounting) -> HostConfig {
    HostConfig { accounting, ..HostConfig::default() }
}

fn install(wat: &str) -> Host {
    let wasm = wat::parse_str(wat).expect("valid WAT");
    Host::install(&wasm, &[], config(Accounting::Ic2026)).expect("install").0
}

fn replied(out: Outcome) -> (u64, Vec<u8>) {
    match out.response {
        Response::Reply(bytes) => (out.instructions, bytes),
        other => panic!("no reply: {other:?}"),
    }
}

/// Installs the module and returns (instructions of the update `run`, its reply).
fn run(wat: &str) -> (u64, Vec<u8>) {
    let mut host = install(wat);
    replied(host.update("run", &[], default_controller()).expect("run"))
}

#[test]
fn the_first_read_of_each_page_costs_80_000() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 4)
            (func (export "canister_update run")
              i32.const 0       i32.load  drop          ;; 3, page 0
              i32.const 65536   i32.load  drop          ;; 3, page 1
              i32.const 131072  i32.load  drop          ;; 3, page 2
              i32.const 262140  i32.load  drop          ;; 3, page 3 (its last 4 bytes)
              call $reply))"#
    );
    // Reads dirty nothing: no copy charge.
    assert_eq!(run(&wat).0, 1 + 12 + REPLY_COST + 4 * ACCESS);
}

#[test]
fn repeated_reads_of_one_page_pay_once_per_message() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 2)
            (func (export "canister_update run")
              i32.const 0       i32.load  drop          ;; 3
              i32.const 100     i64.load  drop          ;; 3
              i32.const 65535   i32.load8_u  drop       ;; 3, the page's last byte
              i32.const 4       v128.load offset=32  drop  ;; 3
              call $reply))"#
    );
    let mut host = install(&wat);
    let expected = 1 + 12 + REPLY_COST + ACCESS;
    assert_eq!(replied(host.update("run", &[], default_controller()).unwrap()).0, expected);
    // Every message starts with empty sets: the next one pays again.
    assert_eq!(replied(host.update("run", &[], default_controller()).unwrap()).0, expected);
}

#[test]
fn the_first_write_to_a_page_already_read_costs_80_000_more_and_48_000_to_copy() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 1)
            (func (export "canister_update run")
              i32.const 0   i32.load  drop              ;; 3: access
              i32.const 8   i32.const 1  i32.store      ;; 3: first write
              i32.const 16  i64.const 2  i64.store      ;; 3: nothing more
              i32.const 24  i32.const 3  i32.store8     ;; 3
              call $reply))"#
    );
    assert_eq!(run(&wat).0, 1 + 12 + REPLY_COST + ACCESS + WRITE + COPY);
}

#[test]
fn a_query_pays_the_first_access_only() {
    let body = r#"i32.const 0  i32.const 1  i32.store           ;; 3: page 0 written
              i32.const 70000  f64.const 1  f64.store        ;; 3: page 1 written
              call $reply"#;
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 2)
            (func (export "canister_update run") {body})
            (func (export "canister_query look") {body}))"#
    );
    let mut host = install(&wat);
    let base = 1 + 6 + REPLY_COST;
    let update = replied(host.update("run", &[], default_controller()).unwrap()).0;
    assert_eq!(update, base + 2 * (ACCESS + WRITE + COPY));
    let query = replied(host.query("look", &[], default_controller()).unwrap()).0;
    assert_eq!(query, base + 2 * ACCESS);
}

#[test]
fn inspect_message_pays_the_first_access_only() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "accept_message" (func $accept))
            (memory (export "memory") 1)
            (func (export "canister_inspect_message")
              i32.const 0  i32.const 1  i32.store      ;; 3
              call $accept)                            ;; 5, + 500
            (func (export "canister_update run") call $reply))"#
    );
    let mut host = install(&wat);
    let (verdict, used) = host.inspect_message("run", &[], default_controller()).unwrap();
    assert_eq!(verdict, Inspection::Accepted);
    assert_eq!(used, 1 + 3 + 5 + 500 + ACCESS);
}

#[test]
fn an_access_across_a_page_boundary_touches_both_pages() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 4)
            (func (export "canister_update run")
              i32.const 65534  i32.load  drop                        ;; 3: pages 0 and 1
              i32.const 131064  v128.const i64x2 0 0  v128.store offset=4   ;; 3: pages 1 and 2, written
              i32.const 196600  i64.load offset=4  drop              ;; 3: bytes 196604..196611, pages 2 and 3
              call $reply))"#
    );
    // Pages 0 to 3 accessed once each; pages 1 and 2 written.
    assert_eq!(run(&wat).0, 1 + 9 + REPLY_COST + 4 * ACCESS + 2 * (WRITE + COPY));
}

#[test]
fn memory_fill_and_copy_pay_for_every_page_they_touch() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 8)
            (func (export "canister_update run")
              i32.const 0  i32.const 7  i32.const 196608  memory.fill        ;; 103, + 196 608 bytes: pages 0-2 written
              i32.const 393216  i32.const 196608  i32.const 65537  memory.copy ;; 103, + 65 537 bytes: 3-4 read, 6-7 written
              i32.const 0  i32.const 0  i32.const 0  memory.fill              ;; 103: no byte, no page
              call $reply))"#
    );
    let static_cost = 1 + 3 * 103 + 196_608 + 65_537 + REPLY_COST;
    let fill = 3 * (ACCESS + WRITE + COPY);
    let copy = 2 * ACCESS + 2 * (ACCESS + WRITE + COPY);
    assert_eq!(run(&wat).0, static_cost + fill + copy);
}

#[test]
fn stable64_read_and_write_touch_both_memories() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
            (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
            (import "ic0" "stable64_read" (func $read (param i64 i64 i64)))
            (memory (export "memory") 2)
            (func (export "canister_update run")
              i64.const 2  call $grow  drop                             ;; 7, + 500
              i64.const 65530  i64.const 0  i64.const 10  call $write   ;; 8, + 30: heap page 0 read, stable pages 0-1 written
              i64.const 65536  i64.const 0  i64.const 10  call $read    ;; 8, + 30: stable page 0 (seen), heap page 1 written
              i64.const 0  i64.const 65536  i64.const 4  call $read     ;; 8, + 24: stable page 1, heap page 0 written
              call $reply))"#
    );
    let static_cost = 1 + 7 + 3 * 8 + 500 + 30 + 30 + 24 + REPLY_COST;
    let heap = ACCESS + (ACCESS + WRITE + COPY) + (WRITE + COPY);
    let stable = 2 * (ACCESS + WRITE + COPY);
    assert_eq!(run(&wat).0, static_cost + heap + stable);
}

#[test]
fn performance_counter_sees_access_and_write_charges_but_not_the_copy() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "performance_counter" (func $counter (param i32) (result i64)))
            (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
            (memory (export "memory") 2)
            (func (export "canister_update run")
              i32.const 65536  i32.const 1  i32.store     ;; 3: page 1 written
              i32.const 0
              i32.const 0  call $counter
              i64.store                                   ;; 1 + 1 + 5 + 1: page 0 written after the counter call
              i32.const 0  i32.const 8  call $append      ;; 1 + 1 + 5, + 500 + 8 bytes
              call $reply))"#
    );
    let (instructions, reply) = run(&wat);
    // One block: 1 + 3 + 8 + 7 + 5 = 24 charged on entry; then page 1's charges; the counter
    // call adds its 200 first.
    let seen = u64::from_le_bytes(reply.try_into().unwrap());
    assert_eq!(seen, 24 + ACCESS + WRITE + 200);
    assert_eq!(instructions, 24 + 200 + 508 + 500 + 2 * (ACCESS + WRITE) + 2 * COPY);
}

#[test]
fn the_execution_state_costs_20_m_on_install_and_upgrade() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "canister_init") i32.const 0  i32.const 1  i32.store)   ;; 1 + 3
        (func (export "canister_post_upgrade")))"#;
    let wasm = wat::parse_str(wat).unwrap();
    let (mut host, installed) = Host::install(&wasm, &[], config(Accounting::Ic2026)).unwrap();
    assert_eq!(installed.instructions, EXECUTION_STATE + 4 + ACCESS + WRITE + COPY);
    assert_eq!(host.upgrade(&wasm, &[]).unwrap().instructions, EXECUTION_STATE + 1);
    let (mut host, installed) = Host::install(&wasm, &[], config(Accounting::Ic2025)).unwrap();
    assert_eq!(installed.instructions, 4);
    assert_eq!(host.upgrade(&wasm, &[]).unwrap().instructions, 1);
}

#[test]
fn ic_2025_accounting_charges_no_heap_pages_and_1_000_per_new_stable_page() {
    let wat = format!(
        r#"(module {REPLY}
            (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
            (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
            (memory (export "memory") 2)
            (func (export "canister_update run")
              i32.const 65536  i32.const 1  i32.store                  ;; 3
              i64.const 1  call $grow  drop                            ;; 7, + 500
              i64.const 0  i64.const 0  i64.const 10  call $write      ;; 8, + 30 + 1 000
              call $reply))"#
    );
    let wasm = wat::parse_str(&wat).unwrap();
    let (mut host, _) = Host::install(&wasm, &[], config(Accounting::Ic2025)).unwrap();
    let out = host.update("run", &[], default_controller()).unwrap();
    assert_eq!(out.instructions, 1 + 3 + 7 + 8 + 500 + 30 + 1_000 + REPLY_COST);
    assert_eq!(out.pages.instructions, 1_000);
}

#[test]
fn outcomes_report_their_page_charges() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 2)
            (func (export "canister_update run")
              i32.const 0  i32.load  drop
              i32.const 65536  i32.const 1  i32.store
              call $reply)
            (func (export "canister_query look")
              i32.const 65536  i32.const 1  i32.store
              call $reply))"#
    );
    let mut host = install(&wat);
    let update = host.update("run", &[], default_controller()).unwrap().pages;
    assert_eq!((update.instructions, update.accessed, update.written), (2 * ACCESS + WRITE + COPY, 2, 1));
    // A query's write is tracked, not paid.
    let query = host.query("look", &[], default_controller()).unwrap().pages;
    assert_eq!((query.instructions, query.accessed, query.written), (ACCESS, 1, 1));
}

#[test]
fn a_composite_query_pays_for_writes() {
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 1)
            (func (export "canister_composite_query look")
              i32.const 0  i32.const 1  i32.store       ;; 3
              call $reply))"#
    );
    let mut host = install(&wat);
    let out = host.query("look", &[], default_controller()).unwrap();
    assert_eq!(out.instructions, 1 + 3 + REPLY_COST + ACCESS + WRITE + COPY);
}

#[test]
fn a_trapped_update_pays_what_it_touched_but_no_copy() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "canister_update run")
          i32.const 0  i32.const 1  i32.store       ;; 3
          unreachable))                             ;; 1"#;
    let mut host = install(wat);
    let out = host.update("run", &[], default_controller()).unwrap();
    assert!(matches!(out.response, Response::Reject { .. }));
    assert_eq!(out.instructions, 1 + 4 + ACCESS + WRITE);
}

#[test]
fn accesses_relative_to_one_local_pay_for_each_page_they_touch() {
    // The host checks such accesses together (instrument.rs); the sums are the same.
    let wat = format!(
        r#"(module {REPLY} (memory (export "memory") 5)
            (func (export "canister_update run") (local $p i32) (local $i i32)
              i32.const 65000  local.set $p                        ;; 2
              local.get $p  i32.load offset=0  drop                ;; 3: page 0
              local.get $p  i32.load offset=1000  drop             ;; 3: page 1
              local.get $p  i32.load offset=600  drop              ;; 3: page 1
              local.get $p  i32.const 7  i32.store offset=2000     ;; 3: page 1 written
              local.get $p  i64.load offset=66000  drop            ;; 3: page 2, beyond 64 KiB of the others
              i32.const 0  br_if 0                                 ;; 3: the entry block ends
              local.get $p  i32.const 1  i32.store8 offset=70000   ;; 3: page 2 written
              i32.const 3  local.set $i                            ;; 2, then the loop
              (loop $l
                local.get $p  v128.load offset=200000  drop        ;; 3: page 4, each time
                local.get $i  i32.const 1  i32.sub  local.tee $i   ;; 4
                br_if $l)                                          ;; 2
              call $reply))"#
    );
    let static_cost = (1 + 2 + 15 + 3) + 5 + 3 * 9 + REPLY_COST;
    assert_eq!(run(&wat).0, static_cost + 4 * ACCESS + 2 * (WRITE + COPY));
}
