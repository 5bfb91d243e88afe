//! A PVH-style entry on the software CPU: 32-bit protected mode with paging off builds
//! 4-level page tables, enables PAE, long mode and paging (compatibility mode), stores
//! through the new tables, and far-jumps to 64-bit code: the path Linux's PVH entry
//! takes before `startup_64`; then far returns there, as `startup_64` reloads CS.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::system::deliver::NoInterrupts;
use gasang_softcpu::system::efer;
use gasang_softcpu::{Cpu, CpuState, Exit, Gpr};
use iced_x86::code_asm::*;

mod common;
use common::Ram;

const PML4: u32 = 0x1000;
const PDPT: u32 = 0x2000;
const PD: u32 = 0x3000;
const GDT: u32 = 0x5000;
const GDT_POINTER: u32 = 0x5800;
const STACK: u32 = 0x9000;
const CODE32: u32 = 0x10000;
const SUBROUTINE: u32 = 0x10800;
const CODE64: u32 = 0x11000;
const DATA: u32 = 0x40000;
const LONG_CS: u16 = 0x18;

fn asm(bits: u32, ip: u32, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(u64::from(ip)).unwrap()
}

/// The 32-bit entry code: stack round trips, page tables (2 MiB pages for the first
/// 8 MiB), PAE, CR3, EFER.LME, CR0.PG, a store in compatibility mode, then `ljmp`.
fn entry32(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(esp, STACK)?;
    a.call(u64::from(SUBROUTINE))?;
    a.push(0x1234_5678)?;
    a.pop(ebx)?;
    a.mov(edi, PML4)?;
    a.mov(dword_ptr(edi), PDPT | 3)?;
    a.mov(dword_ptr(edi + 4), 0)?;
    a.mov(dword_ptr(PDPT), PD | 3)?;
    a.xor(ecx, ecx)?;
    let mut fill = a.create_label();
    a.set_label(&mut fill)?;
    a.mov(eax, ecx)?;
    a.shl(eax, 21)?;
    a.or(eax, 0x83)?; // present, writable, 2 MiB
    a.mov(dword_ptr(ecx * 8 + PD), eax)?;
    a.inc(ecx)?;
    a.cmp(ecx, 4)?;
    a.jb(fill)?;
    a.lgdt(ptr(GDT_POINTER))?;
    a.mov(eax, cr4)?;
    a.or(eax, 0x20)?; // PAE
    a.mov(cr4, eax)?;
    a.mov(eax, PML4)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, 0xc000_0080u32)?; // EFER
    a.rdmsr()?;
    a.or(eax, 0x100)?; // LME
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x8000_0001u32)?; // PG | PE
    a.mov(cr0, eax)?;
    a.mov(dword_ptr(DATA), 0xabcd)?;
    // ljmp LONG_CS:CODE64 (EA ptr16:32)
    let [o0, o1, o2, o3] = CODE64.to_le_bytes();
    let [s0, s1] = LONG_CS.to_le_bytes();
    a.db(&[0xea, o0, o1, o2, o3, s0, s1])
}

