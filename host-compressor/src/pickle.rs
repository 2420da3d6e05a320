//! Just enough of Python's pickle to read PyTorch checkpoints (`data.pkl` in a `torch.save` zip).
//!
//! Why our own: serde-pickle cannot load torch files (no persistent ids), and candle's reader
//! loses dict order (we must write records in state-dict order) and stops at protocol 4. The
//! torch subset is small: containers, scalars, strings, persistent ids for storages, and a handful
//! of globals, which we interpret as they are reduced. Anything else is refused by name.
//!
//! Every read is bounds-checked and the stack, memo and nesting are capped, so hostile input gives
//! an error, never a panic or an unbounded allocation.

use std::collections::HashMap;


/// Caps that keep a crafted pickle from exhausting memory; real checkpoints are far below them.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;

/// Torch tensor element types we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    Complex64,
}

impl StorageType {
    fn from_global(name: &str) -> Option<StorageType> {
        Some(match name {
            "FloatStorage" => StorageType::F32,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::BF16,
            "DoubleStorage" => StorageType::F64,
            "LongStorage" => StorageType::I64,
            "IntStorage" => StorageType::I32,
            "ShortStorage" => StorageType::I16,
            "CharStorage" => StorageType::I8,
            "ByteStorage" => StorageType::U8,
            "BoolStorage" => StorageType::Bool,
            "ComplexFloatStorage" => StorageType::Complex64,
            _ => return None,
        })
    }

    pub fn element_size(self) -> usize {
        match self {
            StorageType::Bool | StorageType::I8 | StorageType::U8 => 1,
            StorageType::F16 | StorageType::BF16 | StorageType::I16 => 2,
            StorageType::F32 | StorageType::I32 => 4,
            StorageType::F64 | StorageType::I64 | StorageType::Complex64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StorageType::F32 => "float32",
            StorageType::F16 => "float16",
            StorageType::BF16 => "bfloat16",
            StorageType::F64 => "float64",
            StorageType::I64 => "int64",
            StorageType::I32 => "int32",
            StorageType::I16 => "int16",
            StorageType::I8 => "int8",
            StorageType::U8 => "uint8",
            StorageType::Bool => "bool",
            StorageType::Complex64 => "complex64",
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage that lives in the zip.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Name of the storage entry (`<archive>/data/<key>`).
    pub storage_key: String,
    pub dtype: StorageType,
    /// Elements in the whole storage.
    pub storage_len: usize,
    /// View offset, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The Python values a torch checkpoint contains.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// dict and OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    Tensor(TensorRef),
    /// A reference to a global we allow (only meaningful while reducing).
    Global(String, String),
    /// A persistent id: torch's storage descriptor tuple.
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle ends early at byte {0}")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{code:02x} ({name}) at byte {offset}")]
    UnknownOpcode { code: u8, name: &'static str, offset: usize },
    #[error("unsupported pickle global '{module}.{name}' (only torch tensor and storage types are allowed)")]
    UnknownGlobal { module: String, name: String },
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("pickle too large or too deeply nested")]
    TooLarge,
}

