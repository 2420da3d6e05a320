//! The `ic0` System API: the functions a canister imports, with the IC's semantics, availability
//! per message kind ([`crate::message::AVAILABILITY`]), bounds checks (a bad pointer traps, as on
//! the IC) and instruction charges ([`crate::cost::system_api`]). One file per group: `msg`
//! (arguments, caller, replies, rejects, inspect_message), `canister` (self, cycles, status,
//! version, controllers), `time` (time, timer, performance counters), `stable`, `call`
//! (inter-canister calls) and `debug` (debug print, trap, certified data and certificates).
//! Beside them, the page charges of the 2026 accounting ([`touch_heap`], [`touch_stable`]): the
//! instrumented module calls `__ic_host.touch` for loads and stores, the System API for the
//! bytes it copies.

use wasmtime::{AsContextMut, Caller, Engine, Linker, Memory, Val};

use crate::cost::pages::BYTES as PAGE;
use crate::instrument::{IMPORT_MODULE, OUT_OF_INSTRUCTIONS, TOUCH};
use crate::message::{self, Kind, Kinds, Message};
use crate::state::{State, touch_page};
use crate::types::OutOfInstructions;

/// Registers `ic0.$name`: the body runs once the message kind passed the function's row of
/// [`crate::message::AVAILABILITY`], with `$kind` bound to that kind and `NAME` to the function's
/// name, so that the name is written once.
macro_rules! ic0 {
    ($linker:ident, $name:ident, |$c:ident, $kind:pat_param $(, $arg:ident: $ty:ty)*| -> $ret:ty $body:block) => {{
        const NAME: &str = stringify!($name);
        let kinds = $crate::ic0::available(NAME)?;
        $linker.func_wrap("ic0", NAME, move |mut $c: $crate::ic0::Ctx<'_>, $($arg: $ty),*| -> $crate::ic0::HostResult<$ret> {
            let $kind = $crate::ic0::allowed(&mut $c, NAME, kinds)?;
            $body
        })?;
    }};
}

mod call;
mod canister;
mod debug;
mod msg;
mod stable;
mod time;

type Ctx<'a> = Caller<'a, State>;
type HostResult<T> = wasmtime::Result<T>;

/// The linker with every function of the System API this host implements. Other `ic0`
/// functions trap when called (validation already refused non-`ic0` imports).
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut l = Linker::new(engine);
    l.func_wrap(IMPORT_MODULE, OUT_OF_INSTRUCTIONS, || -> HostResult<()> { Err(wasmtime::Error::new(OutOfInstructions)) })?;
    l.func_wrap(IMPORT_MODULE, TOUCH, |mut c: Ctx<'_>, address: i32, offset: i32, size: i32, write: i32| -> HostResult<()> {
        let start = u64::from(address as u32) + u64::from(offset as u32);
        touch_heap(&mut c, start, u64::from(size as u32), write != 0)
    })?;
    msg::register(&mut l)?;
    canister::register(&mut l)?;
    time::register(&mut l)?;
    stable::register(&mut l)?;
    call::register(&mut l)?;
    debug::register(&mut l)?;
    Ok(l)
}

/// Names of the `ic0` functions this host implements.
pub fn implemented() -> Vec<String> {
    let engine = Engine::default();
    let linker = linker(&engine).expect("the System API links");
    let mut store = wasmtime::Store::new(&engine, State::default());
    let mut names: Vec<String> = linker.iter(&mut store).filter(|(module, _, _)| *module == "ic0").map(|(_, name, _)| name.to_string()).collect();
    names.sort();
    names
}

/// The row of `name` in the availability table; registering a function without one is a bug.
fn available(name: &str) -> wasmtime::Result<Kinds> {
    message::availability(name).ok_or_else(|| wasmtime::Error::msg(format!("ic0.{name} has no row in the availability table")))
}

/// Checks that `name` may run in the current message kind (the start function runs outside
/// any message).
fn allowed(c: &mut Ctx<'_>, name: &str, kinds: Kinds) -> HostResult<Kind> {
    let kind = c.data().message.as_ref().map(|m| m.kind);
    match kind {
        Some(k) if kinds.contains(k) => Ok(k),
        Some(k) => trap(c, format!("\"ic0.{name}\" cannot be executed in {} mode", k.name())),
        None if kinds.contains(Kind::Start) => Ok(Kind::Start),
        None => trap(c, format!("\"ic0.{name}\" called outside a message")),
    }
}

/// Traps with the IC's wording and records the message for the outcome.
fn trap<T>(c: &mut Ctx<'_>, message: String) -> HostResult<T> {
    c.data_mut().trap_message = Some(message.clone());
    Err(wasmtime::Error::msg(message))
}

/// Subtracts a System API overhead from the counter; traps when the budget is spent.
fn charge(c: &mut Ctx<'_>, amount: u64) -> HostResult<()> {
    let Some(counter) = c.data().counter else { return Ok(()) };
    let now = match counter.get(c.as_context_mut()) {
        Val::I64(v) => v,
        _ => 0,
    };
    let next = now.saturating_sub(amount as i64);
    counter.set(c.as_context_mut(), Val::I64(next))?;
    if next < 0 {
        return Err(wasmtime::Error::new(OutOfInstructions));
    }
    Ok(())
}

