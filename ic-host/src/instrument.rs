//! Instruction metering as the IC's replica does it: the module is rewritten so that every basic
//! block subtracts its static cost (from [`crate::cost`]) from a global counter when it starts,
//! bulk memory operations also subtract their size, and reentrant blocks (function entry, loop
//! bodies) call out when the counter goes negative.
//!
//! The rewritten module also:
//! - imports `__ic_host.out_of_instructions` (the call that traps when the budget is spent);
//! - exports the counter as [`COUNTER_EXPORT`], the function table as [`TABLE_EXPORT`] (callbacks
//!   of inter-canister calls are table indices), and every mutable global as
//!   `__ic_host_global_N`, so that the host can snapshot and restore them like the IC persists
//!   them;
//! - lets a start function (Rust canisters have none) run at instantiation on the install budget.
//!
//! Under the 2026 accounting ([`Accounting::Ic2026`]) it also tracks the heap pages each message
//! touches, as the IC's deterministic memory tracker charges them: a second memory of one page,
//! exported as [`PAGES_EXPORT`], holds one byte per 64 KiB heap page (bit 0 accessed, bit 1
//! written in this message; the host clears it before each message). Every load and store
//! checks the byte of the page it touches (both pages when it may span two) and calls
//! `__ic_host.touch(address, offset, size, write)` when the page is new to this message or to
//! this kind of access; `memory.fill`, `memory.copy` and `memory.init` check the pages at both
//! ends of their ranges the same way. The host charges there and sets the byte, so each page
//! pays once per message. To keep the host fast, accesses relative to one local (`local.get x`
//! then the access, a store's value a constant or another local) in straight-line code with no
//! call between and `x` unchanged share one check, at the first of them, of the range they
//! cover together when it spans at most 64 KiB: it touches exactly their pages.

use std::collections::HashSet;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, GlobalSection, GlobalType, ImportSection, Instruction, MemorySection, MemoryType,
    Module, SectionId, TypeSection, ValType,
};
use wasmparser::{Operator, Parser, Payload};

use crate::cost;
use crate::types::Accounting;

pub const IMPORT_MODULE: &str = "__ic_host";
pub const OUT_OF_INSTRUCTIONS: &str = "out_of_instructions";
pub const COUNTER_EXPORT: &str = "__ic_host_instructions";
pub const TABLE_EXPORT: &str = "__ic_host_table";
pub const GLOBAL_EXPORT_PREFIX: &str = "__ic_host_global_";
/// The host function a page check calls for a page new to the message: `(address, offset,
/// size, write)`, all i32.
pub const TOUCH: &str = "touch";
/// The page map: one byte per 64 KiB heap page ([`PAGE_ACCESSED`], [`PAGE_WRITTEN`]).
pub const PAGES_EXPORT: &str = "__ic_host_pages";
pub const PAGE_ACCESSED: u8 = 1;
pub const PAGE_WRITTEN: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error("invalid wasm: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("cannot rewrite the module: {0}")]
    Reencode(String),
}

impl<E: std::fmt::Debug> From<ReencodeError<E>> for InstrumentError {
    fn from(e: ReencodeError<E>) -> Self {
        InstrumentError::Reencode(format!("{e:?}"))
    }
}

/// Facts from a first pass over the module that the rewrite needs.
#[derive(Default)]
struct Layout {
    types: u32,
    imported_funcs: u32,
    imported_globals: u32,
    defined_globals: u32,
    /// Type index of each defined function.
    func_types: Vec<u32>,
    /// Parameter count of each type (non-function types count 0).
    type_params: Vec<u32>,
    tables: u32,
    memories: u32,
    /// (index, mutable) of every global, imported first.
    mutable_globals: Vec<u32>,
    exported_globals: HashSet<u32>,
    table_exported: bool,
    has: HashSet<u8>,
}

