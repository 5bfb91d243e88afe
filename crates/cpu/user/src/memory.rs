//! A user process's address space: page-aligned mappings at fixed addresses.

use gasang_softcpu::{Access, HostTlb, Memory, MemoryFault};

/// The page size of the emulated process.
pub const PAGE: u64 = 4096;

/// One mapping: its bytes, and per page the version of the code decoded from it (0:
/// no code decoded from that page yet).
#[derive(Debug)]
struct Mapping {
    data: Vec<u8>,
    code: Vec<u64>,
}

impl Mapping {
    fn zeroed(len: u64) -> Self {
        Self {
            data: vec![0; len as usize],
            code: vec![0; (len / PAGE) as usize],
        }
    }

    /// The part from byte `from` to byte `to` (both page-aligned offsets).
    fn part(&self, from: u64, to: u64) -> Self {
        Self {
            data: self.data[from as usize..to as usize].to_vec(),
            code: self.code[(from / PAGE) as usize..(to / PAGE) as usize].to_vec(),
        }
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// Mappings sorted by start address; none overlap. A sorted vector: processes have few
/// mappings, and a small page-indexed table remembers which mapping recent pages were
/// in, so that most accesses need no search.
#[derive(Debug, Default)]
pub struct UserMemory {
    maps: Vec<(u64, Mapping)>,
    /// By page number modulo its size: a page recently accessed and the index of its
    /// mapping (page `u64::MAX`: empty). Cleared whenever mappings change.
    recent: Recent,
    /// Code versions come from one counter, so that a version is never reused, even
    /// by a page mapped anew at the same address.
    next_version: u64,
    /// Changes whenever a code page is written or mappings change.
    generation: u64,
    /// Where translated code finds pages: emptied whenever mappings change (mappings'
    /// bytes move or go), its write entries whenever a page becomes code.
    host: Box<HostTlb>,
}

impl UserMemory {
    /// An empty address space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `len` zeroed bytes at `addr` (page-aligned), replacing what was there.
    pub fn map(&mut self, addr: u64, len: u64) {
        let len = len.next_multiple_of(PAGE);
        self.unmap(addr, len);
        self.insert(addr, Mapping::zeroed(len));
    }

    fn insert(&mut self, start: u64, mapping: Mapping) {
        let at = self.maps.partition_point(|(s, _)| *s < start);
        self.maps.insert(at, (start, mapping));
        self.recent = Recent::default();
        self.host.flush();
        self.generation += 1;
    }

    /// Removes `[addr, addr + len)`, splitting mappings that straddle it.
    pub fn unmap(&mut self, addr: u64, len: u64) {
        self.recent = Recent::default();
        self.host.flush();
        self.generation += 1;
        let end = addr.saturating_add(len.next_multiple_of(PAGE));
        let (hit, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.maps)
            .into_iter()
            .partition(|(start, m)| *start < end && start + m.len() > addr);
        self.maps = kept;
        for (start, mapping) in hit {
            let stop = start + mapping.len();
            if start < addr {
                self.insert(start, mapping.part(0, addr - start));
            }
            if stop > end {
                self.insert(end, mapping.part(end - start, stop - start));
            }
        }
    }

    /// Whether every byte of `[addr, addr + len)` is mapped.
    pub fn is_mapped(&self, addr: u64, len: u64) -> bool {
        let mut at = addr;
        while at < addr + len {
            let Some(i) = self.index_of(at) else {
                return false;
            };
            let (start, m) = &self.maps[i];
            at = start + m.len();
        }
        true
    }

    /// The highest free range of `len` bytes below `limit`, searching down from it (as
    /// Linux's mmap does).
    pub fn find_free(&self, len: u64, limit: u64) -> Option<u64> {
        let len = len.next_multiple_of(PAGE);
        let mut top = limit;
        for (start, m) in self.maps.iter().rev().filter(|(start, _)| *start < limit) {
            let end = start + m.len();
            if top >= end && top - end >= len {
                return Some(top - len);
            }
            top = top.min(*start);
        }
        top.checked_sub(len).filter(|a| *a >= 0x1_0000)
    }

    /// The index of the mapping holding `addr`.
    fn index_of(&self, addr: u64) -> Option<usize> {
        let i = self
            .maps
            .partition_point(|(start, _)| *start <= addr)
            .checked_sub(1)?;
        let (start, m) = &self.maps[i];
        (addr < start + m.len()).then_some(i)
    }

    /// The mapping holding `addr` and `addr`'s offset in it.
    #[inline]
    fn locate(&mut self, addr: u64) -> Option<(&mut Mapping, u64)> {
        let page = addr / PAGE;
        let entry = &mut self.recent.0[page as usize % RECENT];
        let index = if entry.0 == page {
            entry.1
        } else {
            let index = self.index_of(addr)?;
            self.recent.0[page as usize % RECENT] = (page, index);
            index
        };
        let (start, mapping) = &mut self.maps[index];
        Some((mapping, addr - *start))
    }
}

/// Pages in [`UserMemory::recent`].
const RECENT: usize = 256;

/// See [`UserMemory::recent`].
#[derive(Debug)]
struct Recent([(u64, usize); RECENT]);

impl Default for Recent {
    fn default() -> Self {
        Self([(u64::MAX, 0); RECENT])
    }
}

impl Memory for UserMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.wrapping_add(done as u64);
            let (m, offset) = self.locate(at).ok_or(MemoryFault::new(at, access))?;
            let src = &m.data[offset as usize..];
            let n = src.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&src[..n]);
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.wrapping_add(done as u64);
            let next_version = self.next_version + 1;
            let fault = MemoryFault::new(at, Access::Write);
            let (m, offset) = self.locate(at).ok_or(fault)?;
            let n = (m.data.len() - offset as usize).min(buf.len() - done);
            m.data[offset as usize..offset as usize + n].copy_from_slice(&buf[done..done + n]);
            // Writing a page code was decoded from makes that code stale.
            let (first, last) = (
                (offset / PAGE) as usize,
                ((offset + n as u64 - 1) / PAGE) as usize,
            );
            let mut bumped = false;
            for version in m.code[first..=last].iter_mut().filter(|v| **v != 0) {
                *version = next_version;
                bumped = true;
            }
            if bumped {
                self.next_version = next_version;
                self.generation += 1;
            }
            done += n;
        }
        Ok(())
    }

    #[inline]
    fn load(&mut self, addr: u64, len: usize, access: Access) -> Result<u64, MemoryFault> {
        let within = self.locate(addr).and_then(|(m, offset)| {
            let offset = offset as usize;
            m.data.get(offset..offset + len).map(little_endian)
        });
        match within {
            Some(value) => Ok(value),
            // Across the end of a mapping, or unmapped.
            None => {
                let mut buf = [0u8; 8];
                self.read(addr, &mut buf[..len], access)?;
                Ok(u64::from_le_bytes(buf))
            }
        }
    }

    #[inline]
    fn store(&mut self, addr: u64, len: usize, value: u64) -> Result<(), MemoryFault> {
        if let Some((m, offset)) = self.locate(addr) {
            let at = offset as usize;
            let page = at / PAGE as usize;
            // Within one page that holds no decoded code: the common case, done here.
            if at % PAGE as usize + len <= PAGE as usize && m.code[page] == 0 {
                let bytes = value.to_le_bytes();
                m.data[at..at + len].copy_from_slice(&bytes[..len]);
                return Ok(());
            }
        }
        self.write(addr, &value.to_le_bytes()[..len])
    }

    #[inline]
    fn code_generation(&self) -> Option<u64> {
        Some(self.generation)
    }

    fn code_version(&mut self, addr: u64) -> Option<u64> {
        let next_version = self.next_version + 1;
        let (m, offset) = self.locate(addr)?;
        let version = &mut m.code[(offset / PAGE) as usize];
        let fresh = *version == 0;
        if fresh {
            *version = next_version;
        }
        let version = *version;
        if fresh {
            self.next_version = next_version;
            // Translated code may hold write access to the page: no more.
            self.host.flush_writes();
        }
        Some(version)
    }

    fn host_tlb(&mut self) -> Option<*mut HostTlb> {
        Some(&mut *self.host)
    }

    fn host_fill(&mut self, addr: u64, len: usize, write: bool) -> Option<u64> {
        if addr % PAGE + len as u64 > PAGE {
            return None;
        }
        let (m, offset) = self.locate(addr)?;
        let page = (offset / PAGE) as usize;
        if write && m.code[page] != 0 {
            return None; // a write must make the page's code stale: the slow way
        }
        // The page's bytes stay where they are until mappings change (which empties
        // the host TLB): mappings never grow in place.
        let host = m.data.as_mut_ptr() as u64 + page as u64 * PAGE;
        self.host.fill(addr / PAGE, host, write);
        Some(host + addr % PAGE)
    }
}