#[test]
fn test_pvh_style_entry_reaches_64_bit_mode_through_compatibility_mode() {
    let mut ram = Ram::new(16 << 20);
    let gdt: [u64; 4] = [
        0,
        0x00cf_9b00_0000_ffff, // 32-bit code
        0x00cf_9300_0000_ffff, // data
        0x00af_9b00_0000_ffff, // 64-bit code
    ];
    for (i, d) in gdt.iter().enumerate() {
        ram.set_u64(u64::from(GDT) + 8 * i as u64, *d);
    }
    ram.put(u64::from(GDT_POINTER), &[0x1f, 0, 0, 0x50, 0, 0]);
    ram.put(u64::from(CODE32), &asm(32, CODE32, entry32));
    let subroutine = asm(32, SUBROUTINE, |a| {
        a.mov(esi, dword_ptr(esp))?; // the 32-bit return address
        a.ret()
    });
    ram.put(u64::from(SUBROUTINE), &subroutine);
    let long = asm(64, CODE64, |a| {
        // Far returns to the same code segment: RETFQ (8-byte slots), then RETF imm16
        // (4-byte slots, releasing 8 more bytes); the stack must end balanced.
        let (mut quad, mut double) = (a.create_label(), a.create_label());
        a.lea(rax, ptr(quad))?;
        a.push(i32::from(LONG_CS))?;
        a.push(rax)?;
        a.db(&[0x48, 0xcb])?; // retfq
        a.set_label(&mut quad)?;
        a.lea(rax, ptr(double))?;
        a.sub(rsp, 16)?;
        a.mov(dword_ptr(rsp), eax)?;
        a.mov(dword_ptr(rsp + 4), u32::from(LONG_CS))?;
        a.db(&[0xca, 8, 0])?; // retf 8 (no REX.W)
        a.set_label(&mut double)?;
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(qword_ptr(u64::from(DATA) + 8), rax)?;
        a.hlt()
    });
    ram.put(u64::from(CODE64), &long);

    let mut cpu = Cpu::new(CpuState::protected_mode(u64::from(CODE32)));
    let exit = (0..1000)
        .find_map(|_| cpu.step_system(&mut ram, &mut NoInterrupts))
        .expect("reaches HLT");
    assert_eq!(exit, Exit::Halt, "RIP {:#x}", cpu.state.rip);
    let st = &cpu.state;
    assert!(st.long_mode && st.sys.efer & efer::LMA != 0);
    assert_eq!(st.seg[1].selector, LONG_CS);
    assert_eq!(st.rip, u64::from(CODE64) + long.len() as u64);
    assert_eq!(
        st.reg(Gpr::Rsi),
        u64::from(CODE32) + 10,
        "call pushed 4 bytes"
    );
    assert_eq!(st.reg(Gpr::Rbx), 0x1234_5678);
    assert_eq!(st.reg(Gpr::Rsp), u64::from(STACK), "balanced 32-bit stack");
    assert_eq!(ram.u64(u64::from(DATA)), 0xabcd);
    assert_eq!(ram.u64(u64::from(DATA) + 8), 0x1122_3344_5566_7788);
    // The compatibility-mode store walked the new tables: accessed and dirty.
    assert_eq!(ram.u64(u64::from(PD)) & 0x60, 0x60);
}

/// An application processor's start, as Linux's trampoline does it: a start-up IPI
/// leaves it in real mode at `vector:0000`; 16-bit code with 32-bit operands (a 16-bit
/// stack, the ID flag toggled through PUSHFD/POPFD) loads a GDT, sets CR0.PE and
/// far-jumps to 32-bit code.
#[test]
fn test_startup_ipi_real_mode_reaches_32_bit_protected_mode() {
    let mut ram = Ram::new(1 << 20);
    let (vector, base) = (0x08u8, 0x8000u32);
    ram.set_u64(u64::from(GDT) + 8, 0x00cf_9b00_0000_ffff);
    ram.set_u64(u64::from(GDT) + 16, 0x00cf_9300_0000_ffff);
    // The GDT pointer, at DS:0x800 (DS = CS = the trampoline's segment).
    ram.put(u64::from(base) + 0x800, &[0x17, 0, 0x00, 0x50, 0, 0]);
    let code32 = 0x3_0000u32;
    let real = asm(16, 0, |a| {
        let mut sub = a.create_label();
        a.cli()?;
        a.mov(ax, cs)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x1000u32)?;
        a.call(sub)?;
        a.pushfd()?;
        a.pop(eax)?;
        a.xor(eax, 0x20_0000)?; // ID
        a.push(eax)?;
        a.popfd()?;
        a.pushfd()?;
        a.pop(ebx)?;
        a.lgdt(ptr(0x800))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        let [o0, o1, o2, o3] = code32.to_le_bytes();
        a.db(&[0x66, 0xea, o0, o1, o2, o3, 0x08, 0x00])?; // ljmpl $0x08, $code32
        a.set_label(&mut sub)?;
        a.mov(di, 0x1234u32)?;
        a.ret()
    });
    ram.put(u64::from(base), &real);
    let protected = asm(32, code32, |a| {
        a.mov(ax, 0x10u32)?;
        a.mov(ds, ax)?;
        a.mov(dword_ptr(DATA), 0x5555)?;
        a.hlt()
    });
    ram.put(u64::from(code32), &protected);

    let mut cpu = Cpu::new(CpuState::startup_ipi(vector));
    assert_eq!(cpu.state.seg[1].base, u64::from(base));
    let (_, exit) = cpu.run_system(&mut ram, &mut NoInterrupts, 1000);
    assert_eq!(exit, Some(Exit::Halt), "RIP {:#x}", cpu.state.rip);
    let st = &cpu.state;
    assert_eq!((st.code_bits(), st.seg[1].selector), (32, 0x08));
    assert_eq!(st.reg(Gpr::Rdi), 0x1234, "the 16-bit call");
    assert_eq!(st.reg(Gpr::Rsp), 0x1000, "a balanced 16-bit stack");
    assert_ne!(
        st.reg(Gpr::Rbx) & 0x20_0000,
        0,
        "ID toggles: CPUID is there"
    );
    assert_eq!(ram.u64(u64::from(DATA)), 0x5555);
}
