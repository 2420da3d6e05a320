//! The Internet Computer's instruction cost table (`instruction_to_cost` of the replica's wasm
//! instrumentation) and the overheads it adds for System API calls. Numbers from
//! `../shared/spec/ic-platform.md` A4; wasm32 memories only.

use wasmparser::Operator;

/// Cost every function call pays on entry, before its first block (the IC charges at least one
/// instruction even for an empty function).
pub const FUNCTION_ENTRY: u64 = 1;

/// Static cost of one operator. Bulk memory and table operations also pay their size at run time.
pub fn operator_cost(op: &Operator<'_>) -> u64 {
    use Operator::*;
    match op {
        Block { .. } | Loop { .. } | Else | End => 0,
        I32Const { .. } | I64Const { .. } | F32Const { .. } | F64Const { .. } => 1,

        I32DivS | I32DivU | I32RemS | I32RemU | I64DivS | I64DivU | I64RemS | I64RemU => 10,

        F32Abs | F32Neg | F64Abs | F64Neg => 1,
        F32Add | F32Sub | F32Mul | F32Ceil | F32Floor | F32Trunc | F32Nearest | F64Add | F64Sub | F64Mul | F64Ceil | F64Floor | F64Trunc
        | F64Nearest => 2,
        F32Div => 3,
        F64Div => 5,
        F32Min | F32Max | F64Min | F64Max => 18,
        F32Copysign => 2,
        F64Copysign => 3,
        F32Sqrt => 5,
        F64Sqrt => 8,
        F32Eq | F32Ne | F32Lt | F32Gt | F32Le | F32Ge | F64Eq | F64Ne | F64Lt | F64Gt | F64Le | F64Ge => 3,

        F32ConvertI32S | F64ConvertI64S | F32ConvertI64S | F64ConvertI32S => 3,
        F64ConvertI32U | F32ConvertI64U | F32ConvertI32U | F64ConvertI64U => 16,
        I64TruncSatF32S | I64TruncSatF32U | I64TruncSatF64S | I64TruncSatF64U | I32TruncSatF32S | I32TruncSatF32U | I32TruncSatF64S
        | I32TruncSatF64U => 20,
        I32TruncF32S | I32TruncF32U | I32TruncF64S | I32TruncF64U | I64TruncF32S | I64TruncF32U | I64TruncF64S | I64TruncF64U => 20,
        F32DemoteF64 | F64PromoteF32 => 1,

        GlobalGet { .. } | GlobalSet { .. } => 2,
        TableGet { .. } | TableSet { .. } => 5,
        LocalGet { .. } | LocalSet { .. } | LocalTee { .. } | Select | TypedSelect { .. } => 1,
        TableGrow { .. } | MemoryGrow { .. } => 300,
        MemorySize { .. } => 20,
        TableSize { .. } => 100,
        MemoryFill { .. } | MemoryCopy { .. } | TableFill { .. } | TableCopy { .. } | MemoryInit { .. } | TableInit { .. } => 100,
        DataDrop { .. } | ElemDrop { .. } => 300,
        Call { .. } => 5,
        CallIndirect { .. } => 10,
        ReturnCall { .. } => 3,
        ReturnCallIndirect { .. } => 60,
        Return | Drop | Unreachable | Nop => 1,
        If { .. } | Br { .. } | BrIf { .. } | BrTable { .. } => 2,
        RefNull { .. } => 1,
        RefIsNull => 5,
        RefFunc { .. } => 130,

        // SIMD: loads/stores of every shape cost 1 in wasm32.
        I8x16Shuffle { .. } => 3,
        I8x16LtU | I8x16GtU | I16x8LtU | I16x8GtU | I32x4LtU | I32x4GtU => 2,
        I8x16Popcnt => 3,
        I8x16Shl | I8x16ShrS => 3,
        I8x16ShrU => 2,
        I16x8ExtAddPairwiseI8x16U => 2,
        I16x8ExtMulHighI8x16S | I16x8ExtMulHighI8x16U => 2,
        I16x8Shl | I16x8ShrS | I16x8ShrU => 2,
        I32x4ExtAddPairwiseI16x8U => 3,
        I32x4Shl | I32x4ShrS | I32x4ShrU => 2,
        I32x4Mul => 2,
        I32x4ExtMulLowI16x8S | I32x4ExtMulHighI16x8S | I32x4ExtMulLowI16x8U | I32x4ExtMulHighI16x8U => 2,
        I64x2Shl | I64x2ShrU => 2,
        I64x2ShrS => 3,
        I64x2Mul => 4,
        F32x4Ceil | F32x4Floor | F32x4Trunc | F32x4Nearest | F32x4Abs | F32x4Neg | F32x4Add | F32x4Sub | F32x4Mul => 2,
        F32x4Sqrt => 5,
        F32x4Div => 10,
        F32x4Min | F32x4Max => 4,
        F64x2Ceil | F64x2Floor | F64x2Trunc | F64x2Nearest | F64x2Abs | F64x2Neg | F64x2Add | F64x2Sub | F64x2Mul => 2,
        F64x2Sqrt => 14,
        F64x2Div => 12,
        F64x2Min => 4,
        F64x2Max => 5,
        I32x4TruncSatF32x4S => 2,
        I32x4TruncSatF32x4U => 4,
        F32x4ConvertI32x4U => 4,
        I32x4TruncSatF64x2SZero => 2,
        I32x4TruncSatF64x2UZero => 3,

        // Integer arithmetic, comparisons, bit counts, extensions, reinterpretations, the
        // remaining SIMD operations, and anything not listed.
        _ => 1,
    }
}

