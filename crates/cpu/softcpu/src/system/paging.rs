//! 4-level paging (long mode) with accessed and dirty bits, NX, U/S and write protect,
//! behind a software TLB; and [`Linear`], the CPU's linear memory on top of it.

use super::{cr0, cr4, efer};
use crate::memory::{Access, Memory, MemoryFault};
use crate::state::CpuState;

/// Guest-physical memory: RAM and whatever the platform maps (device registers).
/// Accesses never fail: unbacked addresses read as all ones and ignore writes, as an
/// open bus does.
pub trait PhysicalMemory {
    /// Reads `buf.len()` bytes at guest-physical `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]);
    /// Writes `buf` at guest-physical `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]);
    /// As [`Memory::compare_exchange`], at a guest-physical address. RAM compares and
    /// stores atomically; anything else (a device, nothing) has no atomics and must
    /// store and return true: the locked instruction already made its one read, and a
    /// second read that differs would make it retry forever.
    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        let mut buf = [0u8; 16];
        self.read(addr, &mut buf[..len]);
        if u128::from_le_bytes(buf) != old {
            return false;
        }
        self.write(addr, &new.to_le_bytes()[..len]);
        true
    }
    /// Reads the `len` (1..=8) bytes at `addr` as a little-endian value: the common
    /// case of [`PhysicalMemory::read`], which RAM can do without a buffer.
    fn load(&mut self, addr: u64, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf[..len]);
        u64::from_le_bytes(buf)
    }
    /// Writes the `len` (1..=8) low bytes of `value` at `addr`.
    fn store(&mut self, addr: u64, len: usize, value: u64) {
        self.write(addr, &value.to_le_bytes()[..len]);
    }
    /// As [`Memory::code_version`], for the page at guest-physical `addr`.
    fn code_version(&mut self, _addr: u64) -> Option<u64> {
        None
    }
    /// The host address of guest-physical page `page` if it is RAM that translated code
    /// may reach directly; for a write, only if the page holds no decoded code. `None`
    /// (the default): through this trait only.
    fn host_page(&mut self, _page: u64, _write: bool) -> Option<u64> {
        None
    }
    /// Counts pages that became code pages (decoded from while holding no code):
    /// translated code drops its write entries whenever it moves, since it may hold
    /// one for such a page. Never decreases.
    fn code_marks(&self) -> u64 {
        0
    }
    /// As [`Memory::code_generation`]: changes whenever a guest-physical page's code
    /// version does. It must never decrease (the linear memory adds its own count of
    /// translation changes to it).
    fn code_generation(&self) -> Option<u64> {
        None
    }

    /// Port input: fills `data` from `port`. The default: nothing there (an undriven
    /// bus reads all ones).
    fn port_read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    /// Port output of `data` to `port`. The default: nothing there.
    fn port_write(&mut self, _port: u16, _data: &[u8]) {}

    /// RDMSR of an MSR the CPU does not implement itself: the platform's (the local
    /// APIC's, the paravirtual clock's). `None`: no such MSR (#GP).
    fn msr_read(&mut self, _number: u32) -> Option<u64> {
        None
    }

    /// WRMSR of an MSR the CPU does not implement itself. `None`: no such MSR, or a
    /// value it refuses (#GP).
    fn msr_write(&mut self, _number: u32, _value: u64) -> Option<()> {
        None
    }

    /// CPUID `leaf`/`sub` as the platform completes the CPU's own `model` answer
    /// (topology, APIC, hypervisor leaves). The default: the model as it is.
    fn cpuid(&mut self, _leaf: u32, _sub: u32, model: [u32; 4]) -> [u32; 4] {
        model
    }
}

/// Page-table entry bits.
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const LARGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const NO_EXECUTE: u64 = 1 << 63;
/// Physical address bits this CPU implements (CPUID 0x8000_0008).
pub const PHYS_BITS: u32 = 40;
/// Bits of an entry that hold a frame address.
const FRAME: u64 = ((1 << PHYS_BITS) - 1) & !0xfff;
/// Bits 40..63 but NX: reserved in every entry.
const HIGH_RESERVED: u64 = !((1 << PHYS_BITS) - 1) & !NO_EXECUTE;

/// Page-fault error code bits the paging unit reports (W/R and I/D come from the access).
const PF_PRESENT: u32 = 1;
const PF_USER: u32 = 1 << 2;
const PF_RESERVED: u32 = 1 << 3;

