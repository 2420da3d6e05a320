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

use std::collections::HashSet;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, GlobalSection, GlobalType, ImportSection, Instruction,
    Module, SectionId, TypeSection, ValType,
};
use wasmparser::{Operator, Parser, Payload};

use crate::cost;

pub const IMPORT_MODULE: &str = "__ic_host";
pub const OUT_OF_INSTRUCTIONS: &str = "out_of_instructions";
pub const COUNTER_EXPORT: &str = "__ic_host_instructions";
pub const TABLE_EXPORT: &str = "__ic_host_table";
pub const GLOBAL_EXPORT_PREFIX: &str = "__ic_host_global_";

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
    /// Our import goes after the original imports: defined functions move up by one.
    fn oot_func(&self) -> u32 {
        self.l.imported_funcs
    }

    fn add_import(&mut self, imports: &mut ImportSection) {
        imports.import(IMPORT_MODULE, OUT_OF_INSTRUCTIONS, EntityType::Function(self.oot_type()));
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

fn shift(imported: u32, func: u32) -> u32 {
    if func >= imported { func + 1 } else { func }
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
        Ok(shift(self.l.imported_funcs, func))
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([], []);
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
            types.ty().function([], []);
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

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
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
        let mut f = wasm_encoder::Function::new(locals);

        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        let points = injection_points(&ops);
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
            f.instruction(&self.instruction(op)?);
        }
        code.function(&f);
        Ok(())
    }
}

/// Rewrites a module for metering (see the module docs).
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    let l = layout(wasm)?;
    let mut instrumenter = Instrumenter { l, next_body: 0, imports_done: false, globals_done: false, exports_done: false };
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
}