fn layout(wasm: &[u8]) -> Result<Layout, InstrumentError> {
    let mut l = Layout::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::TypeSection(s) => {
                l.has.insert(SectionId::Type as u8);
                for group in s {
                    for ty in group?.into_types() {
                        let params = match &ty.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => f.params().len() as u32,
                            _ => 0,
                        };
                        l.type_params.push(params);
                        l.types += 1;
                    }
                }
            }
            Payload::ImportSection(s) => {
                l.has.insert(SectionId::Import as u8);
                for import in s.into_imports() {
                    match import?.ty {
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => l.imported_funcs += 1,
                        wasmparser::TypeRef::Global(g) => {
                            if g.mutable {
                                l.mutable_globals.push(l.imported_globals);
                            }
                            l.imported_globals += 1;
                        }
                        wasmparser::TypeRef::Table(_) => l.tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(s) => {
                for ty in s {
                    l.func_types.push(ty?);
                }
            }
            Payload::TableSection(s) => l.tables += s.count(),
            Payload::MemorySection(s) => l.memories += s.count(),
            Payload::GlobalSection(s) => {
                l.has.insert(SectionId::Global as u8);
                for g in s {
                    if g?.ty.mutable {
                        l.mutable_globals.push(l.imported_globals + l.defined_globals);
                    }
                    l.defined_globals += 1;
                }
            }
            Payload::ExportSection(s) => {
                l.has.insert(SectionId::Export as u8);
                for e in s {
                    let e = e?;
                    match e.kind {
                        wasmparser::ExternalKind::Global => {
                            l.exported_globals.insert(e.index);
                        }
                        wasmparser::ExternalKind::Table if e.index == 0 => l.table_exported = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(l)
}

struct Instrumenter {
    l: Layout,
    /// Whether heap pages are tracked (the 2026 accounting, for a module with a memory).
    pages: bool,
    /// The index of the next defined function whose body is being rewritten.
    next_body: usize,
    imports_done: bool,
    globals_done: bool,
    exports_done: bool,
}

impl Instrumenter {
    fn counter(&self) -> u32 {
        self.l.imported_globals + self.l.defined_globals
    }
    fn oot_type(&self) -> u32 {
        self.l.types
    }
    fn touch_type(&self) -> u32 {
        self.l.types + 1
    }
    /// Our imports go after the original imports: defined functions move up by one (two with
    /// page tracking).
    fn oot_func(&self) -> u32 {
        self.l.imported_funcs
    }
    fn touch_func(&self) -> u32 {
        self.l.imported_funcs + 1
    }
    fn added_funcs(&self) -> u32 {
        1 + u32::from(self.pages)
    }
    /// The page map is the module's last memory.
    fn page_map(&self) -> u32 {
        self.l.memories
    }

    fn add_types(&self, types: &mut TypeSection) {
        types.ty().function([], []);
        if self.pages {
            types.ty().function([ValType::I32; 4], []);
        }
    }

    fn add_import(&mut self, imports: &mut ImportSection) {
        imports.import(IMPORT_MODULE, OUT_OF_INSTRUCTIONS, EntityType::Function(self.oot_type()));
        if self.pages {
            imports.import(IMPORT_MODULE, TOUCH, EntityType::Function(self.touch_type()));
        }
        self.imports_done = true;
    }

    fn add_global(&mut self, globals: &mut GlobalSection) {
        // A start function runs during instantiation, before the host can set the counter: give
        // it the install budget. The host sets the counter before every message.
        let initial = crate::cost::limits::INSTALL as i64;
        globals.global(GlobalType { val_type: ValType::I64, mutable: true, shared: false }, &ConstExpr::i64_const(initial));
        self.globals_done = true;
    }

    fn add_exports(&mut self, exports: &mut ExportSection) {
        exports.export(COUNTER_EXPORT, ExportKind::Global, self.counter());
        if self.l.tables > 0 {
            exports.export(TABLE_EXPORT, ExportKind::Table, 0);
        }
        for &g in &self.l.mutable_globals {
            exports.export(&format!("{GLOBAL_EXPORT_PREFIX}{g}"), ExportKind::Global, g);
        }
        if self.pages {
            exports.export(PAGES_EXPORT, ExportKind::Memory, self.page_map());
        }
        self.exports_done = true;
    }

    /// `counter -= cost`, and for reentrant blocks, trap when it went negative.
    fn charge(&self, f: &mut wasm_encoder::Function, cost: u64, check: bool) {
        let c = self.counter();
        f.instruction(&Instruction::GlobalGet(c));
        f.instruction(&Instruction::I64Const(cost as i64));
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::GlobalSet(c));
        if check {
            self.check(f);
        }
    }

    fn check(&self, f: &mut wasm_encoder::Function) {
        f.instruction(&Instruction::GlobalGet(self.counter()));
        f.instruction(&Instruction::I64Const(0));
        f.instruction(&Instruction::I64LtS);
        f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        f.instruction(&Instruction::Call(self.oot_func()));
        f.instruction(&Instruction::End);
    }
}

fn shift(imported: u32, added: u32, func: u32) -> u32 {
    if func >= imported { func + added } else { func }
}

/// How a memory instruction touches the heap: the bytes it reads or writes and what sits
/// above its address on the stack.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Access {
    offset: u64,
    size: u32,
    write: bool,
    /// The value above the address (stores and lane loads).
    value: Option<ValType>,
}

/// The heap access of a load or store of memory 0, if `op` is one.
fn access(op: &Operator<'_>) -> Option<Access> {
    use Operator::*;
    let load = |m: &wasmparser::MemArg, size| Some(Access { offset: m.offset, size, write: false, value: None }).filter(|_| m.memory == 0);
    let lane =
        |m: &wasmparser::MemArg, size, write| Some(Access { offset: m.offset, size, write, value: Some(ValType::V128) }).filter(|_| m.memory == 0);
    let store = |m: &wasmparser::MemArg, size, ty| Some(Access { offset: m.offset, size, write: true, value: Some(ty) }).filter(|_| m.memory == 0);
    match op {
        I32Load8S { memarg } | I32Load8U { memarg } | I64Load8S { memarg } | I64Load8U { memarg } | V128Load8Splat { memarg } => load(memarg, 1),
        I32Load16S { memarg } | I32Load16U { memarg } | I64Load16S { memarg } | I64Load16U { memarg } | V128Load16Splat { memarg } => load(memarg, 2),
        I32Load { memarg }
        | F32Load { memarg }
        | I64Load32S { memarg }
        | I64Load32U { memarg }
        | V128Load32Splat { memarg }
        | V128Load32Zero { memarg } => load(memarg, 4),
        I64Load { memarg }
        | F64Load { memarg }
        | V128Load8x8S { memarg }
        | V128Load8x8U { memarg }
        | V128Load16x4S { memarg }
        | V128Load16x4U { memarg }
        | V128Load32x2S { memarg }
        | V128Load32x2U { memarg }
        | V128Load64Splat { memarg }
        | V128Load64Zero { memarg } => load(memarg, 8),
        V128Load { memarg } => load(memarg, 16),
        V128Load8Lane { memarg, .. } => lane(memarg, 1, false),
        V128Load16Lane { memarg, .. } => lane(memarg, 2, false),
        V128Load32Lane { memarg, .. } => lane(memarg, 4, false),
        V128Load64Lane { memarg, .. } => lane(memarg, 8, false),
        V128Store8Lane { memarg, .. } => lane(memarg, 1, true),
        V128Store16Lane { memarg, .. } => lane(memarg, 2, true),
        V128Store32Lane { memarg, .. } => lane(memarg, 4, true),
        V128Store64Lane { memarg, .. } => lane(memarg, 8, true),
        I32Store8 { memarg } => store(memarg, 1, ValType::I32),
        I32Store16 { memarg } => store(memarg, 2, ValType::I32),
        I32Store { memarg } => store(memarg, 4, ValType::I32),
        I64Store8 { memarg } => store(memarg, 1, ValType::I64),
        I64Store16 { memarg } => store(memarg, 2, ValType::I64),
        I64Store32 { memarg } => store(memarg, 4, ValType::I64),
        I64Store { memarg } => store(memarg, 8, ValType::I64),
        F32Store { memarg } => store(memarg, 4, ValType::F32),
        F64Store { memarg } => store(memarg, 8, ValType::F64),
        V128Store { memarg } => store(memarg, 16, ValType::V128),
        _ => None,
    }
}

/// The page check an operator gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Not an access, or one a group check before it covers.
    None,
    /// Its own check, from the address on the stack.
    Own(Access),
    /// The check of a group of accesses relative to `base`: the bytes `[base + start, base +
    /// end)`, written or read.
    Group { base: u32, start: u64, end: u64, write: bool },
}

/// Plans the page checks of a function body: which accesses share a check (see the module
/// docs) and which get their own.
fn page_checks(ops: &[Operator<'_>]) -> Vec<Check> {
    use std::collections::HashMap;
    let mut checks = vec![Check::None; ops.len()];
    // Open groups of the current straight-line stretch, by (base local, write): the index of
    // their first access.
    let mut open: HashMap<(u32, bool), usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(a) = access(op) {
            let base = match (i.checked_sub(1).map(|j| &ops[j]), i.checked_sub(2).map(|j| &ops[j]), a.value) {
                (Some(Operator::LocalGet { local_index }), _, None) => Some(*local_index),
                (
                    Some(
                        Operator::LocalGet { .. }
                        | Operator::I32Const { .. }
                        | Operator::I64Const { .. }
                        | Operator::F32Const { .. }
                        | Operator::F64Const { .. }
                        | Operator::V128Const { .. },
                    ),
                    Some(Operator::LocalGet { local_index }),
                    Some(_),
                ) => Some(*local_index),
                _ => None,
            };
            let (start, end) = (a.offset, a.offset + u64::from(a.size));
            let grouped = base.filter(|_| end <= u64::from(u32::MAX)).and_then(|base| {
                let first = *open.get(&(base, a.write))?;
                let Check::Group { start: s, end: e, .. } = checks[first] else { return None };
                let (s, e) = (s.min(start), e.max(end));
                (e - s <= 65_536).then(|| {
                    checks[first] = Check::Group { base, start: s, end: e, write: a.write };
                })
            });
            if grouped.is_none() {
                checks[i] = match base.filter(|_| end <= u64::from(u32::MAX)) {
                    Some(base) => {
                        open.insert((base, a.write), i);
                        Check::Group { base, start, end, write: a.write }
                    }
                    None => Check::Own(a),
                };
            }
            continue;
        }
        match op {
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                open.remove(&(*local_index, false));
                open.remove(&(*local_index, true));
            }
            // Control flow ends the stretch (a later access might not run), and so does a call
            // (it might read the instruction counter).
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::MemoryGrow { .. } => open.clear(),
            _ => {}
        }
    }
    checks
}

/// Locals a function's page checks use (after its own and the bulk-size scratch).
struct PageLocals {
    /// The address as the instruction gets it.
    address: u32,
    /// The address plus the offset.
    effective: u32,
    value_i32: u32,
    value_i64: u32,
    value_f32: u32,
    value_f64: u32,
    value_v128: u32,
}

impl PageLocals {
    const TYPES: [ValType; 7] = [ValType::I32, ValType::I32, ValType::I32, ValType::I64, ValType::F32, ValType::F64, ValType::V128];

    fn new(first: u32) -> PageLocals {
        PageLocals {
            address: first,
            effective: first + 1,
            value_i32: first + 2,
            value_i64: first + 3,
            value_f32: first + 4,
            value_f64: first + 5,
            value_v128: first + 6,
        }
    }

    fn value(&self, ty: ValType) -> u32 {
        match ty {
            ValType::I32 => self.value_i32,
            ValType::I64 => self.value_i64,
            ValType::F32 => self.value_f32,
            ValType::F64 => self.value_f64,
            _ => self.value_v128,
        }
    }
}

/// Where a basic block starts and what it costs, per the IC's rules.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    Static { position: usize, cost: u64, reentrant: bool },
    Dynamic { position: usize },
}

