//! Hostile inputs, built here byte by byte, against the real `walsh` binary: each must be refused
//! with exit status 2 and one `error:` line that names the reason (each cause once), quickly, in
//! little memory, leaving no output file.
//!
//! The child runs under an address-space limit and a timeout, so that a regression fails the test
//! (allocation failure, kill) instead of taking a shared machine down.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::Scratch;
use walsh_engine::format::{Array, Dtype, HalfKind, Payload, QuantizedMatrix, Record, TernaryTensor, WalshFile};

/// What the child may map in all (the old reader needed many GB for some of these inputs).
const ADDRESS_SPACE_LIMIT: u64 = 3 << 30;
/// Longer than any refusal takes even on a loaded machine; the old reader took ~40 s on one input.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The issue's bounds: CPU seconds (robust to a busy machine, unlike wall time) and peak RSS.
const MAX_CPU_SECONDS: f64 = 2.0;
const MAX_PEAK_MB: f64 = 300.0;

struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    cpu_seconds: f64,
    wall_seconds: f64,
    peak_mb: f64,
}

/// Runs `walsh` and measures it: peak RSS and CPU time from `wait4`'s rusage of the child.
fn run_walsh(args: &[&str]) -> Outcome {
    // WALSH_UNDER_TEST runs another build (e.g. an older one, to see these tests fail on it).
    let binary = std::env::var_os("WALSH_UNDER_TEST").unwrap_or_else(|| env!("CARGO_BIN_EXE_walsh").into());
    let mut command = Command::new(binary);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: ADDRESS_SPACE_LIMIT, rlim_max: ADDRESS_SPACE_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    // Reaped by wait4 below (which also gives its rusage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let mut child = command.spawn().expect("run walsh");
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; status and usage are valid for writing.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            // SAFETY: as above, now blocking until the killed child is reaped.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Outcome {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stderr: String::from_utf8_lossy(&reader.join().unwrap()).into_owned(),
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        wall_seconds,
        // ru_maxrss is in kilobytes on Linux.
        peak_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// A scratch directory of this test file, removed when dropped.
fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("walsh-hostile-{name}"))
}

/// Checks a refusal: exit 2, exactly one line `error: …` containing `reason` once, no segment
/// of the cause chain repeated, within the time and memory bounds, nothing left in `scratch`.
fn assert_refused(scratch: &Scratch, args: &[&str], reason: &str, max_peak_mb: f64) -> Outcome {
    let before = scratch.files();
    let outcome = run_walsh(args);
    let what = format!(
        "walsh {}: exit {:?}, signal {:?}, {:.2} s CPU, {:.2} s wall, {:.0} MB peak, stderr {:?}",
        args[0],
        outcome.code,
        outcome.signal,
        outcome.cpu_seconds,
        outcome.wall_seconds,
        outcome.peak_mb,
        outcome.stderr.chars().take(2000).collect::<String>()
    );
    eprintln!("{what}");
    assert_eq!(outcome.code, Some(2), "{what}");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of output: {what}");
    let line = lines[0].strip_prefix("error: ").unwrap_or_else(|| panic!("not an error line: {what}"));
    assert_eq!(line.matches(reason).count(), 1, "{reason:?} exactly once: {what}");
    let causes: Vec<&str> = line.split(": ").collect();
    for cause in &causes {
        assert_eq!(causes.iter().filter(|c| *c == cause).count(), 1, "cause {cause:?} repeated: {what}");
    }
    assert!(outcome.cpu_seconds < MAX_CPU_SECONDS, "{what}");
    assert!(outcome.peak_mb < max_peak_mb, "{what}");
    assert_eq!(scratch.files(), before, "an output or temporary file was left behind: {what}");
    outcome
}

fn refuse_checkpoint(name: &str, checkpoint: &[u8], reason: &str) -> Outcome {
    let scratch = Scratch::new(name);
    let input = scratch.path("ckpt.pt");
    std::fs::write(&input, checkpoint).unwrap();
    let output = scratch.path("out.walsh");
    assert_refused(&scratch, &["compress", input.to_str().unwrap(), "-o", output.to_str().unwrap()], reason, MAX_PEAK_MB)
}

