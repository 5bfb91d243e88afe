//! System-level micro-guests on the software CPU, no kernel: a few instructions each,
//! with hand-built page tables, GDT, IDT and TSS, run through `Cpu::step_system`.
//! Paging (A/D bits, NX, U/S, write protect, #PF error codes and CR2), exceptions
//! (#GP, #UD, #DE, #BP, double and triple faults), interrupt delivery with the STI
//! shadow and IRETQ, NMIs, and SYSCALL/SYSRET round trips.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::system::deliver::{InterruptSource, NoInterrupts};
use gasang_softcpu::system::{efer, SystemState, Table};
use gasang_softcpu::{Cpu, CpuState, Exit, Gpr, Segment};
use iced_x86::code_asm::*;

mod common;
use common::Ram;

const PML4: u64 = 0x1000;
const PT: u64 = 0x4000;
const GDT: u64 = 0x5000;
const TSS: u64 = 0x6000;
const IDT: u64 = 0x7000;
const KERNEL_STACK: u64 = 0x9000;
const IST_STACK: u64 = 0xa000;
const KERNEL_CODE: u64 = 0x10000;
const USER_CODE: u64 = 0x20000;
const HANDLERS: u64 = 0x30000;
const DATA: u64 = 0x40000;
const USER_STACK: u64 = 0x50000;

const KERNEL_CS: u16 = 0x08;
const KERNEL_DS: u16 = 0x10;
const USER_DS: u16 = 0x18 | 3;
const USER_CS: u16 = 0x20 | 3;
const TR: u16 = 0x28;

/// Page-table entry bits.
const P: u64 = 1;
const W: u64 = 2;
const U: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const NX: u64 = 1 << 63;

