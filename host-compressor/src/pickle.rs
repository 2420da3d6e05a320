//! Just enough of Python's pickle to read PyTorch checkpoints (`data.pkl` in a `torch.save` zip)
//! and training runs' `meta.pkl`.
//!
//! Why our own: serde-pickle cannot load torch files (no persistent ids), and candle's reader
//! loses dict order (we must write records in state-dict order) and stops at protocol 4. The
//! torch subset is small: containers, scalars, strings, persistent ids for storages, and a handful
//! of globals, which we interpret as they are reduced. Anything else is refused by name.
//!
//! Hostile input gives an error, never a panic, a stack overflow or an allocation out of
//! proportion to its size:
//! - every read is bounds-checked, and the stack and memo are capped;
//! - containers nest at most [`MAX_DEPTH`] levels (values are dropped, compared and printed
//!   recursively, so depth is what would otherwise run off the end of the call stack);
//! - values are shared, not copied: a memo fetch is a reference count, like Python's own object
//!   reference, so fetching a large list a million times costs a million pointers;
//! - what a pickle can make the machine copy (a shared container it then changes) or hash (dict
//!   keys) is budgeted in proportion to its length ([`COPIES_PER_BYTE`], [`WORK_PER_BYTE`]).
//!
//! Shared values form a DAG whose expansion can be exponential in the pickle's size, so callers
//! must not walk them expecting a tree: `python_json` caps its output, errors use
//! [`Value::describe`], never `Debug`.

use std::collections::HashMap;
use std::sync::Arc;

/// Caps that keep a crafted pickle from exhausting memory; real checkpoints are far below them.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
/// Deepest container nesting accepted. Torch checkpoints nest a handful of levels (checkpoint,
/// optimizer state, param groups, lists); Python's own pickler stops near its recursion limit.
pub const MAX_DEPTH: u32 = 200;
/// Most dimensions a tensor may have (torch checkpoints use a handful).
pub const MAX_TENSOR_DIMS: usize = 32;
/// Values a pickle may make the machine copy (copy-on-write of a shared container that it then
/// changes), per byte of pickle, plus [`COPY_ALLOWANCE`]. Pickles written by Python copy none.
pub const COPIES_PER_BYTE: usize = 1;
const COPY_ALLOWANCE: usize = 1 << 16;
/// Work units (dict key bytes hashed, index entries built) per byte of pickle, plus
/// [`WORK_ALLOWANCE`]: bounds the time spent beyond one pass over the opcodes.
pub const WORK_PER_BYTE: usize = 64;
const WORK_ALLOWANCE: usize = 1 << 20;

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
    pub fn from_global(name: &str) -> Option<StorageType> {
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
///
/// Built only by `_rebuild_tensor_v2`, which checks that the shape's element count (and its
/// size in bytes) does not overflow and that there are at most [`MAX_TENSOR_DIMS`] dimensions;
/// whether the view fits its storage is the checkpoint's business (it knows the storage).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Name of the storage entry (`<archive>/data/<key>`).
    pub storage_key: Arc<str>,
    pub dtype: StorageType,
    /// Elements in the whole storage.
    pub storage_len: usize,
    /// View offset, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

impl TensorRef {
    /// Elements in the view (`usize::MAX` if the product overflows, which a parsed tensor's cannot).
    pub fn numel(&self) -> usize {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).unwrap_or(usize::MAX)
    }

    /// Bytes of the view's elements (saturating, like [`TensorRef::numel`]).
    pub fn byte_len(&self) -> usize {
        self.numel().saturating_mul(self.dtype.element_size())
    }
}

/// The callables a torch checkpoint may name (every other global is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callable {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch.FloatStorage` and the like: a storage type in a persistent id.
    Storage(StorageType),
}

impl Callable {
    fn name(self) -> String {
        match self {
            Callable::OrderedDict => "collections.OrderedDict".into(),
            Callable::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Callable::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Callable::Storage(t) => format!("torch storage type {}", t.name()),
        }
    }
}