/// What the paging unit needs from the CPU's state, taken after every change of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagingMode {
    /// CR0.PG: translate (otherwise linear is physical).
    pub paging: bool,
    /// CR3's table address.
    pub root: u64,
    /// CR0.WP.
    pub write_protect: bool,
    /// EFER.NXE.
    pub no_execute: bool,
    /// CR4.PGE.
    pub global_pages: bool,
    /// CPL 3.
    pub user: bool,
}

impl PagingMode {
    /// The mode `st` describes.
    pub fn of(st: &CpuState) -> Self {
        let sys = &st.sys;
        Self {
            paging: sys.cr0 & cr0::PG != 0,
            root: sys.cr3 & FRAME,
            write_protect: sys.cr0 & cr0::WP != 0,
            no_execute: sys.efer & efer::NXE != 0,
            global_pages: sys.cr4 & cr4::PGE != 0,
            user: sys.cpl == 3,
        }
    }
}

/// What to drop from the TLB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing (a privilege change).
    None,
    /// The translations of one linear page (INVLPG).
    Page(u64),
    /// All but global ones (a CR3 write).
    NonGlobal,
    /// Everything (CR0, CR4, EFER writes).
    All,
}

/// A cached translation of one 4 KiB linear page.
#[derive(Debug, Clone, Copy, Default)]
struct TlbEntry {
    /// Linear page number + 1 (0: empty).
    tag: u64,
    /// Physical page address.
    frame: u64,
    /// The rights the walk found (AND of W and U over the levels, OR of NX).
    writable: bool,
    user: bool,
    no_execute: bool,
    global: bool,
    /// The dirty bit is already set: writes need no walk.
    dirty: bool,
}

/// Entries in the direct-mapped TLB.
const TLB_SIZE: usize = 1024;

/// The software TLB: translations by linear page, direct-mapped.
#[derive(Debug, Clone)]
pub struct Tlb {
    entries: Vec<TlbEntry>,
    /// A large page was cached since the last full flush: INVLPG must flush everything,
    /// since one large page is cached as many 4 KiB entries.
    large: bool,
    /// Counts flushes: decoded code found at a linear address stays
    /// there, with the same rights, while it (and the code pages) stay the same.
    epoch: u64,
    /// What translated code looks in: flushed with this TLB.
    host: Option<Box<crate::jit::host_tlb::HostTlbs>>,
}

impl Default for Tlb {
    fn default() -> Self {
        Self {
            entries: vec![TlbEntry::default(); TLB_SIZE],
            large: false,
            epoch: 0,
            host: Some(Box::default()),
        }
    }
}

impl Tlb {
    /// A TLB with no room, standing in while the real one is lent out.
    pub(crate) fn empty() -> Self {
        Self {
            entries: Vec::new(),
            large: false,
            epoch: 0,
            host: None,
        }
    }

    /// Drops the translations `what` names.
    pub fn flush(&mut self, what: Flush) {
        if what == Flush::None {
            // A change of privilege or code size alone (SYSCALL, IRETQ, far jumps):
            // blocks are keyed by both, and translations do not depend on them, so
            // decoded and translated code stays current (and chaining keeps its
            // jump caches).
            return;
        }
        self.epoch += 1;
        if let Some(host) = self.host.as_deref_mut() {
            match what {
                Flush::None => {}
                Flush::Page(addr) if !self.large => host.flush_page(addr >> 12),
                _ => host.flush(),
            }
        }
        match what {
            Flush::None => {}
            Flush::Page(addr) if !self.large => {
                let page = addr >> 12;
                let entry = &mut self.entries[page as usize % TLB_SIZE];
                if entry.tag == page + 1 {
                    *entry = TlbEntry::default();
                }
            }
            Flush::NonGlobal => {
                for e in self.entries.iter_mut().filter(|e| !e.global) {
                    *e = TlbEntry::default();
                }
            }
            Flush::Page(_) | Flush::All => {
                self.entries.fill(TlbEntry::default());
                self.large = false;
            }
        }
    }
}

/// The CPU's linear memory in system mode: paging over guest-physical memory.
pub struct Linear<'a> {
    /// The TLB.
    pub tlb: &'a mut Tlb,
    /// Guest-physical memory.
    pub phys: &'a mut dyn PhysicalMemory,
    /// The current paging mode.
    pub mode: PagingMode,
}

impl std::fmt::Debug for Linear<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear").field("mode", &self.mode).finish()
    }
}

/// Whether `addr` is canonical (bits 47..63 all equal).
pub fn canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}