/// Names of opcodes we do not implement, for error messages.
fn opcode_name(code: u8) -> &'static str {
    match code {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'i' => "INST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'g' => "GET",
        b'P' => "PERSID",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

enum Item {
    Mark,
    Value(Value),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(PickleError::Truncated(self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed { offset: self.pos, reason: reason.into() }
    }
    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(PickleError::TooLarge);
        }
        self.stack.push(Item::Value(v));
        Ok(())
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(self.malformed("unexpected MARK")),
            None => Err(self.malformed("stack underflow")),
        }
    }
    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let offset = self.pos;
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(PickleError::Malformed { offset, reason: "expected a value on the stack".into() }),
        }
    }
    /// Pops everything down to the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or_else(|| self.malformed("no MARK"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => v,
                Item::Mark => unreachable!("the last mark was found above"),
            })
            .collect())
    }
    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.malformed("string is not UTF-8"))?;
        Ok(Value::Str(s.to_string()))
    }
    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO {
            return Err(PickleError::TooLarge);
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| self.malformed(format!("memo key {key} not set")))?;
        self.push(v)
    }
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let offset = self.pos;
        let Value::Dict(dict) = self.top()? else {
            return Err(PickleError::Malformed { offset, reason: "SETITEM(S) on a non-dict".into() });
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            // Python dicts keep the first insertion position of a key and the last value.
            match dict.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => dict.push((k, v)),
            }
        }
        Ok(())
    }
    fn global(&self, module: &str, name: &str) -> Result<Value, PickleError> {
        let allowed = matches!(
            (module, name),
            ("collections", "OrderedDict") | ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_parameter")
        ) || (module == "torch" && StorageType::from_global(name).is_some());
        if !allowed {
            return Err(PickleError::UnknownGlobal { module: module.to_string(), name: name.to_string() });
        }
        Ok(Value::Global(module.to_string(), name.to_string()))
    }

    /// Applies an allowed callable to its arguments.
    fn reduce(&self, func: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(module, name) = func else {
            return Err(self.malformed("REDUCE of something that is not a global"));
        };
        let Value::Tuple(args) = args else {
            return Err(self.malformed("REDUCE arguments are not a tuple"));
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                _ => Err(self.malformed("_rebuild_parameter without a tensor")),
            },
            ("torch._utils", "_rebuild_tensor_v2") => self.rebuild_tensor(args),
            _ => Err(self.malformed(format!("{module}.{name} cannot be called"))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    fn rebuild_tensor(&self, args: Vec<Value>) -> Result<Value, PickleError> {
        let bad = |what: &str| self.malformed(format!("_rebuild_tensor_v2: {what}"));
        let mut it = args.into_iter();
        let Some(Value::PersistentId(pid)) = it.next() else { return Err(bad("storage is not a persistent id")) };
        let Value::Tuple(pid) = *pid else { return Err(bad("persistent id is not a tuple")) };
        let [Value::Str(tag), Value::Global(module, storage), Value::Str(key), _location, Value::Int(len)] = &pid[..] else {
            return Err(bad("persistent id is not ('storage', type, key, location, size)"));
        };
        if tag != "storage" || module != "torch" {
            return Err(bad("persistent id does not describe a storage"));
        }
        let dtype = StorageType::from_global(storage).ok_or_else(|| bad("unknown storage type"))?;
        let int = |v: Option<Value>| match v {
            Some(Value::Int(i)) => usize::try_from(i).map_err(|_| bad("negative size")),
            _ => Err(bad("expected an integer")),
        };
        let ints = |v: Option<Value>| match v {
            Some(Value::Tuple(items)) => items.into_iter().map(|i| int(Some(i))).collect::<Result<Vec<_>, _>>(),
            _ => Err(bad("expected a tuple of integers")),
        };
        let offset = int(it.next())?;
        let shape = ints(it.next())?;
        let strides = ints(it.next())?;
        if shape.len() != strides.len() {
            return Err(bad("shape and stride lengths differ"));
        }
        Ok(Value::Tensor(TensorRef {
            storage_key: key.clone(),
            dtype,
            storage_len: usize::try_from(*len).map_err(|_| bad("negative storage size"))?,
            offset,
            shape,
            strides,
        }))
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO: version
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.stack.len() >= MAX_STACK {
                        return Err(PickleError::TooLarge);
                    }
                    self.stack.push(Item::Mark);
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()))?;
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                    let offset = self.pos;
                    let Value::List(list) = self.top()? else {
                        return Err(PickleError::Malformed { offset, reason: "APPEND(S) on a non-list".into() });
                    };
                    list.extend(items);
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.malformed("integer wider than 64 bits"));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| PickleError::TooLarge)?;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                b'B' | b'C' => {
                    let n = if op == b'B' { self.u32()? as usize } else { self.u8()? as usize };
                    let v = self.take(n)?.to_vec();
                    self.push(Value::Bytes(v))?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(&module, &name)?;
                    self.push(v)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    let v = self.global(&module, &name)?;
                    self.push(v)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD sets object state (e.g. a state dict's `_metadata`); we do not need it.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(Box::new(pid)))?;
                }
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.malformed("POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                code => return Err(PickleError::UnknownOpcode { code, name: opcode_name(code), offset: at }),
            }
        }
    }

    /// A newline-terminated ASCII argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated(self.data.len()))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?.to_string();
        self.pos += n + 1;
        Ok(s)
    }
}

/// Runs a pickle program and returns the value it builds.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new() }.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_2_and_4_containers() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': ('x', 300, 70000, 2**40)}, protocol=2)
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03(X\x01\x00\x00\x00xq\x04M,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01tq\x05u.";
        let v = load(p2).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(-2), Value::Float(3.5), Value::None, Value::Bool(true)]))
        );
        assert_eq!(
            v.get("b"),
            Some(&Value::Tuple(vec![Value::Str("x".into()), Value::Int(300), Value::Int(70000), Value::Int(1 << 40)]))
        );
        // pickle.dumps({'k': 'v'}, protocol=4)
        let p4 = b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94\x8c\x01v\x94s.";
        assert_eq!(load(p4).unwrap().get("k"), Some(&Value::Str("v".into())));
    }

    #[test]
    fn refuses_unknown_globals_and_opcodes() {
        let evil = b"\x80\x02cos\nsystem\nq\x00.";
        assert!(matches!(load(evil), Err(PickleError::UnknownGlobal { module, name }) if module == "os" && name == "system"));
        assert!(matches!(load(b"\x80\x02\x81."), Err(PickleError::UnknownOpcode { code: 0x81, name: "NEWOBJ", .. })));
        assert!(matches!(load(b"\x80\x02X\xff\x00\x00\x00ab"), Err(PickleError::Truncated(_))));
        assert!(matches!(load(b"t."), Err(PickleError::Malformed { .. })));
    }
}
