//! Stable memory (the 64-bit API): 20 + 1 per byte, and the pages of both memories it touches
//! (2026 accounting), or 1 000 for each 4 KiB stable page a message writes for the first time
//! (2025 accounting).

use wasmtime::Linker;

use super::{charge, memory, read_heap, touch_heap, touch_stable, trap};
use crate::cost::system_api::{DIRTY_PAGE, STABLE_ACCESS, STABLE_GROW, STABLE_PAGE_BYTES};
use crate::state::State;

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, stable64_size, |c, _| -> i64 {
        charge(&mut c, STABLE_ACCESS)?;
        Ok(c.data().stable.size() as i64)
    });
    ic0!(l, stable64_grow, |c, _, pages: i64| -> i64 {
        charge(&mut c, STABLE_GROW)?;
        Ok(c.data_mut().stable.grow(pages as u64).map_or(-1, |old| old as i64))
    });
    ic0!(l, stable64_read, |c, _, dst: i64, offset: i64, size: i64| -> () {
        let (dst, offset, size) = (dst as u64, offset as u64, size as u64);
        charge(&mut c, STABLE_ACCESS.saturating_add(size))?;
        if !c.data().stable.in_bounds(offset, size) {
            return trap(&mut c, format!("stable memory out of bounds: read of {size} bytes at {offset}"));
        }
        let mem = memory(&mut c)?;
        if dst.checked_add(size).is_none_or(|end| end > mem.data_size(&c) as u64) {
            return trap(&mut c, format!("{NAME}: heap range {dst}+{size} is out of bounds"));
        }
        touch_stable(&mut c, offset, size, false)?;
        touch_heap(&mut c, dst, size, true)?;
        let (heap, state) = mem.data_and_store_mut(&mut c);
        state.stable.read(offset, &mut heap[dst as usize..(dst + size) as usize]);
        Ok(())
    });
    ic0!(l, stable64_write, |c, _, offset: i64, src: i64, size: i64| -> () {
        let (offset, src, size) = (offset as u64, src as u64, size as u64);
        charge(&mut c, STABLE_ACCESS.saturating_add(size))?;
        if !c.data().stable.in_bounds(offset, size) {
            return trap(&mut c, format!("stable memory out of bounds: write of {size} bytes at {offset}"));
        }
        let bytes = read_heap(&mut c, src, size, NAME)?;
        if c.data().pages.tracked() {
            touch_stable(&mut c, offset, size, true)?;
        } else {
            // 2025: pages this message writes for the first time cost extra.
            let (first, last) = (offset / STABLE_PAGE_BYTES, (offset + size.max(1) - 1) / STABLE_PAGE_BYTES);
            let fresh = (first..=last).filter(|p| size > 0 && c.data_mut().dirty.insert(*p)).count() as u64;
            c.data_mut().pages.used.instructions += fresh * DIRTY_PAGE;
            charge(&mut c, fresh * DIRTY_PAGE)?;
        }
        c.data_mut().stable.write(offset, &bytes);
        Ok(())
    });
    Ok(())
}