// ---- building pickles and torch zips ---------------------------------------------------------

/// A pickle program, written opcode by opcode (protocol 2, as torch.save writes).
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(&mut self, bytes: &[u8]) -> &mut Pickle {
        self.0.extend_from_slice(bytes);
        self
    }
    fn repeat(&mut self, bytes: &[u8], times: usize) -> &mut Pickle {
        for _ in 0..times {
            self.0.extend_from_slice(bytes);
        }
        self
    }
    /// BINUNICODE.
    fn str(&mut self, s: &str) -> &mut Pickle {
        self.op(b"X").op(&(s.len() as u32).to_le_bytes()).op(s.as_bytes())
    }
    /// BININT for 32-bit values, LONG1 otherwise.
    fn int(&mut self, i: i64) -> &mut Pickle {
        match i32::try_from(i) {
            Ok(small) => self.op(b"J").op(&small.to_le_bytes()),
            Err(_) => self.op(&[0x8a, 8]).op(&i.to_le_bytes()),
        }
    }
    fn ints(&mut self, values: &[i64]) -> &mut Pickle {
        self.op(b"(");
        for &v in values {
            self.int(v);
        }
        self.op(b"t")
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Pickle {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }
    /// `_rebuild_tensor_v2(persistent_id(('storage', FloatStorage, key, 'cpu', len)), offset, shape, stride, False, OrderedDict())`.
    fn tensor(&mut self, key: &str, storage_len: i64, offset: i64, shape: &[i64], stride: &[i64]) -> &mut Pickle {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"(").op(b"(").str("storage").global("torch", "FloatStorage");
        self.str(key).str("cpu").int(storage_len).op(b"t").op(b"Q");
        self.int(offset).ints(shape).ints(stride).op(b"\x89").global("collections", "OrderedDict").op(b")R").op(b"t").op(b"R")
    }
    /// A training checkpoint: `{"model": OrderedDict(<model>), "model_args": {<args>}}`.
    fn checkpoint(model: impl FnOnce(&mut Pickle), args: impl FnOnce(&mut Pickle)) -> Pickle {
        let mut p = Pickle::new();
        p.op(b"}(").str("model").global("collections", "OrderedDict").op(b")R(");
        model(&mut p);
        p.op(b"u").str("model_args").op(b"}(");
        args(&mut p);
        p.op(b"uu.");
        p
    }
}

/// A torch.save zip: `archive/data.pkl`, `archive/data/<key>` storages, `archive/version`.
fn torch_zip(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file("archive/version", options).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap().into_inner()
}

fn floats(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32 * 0.25).to_le_bytes()).collect()
}

/// A checkpoint whose state dict holds one float tensor `norm.weight` with the given view.
fn one_tensor(storage_len: i64, offset: i64, shape: &[i64], stride: &[i64]) -> Vec<u8> {
    let p = Pickle::checkpoint(
        |p| {
            p.str("norm.weight").tensor("0", storage_len, offset, shape, stride);
        },
        |_| {},
    );
    torch_zip(&p.0, &[("0", floats(storage_len as usize))])
}

// ---- the classes of issue 15 -----------------------------------------------------------------

#[test]
fn the_builders_make_a_checkpoint_the_reader_accepts() {
    // A well-formed file of the same construction gets past the checkpoint reader (it is then
    // refused for not being a whole model), so the refusals below are about what each changes.
    let file = one_tensor(4, 0, &[4], &[1]);
    let checkpoint = host_compressor::checkpoint::Checkpoint::parse(file).expect("a valid checkpoint");
    assert_eq!(checkpoint.tensors.len(), 1);
    assert_eq!(checkpoint.tensors[0].0, "norm.weight");
}