/// A machine: page tables identity-mapping the first 2 MiB with 4 KiB pages (present,
/// writable, user unless changed), a GDT, a TSS, and an IDT whose gate n runs
/// `mov eax, n; hlt` (gate 8 on IST 1; gates 3 and 0x80 callable from user mode).
fn machine() -> (Cpu, Ram) {
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

fn asm(ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(ip).unwrap()
}

/// Runs until HLT (or shutdown), with `irq` as the interrupt controller.
fn run(cpu: &mut Cpu, ram: &mut Ram, irq: &mut dyn InterruptSource) -> Exit {
    for _ in 0..10_000 {
        if let Some(exit) = cpu.step_system(ram, irq) {
            return exit;
        }
    }
    panic!("no HLT at RIP {:#x}", cpu.state.rip);
}

/// The vector of the handler the CPU halted in.
fn handled(cpu: &Cpu) -> u64 {
    assert_eq!(
        (cpu.state.rip - HANDLERS) % 16,
        6,
        "halted in a handler (RIP {:#x})",
        cpu.state.rip
    );
    cpu.state.reg(Gpr::Rax)
}

/// The exception frame on the handler's stack: (error code if any, RIP, CS, RFLAGS).
fn frame(cpu: &Cpu, ram: &Ram, with_error: bool) -> (u64, u64, u64, u64) {
    let stack_top = cpu.state.reg(Gpr::Rsp);
    let e = if with_error { ram.u64(stack_top) } else { 0 };
    let at = stack_top + if with_error { 8 } else { 0 };
    (e, ram.u64(at), ram.u64(at + 8), ram.u64(at + 16))
}

fn pte(page: u64) -> u64 {
    PT + 8 * (page >> 12)
}

#[test]
fn test_paging_sets_accessed_and_dirty_and_write_protect_faults_with_cr2() {
    let (mut cpu, mut ram) = machine();
    let (rw, ro, untouched) = (DATA, DATA + 0x1000, DATA + 0x2000);
    ram.set_u64(pte(ro), ro | P | U);
    let accesses = asm(KERNEL_CODE, |a| {
        a.mov(qword_ptr(rw), rax)?;
        a.mov(rbx, qword_ptr(ro))
    });
    let mut code = accesses.clone();
    code.extend(asm(KERNEL_CODE + accesses.len() as u64, |a| {
        a.mov(qword_ptr(ro + 8), rax)?; // read-only with CR0.WP: #PF
        a.hlt()
    }));
    ram.put(KERNEL_CODE, &code);
    assert_eq!(run(&mut cpu, &mut ram, &mut NoInterrupts), Exit::Halt);
    assert_eq!(handled(&cpu), 14);
    assert_eq!(
        ram.u64(pte(rw)) & (A | D),
        A | D,
        "written: accessed and dirty"
    );
    assert_eq!(ram.u64(pte(ro)) & (A | D), A, "read: accessed only");
    assert_eq!(ram.u64(pte(untouched)) & (A | D), 0);
    assert_eq!(cpu.state.sys.cr2, ro + 8);
    let (error, rip, code_seg, _) = frame(&cpu, &ram, true);
    assert_eq!(error, 0b011, "present, write, supervisor");
    assert_eq!(
        rip,
        KERNEL_CODE + accesses.len() as u64,
        "the faulting instruction"
    );
    assert_eq!(code_seg, u64::from(KERNEL_CS));
}

#[test]
fn test_paging_not_present_and_no_execute_faults() {
    let (mut cpu, mut ram) = machine();
    ram.set_u64(pte(DATA), 0); // not present
    let code = asm(KERNEL_CODE, |a| a.mov(rax, qword_ptr(DATA + 0x10)));
    ram.put(KERNEL_CODE, &code);
    run(&mut cpu, &mut ram, &mut NoInterrupts);
    assert_eq!(handled(&cpu), 14);
    assert_eq!(
        frame(&cpu, &ram, true).0,
        0,
        "not present, read, supervisor"
    );
    assert_eq!(cpu.state.sys.cr2, DATA + 0x10);

    let (mut cpu, mut ram) = machine();
    ram.set_u64(pte(DATA), DATA | P | W | U | NX);
    let code = asm(KERNEL_CODE, |a| {
        a.mov(rax, DATA)?;
        a.jmp(rax)
    });
    ram.put(KERNEL_CODE, &code);
    run(&mut cpu, &mut ram, &mut NoInterrupts);
    assert_eq!(handled(&cpu), 14);
    assert_eq!(
        frame(&cpu, &ram, true),
        (0x11, DATA, u64::from(KERNEL_CS), 0x2)
    );
    assert_eq!(cpu.state.sys.cr2, DATA);
}

/// Kernel code that enters user mode at USER_CODE through IRETQ.
fn enter_user(a: &mut CodeAssembler) -> Result<(), IcedError> {
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

#[test]
fn test_user_mode_supervisor_page_faults_on_the_kernel_stack() {
    let (mut cpu, mut ram) = machine();
    ram.set_u64(pte(DATA), DATA | P | W); // supervisor only
    ram.put(KERNEL_CODE, &asm(KERNEL_CODE, enter_user));
    let user = asm(USER_CODE, |a| a.mov(rax, qword_ptr(DATA)));
    ram.put(USER_CODE, &user);
    run(&mut cpu, &mut ram, &mut NoInterrupts);
    assert_eq!(handled(&cpu), 14);
    assert_eq!(cpu.state.sys.cpl, 0);
    let (error, rip, code_seg, rflags) = frame(&cpu, &ram, true);
    assert_eq!(error, 0b101, "present, read, user");
    assert_eq!((rip, code_seg), (USER_CODE, u64::from(USER_CS)));
    assert_ne!(rflags & 0x200, 0, "user mode ran with interrupts on");
    let stack_top = cpu.state.reg(Gpr::Rsp);
    assert_eq!(
        stack_top,
        KERNEL_STACK - 6 * 8,
        "RSP0 from the TSS, six slots pushed"
    );
    assert_eq!(ram.u64(stack_top + 32), USER_STACK, "the user RSP");
    assert_eq!(ram.u64(stack_top + 40), u64::from(USER_DS), "the user SS");
}

#[test]
fn test_exceptions_reach_their_vectors() {
    let cases: [(u64, Emit); 5] = [
        (0, |a| {
            a.xor(ecx, ecx)?;
            a.div(ecx)
        }),
        (6, |a| a.ud2()),
        (13, |a| {
            a.mov(rax, 0x8000_0000_0000_0000u64)?;
            a.mov(rbx, qword_ptr(rax)) // non-canonical
        }),
        (13, |a| a.wrmsr()), // unknown MSR 0
        (3, |a| a.int3()),
    ];
    for (vector, body) in cases {
        let (mut cpu, mut ram) = machine();
        ram.put(KERNEL_CODE, &asm(KERNEL_CODE, body));
        run(&mut cpu, &mut ram, &mut NoInterrupts);
        assert_eq!(handled(&cpu), vector);
    }
    // User mode: CLI with IOPL 0 is #GP(0); INT to a kernel-only gate is #GP with the
    // gate's selector error code; INT3 (a DPL 3 gate) is #BP, a trap.
    let user_cases: [(u64, u64, Emit); 3] = [
        (13, 0, |a| a.cli()),
        (13, 0x40 * 8 + 2, |a| a.int(0x40)),
        (3, 0, |a| a.int3()),
    ];
    for (vector, error, body) in user_cases {
        let (mut cpu, mut ram) = machine();
        ram.put(KERNEL_CODE, &asm(KERNEL_CODE, enter_user));
        ram.put(USER_CODE, &asm(USER_CODE, body));
        run(&mut cpu, &mut ram, &mut NoInterrupts);
        assert_eq!(handled(&cpu), vector);
        if vector == 3 {
            assert_eq!(
                frame(&cpu, &ram, false).1,
                USER_CODE + 1,
                "a trap returns past INT3"
            );
        } else {
            let (e, rip, code_seg, _) = frame(&cpu, &ram, true);
            assert_eq!((e, rip, code_seg), (error, USER_CODE, u64::from(USER_CS)));
        }
    }
}

type Emit = fn(&mut CodeAssembler) -> Result<(), IcedError>;

#[test]
fn test_double_fault_on_its_ist_stack_and_triple_fault_shuts_down() {
    let (mut cpu, mut ram) = machine();
    // #GP's gate not present: delivering #GP raises #NP, a double fault.
    ram.set_u64(IDT + 16 * 13, ram.u64(IDT + 16 * 13) & !(1 << 47));
    ram.put(KERNEL_CODE, &asm(KERNEL_CODE, |a| a.wrmsr()));
    assert_eq!(run(&mut cpu, &mut ram, &mut NoInterrupts), Exit::Halt);
    assert_eq!(handled(&cpu), 8);
    assert_eq!(frame(&cpu, &ram, true).0, 0, "#DF's error code is 0");
    assert_eq!(
        cpu.state.reg(Gpr::Rsp),
        IST_STACK - 6 * 8,
        "IST1 from the TSS"
    );

    // And with #DF's gate gone too: shutdown.
    let (mut cpu, mut ram) = machine();
    ram.set_u64(IDT + 16 * 13, 0);
    ram.set_u64(IDT + 16 * 8, 0);
    ram.put(KERNEL_CODE, &asm(KERNEL_CODE, |a| a.wrmsr()));
    assert_eq!(run(&mut cpu, &mut ram, &mut NoInterrupts), Exit::Shutdown);
}

/// An interrupt controller with one interrupt pending, counted when taken.
struct OneInterrupt(Option<u8>, u32);

impl InterruptSource for OneInterrupt {
    fn take(&mut self) -> Option<u8> {
        self.1 += 1;
        self.0.take()
    }
}

#[test]
fn test_interrupt_waits_for_sti_shadow_and_iretq_resumes() {
    let (mut cpu, mut ram) = machine();
    // Vector 0x40's handler counts in RCX and returns.
    let handler = asm(HANDLERS + 0x40 * 16, |a| {
        a.inc(rcx)?;
        a.mov(r8, rdx)?;
        a.iretq()
    });
    ram.put(HANDLERS + 0x40 * 16, &handler);
    let code = asm(KERNEL_CODE, |a| {
        a.mov(edx, 1)?;
        a.sti()?;
        a.mov(edx, 2)?; // in STI's shadow: runs before the interrupt
        a.mov(edx, 3)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    let mut irq = OneInterrupt(Some(0x40), 0);
    assert_eq!(run(&mut cpu, &mut ram, &mut irq), Exit::Halt);
    assert_eq!(cpu.state.reg(Gpr::Rcx), 1, "taken once");
    assert_eq!(
        cpu.state.reg(Gpr::R8),
        2,
        "after the instruction in STI's shadow"
    );
    assert_eq!(
        cpu.state.reg(Gpr::Rdx),
        3,
        "IRETQ resumed the interrupted code"
    );
    assert_ne!(cpu.state.rflags & 0x200, 0, "IRETQ restored IF");
    assert_eq!(cpu.state.rip, KERNEL_CODE + code.len() as u64);
}

/// A platform with `0` NMIs pending (and no maskable interrupts).
struct Nmis(u32);

impl InterruptSource for Nmis {
    fn take(&mut self) -> Option<u8> {
        None
    }
    fn take_nmi(&mut self) -> bool {
        let pending = self.0 > 0;
        self.0 = self.0.saturating_sub(1);
        pending
    }
}

/// NMIs arrive with interrupts disabled, and one raised while the handler runs waits
/// until its IRETQ: a nested one (RBX 2 in the handler) would halt with 0xdead.
#[test]
fn test_nmi_ignores_if_and_waits_for_iretq() {
    let (mut cpu, mut ram) = machine();
    let handler = asm(HANDLERS + 2 * 16, |a| {
        let mut nested = a.create_label();
        a.inc(rbx)?;
        a.cmp(rbx, 1)?;
        a.jne(nested)?;
        a.inc(rcx)?;
        a.dec(rbx)?;
        a.iretq()?;
        a.set_label(&mut nested)?;
        a.mov(eax, 0xdead)?;
        a.hlt()
    });
    ram.put(HANDLERS + 2 * 16, &handler); // over gate 3's handler, unused here
    let code = asm(KERNEL_CODE, |a| {
        a.cli()?;
        a.mov(edx, 3)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    let mut nmis = Nmis(0);
    let mut exit = None;
    // Step 0 runs CLI; the first NMI comes at step 1, the second at step 3 (the
    // handler's CMP).
    for step in 0..100 {
        if step == 1 || step == 3 {
            nmis.0 += 1;
        }
        exit = cpu.step_system(&mut ram, &mut nmis);
        if exit.is_some() {
            break;
        }
    }
    assert_eq!(exit, Some(Exit::Halt));
    assert_eq!(cpu.state.reg(Gpr::Rax), 0, "no nested NMI");
    assert_eq!(cpu.state.reg(Gpr::Rcx), 2, "both taken, with IF clear");
    assert_eq!(cpu.state.reg(Gpr::Rdx), 3, "and the code resumed");
    assert_eq!(cpu.state.rip, KERNEL_CODE + code.len() as u64);
}

#[test]
fn test_syscall_sysret_round_trip() {
    let (mut cpu, mut ram) = machine();
    let entry = HANDLERS + 0x2000;
    // The kernel's entry: swap GS, note the CPL in CS, return 42 plus the argument.
    let kernel = asm(entry, |a| {
        a.swapgs()?;
        a.mov(qword_ptr(DATA), cs)?;
        a.lea(rax, qword_ptr(rdi + 42))?;
        a.swapgs()?;
        a.sysretq()
    });
    ram.put(entry, &kernel);
    let sys = &mut cpu.state.sys;
    sys.efer |= efer::SCE;
    sys.msr.star = (u64::from(KERNEL_CS) << 32) | (u64::from(USER_DS - 8 - 3) << 48);
    sys.msr.lstar = entry;
    sys.msr.sfmask = 0x200;
    sys.msr.kernel_gs_base = 0x1234;
    ram.put(KERNEL_CODE, &asm(KERNEL_CODE, enter_user));
    let user = asm(USER_CODE, |a| {
        a.mov(edi, 100)?;
        a.syscall()?;
        a.mov(rbx, rax)?;
        a.int3()
    });
    ram.put(USER_CODE, &user);
    run(&mut cpu, &mut ram, &mut NoInterrupts);
    assert_eq!(handled(&cpu), 3, "back in user mode, then INT3");
    assert_eq!(cpu.state.reg(Gpr::Rbx), 142);
    assert_eq!(
        ram.u64(DATA) & 0xffff,
        u64::from(KERNEL_CS),
        "the entry ran at CPL 0"
    );
    assert_eq!(cpu.state.seg[5].base, 0, "GS swapped back");
    assert_eq!(cpu.state.sys.msr.kernel_gs_base, 0x1234);
    let (_, rip, code_seg, rflags) = frame(&cpu, &ram, false);
    assert_eq!(
        (rip, code_seg),
        (USER_CODE + user.len() as u64, u64::from(USER_CS))
    );
    assert_ne!(rflags & 0x200, 0, "SYSRET restored IF from R11");
}

#[test]
fn test_tlb_keeps_stale_translations_until_invlpg_or_cr3_write() {
    for flush in [
        Emit::from(|a: &mut CodeAssembler| a.invlpg(byte_ptr(DATA))),
        |a| {
            a.mov(rcx, cr3)?;
            a.mov(cr3, rcx)
        },
    ] {
        let (mut cpu, mut ram) = machine();
        ram.set_u64(DATA, 0x1111);
        ram.set_u64(DATA + 0x1000, 0x2222);
        let code = asm(KERNEL_CODE, |a| {
            a.mov(r8, qword_ptr(DATA))?; // caches the translation
            a.mov(rax, (DATA + 0x1000) | P | W | U)?;
            a.mov(qword_ptr(pte(DATA)), rax)?; // remap, no flush yet
            a.mov(r9, qword_ptr(DATA))?;
            Ok(())
        });
        let mut all = code.clone();
        let at = KERNEL_CODE + code.len() as u64;
        let flushed = asm(at, flush);
        all.extend(&flushed);
        all.extend(asm(at + flushed.len() as u64, |a| {
            a.mov(r10, qword_ptr(DATA))?;
            a.hlt()
        }));
        ram.put(KERNEL_CODE, &all);
        assert_eq!(run(&mut cpu, &mut ram, &mut NoInterrupts), Exit::Halt);
        let regs = [Gpr::R8, Gpr::R9, Gpr::R10].map(|r| cpu.state.reg(r));
        assert_eq!(regs, [0x1111, 0x1111, 0x2222], "stale until flushed");
    }
}

/// Runs whole blocks (as a platform does) until HLT.
fn run_blocks(cpu: &mut Cpu, ram: &mut Ram) -> Exit {
    let (_, exit) = cpu.run_system(ram, &mut NoInterrupts, 10_000);
    exit.unwrap_or_else(|| panic!("no HLT at RIP {:#x}", cpu.state.rip))
}

#[test]
fn test_blocks_see_code_written_through_another_mapping() {
    let (mut cpu, mut ram) = machine();
    let alias = 0x1f_f000;
    ram.set_u64(pte(alias), KERNEL_CODE | P | W); // the code page, writable elsewhere
    let code = asm(KERNEL_CODE, |a| {
        let (mut again, mut done) = (a.create_label(), a.create_label());
        a.set_label(&mut again)?;
        a.mov(ebx, 1)?; // its immediate is at KERNEL_CODE + 1
        a.cmp(ecx, 1)?;
        a.je(done)?;
        a.mov(ecx, 1)?;
        a.mov(dword_ptr(alias + 1), 2)?;
        a.jmp(again)?;
        a.set_label(&mut done)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
    assert_eq!(
        cpu.state.reg(Gpr::Rbx),
        2,
        "the cached block was decoded again"
    );
}

#[test]
fn test_blocks_follow_a_cr3_switch_to_other_code_at_the_same_address() {
    let (mut cpu, mut ram) = machine();
    let (pml4, shared) = (0x60000, 0x70000);
    // A second address space: the same as the first, but `shared` maps the next page.
    ram.set_u64(pml4, (pml4 + 0x1000) | P | W | U);
    ram.set_u64(pml4 + 0x1000, (pml4 + 0x2000) | P | W | U);
    ram.set_u64(pml4 + 0x2000, (pml4 + 0x3000) | P | W | U);
    for page in 0..512 {
        let frame = (page << 12) + if page << 12 == shared { 0x1000 } else { 0 };
        ram.set_u64(pml4 + 0x3000 + 8 * page, frame | P | W | U);
    }
    for (at, value) in [(shared, 1u32), (shared + 0x1000, 2)] {
        ram.put(
            at,
            &asm(shared, |a| {
                a.mov(eax, value)?;
                a.ret()
            }),
        );
    }
    let code = asm(KERNEL_CODE, |a| {
        a.call(shared)?;
        a.mov(esi, eax)?;
        a.mov(rax, pml4)?;
        a.mov(cr3, rax)?;
        a.call(shared)?;
        a.mov(edi, eax)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
    let got = [Gpr::Rsi, Gpr::Rdi].map(|r| cpu.state.reg(r));
    assert_eq!(
        got,
        [1, 2],
        "the block at the same address came from the new page"
    );
}

#[test]
fn test_a_fault_on_a_cached_translation_walks_the_tables_again() {
    // A kernel that makes a read-only page writable (copy-on-write) does not flush
    // the TLB: the write's page fault drops the stale entry on hardware.
    let (mut cpu, mut ram) = machine();
    ram.set_u64(pte(DATA), DATA | P | U | A | D); // read-only, dirty (as after fork)
    let code = asm(KERNEL_CODE, |a| {
        a.mov(rax, cr0)?;
        a.or(rax, 1 << 16)?; // CR0.WP: read-only means read-only at CPL 0 too
        a.mov(cr0, rax)?;
        a.mov(rbx, qword_ptr(DATA))?; // caches the read-only translation
        a.mov(rax, DATA | P | W | U)?;
        a.mov(qword_ptr(pte(DATA)), rax)?; // writable now, no INVLPG
        a.mov(qword_ptr(DATA), 0x77)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
    assert_eq!(
        cpu.state.rip,
        KERNEL_CODE + code.len() as u64,
        "no #PF taken"
    );
    assert_eq!(ram.u64(DATA), 0x77);
}

/// Translated code and code pages: a hot loop stores into a page for a while, then
/// calls code on that page, then patches that code with the same store. The patched
/// code must run: the store's host write access to the page ends when the page becomes
/// code, so the patch goes through the interpreter, which drops the stale block.
#[test]
fn test_translated_store_to_a_page_that_became_code_is_seen() {
    let (mut cpu, mut ram) = machine();
    const P: u64 = DATA;
    ram.put(
        P,
        &asm(P, |a| {
            a.mov(eax, 1)?;
            a.ret()
        }),
    );
    let code = asm(KERNEL_CODE, |a| {
        let (mut top, mut next) = (a.create_label(), a.create_label());
        a.mov(ecx, 300)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        // DL = 1, or 2 in the last 100 rounds, stored by one instruction throughout.
        a.mov(edx, 1)?;
        a.cmp(ecx, 101)?;
        a.adc(edx, 0)?;
        a.mov(byte_ptr(P + 1), dl)?; // MOV EAX's immediate
        a.cmp(ecx, 200)?;
        a.ja(next)?; // no calls for the first 100 rounds
        a.call(P)?;
        a.add(ebx, eax)?;
        a.set_label(&mut next)?;
        a.dec(ecx)?;
        a.jne(top)?;
        a.hlt()
    });
    ram.put(KERNEL_CODE, &code);
    let mut ran = 0;
    loop {
        let (n, exit) = cpu.run_system(&mut ram, &mut NoInterrupts, 1000);
        ran += n;
        assert!(ran < 100_000, "runaway at {:#x}", cpu.state.rip);
        if exit.is_some() {
            assert_eq!(exit, Some(Exit::Halt));
            break;
        }
    }
    assert_eq!(
        cpu.state.reg(Gpr::Rbx),
        100 + 2 * 100,
        "100 calls before the patch, 100 after"
    );
}

/// An interrupt controller another thread raises vector 0x40 on.
struct Raised(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl InterruptSource for Raised {
    fn take(&mut self) -> Option<u8> {
        use std::sync::atomic::Ordering;
        self.0.swap(false, Ordering::SeqCst).then_some(0x40)
    }
    fn wake_flags(&self) -> [*const u8; 2] {
        [self.0.as_ptr().cast(), self.0.as_ptr().cast()]
    }
}

/// Translated blocks chained into a loop still take an interrupt raised meanwhile by
/// another thread promptly, not at the end of the instruction budget.
#[test]
fn test_chained_translated_loop_takes_an_interrupt_raised_meanwhile() {
    let (mut cpu, mut ram) = machine();
    let code = asm(KERNEL_CODE, |a| {
        let mut top = a.create_label();
        a.sti()?;
        a.nop()?;
        a.set_label(&mut top)?;
        a.inc(rcx)?;
        a.jmp(top)
    });
    ram.put(KERNEL_CODE, &code);
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raiser = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    // Far more than 20 ms of looping, even translated.
    let (_, exit) = cpu.run_system(&mut ram, &mut Raised(flag), 20_000_000_000);
    raiser.join().unwrap();
    assert_eq!(exit, Some(Exit::Halt));
    assert_eq!(handled(&cpu), 0x40);
    let rounds = cpu.state.reg(Gpr::Rcx);
    assert!(
        rounds < 1_000_000_000,
        "{rounds} rounds before the interrupt"
    );
}

/// A hot loop's translated DIV and IDIV still raise #DE (a zero divisor; a quotient
/// too large), with RIP on the instruction, instead of faulting on the host.
#[test]
fn test_translated_divide_errors_reach_the_guest() {
    for signed in [false, true] {
        let (mut cpu, mut ram) = machine();
        let code = asm(KERNEL_CODE, |a| {
            let mut top = a.create_label();
            a.mov(ecx, 100)?;
            a.set_label(&mut top)?;
            if signed {
                // RBX: -RCX (-1 in the last round); RDX:RAX: i64::MIN throughout.
                a.mov(rbx, rcx)?;
                a.neg(rbx)?;
                a.mov(rax, i64::MIN)?;
                a.cqo()?;
                a.idiv(rbx)?;
            } else {
                a.lea(rbx, qword_ptr(rcx - 1))?; // 0 in the last round
                a.mov(eax, 1000)?;
                a.xor(edx, edx)?;
                a.div(rbx)?;
            }
            a.dec(rcx)?;
            a.jne(top)?;
            a.hlt()
        });
        ram.put(KERNEL_CODE, &code);
        let exit = loop {
            if let (_, Some(exit)) = cpu.run_system(&mut ram, &mut NoInterrupts, 10_000) {
                break exit;
            }
        };
        assert_eq!(exit, Exit::Halt);
        assert_eq!(handled(&cpu), 0, "#DE (signed: {signed})");
        let (_, rip, _, _) = frame(&cpu, &ram, false);
        let at = &code[(rip - KERNEL_CODE) as usize..];
        assert_eq!(at[..2], [0x48, 0xf7], "RIP on the DIV or IDIV");
        assert_eq!(
            cpu.state.reg(Gpr::Rcx),
            1,
            "in the last round (signed: {signed})"
        );
    }
}

/// A locked instruction on memory that is not RAM (here nothing: an open bus) completes:
/// there is nothing to compare-exchange against, and retrying until a second read
/// matches would hang the vCPU. Found by the fuzz target `softcpu_translate`.
#[test]
fn test_locked_instruction_beyond_ram_completes() {
    let (mut cpu, mut ram) = machine();
    const NOWHERE: u64 = 0x60000;
    ram.set_u64(pte(NOWHERE), 0x8000_0000 | P | W); // 2 GiB: past the 4 MiB of RAM
    ram.put(
        KERNEL_CODE,
        &asm(KERNEL_CODE, |a| {
            // Each would change the value (all ones) it read.
            a.lock().and(dword_ptr(NOWHERE), 0)?;
            a.mov(eax, 1)?;
            a.lock().xadd(qword_ptr(NOWHERE + 8), rax)?;
            a.hlt()
        }),
    );
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let exit = run(&mut cpu, &mut ram, &mut NoInterrupts);
        let _ = done.send((exit, cpu.state.reg(Gpr::Rax)));
    });
    let (exit, read) = result
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the locked instructions completed");
    assert_eq!(exit, Exit::Halt);
    assert_eq!(read, u64::MAX, "XADD read the open bus's all ones");
}
