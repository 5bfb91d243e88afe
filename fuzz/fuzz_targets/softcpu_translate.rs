//! Arbitrary guest code in system mode, run again and again from the same start so that
//! its blocks get hot and run translated to host code: whatever the bytes (and
//! whatever they write, page tables included), the run ends in an exit or the
//! instruction limit, never a panic, a host fault or a hang.

#![no_main]

use gasang_softcpu::system::deliver::NoInterrupts;
use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::system::ram::GuestRam;
use gasang_softcpu::system::SystemState;
use gasang_softcpu::{Cpu, CpuState};
use libfuzzer_sys::fuzz_target;

const RAM: usize = 1 << 18;
const PML4: u64 = 0x1000;
const CODE: u64 = 0x10000;

#[repr(C, align(4096))]
struct Ram([u8; RAM]);

fuzz_target!(|data: &[u8]| {
    let mut bytes = Box::new(Ram([0; RAM]));
    // SAFETY: `bytes` is page-aligned, outlives `ram` (dropped after it, at the end of
    // this closure) and is not moved or resized meanwhile.
    let mut ram = unsafe { GuestRam::new(bytes.0.as_mut_ptr(), RAM) };
    // Identity-map the first 2 MiB (256 KiB of it RAM) with 4 KiB pages.
    ram.store(PML4, 8, 0x2000 | 7);
    ram.store(0x2000, 8, 0x3000 | 7);
    ram.store(0x3000, 8, 0x4000 | 7);
    for page in 0..512u64 {
        ram.store(0x4000 + 8 * page, 8, (page << 12) | 7);
    }
    ram.write(CODE, &data[..data.len().min(0x1000)]);
    let mut cpu = Cpu::new(CpuState::default());
    // Blocks translate after 64 runs.
    for _ in 0..72 {
        let mut state = CpuState::long_mode(CODE);
        state.sys = SystemState::long_mode_kernel(PML4);
        state.gpr = [0x8_0000; 16];
        cpu.state = state;
        // Without an IDT, any exception ends in a triple fault: an exit.
        let _ = cpu.run_system(&mut ram, &mut NoInterrupts, 300);
    }
    drop(ram);
    drop(bytes);
});
