//! Stable memory: up to 500 GiB, stored sparsely (pages that were never written cost nothing),
//! with an undo journal so that a trapped message leaves it as it was.

use std::collections::{BTreeMap, HashSet};

pub const PAGE: u64 = 65_536;
/// 500 GiB in 64 KiB pages.
pub const MAX_PAGES: u64 = 500 * (1 << 30) / PAGE;

#[derive(Default, Clone)]
pub struct StableMemory {
    pages: u64,
    data: BTreeMap<u64, Box<[u8]>>,
    journal: Option<Journal>,
}

#[derive(Default, Clone)]
struct Journal {
    pages_before: u64,
    /// (page index, content before the message, or None if it did not exist).
    saved: Vec<(u64, Option<Box<[u8]>>)>,
    saved_set: HashSet<u64>,
}

impl StableMemory {
    /// Size in 64 KiB pages.
    pub fn size(&self) -> u64 {
        self.pages
    }

    /// Grows by `extra` pages; returns the old size or `None` past the limit.
    pub fn grow(&mut self, extra: u64) -> Option<u64> {
        let old = self.pages;
        let new = old.checked_add(extra).filter(|&n| n <= MAX_PAGES)?;
        self.pages = new;
        Some(old)
    }

    /// Whether `[offset, offset + len)` lies inside the current size.
    pub fn in_bounds(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.pages * PAGE)
    }

    pub fn read(&self, offset: u64, out: &mut [u8]) {
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(out.len() - done);
            match self.data.get(&page) {
                Some(bytes) => out[done..done + n].copy_from_slice(&bytes[within..within + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Writes and returns the 4 KiB OS pages touched (for dirty-page charging).
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let mut done = 0usize;
        while done < bytes.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(bytes.len() - done);
            if let Some(journal) = &mut self.journal {
                if journal.saved_set.insert(page) {
                    journal.saved.push((page, self.data.get(&page).cloned()));
                }
            }
            let target = self.data.entry(page).or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
            target[within..within + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }

    /// Starts recording changes of one message.
    pub fn begin(&mut self) {
        self.journal = Some(Journal { pages_before: self.pages, ..Journal::default() });
    }

    /// Keeps the message's changes.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes the message's changes.
    pub fn rollback(&mut self) {
        if let Some(journal) = self.journal.take() {
            for (page, before) in journal.saved.into_iter().rev() {
                match before {
                    Some(bytes) => {
                        self.data.insert(page, bytes);
                    }
                    None => {
                        self.data.remove(&page);
                    }
                }
            }
            self.pages = journal.pages_before;
        }
    }

    /// Bytes actually held in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.data.len() as u64 * PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_reads_writes_and_rollback() {
        let mut s = StableMemory::default();
        assert_eq!(s.grow(3), Some(0));
        s.write(PAGE - 2, b"abcd");
        let mut buf = [0u8; 6];
        s.read(PAGE - 3, &mut buf);
        assert_eq!(&buf, b"\0abcd\0");
        s.begin();
        s.write(1, b"zz");
        s.write(PAGE - 1, b"XY");
        assert_eq!(s.grow(2), Some(3));
        s.rollback();
        assert_eq!(s.size(), 3);
        s.read(PAGE - 3, &mut buf);
        assert_eq!(&buf, b"\0abcd\0");
        let mut two = [9u8; 2];
        s.read(1, &mut two);
        assert_eq!(two, [0, 0]);
        assert_eq!(s.grow(MAX_PAGES), None);
        assert!(s.in_bounds(3 * PAGE - 1, 1) && !s.in_bounds(3 * PAGE - 1, 2) && !s.in_bounds(u64::MAX, 2));
    }
}