/// Splits a function body into metered blocks: a block ends after `loop`, `if`, `else`, `br`,
/// `br_if`, `br_table`, `end`, `return`, `unreachable` and tail calls; the function entry and
/// loop bodies are reentrant (checked); bulk operations get a dynamic point before them.
fn injection_points(ops: &[Operator<'_>]) -> Vec<Point> {
    let mut points = Vec::new();
    let mut start = 0;
    let mut cost = cost::FUNCTION_ENTRY;
    let mut reentrant = true;
    for (i, op) in ops.iter().enumerate() {
        cost += cost::operator_cost(op);
        if cost::has_dynamic_cost(op) {
            points.push(Point::Dynamic { position: i });
        }
        let next_reentrant = match op {
            Operator::Loop { .. } => Some(true),
            Operator::If { .. }
            | Operator::Else
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::End
            | Operator::Return
            | Operator::Unreachable
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. } => Some(false),
            _ => None,
        };
        if let Some(next) = next_reentrant {
            points.push(Point::Static { position: start, cost, reentrant });
            start = i + 1;
            cost = 0;
            reentrant = next;
        }
    }
    points.push(Point::Static { position: start, cost, reentrant });
    // Non-reentrant blocks that cost nothing need no code (this also drops the empty block after
    // the function's final `end`).
    points.retain(|p| !matches!(p, Point::Static { cost: 0, reentrant: false, .. }));
    // A block's point is found at its end, after the bulk operations inside it: order by place.
    points.sort_by_key(|p| match *p {
        Point::Static { position, .. } => (position, 0),
        Point::Dynamic { position } => (position, 1),
    });
    points
}