#[test]
fn deeply_nested_tuples() {
    // (((…()…),),): a million TUPLE1s, 1 MB. The old reader built it, then overflowed the stack
    // dropping it.
    let mut p = Pickle::new();
    p.op(b")").repeat(&[0x85], 1_000_000).op(b".");
    refuse_checkpoint("nested", &torch_zip(&p.0, &[]), "nested more than");
}

#[test]
fn deeply_nested_lists_inside_a_checkpoint() {
    // model_args {"x": [[[…]]]} built with EMPTY_LIST, APPEND: the container is mutated on the stack.
    let p = Pickle::checkpoint(
        |_| {},
        |p| {
            p.str("x").op(b"]").repeat(b"]", 300_000).repeat(b"a", 300_000);
        },
    );
    refuse_checkpoint("nested-lists", &torch_zip(&p.0, &[]), "nested more than");
}

#[test]
fn memoised_list_fetched_many_times() {
    // "Billion laughs": model_args {"x": L, "y": [L, L, …]} with L a memoised list of 1000 items
    // and ~330 000 BINGETs of it in 1 MB. The old reader copied L on every fetch (many GB).
    let p = Pickle::checkpoint(
        |_| {},
        |p| {
            p.str("x").op(b"](").repeat(b"N", 1000).op(b"eq\x00").str("y").op(b"(").repeat(b"h\x00", 330_000).op(b"l");
        },
    );
    assert!(p.0.len() < 1 << 20);
    // Shared, the values are small; written out as the JSON header they would not be.
    refuse_checkpoint("laughs", &torch_zip(&p.0, &[]), "header limit");
}

#[test]
fn memoised_pairs_doubling() {
    // L0 = [None, None], L(k+1) = [Lk, Lk]: 2^60 leaves in a few hundred bytes.
    let p = Pickle::checkpoint(
        |_| {},
        |p| {
            p.str("x").op(b"(NNlq\x000");
            for k in 0..60u8 {
                p.op(b"(h").op(&[k]).op(b"h").op(&[k]).op(b"lq").op(&[k + 1]).op(b"0");
            }
            p.op(b"h").op(&[60]);
        },
    );
    refuse_checkpoint("doubling", &torch_zip(&p.0, &[]), "header limit");
}

#[test]
fn empty_tensor_with_a_large_offset() {
    refuse_checkpoint("empty-offset", &one_tensor(4, 1_000_000, &[0], &[1]), "offset 1000000");
}

#[test]
fn stride_zero_view_with_a_huge_shape() {
    // 2^28 elements viewed from one: the old reader materialised them (GBs, ~40 s) before refusing.
    refuse_checkpoint("stride0", &one_tensor(1, 0, &[1 << 14, 1 << 14], &[0, 0]), "larger than its storage");
}

#[test]
fn shape_product_overflows() {
    refuse_checkpoint("overflow", &one_tensor(4, 0, &[1 << 33, 1 << 33], &[1, 1]), "overflows");
}

#[test]
fn many_views_of_one_storage() {
    // 20 000 views of one 64 KiB storage in a 1 MB file: each fits, together they are 1.3 GB.
    let n = 16_384;
    let p = Pickle::checkpoint(
        |p| {
            for i in 0..20_000 {
                p.str(&format!("layers.{i}.ffn_norm.weight")).tensor("0", n, i % 7, &[n - 7], &[1]);
            }
        },
        |_| {},
    );
    refuse_checkpoint("many-views", &torch_zip(&p.0, &[("0", floats(n as usize))]), "more than twice the file");
}

#[test]
fn negative_offset_is_reported_once() {
    let outcome = refuse_checkpoint("below-zero", &one_tensor(4, -1, &[4], &[1]), "offset -1 is negative");
    assert!(outcome.stderr.contains("data.pkl"), "{}", outcome.stderr);
}

// ---- the other readers -----------------------------------------------------------------------

