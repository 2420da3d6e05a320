//! How fast the embedded host executes counted IC instructions, on a compute-heavy canister
//! method (the test canister's `burn` loop), so that long benchmarks stay practical; then on a
//! loop of loads and stores (what the page checks of the 2026 accounting slow down), under both
//! accountings.
//!
//!     cargo bench -p ic-host --bench throughput
//!
//! Target: at least 1 B counted instructions per second of wall time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use candid::Encode;
use ic_host::host::{Accounting, Host, HostConfig, default_controller};

/// 2 × 10⁸ iterations over a 4 MiB array: per iteration an i32 load, a v128 load and an i32
/// store (most of the kernels' memory traffic is loads), 26 counted instructions.
const MEMORY_LOOP: &str = r#"(module
    (import "ic0" "msg_reply" (func $reply))
    (memory (export "memory") 64)
    (func (export "canister_update run") (local $i i32) (local $a i32) (local $acc i32) (local $v v128)
      (loop $l
        local.get $i  i32.const 4  i32.shl  i32.const 4194288  i32.and  local.tee $a
        i32.load  local.get $acc  i32.add  local.set $acc
        local.get $a  v128.load offset=0  local.get $v  i32x4.add  local.set $v
        local.get $a  local.get $acc  i32.store offset=8
        local.get $i  i32.const 1  i32.add  local.tee $i
        i32.const 200000000  i32.lt_u  br_if $l)
      call $reply))"#;

fn main() {
    let wasm = common::test_canister_wasm();
    let arg = Encode!(&TestInit { greeting: String::new() }).unwrap();
    let (mut host, _) = Host::install(wasm, &arg, HostConfig::default()).expect("install");
    // Warm up (first call pays lazy initialisation inside the canister).
    host.update("burn", &Encode!(&1_000u64).unwrap(), default_controller()).unwrap();
    let mut rates = Vec::new();
    for iterations in [100_000_000u64, 300_000_000, 1_000_000_000] {
        let started = Instant::now();
        let out = host.update("burn", &Encode!(&iterations).unwrap(), default_controller()).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert!(out.reply().is_some(), "burn({iterations}) did not reply: {:?}", out.response);
        let rate = out.instructions as f64 / seconds;
        rates.push(rate);
        println!(
            "burn({iterations}): {:.2} B instructions in {seconds:.2} s = {:.2} B instructions/s ({} slices)",
            out.instructions as f64 / 1e9,
            rate / 1e9,
            out.slices
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.2} B counted instructions per second (target >= 1 B/s)", rates[1] / 1e9);

    let wasm = wat::parse_str(MEMORY_LOOP).expect("valid WAT");
    for accounting in [Accounting::Ic2025, Accounting::Ic2026] {
        let (mut host, _) = Host::install(&wasm, &[], HostConfig { accounting, ..HostConfig::default() }).expect("install");
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let out = host.update("run", &[], default_controller()).unwrap();
            let seconds = started.elapsed().as_secs_f64();
            assert!(out.reply().is_some(), "the memory loop did not reply: {:?}", out.response);
            rates.push(out.instructions as f64 / seconds);
        }
        rates.sort_by(f64::total_cmp);
        println!("memory loop ({}): median {:.2} B counted instructions per second", accounting.name(), rates[1] / 1e9);
    }
}

#[derive(candid::CandidType)]
struct TestInit {
    greeting: String,
}
