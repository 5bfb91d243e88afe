//! System-level micro-guests on the software CPU, no kernel: a few instructions each,
//! with hand-built page tables, GDT, IDT and TSS, run through `Cpu::step_system`.
//! Paging (A/D bits, NX, U/S, write protect, #PF error codes and CR2), exceptions
//! (#GP, #UD, #DE, #BP, double and triple faults), interrupt delivery with the STI
//! shadow and IRETQ, NMIs, and SYSCALL/SYSRET round trips.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::system::deliver::{InterruptSource, NoInterrupts};
use gasang_softcpu::system::efer;
use gasang_softcpu::{Exit, Gpr};
use iced_x86::code_asm::*;

mod common;
use common::machine::*;

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
