//! `walsh compress` against the Python compressor's output, and on checkpoints rewritten from the
//! real ones: a `torch.compile` prefix, untied embeddings, bf16 weights, and each class of bad
//! input, which must fail with a clear message, exit code 2, and no output file.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use host_compressor::pickle::{self, StorageType, Value};
use test_support::Scratch;
use walsh_engine::format::{Payload, Record, WalshFile};

fn walsh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walsh")).args(args).output().expect("run walsh")
}

/// A scratch directory of this test file, removed when dropped.
fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("walsh-compress-{name}"))
}

/// Compresses `ckpt` and returns the output bytes, asserting success.
fn compress_ok(ckpt: &Path, out: &Path) -> Vec<u8> {
    let result = walsh(&["compress", ckpt.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quiet"]);
    assert!(result.status.success(), "compress failed: {}", String::from_utf8_lossy(&result.stderr));
    assert!(result.stdout.is_empty(), "--quiet printed {:?}", String::from_utf8_lossy(&result.stdout));
    std::fs::read(out).unwrap()
}

// ---- the reference checkpoints ------------------------------------------------------------

#[test]
fn byte_identical_to_the_python_compressor() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("identical");
    for set in ["char-tiny", "gpt2-small", "gpt2-bench"] {
        let out = scratch.path(&format!("{set}.walsh"));
        let ours = compress_ok(&data.join(set).join("ckpt.pt"), &out);
        let theirs = std::fs::read(data.join(set).join("model.walsh")).unwrap();
        assert!(ours == theirs, "{set}: output differs from the Python compressor's model.walsh");
    }
    assert_eq!(scratch.files().len(), 3, "no temporary files left behind");
}

#[test]
fn json_report_and_log() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("json");
    let out = scratch.path("m.walsh");
    let ckpt = data.join("char-tiny/ckpt.pt");
    let result = walsh(&["compress", ckpt.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"]);
    assert!(result.status.success());
    let v: serde_json::Value = serde_json::from_slice(&result.stdout).expect("one JSON object");
    assert_eq!(v["output_bytes"].as_u64().unwrap(), std::fs::read(&out).unwrap().len() as u64);
    assert_eq!(v["header"]["n_embd"], 64);
    let tensors = v["tensors"].as_array().unwrap();
    let kinds = |k: &str| tensors.iter().filter(|t| t["kind"] == k).count();
    assert_eq!((kinds("BITMASK"), kinds("EMBED"), kinds("NORM")), (14, 1, 5));
    let skipped: Vec<&str> = tensors.iter().filter(|t| t["kind"] == "SKIP").map(|t| t["name"].as_str().unwrap()).collect();
    assert!(skipped.contains(&"output.weight"), "{skipped:?}");
    let wq = tensors.iter().find(|t| t["name"] == "layers.0.attention.wq.weight").unwrap();
    // 397 non-zero of 512 (compress_log.txt of the Python tool: "22.5% sparse, 397 non-zero").
    assert_eq!(wq["nonzero"], 397);
    assert!((wq["sparsity"].as_f64().unwrap() - 0.2246).abs() < 1e-3);

    let log = walsh(&["compress", ckpt.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let log = String::from_utf8(log.stdout).unwrap();
    assert!(log.contains("[BITMASK] layers.0.attention.wq.weight: [8, 8, 8] (22.5% sparse, 397 non-zero)"), "{log}");
    assert!(log.contains("Ternary weights: 14"), "{log}");
}

// ---- rewriting checkpoints ----------------------------------------------------------------

/// The entries of a torch zip, in order.
fn read_zip(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().to_string(), data)
        })
        .collect()
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

fn entry<'e>(entries: &'e mut [(String, Vec<u8>)], suffix: &str) -> &'e mut Vec<u8> {
    &mut entries.iter_mut().find(|(n, _)| n.ends_with(suffix)).unwrap_or_else(|| panic!("no entry {suffix}")).1
}

/// One pickle opcode: where it starts and how many bytes it spans.
#[derive(Debug, Clone, Copy)]
struct Op {
    at: usize,
    len: usize,
    code: u8,
}

/// Splits a pickle into opcodes (the subset torch writes).
fn ops(p: &[u8]) -> Vec<Op> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let code = p[i];
        let u32_at = |j: usize| u32::from_le_bytes(p[j..j + 4].try_into().unwrap()) as usize;
        let len = match code {
            b'q' | b'h' | b'K' | 0x80 => 2,
            b'M' => 3,
            b'r' | b'j' | b'J' => 5,
            b'G' | 0x95 => 9,
            b'X' | b'B' => 5 + u32_at(i + 1),
            0x8c | b'C' => 2 + p[i + 1] as usize,
            0x8a => 2 + p[i + 1] as usize,
            b'c' => {
                let first = p[i + 1..].iter().position(|&b| b == b'\n').unwrap();
                let second = p[i + 2 + first..].iter().position(|&b| b == b'\n').unwrap();
                3 + first + second
            }
            _ => 1,
        };
        out.push(Op { at: i, len, code });
        i += len;
    }
    out
}

fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// Replaces every BINUNICODE string `from` by `to`.
fn replace_string(p: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (needle, with) = (unicode(from), unicode(to));
    let mut out = Vec::with_capacity(p.len());
    let mut last = 0;
    let mut found = 0;
    for op in ops(p) {
        if op.code == b'X' && p[op.at..op.at + op.len] == needle[..] {
            out.extend_from_slice(&p[last..op.at]);
            out.extend_from_slice(&with);
            last = op.at + op.len;
            found += 1;
        }
    }
    assert!(found > 0, "string {from:?} not in the pickle");
    out.extend_from_slice(&p[last..]);
    out
}

/// Index (in `ops`) of the op that pushes the string `s`.
fn find_string(p: &[u8], list: &[Op], s: &str) -> usize {
    let needle = unicode(s);
    list.iter().position(|op| op.code == b'X' && p[op.at..op.at + op.len] == needle[..]).unwrap_or_else(|| panic!("{s:?} not found"))
}

/// Ops that push a value (memo puts do not).
fn is_value(op: &Op) -> bool {
    !matches!(op.code, b'q' | b'r' | 0x94)
}

/// Sets the boolean that follows the model_args key `key`.
fn set_flag(p: &[u8], key: &str, value: bool) -> Vec<u8> {
    let list = ops(p);
    let k = find_string(p, &list, key);
    let flag = list[k + 1..].iter().find(|op| is_value(op)).unwrap();
    assert!(matches!(flag.code, 0x88 | 0x89), "{key} is not followed by a bool");
    let mut out = p.to_vec();
    out[flag.at] = if value { 0x88 } else { 0x89 };
    out
}

struct Fixture {
    entries: Vec<(String, Vec<u8>)>,
}

impl Fixture {
    fn from(path: &Path) -> Fixture {
        Fixture { entries: read_zip(path) }
    }
    fn pickle(&mut self) -> &mut Vec<u8> {
        entry(&mut self.entries, "/data.pkl")
    }
    fn edit_pickle(mut self, f: impl FnOnce(&[u8]) -> Vec<u8>) -> Fixture {
        let new = f(self.pickle());
        *self.pickle() = new;
        self
    }
    fn save(&self, path: &Path) -> PathBuf {
        write_zip(path, &self.entries);
        path.to_path_buf()
    }
    /// Storage key and dtype of every tensor in the pickle (model, optimizer, everything).
    fn storages(&mut self) -> Vec<(String, StorageType)> {
        fn walk(v: &Value, out: &mut Vec<(String, StorageType)>) {
            match v {
                Value::Tensor(t) => out.push((t.storage_key.to_string(), t.dtype)),
                Value::Tuple(items) | Value::List(items) => items.iter().for_each(|i| walk(i, out)),
                Value::Dict(items) => items.iter().for_each(|(k, v)| {
                    walk(k, out);
                    walk(v, out)
                }),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&pickle::load(self.pickle()).unwrap(), &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup();
        out
    }
    fn tensor_storage(&mut self, name: &str) -> String {
        let root = pickle::load(self.pickle()).unwrap();
        match root.get("model").unwrap().get(name) {
            Some(Value::Tensor(t)) => t.storage_key.to_string(),
            other => panic!("{name}: {other:?}"),
        }
    }
}

fn reference_walsh(data: &Path) -> Vec<u8> {
    std::fs::read(data.join("char-tiny/model.walsh")).unwrap()
}

#[test]
fn compile_prefix_is_stripped() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("prefix");
    let reference = reference_walsh(&data);
    let file = WalshFile::parse(&reference).unwrap();
    let mut names: Vec<String> = file.records.iter().map(|r| r.name.to_string()).collect();
    names.extend(
        [
            "output.weight",
            "layers.0.attention.head_mixer.signs",
            "layers.0.attention.head_mixer.widx",
            "layers.1.attention.head_mixer.signs",
            "layers.1.attention.head_mixer.widx",
        ]
        .map(String::from),
    );
    let ckpt = Fixture::from(&data.join("char-tiny/ckpt.pt"))
        .edit_pickle(|p| names.iter().fold(p.to_vec(), |p, n| replace_string(&p, n, &format!("_orig_mod.{n}"))))
        .save(&scratch.path("prefixed.pt"));
    assert!(compress_ok(&ckpt, &scratch.path("out.walsh")) == reference);
}

#[test]
fn untied_output_head_is_written() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("untied");
    let mut fixture = Fixture::from(&data.join("char-tiny/ckpt.pt"));
    let key = fixture.tensor_storage("output.weight");
    // Point output.weight at a copy of its storage under a new key: same values, other memory.
    let copy = entry(&mut fixture.entries, &format!("/data/{key}")).clone();
    let prefix = fixture.entries[0].0.split('/').next().unwrap().to_string();
    fixture.entries.push((format!("{prefix}/data/untied"), copy));
    let fixture = fixture.edit_pickle(|p| {
        let list = ops(p);
        let at = find_string(p, &list, "output.weight");
        // output.weight → rebuild, MARK, MARK, 'storage', type, KEY, ...: the 3rd value after the 2nd MARK.
        let marks: Vec<usize> = (at..list.len()).filter(|&i| list[i].code == b'(').take(2).collect();
        let key_op = (marks[1] + 1..list.len()).filter(|&i| is_value(&list[i])).nth(2).unwrap();
        let op = list[key_op];
        [&p[..op.at], &unicode("untied")[..], &p[op.at + op.len..]].concat()
    });
    let ckpt = fixture.save(&scratch.path("untied.pt"));
    let ours = compress_ok(&ckpt, &scratch.path("out.walsh"));

