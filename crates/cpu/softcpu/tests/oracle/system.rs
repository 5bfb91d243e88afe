//! The software CPU in system mode, for the oracle: the same test code at the same
//! linear addresses, through page tables and the TLB, with hot blocks translated to
//! host code (a CPU lives on for all cases of a form, so after the first few dozen its
//! blocks run translated).

use gasang_softcpu::system::deliver::NoInterrupts;
use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::system::ram::GuestRam;
use gasang_softcpu::system::SystemState;
use gasang_softcpu::{Cpu, CpuState, Exit};

use super::{Regs, CODE_ADDR};

/// Guest RAM pages, page-aligned.
#[derive(Clone)]
#[repr(align(4096))]
struct Page(#[allow(dead_code)] [u8; 4096]); // only its bytes, by pointer

const PAGES: usize = 64;
const PML4: u64 = 0x1000;
/// Where code and data pages go in guest-physical memory.
const CODE_PHYS: u64 = 0x20000;
const DATA_PHYS: u64 = 0x30000;

/// One CPU in system mode over its own RAM.
pub struct SystemSoft {
    cpu: Cpu,
    ram: GuestRam,
    end: u64,
    data_addr: u64,
    // Owns the bytes `ram` points into; declared after it, so dropped after it.
    _pages: Vec<Page>,
}

impl SystemSoft {
    /// `code` at the oracle's code address, `data_len` bytes of data at linear
    /// `data_addr`, both mapped with 4 KiB pages.
    pub fn new(code: &[u8], data_addr: u64, data_len: usize) -> Self {
        let mut pages = vec![Page([0; 4096]); PAGES];
        // SAFETY: the pages are page-aligned, live as long as `ram` (same struct, dropped
        // after it) and are never resized.
        let mut ram = unsafe { GuestRam::new(pages.as_mut_ptr().cast(), PAGES * 4096) };
        let mut next_table = PML4 + 0x1000;
        // HLT after the code: system mode runs on until something stops it.
        let code = [code, &[0xf4]].concat();
        let code_pages = (code.len() as u64).div_ceil(4096);
        for i in 0..code_pages {
            map(
                &mut ram,
                &mut next_table,
                CODE_ADDR + i * 4096,
                CODE_PHYS + i * 4096,
            );
        }
        ram.write(CODE_PHYS, &code);
        let first = data_addr & !0xfff;
        let last = (data_addr + data_len as u64 - 1) & !0xfff;
        for (i, page) in (first..=last).step_by(4096).enumerate() {
            map(&mut ram, &mut next_table, page, DATA_PHYS + i as u64 * 4096);
        }
        assert!(next_table < CODE_PHYS, "page tables fit below the code");
        Self {
            cpu: Cpu::new(CpuState::default()),
            ram,
            end: CODE_ADDR + code.len() as u64 - 1,
            data_addr,
            _pages: pages,
        }
    }

    fn data_phys(&self) -> u64 {
        DATA_PHYS + (self.data_addr & 0xfff)
    }

    /// A kernel-mode CPU state at the code with `regs`.
    pub fn start(regs: &Regs) -> CpuState {
        let mut state = regs.state(CODE_ADDR);
        state.sys = SystemState::long_mode_kernel(PML4);
        state
    }

    /// Another handle on the machine's RAM, for a CPU on another thread.
    pub fn share_ram(&self) -> GuestRam {
        self.ram.share()
    }

    /// The `len` bytes of the data buffer.
    pub fn data(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.ram.read(self.data_phys(), &mut out);
        out
    }

    /// Where the code ends (the HLT after it).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Runs the code from `regs` with `data` in the buffer; returns registers and buffer.
    pub fn run(&mut self, regs: &Regs, data: &[u8]) -> (Regs, Vec<u8>) {
        self.ram.write(self.data_phys(), data);
        // The same CPU (and its block cache) for every case: only its registers change.
        self.cpu.state = Self::start(regs);
        let mut ram = self.ram.share();
        let mut cpu = std::mem::take(&mut self.cpu);
        run_to_end(&mut cpu, &mut ram, self.end, 100_000);
        self.cpu = cpu;
        let out = self.data(data.len());
        (Regs::of(&self.cpu.state), out)
    }
}

/// Runs `cpu` on `ram` until the HLT at `end`, at most about `limit` instructions.
pub fn run_to_end(cpu: &mut Cpu, ram: &mut GuestRam, end: u64, limit: u64) {
    let mut steps = 0;
    loop {
        let (ran, exit) = cpu.run_system(ram, &mut NoInterrupts, 1000);
        steps += ran;
        match exit {
            None => assert!(steps < limit, "runaway test code"),
            Some(Exit::Halt) if cpu.state.rip == end + 1 => return,
            Some(exit) => panic!("{exit:?} at {:#x}", cpu.state.rip),
        }
    }
}

/// Maps linear page `linear` to physical `phys` (present, writable), taking new tables
/// from `next_table`.
fn map(ram: &mut GuestRam, next_table: &mut u64, linear: u64, phys: u64) {
    let mut table = PML4;
    for level in [39, 30, 21] {
        let slot = table + 8 * ((linear >> level) & 0x1ff);
        let mut entry = ram.load(slot, 8);
        if entry & 1 == 0 {
            entry = *next_table | 3;
            *next_table += 0x1000;
            ram.store(slot, 8, entry);
        }
        table = entry & !0xfff;
    }
    ram.store(table + 8 * ((linear >> 12) & 0x1ff), 8, phys | 3);
}