/// Charges the heap pages of `[start, start + len)` that the running message touches for the
/// first time (or writes for the first time) and marks them in the page map. Nothing when heap
/// pages are not tracked, outside a message (the start function), for no byte, or for a range
/// out of bounds (the access traps).
fn touch_heap(c: &mut Ctx<'_>, start: u64, len: u64, write: bool) -> HostResult<()> {
    let (Some(map), Some(heap)) = (c.data().pages.map, c.data().memory) else { return Ok(()) };
    if len == 0 || c.data().message.is_none() {
        return Ok(());
    }
    let Some(end) = start.checked_add(len).filter(|&end| end <= heap.data_size(&*c) as u64) else { return Ok(()) };
    let (bytes, state) = map.data_and_store_mut(&mut *c);
    let (paid, used) = (state.pages.writes_paid, &mut state.pages.used);
    let cost: u64 = (start / PAGE..=(end - 1) / PAGE).map(|p| touch_page(&mut bytes[p as usize], write, paid, used)).sum();
    if cost == 0 {
        return Ok(());
    }
    charge(c, cost)
}

/// The same for stable memory pages (the caller checked the bounds).
fn touch_stable(c: &mut Ctx<'_>, start: u64, len: u64, write: bool) -> HostResult<()> {
    if len == 0 || !c.data().pages.tracked() {
        return Ok(());
    }
    let pages = &mut c.data_mut().pages;
    let (paid, stable, used) = (pages.writes_paid, &mut pages.stable, &mut pages.used);
    let cost: u64 = (start / PAGE..=(start + len - 1) / PAGE).map(|p| touch_page(stable.entry(p).or_default(), write, paid, used)).sum();
    if cost == 0 {
        return Ok(());
    }
    charge(c, cost)
}

/// Instructions the running message has used so far.
fn used(c: &mut Ctx<'_>) -> u64 {
    let limit = c.data().message.as_ref().map_or(0, |m| m.limit);
    let remaining = match c.data().counter.map(|g| g.get(c.as_context_mut())) {
        Some(Val::I64(v)) => v,
        _ => 0,
    };
    (limit as i64).saturating_sub(remaining).max(0) as u64
}

fn memory(c: &mut Ctx<'_>) -> HostResult<Memory> {
    match c.data().memory {
        Some(m) => Ok(m),
        None => trap(c, "the canister has no memory".into()),
    }
}

/// `size` bytes of the heap at `src`, or a trap if they are out of bounds.
fn read_heap(c: &mut Ctx<'_>, src: u64, size: u64, what: &str) -> HostResult<Vec<u8>> {
    let mem = memory(c)?;
    match src.checked_add(size).filter(|&end| end <= mem.data_size(&*c) as u64) {
        Some(end) => {
            touch_heap(c, src, size, false)?;
            Ok(mem.data(&*c)[src as usize..end as usize].to_vec())
        }
        None => trap(c, format!("{what}: heap range {src}+{size} is out of bounds")),
    }
}

fn write_heap(c: &mut Ctx<'_>, dst: u64, bytes: &[u8], what: &str) -> HostResult<()> {
    let mem = memory(c)?;
    match dst.checked_add(bytes.len() as u64).filter(|&end| end <= mem.data_size(&*c) as u64) {
        Some(end) => {
            touch_heap(c, dst, bytes.len() as u64, true)?;
            mem.data_mut(&mut *c)[dst as usize..end as usize].copy_from_slice(bytes);
            Ok(())
        }
        None => trap(c, format!("{what}: heap range {dst}+{} is out of bounds", bytes.len())),
    }
}

/// The `*_copy(dst, offset, size)` pattern: copies `source[offset..offset+size]` to the heap.
fn copy_out(c: &mut Ctx<'_>, source: &[u8], dst: u32, offset: u32, size: u32, what: &str) -> HostResult<()> {
    let (offset, size) = (offset as usize, size as usize);
    match offset.checked_add(size).filter(|&end| end <= source.len()) {
        Some(end) => {
            let bytes = source[offset..end].to_vec();
            write_heap(c, dst.into(), &bytes, what)
        }
        None => trap(c, format!("{what}: range {offset}+{size} is outside the {} available bytes", source.len())),
    }
}

fn message<'c>(c: &'c Ctx<'_>) -> &'c Message {
    c.data().message.as_ref().expect("`allowed` checked that a message is running")
}

fn message_mut<'c>(c: &'c mut Ctx<'_>) -> &'c mut Message {
    c.data_mut().message.as_mut().expect("`allowed` checked that a message is running")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_linker_and_the_availability_table_agree() {
        let mut table: Vec<String> = crate::message::AVAILABILITY.iter().map(|(n, _)| n.to_string()).collect();
        table.sort();
        assert_eq!(super::implemented(), table);
    }
}
