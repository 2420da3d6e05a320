//! How fast the embedded host executes counted IC instructions, on a compute-heavy canister
//! method (the test canister's `burn` loop), so that long benchmarks stay practical.
//!
//!     cargo bench -p ic-host --bench throughput
//!
//! Target: at least 1 B counted instructions per second of wall time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use candid::Encode;
use ic_host::host::{Host, HostConfig, default_controller};

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
}

#[derive(candid::CandidType)]
struct TestInit {
    greeting: String,
}