/// The Python values a torch checkpoint contains. Containers and strings are shared (see the
/// module notes): cloning a value is cheap, and a value may appear in many places.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Bytes(Arc<[u8]>),
    Tuple(Arc<Vec<Value>>),
    List(Arc<Vec<Value>>),
    /// dict and OrderedDict, in insertion order.
    Dict(Arc<Vec<(Value, Value)>>),
    Tensor(Arc<TensorRef>),
    /// A reference to a global we allow (only meaningful while reducing).
    Global(Callable),
    /// A persistent id: torch's storage descriptor tuple.
    PersistentId(Arc<Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Arc::new(items))
    }
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }
    pub fn dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict(Arc::new(items))
    }

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

    /// A short description for error messages: bounded in length whatever the value (`Debug`
    /// of a shared value can be exponentially long).
    pub fn describe(&self) -> String {
        const SHOWN: usize = 40;
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Str(s) if s.chars().nth(SHOWN).is_some() => format!("{:?}…", s.chars().take(SHOWN).collect::<String>()),
            Value::Str(s) => format!("{:?}", &**s),
            Value::Bytes(b) => format!("a {}-byte bytes object", b.len()),
            Value::Tuple(items) => format!("a tuple of {} items", items.len()),
            Value::List(items) => format!("a list of {} items", items.len()),
            Value::Dict(items) => format!("a dict of {} entries", items.len()),
            Value::Tensor(_) => "a tensor".into(),
            Value::Global(c) => c.name(),
            Value::PersistentId(_) => "a persistent id".into(),
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
    #[error("pickle values are nested more than {MAX_DEPTH} levels deep (at byte {offset})")]
    TooDeep { offset: usize },
    #[error("pickle stack or memo larger than the reader allows (at byte {offset})")]
    TooLarge { offset: usize },
    #[error(
        "pickle makes the reader {what} more than its size allows (at byte {offset}): shared values changed in place \
         or repeated dict keys, which Python's pickler does not write"
    )]
    OverBudget { what: &'static str, offset: usize },
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

/// A dict key by value, for the keys Python pickles in practice (other keys are not merged:
/// a pickler never writes a key twice, so only crafted input could notice).
#[derive(Hash, PartialEq, Eq)]
enum Key {
    None,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(Arc<str>),
    Bytes(Arc<[u8]>),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bytes(b) => Key::Bytes(b.clone()),
            _ => return None,
        })
    }
    /// Work units to hash and compare it.
    fn cost(&self) -> usize {
        1 + match self {
            Key::Str(s) => s.len() / 8,
            Key::Bytes(b) => b.len() / 8,
            _ => 0,
        }
    }
}

/// Memo keys a stack value was put under or fetched from, at most this many (a pickler
/// memoises an object once); changes to the value reach these entries, as in Python.
const MAX_ALIASES: usize = 4;

/// What a stack value carries besides itself, boxed so plain values stay small.
#[derive(Default)]
struct Extra {
    aliases: Vec<u32>,
    /// For a dict being filled: key → position, so that SETITEMS is not quadratic.
    index: Option<HashMap<Key, usize>>,
}

struct Item {
    value: Value,
    /// Container levels in `value` (scalars 0, an empty container 1).
    depth: u32,
    extra: Option<Box<Extra>>,
}

impl Item {
    fn new(value: Value, depth: u32) -> Item {
        Item { value, depth, extra: None }
    }
}