    // Expected: the reference file plus an `E output.weight` record equal to the embedding's,
    // in state-dict order (right after tok_embeddings.weight).
    let reference = reference_walsh(&data);
    let mut expected = WalshFile::parse(&reference).unwrap();
    let at = expected.records.iter().position(|r| r.name == "tok_embeddings.weight").unwrap();
    let mut head = expected.records[at].clone();
    head.name = Cow::Borrowed("output.weight");
    expected.records.insert(at + 1, head);
    assert!(ours == expected.to_bytes().unwrap(), "untied output differs from the expected records");
    let parsed = WalshFile::parse(&ours).unwrap();
    assert!(matches!(parsed.record("output.weight").map(|r: &Record| &r.payload), Some(Payload::Embedding(_))));
}

#[test]
fn bf16_weights_compress_like_the_same_values_in_f32() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("bf16");
    let mut bf16 = Fixture::from(&data.join("char-tiny/ckpt.pt"));
    let mut rounded = Fixture::from(&data.join("char-tiny/ckpt.pt"));
    let floats: Vec<String> = bf16.storages().into_iter().filter(|(_, t)| *t == StorageType::F32).map(|(k, _)| k).collect();
    assert!(floats.len() > 20);
    for key in &floats {
        let suffix = format!("/data/{key}");
        let values: Vec<half::bf16> =
            entry(&mut bf16.entries, &suffix).chunks_exact(4).map(|b| half::bf16::from_f32(f32::from_le_bytes(b.try_into().unwrap()))).collect();
        *entry(&mut bf16.entries, &suffix) = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        *entry(&mut rounded.entries, &suffix) = values.iter().flat_map(|v| v.to_f32().to_le_bytes()).collect();
    }
    let bf16 = bf16.edit_pickle(|p| {
        let list = ops(p);
        let global = list.iter().find(|op| op.code == b'c' && p[op.at..op.at + op.len] == *b"ctorch\nFloatStorage\n").unwrap();
        [&p[..global.at], b"ctorch\nBFloat16Storage\n", &p[global.at + global.len..]].concat()
    });
    let a = compress_ok(&bf16.save(&scratch.path("bf16.pt")), &scratch.path("a.walsh"));
    let b = compress_ok(&rounded.save(&scratch.path("rounded.pt")), &scratch.path("b.walsh"));
    assert!(a == b, "bf16 and f32-of-the-same-values outputs differ");
    assert!(a != reference_walsh(&data), "rounding to bf16 should change some stored values");
}

// ---- bad input ----------------------------------------------------------------------------