/// Whether the operator's size operand is charged at run time (one instruction per byte or
/// element), on top of its static cost.
pub fn has_dynamic_cost(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
    )
}

/// Instructions charged for a System API call on top of the `call` itself.
pub mod system_api {
    /// Most calls (msg_reply, msg_arg_data_copy, time, canister_self_copy, ...).
    pub const DEFAULT: u64 = 500;
    pub const DEBUG_PRINT: u64 = 100;
    pub const IS_CONTROLLER: u64 = 1_000;
    pub const PERFORMANCE_COUNTER: u64 = 200;
    pub const CALL_NEW: u64 = 1_500;
    pub const CALL_PERFORM: u64 = 5_000;
    /// Stable reads and writes: this plus one instruction per byte.
    pub const STABLE_ACCESS: u64 = 20;
    pub const STABLE_GROW: u64 = 500;
    /// Each stable memory page (4 KiB) a message writes for the first time (2025 accounting).
    pub const DIRTY_PAGE: u64 = 1_000;
    pub const STABLE_PAGE_BYTES: u64 = 4096;
}

/// The memory charges of the deterministic memory tracker (IC since mid-2026: dfinity/ic PRs
/// #10536 and #10789, flag removed by #11180; the base cost #10065). The tracker works on 64 KiB
/// Wasm pages and charges their 16 OS pages (4 KiB) at once, 5 000 each.
pub mod pages {
    /// A 64 KiB page of the heap or of stable memory, on its first access (read or write) in a
    /// message.
    pub const FIRST_ACCESS: u64 = 16 * 5_000;
    /// The same page, on its first write in a message (updates and the like only).
    pub const FIRST_WRITE: u64 = 16 * 5_000;
    /// Each page a message dirtied, after it (3 000 per OS page): counted in the message's
    /// instructions, not in `performance_counter`.
    pub const COPY: u64 = 16 * 3_000;
    /// Creating the execution state on install and upgrade.
    pub const EXECUTION_STATE: u64 = 20_000_000;
    /// Bytes of a page.
    pub const BYTES: u64 = 65_536;
}

/// The IC's per-message limits.
pub mod limits {
    pub const UPDATE: u64 = 40_000_000_000;
    pub const QUERY: u64 = 5_000_000_000;
    pub const INSTALL: u64 = 300_000_000_000;
    pub const INSPECT_MESSAGE: u64 = 200_000_000;
    /// A DTS slice: an update spanning more is spread over several rounds.
    pub const SLICE: u64 = 2_000_000_000;
}