/// Whether two values are the same shared container.
fn same_container(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => Arc::ptr_eq(a, b),
        (Value::Dict(a), Value::Dict(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    /// Stack heights at each MARK (Python's metastack); the top one fences off what is below it.
    marks: Vec<usize>,
    memo: HashMap<u32, (Value, u32)>,
    copies_left: usize,
    work_left: usize,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Machine<'a> {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            copies_left: data.len().saturating_mul(COPIES_PER_BYTE).saturating_add(COPY_ALLOWANCE),
            work_left: data.len().saturating_mul(WORK_PER_BYTE).saturating_add(WORK_ALLOWANCE),
        }
    }

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
    fn charge_copies(&mut self, n: usize) -> Result<(), PickleError> {
        self.copies_left = self.copies_left.checked_sub(n).ok_or(PickleError::OverBudget { what: "copy values", offset: self.pos })?;
        Ok(())
    }
    fn charge_work(&mut self, n: usize) -> Result<(), PickleError> {
        self.work_left = self.work_left.checked_sub(n).ok_or(PickleError::OverBudget { what: "hash dict keys", offset: self.pos })?;
        Ok(())
    }
    /// Depth of a container holding values of these depths.
    fn container_depth(&self, children: impl Iterator<Item = u32>) -> Result<u32, PickleError> {
        let depth = children.max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset: self.pos });
        }
        Ok(depth)
    }
    fn push_item(&mut self, item: Item) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(PickleError::TooLarge { offset: self.pos });
        }
        self.stack.push(item);
        Ok(())
    }
    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.push_item(Item::new(v, 0))
    }
    /// Height below which the stack belongs to an open MARK.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn pop_item(&mut self) -> Result<Item, PickleError> {
        if self.stack.len() <= self.fence() {
            return Err(self.malformed(if self.marks.is_empty() { "stack underflow" } else { "unexpected MARK" }));
        }
        Ok(self.stack.pop().expect("above the fence"))
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        Ok(self.pop_item()?.value)
    }
    fn top(&self) -> Result<&Item, PickleError> {
        if self.stack.len() <= self.fence() {
            return Err(self.malformed("expected a value on the stack"));
        }
        Ok(self.stack.last().expect("above the fence"))
    }
    /// Pops everything down to the last MARK, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Item>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no MARK"))?;
        Ok(self.stack.split_off(mark))
    }
    /// A new container from popped items.
    fn push_container(&mut self, items: Vec<Item>, make: fn(Vec<Value>) -> Value) -> Result<(), PickleError> {
        let depth = self.container_depth(items.iter().map(|i| i.depth))?;
        let value = make(items.into_iter().map(|i| i.value).collect());
        self.push_item(Item::new(value, depth))
    }
    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.malformed("string is not UTF-8"))?;
        Ok(Value::str(s))
    }
    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO {
            return Err(PickleError::TooLarge { offset: self.pos });
        }
        let top = self.top()?;
        let entry = (top.value.clone(), top.depth);
        self.memo.insert(key, entry);
        let top = self.stack.last_mut().expect("checked by top()");
        let extra = top.extra.get_or_insert_default();
        if extra.aliases.len() < MAX_ALIASES {
            extra.aliases.push(key);
        }
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let (value, depth) = self.memo.get(&key).cloned().ok_or_else(|| self.malformed(format!("memo key {key} not set")))?;
        let extra = Extra { aliases: vec![key], index: None };
        self.push_item(Item { value, depth, extra: Some(Box::new(extra)) })
    }

    /// Takes the top value off the stack to change it in place. Memo entries that are the same
    /// container are detached first (so it is not shared with them and changes without a copy)
    /// and get the changed value back in [`Machine::put_back`]: a memoised container that is
    /// then filled, as picklers write every container, is seen filled through the memo.
    fn take_top(&mut self) -> Result<(Item, Vec<u32>), PickleError> {
        let item = self.pop_item()?;
        let mut detached = Vec::new();
        for &key in item.extra.iter().flat_map(|e| e.aliases.iter()) {
            if self.memo.get(&key).is_some_and(|(v, _)| same_container(v, &item.value)) {
                self.memo.remove(&key);
                detached.push(key);
            }
        }
        Ok((item, detached))
    }
    fn put_back(&mut self, item: Item, detached: Vec<u32>) {
        for key in detached {
            self.memo.insert(key, (item.value.clone(), item.depth));
        }
        // Cannot exceed MAX_STACK: the item was just popped.
        self.stack.push(item);
    }

    /// APPEND(S): adds items to the list on top of the stack.
    fn append(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        let (mut list, detached) = self.take_top()?;
        let Value::List(values) = &mut list.value else {
            return Err(self.malformed("APPEND(S) on a non-list"));
        };
        if Arc::get_mut(values).is_none() {
            self.charge_copies(values.len())?;
        }
        list.depth = list.depth.max(self.container_depth(items.iter().map(|i| i.depth))?);
        Arc::make_mut(values).extend(items.into_iter().map(|i| i.value));
        self.put_back(list, detached);
        Ok(())
    }

    /// SETITEM(S): sets keys of the dict on top of the stack. Python dicts keep the first
    /// insertion position of a key and the last value.
    fn set_items(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let (mut dict, detached) = self.take_top()?;
        let Value::Dict(entries) = &mut dict.value else {
            return Err(self.malformed("SETITEM(S) on a non-dict"));
        };
        if Arc::get_mut(entries).is_none() {
            self.charge_copies(entries.len())?;
        }
        dict.depth = dict.depth.max(self.container_depth(items.iter().map(|i| i.depth))?);
        let entries = Arc::make_mut(entries);
        let extra = dict.extra.get_or_insert_default();
        let index = match &mut extra.index {
            Some(index) => index,
            None => {
                // A dict that was fetched or built by DICT: index what it holds.
                let mut index = HashMap::new();
                for (i, (k, _)) in entries.iter().enumerate() {
                    if let Some(key) = Key::of(k) {
                        self.charge_work(key.cost())?;
                        index.entry(key).or_insert(i);
                    }
                }
                extra.index.insert(index)
            }
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match Key::of(&k.value) {
                Some(key) => {
                    self.charge_work(key.cost())?;
                    match index.get(&key) {
                        Some(&i) => entries[i].1 = v.value,
                        None => {
                            index.insert(key, entries.len());
                            entries.push((k.value, v.value));
                        }
                    }
                }
                None => entries.push((k.value, v.value)),
            }
        }
        self.put_back(dict, detached);
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, PickleError> {
        let callable = match (module, name) {
            ("collections", "OrderedDict") => Callable::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Callable::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Callable::RebuildParameter,
            ("torch", storage) if StorageType::from_global(storage).is_some() => {
                Callable::Storage(StorageType::from_global(storage).expect("checked"))
            }
            _ => return Err(PickleError::UnknownGlobal { module: module.to_string(), name: name.to_string() }),
        };
        Ok(Value::Global(callable))
    }

    /// Applies an allowed callable to its arguments; returns the value and its depth.
    fn reduce(&self, func: Value, args: Value) -> Result<Item, PickleError> {
        let Value::Global(callable) = func else {
            return Err(self.malformed("REDUCE of something that is not a global"));
        };
        let Value::Tuple(args) = args else {
            return Err(self.malformed("REDUCE arguments are not a tuple"));
        };
        match callable {
            Callable::OrderedDict => Ok(Item::new(Value::dict(Vec::new()), 1)),
            Callable::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(Item::new(t.clone(), 0)),
                _ => Err(self.malformed("_rebuild_parameter without a tensor")),
            },
            Callable::RebuildTensorV2 => Ok(Item::new(self.rebuild_tensor(&args)?, 0)),
            Callable::Storage(_) => Err(self.malformed(format!("{} cannot be called", callable.name()))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PickleError> {
        let bad = |what: String| self.malformed(format!("_rebuild_tensor_v2: {what}"));
        let [Value::PersistentId(pid), offset, shape, strides, ..] = args else {
            return Err(bad("expected a storage's persistent id, an offset, a shape and strides".into()));
        };
        let Value::Tuple(pid) = &**pid else { return Err(bad("persistent id is not a tuple".into())) };
        let [Value::Str(tag), Value::Global(Callable::Storage(dtype)), Value::Str(key), _location, Value::Int(len)] = &pid[..] else {
            return Err(bad("persistent id is not ('storage', type, key, location, size)".into()));
        };
        if &**tag != "storage" {
            return Err(bad("persistent id does not describe a storage".into()));
        }
        let int = |what: &str, v: &Value| match v {
            Value::Int(i) => usize::try_from(*i).map_err(|_| bad(format!("{what} {i} is negative"))),
            other => Err(bad(format!("{what} is {}, not an integer", other.describe()))),
        };
        let ints = |what: &str, v: &Value| match v {
            Value::Tuple(items) if items.len() > MAX_TENSOR_DIMS => {
                Err(bad(format!("{what} has {} dimensions (at most {MAX_TENSOR_DIMS})", items.len())))
            }
            Value::Tuple(items) => items.iter().map(|i| int(what, i)).collect::<Result<Vec<_>, _>>(),
            other => Err(bad(format!("{what} is {}, not a tuple of integers", other.describe()))),
        };
        let offset = int("offset", offset)?;
        let shape = ints("shape", shape)?;
        let strides = ints("stride", strides)?;
        if shape.len() != strides.len() {
            return Err(bad("shape and stride lengths differ".into()));
        }
        let size = dtype.element_size();
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(size)).is_none() {
            return Err(bad(format!("the element count of shape {shape:?} overflows")));
        }
        let storage_len = int("storage size", &Value::Int(*len))?;
        if storage_len.checked_mul(size).is_none() {
            return Err(bad(format!("the byte size of a {storage_len}-element storage overflows")));
        }
        Ok(Value::Tensor(Arc::new(TensorRef { storage_key: key.clone(), dtype: *dtype, storage_len, offset, shape, strides })))
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
                    if self.marks.len() >= MAX_STACK {
                        return Err(PickleError::TooLarge { offset: self.pos });
                    }
                    self.marks.push(self.stack.len());
                }
                b'}' => self.push_item(Item::new(Value::dict(Vec::new()), 1))?,
                b']' => self.push_item(Item::new(Value::list(Vec::new()), 1))?,
                b')' => self.push_item(Item::new(Value::tuple(Vec::new()), 1))?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_container(items, Value::tuple)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop_item()?);
                    }
                    items.reverse();
                    self.push_container(items, Value::tuple)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push_item(Item::new(Value::dict(Vec::new()), 1))?;
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_container(items, Value::list)?;
                }
                b's' => {
                    let v = self.pop_item()?;
                    let k = self.pop_item()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let item = self.pop_item()?;
                    self.append(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
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
                    let k = u32::try_from(self.memo.len()).map_err(|_| PickleError::TooLarge { offset: self.pos })?;
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
                    // Longer than the data fails in take(); a u64 beyond usize cannot be shorter.
                    let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                b'B' | b'C' => {
                    let n = if op == b'B' { self.u32()? as usize } else { self.u8()? as usize };
                    let v = Value::Bytes(Arc::from(self.take(n)?));
                    self.push(v)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(module, name)?;
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
                    let item = self.reduce(func, args)?;
                    self.push_item(item)?;
                }
                b'b' => {
                    // BUILD sets object state (e.g. a state dict's `_metadata`); we do not need it.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop_item()?;
                    let depth = self.container_depth(std::iter::once(pid.depth))?;
                    self.push_item(Item::new(Value::PersistentId(Arc::new(pid.value)), depth))?;
                }
                b'0' => {
                    // POP removes the top value, or the topmost MARK when nothing is above it.
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else if self.marks.pop().is_none() {
                        return Err(self.malformed("POP on an empty stack"));
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    let item = Item::new(top.value.clone(), top.depth);
                    self.push_item(item)?;
                }
                code => return Err(PickleError::UnknownOpcode { code, name: opcode_name(code), offset: at }),
            }
        }
    }

    /// A newline-terminated ASCII argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated(self.data.len()))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
}