/// Compression must fail with exit code 2, a message containing `needle`, and no output file.
fn assert_refused(scratch: &Scratch, ckpt: &Path, needle: &str) {
    let before = scratch.files();
    let out = scratch.path("refused.walsh");
    let result = walsh(&["compress", ckpt.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{}: {stderr}", ckpt.display());
    assert!(stderr.contains(needle), "{}: expected {needle:?} in: {stderr}", ckpt.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(scratch.files(), before, "{}: an output or temporary file was left behind", ckpt.display());
}

#[test]
fn bad_inputs_are_refused_by_name() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("bad");
    let source = data.join("char-tiny/ckpt.pt");
    let fixture = || Fixture::from(&source);

    let text = scratch.path("notes.txt");
    std::fs::write(&text, "just some text, not a checkpoint").unwrap();
    assert_refused(&scratch, &text, "not a zip archive");
    let empty = scratch.path("empty.pt");
    std::fs::write(&empty, b"").unwrap();
    assert_refused(&scratch, &empty, "not a zip archive");

    let legacy = scratch.path("legacy.pt");
    let mut bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    bytes.extend_from_slice(&[0; 64]);
    std::fs::write(&legacy, bytes).unwrap();
    assert_refused(&scratch, &legacy, "legacy (pre-1.6) torch format");

    let ckpt = fixture().edit_pickle(|p| replace_string(p, "model", "weights")).save(&scratch.path("no-model.pt"));
    assert_refused(&scratch, &ckpt, "no \"model\" entry");
    let ckpt = fixture().edit_pickle(|p| replace_string(p, "model_args", "model_argz")).save(&scratch.path("no-args.pt"));
    assert_refused(&scratch, &ckpt, "no \"model_args\" entry");

    let ckpt = fixture().edit_pickle(|p| replace_string(p, "octonion", "hadamard")).save(&scratch.path("hadamard.pt"));
    assert_refused(&scratch, &ckpt, "hadamard algebra");
    let ckpt = fixture().edit_pickle(|p| set_flag(p, "hash_embeddings", true)).save(&scratch.path("hash.pt"));
    assert_refused(&scratch, &ckpt, "hash embeddings");
    let ckpt = fixture().edit_pickle(|p| set_flag(p, "use_moe", true)).save(&scratch.path("moe.pt"));
    assert_refused(&scratch, &ckpt, "MoE");
    let ckpt = fixture().edit_pickle(|p| replace_string(p, "layers.1.ffn_norm.weight", "layers.1.stream_proj.weight")).save(&scratch.path("mhc.pt"));
    assert_refused(&scratch, &ckpt, "mHC");

    // wq viewed as [4, 16, 8] (a valid strided view of its storage), not 8 octonion parts.
    let ckpt = fixture()
        .edit_pickle(|p| {
            let list = ops(p);
            let at = find_string(p, &list, "layers.0.attention.wq.weight");
            let size = (at..list.len()).find(|&i| list[i].code == 0x87).unwrap();
            let mut out = p.to_vec();
            out[list[size - 3].at + 1] = 4;
            out[list[size - 2].at + 1] = 16;
            out
        })
        .save(&scratch.path("shape.pt"));
    assert_refused(&scratch, &ckpt, "octonion weights must be [8, out, in]");

    let mut nan = fixture();
    let key = nan.tensor_storage("layers.1.feed_forward.up_proj.weight");
    entry(&mut nan.entries, &format!("/data/{key}"))[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_refused(&scratch, &nan.save(&scratch.path("nan.pt")), "NaN or infinite");

    let ckpt = fixture().edit_pickle(|p| [&p[..2], &[0x81u8][..], &p[2..]].concat()).save(&scratch.path("opcode.pt"));
    assert_refused(&scratch, &ckpt, "unsupported pickle opcode 0x81 (NEWOBJ)");
    let ckpt = fixture()
        .edit_pickle(|p| {
            let list = ops(p);
            let g = list.iter().find(|op| op.code == b'c' && p[op.at..op.at + op.len] == *b"ccollections\nOrderedDict\n").unwrap();
            [&p[..g.at], b"cos\nsystem\n", &p[g.at + g.len..]].concat()
        })
        .save(&scratch.path("global.pt"));
    assert_refused(&scratch, &ckpt, "unsupported pickle global 'os.system'");
}

#[test]
fn converted_tokenizer_matches_meta_pkl() {
    let Some(data) = test_support::testdata() else { return };
    let scratch = scratch("tokenizer");
    let dir = data.join("char-tiny");
    let out = scratch.path("tokenizer.json");
    let result = walsh(&["tokenizer", dir.join("meta.pkl").to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let converted = walsh_engine::tokenizer::Tokenizer::from_json(&std::fs::read(&out).unwrap()).unwrap();
    let vocab = host_compressor::meta_pkl::read_char_vocab(&std::fs::read(dir.join("meta.pkl")).unwrap()).unwrap();
    let native = walsh_engine::tokenizer::Tokenizer::char_level(vocab);
    for p in test_support::reference(&dir).prompts {
        assert_eq!(converted.encode(&p.prompt).unwrap(), p.prompt_ids, "{:?}", p.prompt);
        assert_eq!(native.encode(&p.prompt).unwrap(), p.prompt_ids);
        assert_eq!(converted.decode(&p.walsh.greedy_ids).unwrap(), p.walsh.decoded_text);
        assert_eq!(native.decode(&p.walsh.greedy_ids).unwrap(), p.walsh.decoded_text);
    }
    // Characters outside the vocabulary are dropped by both.
    assert_eq!(converted.encode("é?x€").unwrap(), native.encode("é?x€").unwrap());
}
