//! The block executor: `Cpu::run` runs cached blocks of decoded instructions. It must
//! behave exactly as stepping one instruction at a time does, stop at its limit, and
//! see code written under a block, even by an instruction of that same block.

#![allow(clippy::unwrap_used)]

use gasang_softcpu::{Cpu, CpuState, Exception, Exit, FlatMemory, Memory};
use iced_x86::code_asm::*;

const BASE: u64 = 0x40_0000;

fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(BASE).unwrap()
}

/// `code` at BASE, a stack page below 0x20_0000, RIP at BASE.
fn machine(code: Vec<u8>) -> (Cpu, FlatMemory) {
    let mut mem = FlatMemory::new();
    mem.map(BASE, code);
    mem.map(0x1f_f000, vec![0; 0x1000]);
    let mut state = CpuState::long_mode(BASE);
    state.gpr[4] = 0x20_0000;
    (Cpu::new(state), mem)
}

/// A loop with direct and indirect calls, memory operands, flags and a fall-through
/// into SYSCALL.
fn program() -> Vec<u8> {
    asm(|a| {
        let mut top = a.create_label();
        let mut double = a.create_label();
        a.mov(ecx, 50u32)?;
        a.xor(eax, eax)?;
        a.set_label(&mut top)?;
        a.push(rcx)?;
        a.call(double)?;
        a.lea(r9, ptr(double))?;
        a.call(r9)?;
        a.pop(rcx)?;
        a.not(r10)?;
        a.neg(r10d)?;
        a.bswap(r10)?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(rsp - 16), rax)?;
        a.xor(rax, qword_ptr(rsp - 16))?;
        a.lea(rax, qword_ptr(rax + rcx * 2 + 3))?;
        a.shl(rax, 1u32)?;
        a.cmp(rax, 1000i32)?;
        a.cmovb(rdx, rax)?;
        a.setb(bl)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.syscall()?;
        a.set_label(&mut double)?;
        a.add(rcx, rcx)?;
        a.ret()
    })
}

#[test]
fn test_run_matches_stepping() {
    let (mut stepped, mut mem) = machine(program());
    let mut steps = 0;
    while stepped.step(&mut mem).unwrap() != Some(Exit::Syscall) {
        steps += 1;
    }
    let (mut ran, mut mem) = machine(program());
    let (executed, result) = ran.run(&mut mem, u64::MAX);
    assert_eq!(result, Ok(Some(Exit::Syscall)));
    assert_eq!(
        executed,
        steps + 1,
        "every instruction counted, SYSCALL too"
    );
    assert_eq!(ran.state, stepped.state);
}

#[test]
fn test_run_stops_at_its_limit_and_resumes() {
    let (mut cpu, mut mem) = machine(program());
    let mut total = 0;
    loop {
        let (executed, result) = cpu.run(&mut mem, 7);
        total += executed;
        match result {
            Ok(None) => assert_eq!(executed, 7),
            Ok(Some(Exit::Syscall)) => break,
            other => panic!("{other:?}"),
        }
    }
    let (mut whole, mut mem) = machine(program());
    let (executed, _) = whole.run(&mut mem, u64::MAX);
    assert_eq!(total, executed);
    assert_eq!(cpu.state, whole.state);
}

/// A store that rewrites the next instruction of its own block: the new instruction
/// runs, on the first pass and on later ones (the block is decoded again).
#[test]
fn test_code_written_by_its_own_block_runs_new() {
    // top: mov dword [patch + 1], r8d; patch: mov eax, 1; add ebx, eax; inc r8d;
    //      dec ecx; jnz top; syscall
    let patch_offset = 8; // mov dword [abs32], r8d: 8 bytes
    let code = asm(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(dword_ptr(BASE + patch_offset + 1), r8d)?;
        a.mov(eax, 1u32)?;
        a.add(ebx, eax)?;
        a.inc(r8d)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.syscall()
    });
    assert_eq!(
        code[patch_offset as usize], 0xb8,
        "mov eax, imm32 where expected"
    );
    let (mut cpu, mut mem) = machine(code);
    cpu.state.gpr[1] = 3; // ECX: three passes
    cpu.state.gpr[8] = 10; // the immediates written: 10, 11, 12
    let (_, result) = cpu.run(&mut mem, u64::MAX);
    assert_eq!(result, Ok(Some(Exit::Syscall)));
    assert_eq!(
        cpu.state.gpr[3],
        10 + 11 + 12,
        "each pass ran the patched mov"
    );
}

/// A fault in the middle of a block leaves the instructions before it done, the
/// faulting one undone, and RIP on it.
#[test]
fn test_fault_mid_block_stops_on_the_faulting_instruction() {
    let code = asm(|a| {
        a.mov(eax, 7u32)?;
        a.add(qword_ptr(0x1000u64), rax)?; // unmapped
        a.mov(ebx, 9u32)
    });
    let (mut cpu, mut mem) = machine(code);
    let (executed, result) = cpu.run(&mut mem, u64::MAX);
    assert_eq!(executed, 1);
    assert!(
        matches!(result, Err(Exception::PageFault { .. })),
        "{result:?}"
    );
    assert_eq!(cpu.state.rip, BASE + 5, "on the faulting add");
    assert_eq!((cpu.state.gpr[0], cpu.state.gpr[3]), (7, 0));
}

/// LEA computes the offset: a segment override does not add the segment's base.
#[test]
fn test_lea_ignores_a_segment_override() {
    let code = asm(|a| {
        a.lea(rax, qword_ptr(rbx + 8).fs())?;
        a.mov(rcx, qword_ptr(8).fs())
    });
    let (mut cpu, mut mem) = machine(code);
    cpu.state.seg[4].base = 0x1f_f000; // FS: the stack page
    cpu.state.gpr[3] = 0x100;
    mem.write(0x1f_f008, &0x1234u64.to_le_bytes()).unwrap();
    cpu.run(&mut mem, 2).1.unwrap();
    assert_eq!(cpu.state.gpr[0], 0x108, "LEA: offset only");
    assert_eq!(cpu.state.gpr[1], 0x1234, "MOV: FS base added");
}
