//! Stable memory: up to 500 GiB, stored sparsely (pages that were never written cost nothing),
//! with an undo journal so that a trapped message leaves it as it was. Pages are shared
//! copy-on-write, so a clone (a snapshot of the canister's state) costs one reference per page
//! and a message copies only the pages it writes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub const PAGE: u64 = 65_536;
/// 500 GiB in 64 KiB pages.
pub const MAX_PAGES: u64 = 500 * (1 << 30) / PAGE;

#[derive(Default, Clone)]
pub struct StableMemory {
    pages: u64,
    data: BTreeMap<u64, Arc<[u8]>>,
    journal: Option<Journal>,
}

#[derive(Default, Clone)]
struct Journal {
    pages_before: u64,
    /// (page index, content before the message, or None if it did not exist).
    saved: Vec<(u64, Option<Arc<[u8]>>)>,
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

    /// Writes `bytes` at `offset` (the caller checked the bounds); the first write of a page in a
    /// message saves its old content in the journal.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let mut done = 0usize;
        while done < bytes.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(bytes.len() - done);
            if let Some(journal) = &mut self.journal
                && journal.saved_set.insert(page)
            {
                journal.saved.push((page, self.data.get(&page).cloned()));
            }
            let target = self.data.entry(page).or_insert_with(|| Arc::from(vec![0u8; PAGE as usize]));
            Arc::make_mut(target)[within..within + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }

    /// Starts recording changes of one message.
    pub fn begin(&mut self) {
        self.journal = Some(Journal { pages_before: self.pages, ..Journal::default() });
    }

    /// Whether a message's changes are being recorded (between `begin` and `commit`/`rollback`).
    pub fn in_message(&self) -> bool {
        self.journal.is_some()
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

    /// The pages that were ever written, by index, ascending; the others read as zeros.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &Arc<[u8]>)> {
        self.data.iter().map(|(&index, page)| (index, page))
    }

    pub fn page(&self, index: u64) -> Option<&Arc<[u8]>> {
        self.data.get(&index)
    }

    /// Stable memory of `size` pages holding `pages`; `None` if the size is past the limit or a
    /// page is not 64 KiB or lies past the size.
    pub fn from_pages(size: u64, pages: impl IntoIterator<Item = (u64, Arc<[u8]>)>) -> Option<StableMemory> {
        if size > MAX_PAGES {
            return None;
        }
        let mut data = BTreeMap::new();
        for (index, page) in pages {
            if index >= size || page.len() as u64 != PAGE {
                return None;
            }
            data.insert(index, page);
        }
        Some(StableMemory { pages: size, data, journal: None })
    }
}

/// Equal contents and size (an open journal is not content).
impl PartialEq for StableMemory {
    fn eq(&self, other: &Self) -> bool {
        self.pages == other.pages && self.data == other.data
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

    #[test]
    fn clones_share_pages_until_written() {
        let mut s = StableMemory::default();
        s.grow(2);
        s.write(0, b"a");
        s.write(PAGE, b"b");
        let snapshot = s.clone();
        s.write(PAGE, b"c");
        assert!(Arc::ptr_eq(s.page(0).unwrap(), snapshot.page(0).unwrap()), "an unwritten page was copied");
        assert!(!Arc::ptr_eq(s.page(1).unwrap(), snapshot.page(1).unwrap()));
        let mut byte = [0u8; 1];
        snapshot.read(PAGE, &mut byte);
        assert_eq!(&byte, b"b", "writing after the clone changed the clone");
        let rebuilt = StableMemory::from_pages(s.size(), s.pages().map(|(i, p)| (i, p.clone()))).unwrap();
        assert!(rebuilt == s && rebuilt != snapshot);
        assert!(StableMemory::from_pages(1, [(1, Arc::from(vec![0u8; PAGE as usize]))]).is_none(), "a page past the size");
        assert!(StableMemory::from_pages(1, [(0, Arc::from(vec![0u8; 10]))]).is_none(), "a short page");
    }
}
