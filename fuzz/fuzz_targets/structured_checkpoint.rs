//! The checkpoint reader on torch-shaped input: the fuzz bytes drive a generator of pickle opcode
//! sequences (containers, marks, memo puts and gets, persistent ids, the allowed globals, tensor
//! rebuilds, runs of one opcode repeated thousands of times) inside zip layouts like torch's
//! (`archive/data.pkl`, `archive/data/<key>`, `archive/version`). Random bytes rarely form the
//! deep or repetitive structures that break a pickle machine; this reaches them in seconds.
//! Also feeds the pickle to the `meta.pkl` reader. Ok or a typed error, never a crash, a hang or
//! an allocation out of proportion (run with -rss_limit_mb and -timeout).
#![no_main]

use std::io::Write;

use host_compressor::checkpoint::Checkpoint;
use host_compressor::compress::compress;
use libfuzzer_sys::fuzz_target;

/// Reads choices from the fuzz input; zeros once it is used up.
struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn pick<'t, T>(&mut self, from: &'t [T]) -> &'t T {
        &from[self.byte() as usize % from.len()]
    }
    /// Mostly small numbers, sometimes the edges that break arithmetic.
    fn int(&mut self) -> i64 {
        match self.byte() % 8 {
            0..=3 => i64::from(self.byte() % 16),
            4 => i64::from(self.byte()) << (self.byte() % 40),
            5 => -i64::from(self.byte() % 4) - 1,
            6 => *self.pick(&[i64::MAX, i64::MIN, 1 << 31, (1 << 32) + 1, 1 << 33, 1 << 62, 0x7fff_ffff]),
            _ => i64::from(u16::from_le_bytes([self.byte(), self.byte()])),
        }
    }
}

const STRINGS: &[&str] = &[
    "model", "model_args", "storage", "cpu", "0", "1", "2", "norm.weight", "tok_embeddings.weight", "output.weight",
    "layers.0.attention.wq.weight", "layers.0.attention.wq.beta", "freqs_cis", "n_embd", "n_layer", "n_head", "vocab_size",
    "block_size", "algebra", "octonion", "itos", "stoi", "_orig_mod.norm.weight", "",
];
const GLOBALS: &[(&str, &str)] = &[
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "ComplexFloatStorage"),
    ("torch", "NotAStorage"),
    ("os", "system"),
];
/// Opcodes without arguments.
const PLAIN: &[u8] = &[
    b'}', b']', b')', b'(', b'N', 0x88, 0x89, b't', 0x85, 0x86, 0x87, b'd', b'l', b's', b'u', b'a', b'e', 0x94, b'Q',
    b'R', b'b', b'0', b'1', b'2', 0x93,
];

struct Pickle(Vec<u8>);