/// `bytes` (1, 2, 4 or 8 of them) as a little-endian integer, without a variable-length
/// copy.
fn little_endian(bytes: &[u8]) -> u64 {
    match *bytes {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_le_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => {
            let mut buf = [0u8; 8];
            buf[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_user_memory_access_spans_adjacent_mappings() {
        let mut mem = UserMemory::new();
        mem.map(0x1000, PAGE);
        mem.map(0x2000, PAGE);
        mem.write(0x1ffe, &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 4];
        mem.read(0x1ffe, &mut buf, Access::Read).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn test_user_memory_unmap_splits_a_mapping() {
        let mut mem = UserMemory::new();
        mem.map(0x10000, 3 * PAGE);
        mem.unmap(0x11000, PAGE);
        assert!(mem.is_mapped(0x10000, PAGE));
        assert!(!mem.is_mapped(0x11000, 1));
        assert!(mem.is_mapped(0x12000, PAGE));
        let mut buf = [0u8; 1];
        assert!(mem.read(0x11800, &mut buf, Access::Read).is_err());
    }

    #[test]
    fn test_user_memory_find_free_searches_down_from_limit() {
        let mut mem = UserMemory::new();
        mem.map(0x7000_0000, PAGE);
        assert_eq!(mem.find_free(PAGE, 0x7000_1000), Some(0x6fff_f000));
        assert_eq!(mem.find_free(PAGE, 0x8000_0000), Some(0x7fff_f000));
    }

    #[test]
    fn test_user_memory_code_version_changes_on_write_and_remap_only() {
        let mut mem = UserMemory::new();
        mem.map(0x1000, 2 * PAGE);
        let v1 = mem.code_version(0x1000).unwrap();
        assert_eq!(mem.code_version(0x1fff), Some(v1), "stable while unwritten");
        mem.write(0x2000, &[1]).unwrap();
        assert_eq!(
            mem.code_version(0x1000),
            Some(v1),
            "another page was written"
        );
        mem.write(0x1010, &[0x90]).unwrap();
        let v2 = mem.code_version(0x1000).unwrap();
        assert_ne!(v1, v2, "the code page was written");
        mem.map(0x1000, PAGE);
        assert_ne!(
            mem.code_version(0x1000),
            Some(v2),
            "a new mapping is new code"
        );
    }

    /// Translated code writes through the host TLB: a hot loop stores into a page, then
    /// calls code on it, then patches that code with the same store; the patched code
    /// runs (the page's write entry went when it became code).
    #[test]
    fn test_translated_store_to_a_page_that_became_code_is_seen() {
        use gasang_softcpu::{Cpu, CpuState, Exit, Gpr};
        use iced_x86::code_asm::*;
        const CODE: u64 = 0x40_0000;
        const P: u64 = 0x40_1000;
        let assemble = |at: u64, f: &dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>| {
            let mut a = CodeAssembler::new(64).unwrap();
            f(&mut a).unwrap();
            a.assemble(at).unwrap()
        };
        let mut mem = UserMemory::new();
        mem.map(CODE, 2 * PAGE);
        mem.map(0x7000_0000, PAGE);
        mem.write(
            P,
            &assemble(P, &|a| {
                a.mov(eax, 1)?;
                a.ret()
            }),
        )
        .unwrap();
        let code = assemble(CODE, &|a| {
            let (mut top, mut next) = (a.create_label(), a.create_label());
            a.mov(ecx, 300)?;
            a.xor(ebx, ebx)?;
            a.set_label(&mut top)?;
            a.mov(edx, 1)?;
            a.cmp(ecx, 101)?;
            a.adc(edx, 0)?; // 2 in the last 100 rounds
            a.mov(byte_ptr(P + 1), dl)?;
            a.cmp(ecx, 200)?;
            a.ja(next)?;
            a.call(P)?;
            a.add(ebx, eax)?;
            a.set_label(&mut next)?;
            a.dec(ecx)?;
            a.jne(top)?;
            a.syscall()
        });
        mem.write(CODE, &code).unwrap();
        let mut state = CpuState::long_mode(CODE);
        state.set_reg(Gpr::Rsp, 0x7000_0800);
        let mut cpu = Cpu::new(state);
        let (_, end) = cpu.run(&mut mem, u64::MAX);
        assert_eq!(end, Ok(Some(Exit::Syscall)));
        assert_eq!(
            cpu.state.reg(Gpr::Rbx),
            300,
            "100 calls before the patch, 100 after"
        );
    }
}