#[test]
fn meta_pkl_deeply_nested() {
    let scratch = scratch("meta-nested");
    let mut p = Pickle::new();
    p.op(b"}(").str("itos").op(b")").repeat(&[0x85], 1_000_000).op(b"u.");
    let meta = scratch.path("meta.pkl");
    std::fs::write(&meta, &p.0).unwrap();
    let out = scratch.path("tokenizer.json");
    assert_refused(&scratch, &["tokenizer", meta.to_str().unwrap(), "-o", out.to_str().unwrap()], "nested more than", MAX_PEAK_MB);
}

#[test]
fn meta_pkl_memoised_fetches() {
    let scratch = scratch("meta-laughs");
    let mut p = Pickle::new();
    // {"itos": {0: 'a'}, "x": L, "y": [L × 330 000]}.
    p.op(b"}(").str("itos").op(b"}(K\x00").str("a").op(b"u").str("x").op(b"](").repeat(b"N", 1000).op(b"eq\x00");
    p.str("y").op(b"(").repeat(b"h\x00", 330_000).op(b"lu.");
    let meta = scratch.path("meta.pkl");
    std::fs::write(&meta, &p.0).unwrap();
    let out = scratch.path("tokenizer.json");
    // The vocabulary is readable: the shared list costs nothing, and "y" is not needed.
    let before = scratch.files();
    let outcome = run_walsh(&["tokenizer", meta.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    eprintln!("{:?} {:.2} s CPU {:.0} MB {}", outcome.code, outcome.cpu_seconds, outcome.peak_mb, outcome.stderr);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(outcome.cpu_seconds < MAX_CPU_SECONDS && outcome.peak_mb < MAX_PEAK_MB);
    assert_eq!(scratch.files().len(), before.len() + 1);
}

#[test]
fn walsh_model_too_wide_is_refused_before_packing() {
    // A 16 MB all-zero wq of [8, 4096, 4096]: 4096 input columns per part is wider than the
    // lookup tables allow. The old assembly expanded (128 MB) and packed (128 MB) it first.
    let scratch = scratch("wide");
    let (d, out_o, in_o) = (32_768usize, 4096usize, 4096usize);
    let half = |kind, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        Payload::Half { kind, array: Array { dtype: Dtype::F16, shape, data: Cow::Owned(vec![0; 2 * n]) } }
    };
    let record = |name: &str, payload| Record { name: Cow::Owned(name.to_string()), payload };
    let file = WalshFile {
        version: 4,
        header_json: Cow::Owned(format!(r#"{{"n_layer": 1, "n_head": 4096, "n_embd": {d}, "block_size": 1, "vocab_size": 1}}"#)),
        records: vec![
            record("freqs_cis", Payload::Rope(Array { dtype: Dtype::F32, shape: vec![2, 4, 2], data: Cow::Owned(vec![0; 64]) })),
            record("tok_embeddings.weight", Payload::Embedding(QuantizedMatrix { scale: 1.0, rows: 1, cols: d, data: Cow::Owned(vec![0; d]) })),
            record("layers.0.attention_norm.weight", half(HalfKind::Norm, vec![d])),
            record(
                "layers.0.attention.wq.weight",
                Payload::Ternary(TernaryTensor {
                    shape: [8, out_o, in_o],
                    nnz: 0,
                    bitmask: Cow::Owned(vec![0; 8 * out_o * in_o / 8]),
                    signs: Cow::Owned(Vec::new()),
                }),
            ),
            record("layers.0.attention.wq.beta", half(HalfKind::Beta, vec![out_o])),
        ],
    };
    let model = scratch.path("wide.walsh");
    std::fs::write(&model, file.to_bytes().unwrap()).unwrap();
    let tokenizer = scratch.path("missing-tokenizer.json");
    let args = ["generate", model.to_str().unwrap(), "--tokenizer", tokenizer.to_str().unwrap(), "--prompt", "a"];
    // Reading the file takes 16 MB; the old assembly peaked at ~290 MB.
    assert_refused(&scratch, &args, "lookup table", 100.0);
}