impl Pickle {
    fn int(&mut self, i: i64) {
        match (u8::try_from(i), i32::try_from(i)) {
            (Ok(b), _) => self.0.extend_from_slice(&[b'K', b]),
            (_, Ok(v)) => {
                self.0.push(b'J');
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            _ => {
                self.0.extend_from_slice(&[0x8a, 8]);
                self.0.extend_from_slice(&i.to_le_bytes());
            }
        }
    }
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn global(&mut self, (module, name): (&str, &str)) {
        self.0.push(b'c');
        for part in [module, name] {
            self.0.extend_from_slice(part.as_bytes());
            self.0.push(b'\n');
        }
    }
    fn ints(&mut self, c: &mut Choices, n: usize) {
        self.0.push(b'(');
        for _ in 0..n {
            let i = c.int();
            self.int(i);
        }
        self.0.push(b't');
    }
    /// A `_rebuild_tensor_v2` call as torch writes it, with chosen numbers.
    fn tensor(&mut self, c: &mut Choices) {
        self.global(GLOBALS[0]);
        self.0.extend_from_slice(b"((");
        self.str("storage");
        let storage = *c.pick(&GLOBALS[3..8]);
        self.global(storage);
        let key = *c.pick(&["0", "1", "2"]);
        self.str(key);
        self.str("cpu");
        let len = c.int();
        self.int(len);
        self.0.extend_from_slice(b"tQ");
        let offset = c.int();
        self.int(offset);
        let dims = (c.byte() % 4) as usize;
        self.ints(c, dims);
        let dims = if c.byte() % 8 == 0 { dims + 1 } else { dims };
        self.ints(c, dims);
        self.0.push(0x89);
        self.global(GLOBALS[2]);
        self.0.extend_from_slice(b")RtR");
    }
    /// One step: an opcode, a few of them, or one repeated many times.
    fn step(&mut self, c: &mut Choices) {
        match c.byte() % 16 {
            0..=4 => {
                let op = *c.pick(PLAIN);
                self.0.push(op);
            }
            5 => {
                let s = *c.pick(STRINGS);
                self.str(s);
            }
            6 => {
                let i = c.int();
                self.int(i);
            }
            7 => {
                let g = *c.pick(GLOBALS);
                self.global(g);
            }
            8 => {
                // Memo: BINPUT, BINGET, LONG_BINPUT, LONG_BINGET on a few keys.
                let op = *c.pick(&[b'q', b'h', b'r', b'j']);
                let key = c.byte() % 4;
                self.0.push(op);
                if matches!(op, b'q' | b'h') {
                    self.0.push(key);
                } else {
                    self.0.extend_from_slice(&u32::from(key).to_le_bytes());
                }
            }
            9 => self.tensor(c),
            10 => {
                // A float, an empty string, a memo key that was never set.
                match c.byte() % 3 {
                    0 => {
                        self.0.push(b'G');
                        self.0.extend_from_slice(&f64::from(c.byte()).to_be_bytes());
                    }
                    1 => self.0.extend_from_slice(&[0x8c, 0]),
                    _ => self.0.extend_from_slice(b"h\xff"),
                }
            }
            _ => {
                // A run: up to 2^18 copies of one short piece (nesting, fetches, appends).
                let pieces: &[&[u8]] = &[b"\x85", b"]a", b"](", b"h\x00", b"h\x01", b"2", b"(", b")", b"}", b"\x86", b"N", b"Na", b"h\x00a", b"(h\x00h\x00l\x94"];
                let piece = *c.pick(pieces);
                let times = 1usize << (c.byte() % 19);
                for _ in 0..times {
                    self.0.extend_from_slice(piece);
                }
            }
        }
    }
}

/// A pickle: either free-form steps, or the training checkpoint's skeleton with steps inside
/// the state dict and the model args (so that the rest of the reader and the compressor run).
fn pickle(c: &mut Choices) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]);
    let skeleton = c.byte() % 2 == 0;
    if skeleton {
        p.0.extend_from_slice(b"}(");
        p.str("model");
        p.global(GLOBALS[2]);
        p.0.extend_from_slice(b")R(");
    }
    let steps = c.byte() as usize;
    for i in 0..steps {
        if c.done() {
            break;
        }
        if skeleton && i == steps / 2 {
            p.0.push(b'u');
            p.str("model_args");
            p.0.extend_from_slice(b"}(");
        }
        p.step(c);
    }
    if skeleton {
        p.0.extend_from_slice(b"uu");
    }
    p.0.push(b'.');
    p.0
}

/// A torch-like zip around the pickle: storages of chosen lengths, sometimes odd names.
fn archive(c: &mut Choices, pickle: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let root = *c.pick(&["archive", "ckpt", "a/b"]);
    let _ = zip.start_file(format!("{root}/data.pkl"), options);
    let _ = zip.write_all(pickle);
    for key in 0..(c.byte() % 4) {
        let len = match c.byte() % 4 {
            0 => 0,
            1 => 4 * usize::from(c.byte()),
            2 => 64 * usize::from(c.byte()),
            _ => usize::from(c.byte()),
        };
        let fill = c.byte();
        let name = if c.byte() % 16 == 0 { format!("{root}/data/{key}/x") } else { format!("{root}/data/{key}") };
        let _ = zip.start_file(name, options);
        let _ = zip.write_all(&vec![fill; len]);
    }
    if c.byte() % 2 == 0 {
        let _ = zip.start_file(format!("{root}/version"), options);
        let _ = zip.write_all(b"3\n");
    }
    zip.finish().map(|cursor| cursor.into_inner()).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices { data, pos: 0 };
    let pickle = pickle(&mut choices);
    let _ = host_compressor::meta_pkl::read_char_vocab(&pickle);
    let file = archive(&mut choices, &pickle);
    let Ok(checkpoint) = Checkpoint::parse(file) else { return };
    if let Ok(compressed) = compress(&checkpoint, |_| {}) {
        let _ = compressed.check_runnable();
    }
});