impl Reencode for Instrumenter {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(shift(self.l.imported_funcs, self.added_funcs(), func))
    }

    fn parse_type_section(&mut self, types: &mut TypeSection, section: wasmparser::TypeSectionReader<'_>) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_import_section(self, imports, section)?;
        self.add_import(imports);
        Ok(())
    }

    fn parse_memory_section(
        &mut self,
        memories: &mut MemorySection,
        section: wasmparser::MemorySectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_memory_section(self, memories, section)?;
        if self.pages {
            memories.memory(MemoryType { minimum: 1, maximum: Some(1), memory64: false, shared: false, page_size_log2: None });
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_global_section(self, globals, section)?;
        self.add_global(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        // Create the sections we extend when the module has none, at their place in the order.
        let position = |id: Option<SectionId>| -> u32 {
            match id {
                None => 100,
                Some(SectionId::Type) => 1,
                Some(SectionId::Import) => 2,
                Some(SectionId::Function) => 3,
                Some(SectionId::Table) => 4,
                Some(SectionId::Memory) => 5,
                Some(SectionId::Tag) => 6,
                Some(SectionId::Global) => 7,
                Some(SectionId::Export) => 8,
                Some(SectionId::Start) => 9,
                Some(SectionId::Element) => 10,
                Some(SectionId::DataCount) => 11,
                Some(SectionId::Code) => 12,
                Some(SectionId::Data) => 13,
                Some(_) => 0,
            }
        };
        let next = position(before);
        if next == 0 {
            return Ok(());
        }
        if next > 1 && !self.l.has.contains(&(SectionId::Type as u8)) {
            let mut types = TypeSection::new();
            self.add_types(&mut types);
            module.section(&types);
            self.l.has.insert(SectionId::Type as u8);
        }
        if next > 2 && !self.imports_done {
            let mut imports = ImportSection::new();
            self.add_import(&mut imports);
            module.section(&imports);
        }
        if next > 7 && !self.globals_done {
            let mut globals = GlobalSection::new();
            self.add_global(&mut globals);
            module.section(&globals);
        }
        if next > 8 && !self.exports_done {
            let mut exports = ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_function_body(&mut self, code: &mut CodeSection, func: wasmparser::FunctionBody<'_>) -> Result<(), ReencodeError<Self::Error>> {
        let type_index = self.l.func_types.get(self.next_body).copied().unwrap_or(0);
        self.next_body += 1;
        let params = self.l.type_params.get(type_index as usize).copied().unwrap_or(0);
        let mut locals = Vec::new();
        let mut local_count = params;
        for pair in func.get_locals_reader()? {
            let (count, ty) = pair?;
            local_count += count;
            locals.push((count, self.val_type(ty)?));
        }
        // A scratch local holding a bulk operation's size while it is charged.
        let scratch = local_count;
        locals.push((1, ValType::I32));
        let page_locals = PageLocals::new(scratch + 1);
        if self.pages {
            locals.extend(PageLocals::TYPES.map(|t| (1, t)));
        }
        let mut f = wasm_encoder::Function::new(locals);

        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        let points = injection_points(&ops);
        let checks = if self.pages { page_checks(&ops) } else { Vec::new() };
        let mut next = points.iter().peekable();
        for (i, op) in ops.into_iter().enumerate() {
            while let Some(point) = next.next_if(|p| match p {
                Point::Static { position, .. } | Point::Dynamic { position } => *position == i,
            }) {
                match *point {
                    Point::Static { cost, reentrant, .. } => self.charge(&mut f, cost, reentrant),
                    Point::Dynamic { .. } => {
                        // The size is on top of the stack: charge it without consuming it.
                        let c = self.counter();
                        f.instruction(&Instruction::LocalTee(scratch));
                        f.instruction(&Instruction::GlobalGet(c));
                        f.instruction(&Instruction::LocalGet(scratch));
                        f.instruction(&Instruction::I64ExtendI32U);
                        f.instruction(&Instruction::I64Sub);
                        f.instruction(&Instruction::GlobalSet(c));
                        self.check(&mut f);
                    }
                }
            }
            if self.pages {
                match checks[i] {
                    Check::Own(a) => self.guard(&mut f, a, &page_locals),
                    Check::Group { base, start, end, write } => self.guard_group(&mut f, base, start, end, write),
                    Check::None => self.guard_bulk(&mut f, &op, scratch, &page_locals),
                }
            }
            f.instruction(&self.instruction(op)?);
        }
        code.function(&f);
        Ok(())
    }
}

impl Instrumenter {
    /// Before a load or store (its address, and the value above it, on the stack): calls
    /// `touch` unless the page map says the page(s) it touches were already accessed (a load)
    /// or written (a store) in this message. An access that may span two pages (its first byte
    /// within `size - 1` of a page's end) always calls: the host sorts it out.
    fn guard(&self, f: &mut wasm_encoder::Function, a: Access, l: &PageLocals) {
        if let Some(ty) = a.value {
            f.instruction(&Instruction::LocalSet(l.value(ty)));
        }
        // Offsets of wasm32 memories fit in 32 bits; the sum wraps like the host's check does
        // not (an access past 4 GiB traps anyway).
        let offset = a.offset as u32;
        let address = if offset == 0 { l.effective } else { l.address };
        if offset == 0 {
            f.instruction(&Instruction::LocalTee(l.effective));
        } else {
            f.instruction(&Instruction::LocalTee(l.address));
            f.instruction(&Instruction::I32Const(offset as i32));
            f.instruction(&Instruction::I32Add);
            f.instruction(&Instruction::LocalTee(l.effective));
        }
        self.page_is_new(f, a.write);
        if a.size > 1 {
            f.instruction(&Instruction::LocalGet(l.effective));
            f.instruction(&Instruction::I32Const(0xffff));
            f.instruction(&Instruction::I32And);
            f.instruction(&Instruction::I32Const(65_536 - a.size as i32));
            f.instruction(&Instruction::I32GtU);
            f.instruction(&Instruction::I32Or);
        }
        f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        f.instruction(&Instruction::LocalGet(address));
        f.instruction(&Instruction::I32Const(offset as i32));
        f.instruction(&Instruction::I32Const(a.size as i32));
        f.instruction(&Instruction::I32Const(i32::from(a.write)));
        f.instruction(&Instruction::Call(self.touch_func()));
        f.instruction(&Instruction::End);
        f.instruction(&Instruction::LocalGet(address));
        if let Some(ty) = a.value {
            f.instruction(&Instruction::LocalGet(l.value(ty)));
        }
    }

    /// Pushes whether the page map byte of the page holding the address on the stack says it
    /// must be touched (not accessed yet for a read, not written yet for a write).
    fn page_is_new(&self, f: &mut wasm_encoder::Function, write: bool) {
        f.instruction(&Instruction::I32Const(16));
        f.instruction(&Instruction::I32ShrU);
        f.instruction(&Instruction::I32Load8U(wasm_encoder::MemArg { offset: 0, align: 0, memory_index: self.page_map() }));
        if write {
            f.instruction(&Instruction::I32Const(i32::from(PAGE_ACCESSED | PAGE_WRITTEN)));
            f.instruction(&Instruction::I32Ne);
        } else {
            f.instruction(&Instruction::I32Eqz);
        }
    }

    /// Stack-neutral, before the first access of a group: touches `[base + start, base + end)`
    /// unless the pages of both its ends are known (at most 64 KiB: no page in between).
    fn guard_group(&self, f: &mut wasm_encoder::Function, base: u32, start: u64, end: u64, write: bool) {
        let at = |f: &mut wasm_encoder::Function, offset: u64| {
            f.instruction(&Instruction::LocalGet(base));
            if offset != 0 {
                f.instruction(&Instruction::I32Const(offset as u32 as i32));
                f.instruction(&Instruction::I32Add);
            }
        };
        at(f, start);
        self.page_is_new(f, write);
        if end - start > 1 {
            at(f, end - 1);
            self.page_is_new(f, write);
            f.instruction(&Instruction::I32Or);
        }
        f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        f.instruction(&Instruction::LocalGet(base));
        f.instruction(&Instruction::I32Const(start as u32 as i32));
        f.instruction(&Instruction::I32Const((end - start) as i32));
        f.instruction(&Instruction::I32Const(i32::from(write)));
        f.instruction(&Instruction::Call(self.touch_func()));
        f.instruction(&Instruction::End);
    }

    /// Before `memory.fill`, `memory.copy` or `memory.init` of memory 0 (after its size was
    /// charged, so `size` holds it): `touch` for the ranges it reads and writes.
    fn guard_bulk(&self, f: &mut wasm_encoder::Function, op: &Operator<'_>, size: u32, l: &PageLocals) {
        let (reads, writes) = match *op {
            Operator::MemoryFill { mem: 0 } => (false, true),
            Operator::MemoryCopy { dst_mem: 0, src_mem: 0 } => (true, true),
            Operator::MemoryInit { mem: 0, .. } => (false, true),
            _ => return,
        };
        // [destination, source or value, size] → locals, and back on the stack.
        f.instruction(&Instruction::Drop);
        f.instruction(&Instruction::LocalSet(l.effective));
        f.instruction(&Instruction::LocalTee(l.address));
        f.instruction(&Instruction::LocalGet(l.effective));
        f.instruction(&Instruction::LocalGet(size));
        // Touched unless it is at most 64 KiB and the pages of both its ends are known.
        let touch = |f: &mut wasm_encoder::Function, start: u32, write: bool| {
            f.instruction(&Instruction::LocalGet(size));
            f.instruction(&Instruction::I32Const(65_536));
            f.instruction(&Instruction::I32GtU);
            f.instruction(&Instruction::LocalGet(start));
            self.page_is_new(f, write);
            f.instruction(&Instruction::I32Or);
            f.instruction(&Instruction::LocalGet(start));
            f.instruction(&Instruction::LocalGet(size));
            f.instruction(&Instruction::I32Add);
            f.instruction(&Instruction::I32Const(1));
            f.instruction(&Instruction::I32Sub);
            self.page_is_new(f, write);
            f.instruction(&Instruction::I32Or);
            f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
            f.instruction(&Instruction::LocalGet(start));
            f.instruction(&Instruction::I32Const(0));
            f.instruction(&Instruction::LocalGet(size));
            f.instruction(&Instruction::I32Const(i32::from(write)));
            f.instruction(&Instruction::Call(self.touch_func()));
            f.instruction(&Instruction::End);
        };
        if reads {
            touch(f, l.effective, false);
        }
        if writes {
            touch(f, l.address, true);
        }
    }
}

/// Rewrites a module for metering (see the module docs).
pub fn instrument(wasm: &[u8], accounting: Accounting) -> Result<Vec<u8>, InstrumentError> {
    let l = layout(wasm)?;
    let pages = accounting == Accounting::Ic2026 && l.memories > 0;
    let mut instrumenter = Instrumenter { l, pages, next_body: 0, imports_done: false, globals_done: false, exports_done: false };
    let mut module = Module::new();
    instrumenter.parse_core_module(&mut module, Parser::new(0), wasm)?;
    Ok(module.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_like_the_replica() {
        use Operator::*;
        // (func (local i32) local.get 0 if (nop) else (nop) end loop br 0 end)
        let ops = [
            LocalGet { local_index: 0 },
            If { blockty: wasmparser::BlockType::Empty },
            Nop,
            Else,
            Nop,
            End,
            Loop { blockty: wasmparser::BlockType::Empty },
            Br { relative_depth: 0 },
            End,
            End,
        ];
        assert_eq!(
            injection_points(&ops),
            [
                Point::Static { position: 0, cost: 1 + 1 + 2, reentrant: true },
                Point::Static { position: 2, cost: 1, reentrant: false },
                Point::Static { position: 4, cost: 1, reentrant: false },
                Point::Static { position: 7, cost: 2, reentrant: true },
            ]
        );
    }

    #[test]
    fn accesses_relative_to_one_local_share_a_check_within_straight_line_code() {
        use Operator::*;
        let m = |offset| wasmparser::MemArg { align: 2, max_align: 2, offset, memory: 0 };
        let ops = [
            LocalGet { local_index: 0 },
            I32Load { memarg: m(8) },
            LocalGet { local_index: 0 },
            I32Load { memarg: m(0) },
            LocalGet { local_index: 0 },
            I32Const { value: 1 },
            I32Store { memarg: m(4) },
            LocalGet { local_index: 0 },
            I32Load { memarg: m(70_000) }, // more than 64 KiB from the others: its own group
            LocalGet { local_index: 1 },
            I32Load { memarg: m(0) },
            LocalTee { local_index: 0 },
            I32Load { memarg: m(12) }, // the address comes from local.tee: its own check
            LocalGet { local_index: 0 },
            I32Load { memarg: m(16) }, // local 0 changed: a new group
            Call { function_index: 0 },
            LocalGet { local_index: 0 },
            I32Load { memarg: m(20) }, // after a call: a new group
            End,
        ];
        let checks = page_checks(&ops);
        let group = |base, start, end, write| Check::Group { base, start, end, write };
        assert_eq!(checks[1], group(0, 0, 12, false));
        assert_eq!(checks[3], Check::None);
        assert_eq!(checks[6], group(0, 4, 8, true));
        assert_eq!(checks[8], group(0, 70_000, 70_004, false));
        assert_eq!(checks[10], group(1, 0, 4, false));
        assert!(matches!(checks[12], Check::Own(Access { offset: 12, size: 4, write: false, value: None })));
        assert_eq!(checks[14], group(0, 16, 20, false));
        assert_eq!(checks[17], group(0, 20, 24, false));
    }
}