impl Linear<'_> {
    fn read_entry(&mut self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        self.phys.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    /// Sets `bits` in the entry at `addr` if they are not set yet (A/D bits: atomic, as
    /// another CPU may walk the same tables).
    fn set_bits(&mut self, addr: u64, entry: u64, bits: u64) {
        if entry & bits != bits {
            let _ = self
                .phys
                .compare_exchange(addr, 8, entry.into(), (entry | bits).into());
        }
    }

    /// Walks the page tables for `addr`; on success caches and returns the entry.
    fn walk(&mut self, addr: u64, access: Access) -> Result<TlbEntry, MemoryFault> {
        let fault = |reason| MemoryFault {
            addr,
            access,
            reason,
        };
        let user = self.mode.user && access != Access::System;
        let user_bit = if user { PF_USER } else { 0 };
        if !canonical(addr) {
            return Err(fault(crate::memory::NON_CANONICAL));
        }
        let reserved_nx = if self.mode.no_execute { 0 } else { NO_EXECUTE };
        let (mut table, mut writable, mut user_ok, mut nx) = (self.mode.root, true, true, false);
        let mut path = [(0u64, 0u64); 4];
        for level in (0..4).rev() {
            let slot = table + ((addr >> (12 + 9 * level)) & 0x1ff) * 8;
            let entry = self.read_entry(slot);
            if entry & PRESENT == 0 {
                return Err(fault(user_bit));
            }
            let large = entry & LARGE != 0 && (level == 1 || level == 2);
            let mut reserved = entry & (HIGH_RESERVED | reserved_nx);
            if entry & LARGE != 0 && level == 3 {
                reserved |= LARGE;
            }
            if large {
                // Bits 13.. below the large frame must be zero (12 is PAT).
                reserved |= entry & ((1 << (12 + 9 * level)) - 1) & !0x1fff;
            }
            if reserved != 0 {
                return Err(fault(PF_PRESENT | PF_RESERVED | user_bit));
            }
            writable &= entry & WRITABLE != 0;
            user_ok &= entry & USER != 0;
            nx |= entry & NO_EXECUTE != 0;
            path[level] = (slot, entry);
            if level == 0 || large {
                let size_mask = (1u64 << (12 + 9 * level)) - 1;
                let frame = (entry & FRAME & !size_mask) | (addr & size_mask & !0xfff);
                let mut found = TlbEntry {
                    tag: (addr >> 12) + 1,
                    frame,
                    writable,
                    user: user_ok,
                    no_execute: nx && self.mode.no_execute,
                    global: entry & GLOBAL != 0 && self.mode.global_pages,
                    dirty: entry & DIRTY != 0,
                };
                self.check(&found, access).map_err(fault)?;
                for &(slot, e) in path[level..].iter().rev() {
                    self.set_bits(slot, e, ACCESSED);
                }
                if access == Access::Write {
                    self.set_bits(slot, entry | ACCESSED, DIRTY);
                    found.dirty = true;
                }
                self.tlb.large |= large;
                self.tlb.entries[(addr >> 12) as usize % TLB_SIZE] = found;
                return Ok(found);
            }
            table = entry & FRAME;
        }
        unreachable!("level 0 always returns")
    }

    /// Checks `access` against a translation's rights; the error is the fault reason.
    fn check(&self, entry: &TlbEntry, access: Access) -> Result<(), u32> {
        let user = self.mode.user && access != Access::System;
        let denied = (user && !entry.user)
            || (access == Access::Write && !entry.writable && (user || self.mode.write_protect))
            || (access == Access::Execute && entry.no_execute);
        if denied {
            Err(PF_PRESENT | if user { PF_USER } else { 0 })
        } else {
            Ok(())
        }
    }

    /// The physical address of linear `addr` for `access`.
    pub fn translate(&mut self, addr: u64, access: Access) -> Result<u64, MemoryFault> {
        if !self.mode.paging {
            return Ok(addr);
        }
        let entry = self.tlb.entries[(addr >> 12) as usize % TLB_SIZE];
        if entry.tag == (addr >> 12) + 1
            && (access != Access::Write || entry.dirty)
            && self.check(&entry, access).is_ok()
        {
            return Ok(entry.frame | (addr & 0xfff));
        }
        // A miss, or a cached translation that denies the access: walk the tables. A
        // page fault drops the TLB's entry for its address on hardware, so a kernel
        // that grants more rights (a copy-on-write fault, say) does not flush first;
        // walking again now is the same.
        Ok(self.walk(addr, access)?.frame | (addr & 0xfff))
    }

    /// The host TLB of the current privilege, with paging on (translated code runs only
    /// then), its write entries dropped first if a page became code since.
    fn host_table(&mut self) -> Option<&mut crate::HostTlb> {
        if !self.mode.paging {
            return None;
        }
        let marks = self.phys.code_marks();
        let host = self.tlb.host.as_deref_mut()?;
        Some(host.current(self.mode.user, marks))
    }

    /// Splits `[addr, addr + len)` at a page boundary and translates both parts first,
    /// so that a fault on the second page changes nothing.
    fn pieces(
        &mut self,
        addr: u64,
        len: usize,
        access: Access,
    ) -> Result<[(u64, usize); 2], MemoryFault> {
        let first = (0x1000 - (addr & 0xfff) as usize).min(len);
        let a = self.translate(addr, access)?;
        if first == len {
            return Ok([(a, len), (0, 0)]);
        }
        let second = addr.wrapping_add(first as u64);
        let b = self.translate(second, access)?;
        Ok([(a, first), (b, len - first)])
    }
}

