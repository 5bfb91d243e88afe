//! The host TLB translated code looks in before it touches guest memory: linear page →
//! host address, for RAM pages the CPU's own TLB already admits. One per privilege
//! (kernel, user), direct-mapped, kept as three arrays so that translated code finds an
//! entry with scaled-index addressing and compares without changing host flags (which
//! carry the guest's).

/// Entries per table.
pub const ENTRIES: usize = 256;

/// A tag no page has: page numbers have at most 52 bits, so adding this one's
/// negation to a page number never gives zero.
const NO_PAGE: u64 = 1 << 63;

/// One privilege's table. Tags hold the negated linear page number, so that
/// `page + tag == 0` on a hit (a flag-free LEA and JRCXZ in translated code).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct HostTlb {
    /// Pages readable at this privilege.
    pub read: [u64; ENTRIES],
    /// Pages writable at this privilege, dirty, and holding no decoded code.
    pub write: [u64; ENTRIES],
    /// Host address of the page minus its linear address.
    pub addend: [u64; ENTRIES],
}

impl Default for HostTlb {
    fn default() -> Self {
        Self {
            read: [NO_PAGE; ENTRIES],
            write: [NO_PAGE; ENTRIES],
            addend: [0; ENTRIES],
        }
    }
}

/// A CPU's host TLBs: one per privilege.
#[derive(Debug, Clone, Default)]
pub struct HostTlbs {
    /// Kernel (CPL 0..2) and user (CPL 3).
    pub tables: [HostTlb; 2],
    /// The memory's count of pages that became code when write entries were last
    /// dropped (see `PhysicalMemory::code_marks`).
    pub marks: u64,
}

impl HostTlbs {
    /// Forgets every page in both tables.
    pub fn flush(&mut self) {
        self.tables.iter_mut().for_each(HostTlb::flush);
    }

    /// Forgets linear page `page` in both.
    pub fn flush_page(&mut self, page: u64) {
        self.tables.iter_mut().for_each(|t| t.flush_page(page));
    }

    /// The table for `user` privilege, first dropping every write entry if a page
    /// became code since (`marks` is the memory's count now).
    pub fn current(&mut self, user: bool, marks: u64) -> &mut HostTlb {
        if marks != self.marks {
            self.tables.iter_mut().for_each(HostTlb::flush_writes);
            self.marks = marks;
        }
        &mut self.tables[usize::from(user)]
    }
}

/// Byte offsets of the tables, for translated code.
pub const READ_OFFSET: i32 = 0;
pub const WRITE_OFFSET: i32 = (ENTRIES * 8) as i32;
pub const ADDEND_OFFSET: i32 = (2 * ENTRIES * 8) as i32;

impl HostTlb {
    /// Forgets every page.
    pub fn flush(&mut self) {
        self.read.fill(NO_PAGE);
        self.write.fill(NO_PAGE);
    }

    /// Forgets every page's write access (a page may have become code).
    pub fn flush_writes(&mut self) {
        self.write.fill(NO_PAGE);
    }

    /// Forgets linear page `page` (INVLPG).
    pub fn flush_page(&mut self, page: u64) {
        let i = page as usize % ENTRIES;
        if self.read[i] == page.wrapping_neg() || self.write[i] == page.wrapping_neg() {
            self.read[i] = NO_PAGE;
            self.write[i] = NO_PAGE;
        }
    }

    /// Enters linear page `page` at host address `host` for reading, and for writing
    /// too if `write`.
    pub fn fill(&mut self, page: u64, host: u64, write: bool) {
        let i = page as usize % ENTRIES;
        let tag = page.wrapping_neg();
        let addend = host.wrapping_sub(page << 12);
        if self.read[i] != tag || self.addend[i] != addend {
            self.read[i] = NO_PAGE;
            self.write[i] = NO_PAGE;
        }
        self.addend[i] = addend;
        self.read[i] = tag;
        if write {
            self.write[i] = tag;
        }
    }

    /// The host address of linear `addr` for an access of `len` bytes, if an entry
    /// admits it (what translated code computes).
    #[cfg(test)]
    pub fn lookup(&self, addr: u64, len: u64, write: bool) -> Option<u64> {
        let i = (addr >> 12) as usize % ENTRIES;
        let tag = if write { self.write[i] } else { self.read[i] };
        let last = (addr + len - 1) >> 12;
        (last.wrapping_add(tag) == 0).then(|| addr.wrapping_add(self.addend[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_host_tlb_hits_pages_it_holds_and_refuses_page_crossings() {
        let mut tlb = HostTlb::default();
        assert_eq!(tlb.lookup(0, 1, false), None, "page 0 is not held at start");
        tlb.fill(0x12345, 0x7000_0000, false);
        assert_eq!(tlb.lookup(0x1234_5008, 8, false), Some(0x7000_0008));
        assert_eq!(tlb.lookup(0x1234_5008, 8, true), None, "read only");
        assert_eq!(tlb.lookup(0x1234_5ffc, 8, false), None, "crosses a page");
        assert_eq!(
            tlb.lookup(0x1244_5008, 8, false),
            None,
            "same slot, other page"
        );
        tlb.fill(0x12345, 0x7000_0000, true);
        assert_eq!(tlb.lookup(0x1234_5ff8, 8, true), Some(0x7000_0ff8));
        tlb.fill(0x12445, 0x9000_0000, false);
        assert_eq!(
            tlb.lookup(0x1234_5008, 8, true),
            None,
            "evicted with its write"
        );
        tlb.flush_page(0x12445);
        assert_eq!(tlb.lookup(0x1244_5008, 8, false), None);
    }
}
