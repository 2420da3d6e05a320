//! Benchmark: `walsh compress` on the gpt2-bench checkpoint (117 MB). Prints wall time and the
//! process's peak resident memory, measured on the real binary in a child process.
//!
//!     cargo bench -p host-compressor --bench compress
//!
//! Targets (issue 3): under 0.5 s and under 1.5× the checkpoint size. The Python compressor takes
//! about 12 s and 1.1 GB on this kind of machine.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 7;

/// Runs the command and returns (wall seconds, peak RSS bytes, success).
// The child is reaped by wait4 below (for its rusage), not by Child::wait, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, u64, bool) {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn walsh");
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    // Linux reports ru_maxrss in kilobytes.
    (seconds, usage.ru_maxrss as u64 * 1024, libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
}

fn main() {
    let Some(data) = test_support::testdata() else { return };
    let set = data.join("gpt2-bench");
    let ckpt = set.join("ckpt.pt");
    let ckpt_bytes = std::fs::metadata(&ckpt).unwrap().len();
    let out = std::env::temp_dir().join(format!("walsh-bench-{}.walsh", std::process::id()));
    let walsh = Path::new(env!("CARGO_BIN_EXE_walsh"));

    let mut times = Vec::new();
    let mut peak = 0;
    // One unmeasured run warms the page cache, as a user compressing twice would see.
    for run in 0..=RUNS {
        let (seconds, rss, ok) = measure(Command::new(walsh).args(["compress", ckpt.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quiet"]));
        assert!(ok, "walsh compress failed");
        if run > 0 {
            times.push(seconds);
            peak = peak.max(rss);
        }
    }
    let identical = std::fs::read(&out).unwrap() == std::fs::read(set.join("model.walsh")).unwrap();
    let _ = std::fs::remove_file(&out);
    times.sort_by(f64::total_cmp);
    println!("walsh compress gpt2-bench/ckpt.pt ({:.1} MB), {RUNS} runs:", ckpt_bytes as f64 / 1e6);
    println!("  wall time: min {:.3} s, median {:.3} s, max {:.3} s (target < 0.5 s)", times[0], times[RUNS / 2], times[RUNS - 1]);
    println!("  peak memory: {:.1} MB = {:.2}x the checkpoint (target < 1.5x)", peak as f64 / 1e6, peak as f64 / ckpt_bytes as f64);
    println!("  output identical to the Python compressor's model.walsh: {identical}");
    assert!(identical);
}