impl Memory for Linear<'_> {
    fn probe(&mut self, addr: u64) -> Result<(), MemoryFault> {
        self.translate(addr, Access::Read).map(drop)
    }

    #[inline]
    fn load(&mut self, addr: u64, len: usize, access: Access) -> Result<u64, MemoryFault> {
        if (addr & 0xfff) as usize + len <= 0x1000 {
            let phys = self.translate(addr, access)?;
            return Ok(self.phys.load(phys, len));
        }
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf[..len], access)?;
        Ok(u64::from_le_bytes(buf))
    }

    #[inline]
    fn store(&mut self, addr: u64, len: usize, value: u64) -> Result<(), MemoryFault> {
        if (addr & 0xfff) as usize + len <= 0x1000 {
            let phys = self.translate(addr, Access::Write)?;
            self.phys.store(phys, len, value);
            return Ok(());
        }
        self.write(addr, &value.to_le_bytes()[..len])
    }

    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        let mut at = 0;
        for (phys, len) in self.pieces(addr, buf.len(), access)? {
            self.phys.read(phys, &mut buf[at..at + len]);
            at += len;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let mut at = 0;
        for (phys, len) in self.pieces(addr, buf.len(), Access::Write)? {
            self.phys.write(phys, &buf[at..at + len]);
            at += len;
        }
        Ok(())
    }

    fn compare_exchange(
        &mut self,
        addr: u64,
        len: usize,
        old: u128,
        new: u128,
    ) -> Result<bool, MemoryFault> {
        let [(phys, first), (next, rest)] = self.pieces(addr, len, Access::Write)?;
        if rest == 0 {
            return Ok(self.phys.compare_exchange(phys, len, old, new));
        }
        // A split lock across two pages: not atomic against other CPUs (hardware locks
        // the bus); Linux never does this.
        let mut buf = [0u8; 16];
        self.phys.read(phys, &mut buf[..first]);
        self.phys.read(next, &mut buf[first..len]);
        if u128::from_le_bytes(buf) != old {
            return Ok(false);
        }
        let bytes = new.to_le_bytes();
        self.phys.write(phys, &bytes[..first]);
        self.phys.write(next, &bytes[first..len]);
        Ok(true)
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        let phys = self.translate(addr, Access::Execute).ok()?;
        self.phys.code_version(phys)
    }

    /// Changes when a code page is written or a translation may have: both counts only
    /// grow, so their sum never repeats.
    fn code_generation(&self) -> Option<u64> {
        Some(self.phys.code_generation()? + self.tlb.epoch)
    }

    fn platform(&mut self) -> Option<&mut dyn PhysicalMemory> {
        Some(&mut *self.phys)
    }

    fn host_tlb(&mut self) -> Option<*mut crate::HostTlb> {
        self.host_table().map(|table| table as *mut _)
    }

    fn host_fill(&mut self, addr: u64, len: usize, write: bool) -> Option<u64> {
        if (addr & 0xfff) as usize + len > 0x1000 || !self.mode.paging {
            return None;
        }
        let access = if write { Access::Write } else { Access::Read };
        let phys = self.translate(addr, access).ok()?;
        let page = self.phys.host_page(phys & !0xfff, write)?;
        self.host_table()?.fill(addr >> 12, page, write);
        Some(page + (addr & 0xfff))
    }

    fn control(&mut self, state: &CpuState, flush: Flush) {
        self.mode = PagingMode::of(state);
        self.tlb.flush(flush);
    }
}
