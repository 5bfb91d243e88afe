//! The system micro-guests' machine: guest RAM with page tables, a GDT, a TSS and an
//! IDT, a CPU in 64-bit kernel mode, and ways to run it.

use gasang_softcpu::system::deliver::{InterruptSource, NoInterrupts};
use gasang_softcpu::system::{SystemState, Table};
use gasang_softcpu::{Cpu, CpuState, Exit, Gpr, Segment};
use iced_x86::code_asm::*;

use super::Ram;

pub const PML4: u64 = 0x1000;
pub const PT: u64 = 0x4000;
pub const GDT: u64 = 0x5000;
pub const TSS: u64 = 0x6000;
pub const IDT: u64 = 0x7000;
pub const KERNEL_STACK: u64 = 0x9000;
pub const IST_STACK: u64 = 0xa000;
pub const KERNEL_CODE: u64 = 0x10000;
pub const USER_CODE: u64 = 0x20000;
pub const HANDLERS: u64 = 0x30000;
pub const DATA: u64 = 0x40000;
pub const USER_STACK: u64 = 0x50000;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;
pub const TR: u16 = 0x28;

/// Page-table entry bits.
pub const P: u64 = 1;
pub const W: u64 = 2;
pub const U: u64 = 4;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const NX: u64 = 1 << 63;

/// A machine: page tables identity-mapping the first 2 MiB with 4 KiB pages (present,
/// writable, user unless changed), a GDT, a TSS, and an IDT whose gate n runs
/// `mov eax, n; hlt` (gate 8 on IST 1; gates 3 and 0x80 callable from user mode).
pub fn machine() -> (Cpu, Ram) {
    let mut ram = Ram::new(4 << 20);
    ram.set_u64(PML4, 0x2000 | P | W | U);
    ram.set_u64(0x2000, 0x3000 | P | W | U);
    ram.set_u64(0x3000, PT | P | W | U);
    for page in 0..512 {
        ram.set_u64(PT + 8 * page, (page << 12) | P | W | U);
    }
    let gdt: [u64; 5] = [
        0,
        0x00af_9b00_0000_ffff, // kernel code: L, P, DPL 0
        0x00cf_9300_0000_ffff, // kernel data
        0x00cf_f300_0000_ffff, // user data: DPL 3
        0x00af_fb00_0000_ffff, // user code: L, DPL 3
    ];
    for (i, d) in gdt.iter().enumerate() {
        ram.set_u64(GDT + 8 * i as u64, *d);
    }
    // 64-bit TSS descriptor (available), base TSS, limit 0x67.
    ram.set_u64(
        GDT + 0x28,
        0x0000_8900_0000_0067 | ((TSS & 0xff_ffff) << 16),
    );
    ram.set_u64(TSS + 4, KERNEL_STACK); // RSP0
    ram.set_u64(TSS + 0x24, IST_STACK); // IST1
    for vector in 0..256u64 {
        let handler = HANDLERS + vector * 16;
        let code = asm(handler, |a| {
            a.mov(eax, vector as u32)?;
            a.hlt()
        });
        ram.put(handler, &code);
        let dpl = if vector == 3 || vector == 0x80 { 3 } else { 0 };
        let ist = u64::from(vector == 8);
        let lo = (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (ist << 32)
            | ((0x8e | (dpl << 5)) << 40)
            | ((handler >> 16) << 48);
        ram.set_u64(IDT + 16 * vector, lo);
    }
    let mut state = CpuState::long_mode(KERNEL_CODE);
    state.sys = SystemState::long_mode_kernel(PML4);
    state.sys.gdtr = Table {
        base: GDT,
        limit: 0x37,
    };
    state.sys.idtr = Table {
        base: IDT,
        limit: 0xfff,
    };
    state.sys.tr = Segment {
        selector: TR,
        base: TSS,
        limit: 0x67,
        attr: 0x8b,
    };
    state.seg[1] = Segment {
        selector: KERNEL_CS,
        base: 0,
        limit: u32::MAX,
        attr: 0xa09b,
    };
    state.seg[2] = Segment {
        selector: KERNEL_DS,
        base: 0,
        limit: u32::MAX,
        attr: 0xc093,
    };
    state.set_reg(Gpr::Rsp, KERNEL_STACK - 0x100);
    (Cpu::new(state), ram)
}

pub fn asm(ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(ip).unwrap()
}

/// Runs until HLT (or shutdown), with `irq` as the interrupt controller.
pub fn run(cpu: &mut Cpu, ram: &mut Ram, irq: &mut dyn InterruptSource) -> Exit {
    for _ in 0..10_000 {
        if let Some(exit) = cpu.step_system(ram, irq) {
            return exit;
        }
    }
    panic!("no HLT at RIP {:#x}", cpu.state.rip);
}

/// The vector of the handler the CPU halted in.
pub fn handled(cpu: &Cpu) -> u64 {
    assert_eq!(
        (cpu.state.rip - HANDLERS) % 16,
        6,
        "halted in a handler (RIP {:#x})",
        cpu.state.rip
    );
    cpu.state.reg(Gpr::Rax)
}

/// The exception frame on the handler's stack: (error code if any, RIP, CS, RFLAGS).
pub fn frame(cpu: &Cpu, ram: &Ram, with_error: bool) -> (u64, u64, u64, u64) {
    let stack_top = cpu.state.reg(Gpr::Rsp);
    let e = if with_error { ram.u64(stack_top) } else { 0 };
    let at = stack_top + if with_error { 8 } else { 0 };
    (e, ram.u64(at), ram.u64(at + 8), ram.u64(at + 16))
}

pub fn pte(page: u64) -> u64 {
    PT + 8 * (page >> 12)
}

/// Runs whole blocks (as a platform does) until HLT.
pub fn run_blocks(cpu: &mut Cpu, ram: &mut Ram) -> Exit {
    let (_, exit) = cpu.run_system(ram, &mut NoInterrupts, 10_000);
    exit.unwrap_or_else(|| panic!("no HLT at RIP {:#x}", cpu.state.rip))
}

/// Kernel code that enters user mode at USER_CODE through IRETQ (interrupts on).
pub fn enter_user(a: &mut CodeAssembler) -> Result<(), IcedError> {
    for value in [
        u64::from(USER_DS),
        USER_STACK,
        0x202,
        u64::from(USER_CS),
        USER_CODE,
    ] {
        a.mov(rax, value)?;
        a.push(rax)?;
    }
    a.iretq()
}
