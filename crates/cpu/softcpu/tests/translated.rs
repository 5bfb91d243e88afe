//! Translated code on the system micro-guests' machine (`common::machine`): hot
//! blocks (64 runs) become host code. A store to a page that became code, an interrupt
//! raised by another thread during a chained loop, and DIV/IDIV faults, each of which
//! translated code must hand back to the interpreter or the platform.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::system::deliver::InterruptSource;
use gasang_softcpu::{Exit, Gpr};
use iced_x86::code_asm::*;

mod common;
use common::machine::*;

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
    assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
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
        assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
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
