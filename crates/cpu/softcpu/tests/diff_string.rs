//! Differential tests of the string instructions (MOVS, STOS, LODS, CMPS, SCAS, with
//! REP, REPE, REPNE, both directions) against the host CPU, and REP fault semantics.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use iced_x86::code_asm::*;
use oracle::{asm, check, Emit, ALL};

/// String instructions walk the data buffer: RSI is the buffer, RDI points into it, RCX
/// is a small count, DF random (cleared again before the thunk returns).
#[test]
fn test_diff_string_instructions() {
    let setup = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        // At most 15 elements of 8 bytes: 120 bytes each way stay inside the buffer.
        a.and(ecx, 0xf)?;
        a.lea(rdi, qword_ptr(rsi + 0x80))?;
        a.and(edx, 1)?;
        let mut forward = a.create_label();
        a.jz(forward)?;
        a.std()?;
        a.add(rsi, 0x78)?;
        a.add(rdi, 0x78)?;
        a.set_label(&mut forward)?;
        a.nop()
    };
    let cases: [(&str, Emit); 12] = [
        ("rep movsb", |a| a.rep().movsb()),
        ("rep movsq", |a| a.rep().movsq()),
        ("rep stosd", |a| a.rep().stosd()),
        ("rep stosw", |a| a.rep().stosw()),
        ("lodsq", |a| a.lodsq()),
        ("movsd", |a| a.movsd()),
        ("repe cmpsb", |a| a.repe().cmpsb()),
        ("repne cmpsw", |a| a.repne().cmpsw()),
        ("repne scasb", |a| a.repne().scasb()),
        ("repe scasq", |a| a.repe().scasq()),
        ("stosb", |a| a.stosb()),
        ("cmpsd", |a| a.cmpsd()),
    ];
    for (i, (name, op)) in cases.iter().enumerate() {
        let code = asm(|a| {
            setup(a)?;
            op(a)?;
            a.cld()
        });
        check(name, &code, ALL, 700 + i as u64);
    }
}

/// REP MOVS forwards over overlapping buffers (the destination 1 to 16 bytes above the
/// source): copied element by element, each reads what an earlier one wrote, which the
/// page-at-a-time path must keep.
#[test]
fn test_diff_rep_movs_overlapping() {
    let cases: [(&str, Emit); 3] = [
        ("rep movsb", |a| a.rep().movsb()),
        ("rep movsd", |a| a.rep().movsd()),
        ("rep movsq", |a| a.rep().movsq()),
    ];
    for (i, (name, op)) in cases.iter().enumerate() {
        let code = asm(|a| {
            a.cld()?;
            a.and(ecx, 0x3f)?; // at most 504 bytes: inside the buffer
            a.and(edx, 0xf)?;
            a.lea(rdi, qword_ptr(rsi + rdx + 1))?;
            op(a)
        });
        check(name, &code, ALL, 720 + i as u64);
    }
}

/// A REP that faults part-way keeps what it copied, with RIP on the instruction and
/// RSI/RDI/RCX describing what is left.
#[test]
fn test_soft_rep_fault_keeps_completed_iterations() {
    use gasang_softcpu::{Cpu, CpuState, Exception, FlatMemory};
    let mut mem = FlatMemory::new();
    mem.map(0x40_0000, asm(|a| a.rep().movsb()));
    mem.map(0x1000, (0..16).collect());
    mem.map(0x2000, vec![0; 10]); // the destination ends after 10 bytes
    let mut state = CpuState::long_mode(0x40_0000);
    state.gpr[6] = 0x1000; // RSI
    state.gpr[7] = 0x2000; // RDI
    state.gpr[1] = 16; // RCX
    let mut cpu = Cpu::new(state);
    let err = cpu.step(&mut mem).unwrap_err();
    assert!(
        matches!(err, Exception::PageFault { addr: 0x200a, .. }),
        "{err:?}"
    );
    assert_eq!(cpu.state.rip, 0x40_0000);
    assert_eq!(
        (cpu.state.gpr[6], cpu.state.gpr[7], cpu.state.gpr[1]),
        (0x100a, 0x200a, 6)
    );
    assert_eq!(mem.slice(0x2000, 10).unwrap(), (0..10).collect::<Vec<u8>>());
}