/// Runs a pickle program and returns the value it builds.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    Machine::new(data).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_2_and_4_containers() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': ('x', 300, 70000, 2**40)}, protocol=2)
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03(X\x01\x00\x00\x00xq\x04M,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01tq\x05u.";
        let v = load(p2).unwrap();
        assert_eq!(v.get("a"), Some(&Value::list(vec![Value::Int(1), Value::Int(-2), Value::Float(3.5), Value::None, Value::Bool(true)])));
        assert_eq!(v.get("b"), Some(&Value::tuple(vec![Value::str("x"), Value::Int(300), Value::Int(70000), Value::Int(1 << 40)])));
        // pickle.dumps({'k': 'v'}, protocol=4)
        let p4 = b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94\x8c\x01v\x94s.";
        assert_eq!(load(p4).unwrap().get("k"), Some(&Value::str("v")));
    }

    #[test]
    fn refuses_unknown_globals_and_opcodes() {
        let evil = b"\x80\x02cos\nsystem\nq\x00.";
        assert!(matches!(load(evil), Err(PickleError::UnknownGlobal { module, name }) if module == "os" && name == "system"));
        assert!(matches!(load(b"\x80\x02\x81."), Err(PickleError::UnknownOpcode { code: 0x81, name: "NEWOBJ", .. })));
        assert!(matches!(load(b"\x80\x02X\xff\x00\x00\x00ab"), Err(PickleError::Truncated(_))));
        assert!(matches!(load(b"t."), Err(PickleError::Malformed { .. })));
    }

    #[test]
    fn memoised_containers_are_shared_and_seen_filled() {
        // d = {'a': [1, 2]}; pickle.dumps({'x': d, 'y': d, 'z': d['a']}, protocol=2): the pickler
        // memoises d and its list empty, fills them, and fetches them for 'y' and 'z'.
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01}q\x02X\x01\x00\x00\x00aq\x03]q\x04(K\x01K\x02esX\x01\x00\x00\x00yq\x05h\x02X\x01\x00\x00\x00zq\x06h\x04u.";
        let v = load(p).unwrap();
        let list = Value::list(vec![Value::Int(1), Value::Int(2)]);
        let d = Value::dict(vec![(Value::str("a"), list.clone())]);
        assert_eq!(v.get("x"), Some(&d));
        assert_eq!(v.get("y"), Some(&d));
        assert_eq!(v.get("z"), Some(&list));
        // Shared, not copied.
        let (Some(Value::Dict(x)), Some(Value::Dict(y))) = (v.get("x"), v.get("y")) else { panic!() };
        assert!(Arc::ptr_eq(x, y));
    }

    #[test]
    fn duplicate_keys_keep_the_first_position_and_the_last_value() {
        // {'a': 1, 'b': 2, 'a': 3} written by hand (a pickler never repeats a key).
        let p = b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.";
        assert_eq!(load(p).unwrap(), Value::dict(vec![(Value::str("a"), Value::Int(3)), (Value::str("b"), Value::Int(2))]));
    }

    #[test]
    fn nesting_is_capped() {
        let nested = |levels: usize| [&b"\x80\x02)"[..], &vec![0x85; levels], b"."].concat();
        assert!(load(&nested(MAX_DEPTH as usize - 1)).is_ok());
        assert!(matches!(load(&nested(MAX_DEPTH as usize)), Err(PickleError::TooDeep { .. })));
    }

    #[test]
    fn changing_a_shared_container_is_budgeted() {
        // L = [None × 5000], memoised; then again and again: fetch L, DUP, append to the copy
        // on top, pop both. Each append copies L (the memo and the other stack slot hold it):
        // 5000 values for 7 bytes of pickle.
        let mut p = b"\x80\x02](".to_vec();
        p.extend(std::iter::repeat_n(b'N', 5000));
        p.extend_from_slice(b"eq\x000");
        for _ in 0..10_000 {
            p.extend_from_slice(b"h\x002Na00");
        }
        p.extend_from_slice(b"N.");
        assert!(matches!(load(&p), Err(PickleError::OverBudget { what: "copy values", .. })), "{:?}", load(&p).err());
    }
}
