//! Differential tests of the integer instructions: the host CPU is the oracle. Each
//! case runs natively and on the software CPU from the same state; registers, the flags
//! the architecture defines for that instruction, and touched memory must match.
//!
//! `GASANG_DIFF_CASES=N` sets the cases per instruction form (default 1000; the long run
//! is described in docs/softcpu.md).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use gasang_softcpu::Flags;
use iced_x86::code_asm::*;
use oracle::{asm, check, check_with, Regs, ALL, NO_AF};

macro_rules! alu_forms {
    ($name:literal, $op:ident, $flags:expr) => {{
        check(concat!($name, " r8"), &asm(|a| a.$op(al, bl)), $flags, 1);
        check(concat!($name, " r8h"), &asm(|a| a.$op(ah, ch)), $flags, 2);
        check(concat!($name, " r16"), &asm(|a| a.$op(cx, dx)), $flags, 3);
        check(concat!($name, " r32"), &asm(|a| a.$op(r9d, eax)), $flags, 4);
        check(concat!($name, " r64"), &asm(|a| a.$op(rdx, r11)), $flags, 5);
        check(concat!($name, " imm8"), &asm(|a| a.$op(r10, -3)), $flags, 6);
        check(
            concat!($name, " imm32"),
            &asm(|a| a.$op(ebx, 0x1234_5678)),
            $flags,
            7,
        );
        check(
            concat!($name, " m32,r"),
            &asm(|a| a.$op(dword_ptr(rsi + 8), ecx)),
            $flags,
            8,
        );
        check(
            concat!($name, " r64,m"),
            &asm(|a| a.$op(rax, qword_ptr(rsi + 0x40))),
            $flags,
            9,
        );
        check(
            concat!($name, " m8,imm"),
            &asm(|a| a.$op(byte_ptr(rsi + 3), 0x81)),
            $flags,
            10,
        );
    }};
}

#[test]
fn test_diff_add_adc_sub_sbb_cmp() {
    alu_forms!("add", add, ALL);
    alu_forms!("adc", adc, ALL);
    alu_forms!("sub", sub, ALL);
    alu_forms!("sbb", sbb, ALL);
    alu_forms!("cmp", cmp, ALL);
}

#[test]
fn test_diff_and_or_xor_test() {
    alu_forms!("and", and, NO_AF);
    alu_forms!("or", or, NO_AF);
    alu_forms!("xor", xor, NO_AF);
    check("test r64", &asm(|a| a.test(rax, rbx)), NO_AF, 11);
    check(
        "test m16,imm",
        &asm(|a| a.test(word_ptr(rsi), 0x8001)),
        NO_AF,
        12,
    );
}

#[test]
fn test_diff_inc_dec_neg_not() {
    for (i, code) in [
        asm(|a| a.inc(al)),
        asm(|a| a.inc(r13w)),
        asm(|a| a.inc(dword_ptr(rsi + 4))),
        asm(|a| a.dec(rcx)),
        asm(|a| a.dec(byte_ptr(rsi))),
        asm(|a| a.neg(bh)),
        asm(|a| a.neg(r12)),
        asm(|a| a.neg(dword_ptr(rsi + 12))),
        asm(|a| a.not(esi)),
        asm(|a| a.not(qword_ptr(rsi + 16))),
    ]
    .iter()
    .enumerate()
    {
        // NOT on RSI would move the data pointer: compare anyway (registers only).
        check("unary", code, ALL, 100 + i as u64);
    }
}

/// Flags a shift by CL defines: none on a zero count; OF only for a count of 1; CF
/// only while the count stays within the operand for SHL/SHR; never AF.
fn shift_flags(bits: u32, rotate: bool, through_carry: bool) -> impl Fn(&Regs) -> u64 {
    move |r: &Regs| {
        let raw = r.gpr[1] & if bits == 64 { 0x3f } else { 0x1f };
        if raw == 0 {
            return ALL;
        }
        let mut f = if rotate { Flags::CF | Flags::OF } else { NO_AF };
        if raw != 1 {
            f &= !Flags::OF;
        }
        if !rotate && u64::from(bits) < raw {
            f &= !Flags::CF;
        }
        let _ = through_carry;
        // Rotates leave SF, ZF, AF, PF unchanged: those are compared too.
        if rotate {
            f |= Flags::SF | Flags::ZF | Flags::AF | Flags::PF;
        }
        f
    }
}

macro_rules! shift_forms {
    ($op:ident, $rotate:expr, $seed:expr) => {{
        let name = stringify!($op);
        check_with(
            name,
            &asm(|a| a.$op(dl, cl)),
            $seed,
            shift_flags(8, $rotate, false),
        );
        check_with(
            name,
            &asm(|a| a.$op(bx, cl)),
            $seed + 1,
            shift_flags(16, $rotate, false),
        );
        check_with(
            name,
            &asm(|a| a.$op(eax, cl)),
            $seed + 2,
            shift_flags(32, $rotate, false),
        );
        check_with(
            name,
            &asm(|a| a.$op(r8, cl)),
            $seed + 3,
            shift_flags(64, $rotate, false),
        );
        check_with(
            name,
            &asm(|a| a.$op(dword_ptr(rsi + 20), cl)),
            $seed + 4,
            shift_flags(32, $rotate, false),
        );
    }};
}

#[test]
fn test_diff_shifts_by_cl() {
    shift_forms!(shl, false, 200);
    shift_forms!(shr, false, 210);
    shift_forms!(sar, false, 220);
}

#[test]
fn test_diff_rotates_by_cl() {
    shift_forms!(rol, true, 230);
    shift_forms!(ror, true, 240);
    shift_forms!(rcl, true, 250);
    shift_forms!(rcr, true, 260);
}

#[test]
fn test_diff_shifts_by_one_and_immediate() {
    check("shl 1", &asm(|a| a.shl(eax, 1)), NO_AF, 270);
    check("sar 1", &asm(|a| a.sar(r9b, 1)), NO_AF, 271);
    check("shr 1", &asm(|a| a.shr(qword_ptr(rsi), 1)), NO_AF, 272);
    check("rol 1", &asm(|a| a.rol(cx, 1)), ALL, 273);
    check("shl 7", &asm(|a| a.shl(rdx, 7)), NO_AF & !Flags::OF, 274);
    check("ror 13", &asm(|a| a.ror(ebx, 13)), ALL & !Flags::OF, 275);
}

#[test]
fn test_diff_shld_shrd() {
    let f = |bits: u64| {
        move |r: &Regs| {
            let n = r.gpr[1] & if bits == 64 { 0x3f } else { 0x1f };
            match n {
                0 => ALL,
                1 => NO_AF,
                n if n > bits => 0,
                _ => NO_AF & !Flags::OF,
            }
        }
    };
    check_with("shld r32", &asm(|a| a.shld(eax, edx, cl)), 280, f(32));
    check_with("shrd r64", &asm(|a| a.shrd(rbx, r10, cl)), 281, f(64));
}

const MUL_FLAGS: u64 = Flags::CF | Flags::OF;

#[test]
fn test_diff_mul_imul() {
    check("mul r8", &asm(|a| a.mul(bl)), MUL_FLAGS, 300);
    check("mul r16", &asm(|a| a.mul(cx)), MUL_FLAGS, 301);
    check("mul r32", &asm(|a| a.mul(r8d)), MUL_FLAGS, 302);
    check("mul m64", &asm(|a| a.mul(qword_ptr(rsi))), MUL_FLAGS, 303);
    check("imul r8", &asm(|a| a.imul(dh)), MUL_FLAGS, 304);
    check("imul r64", &asm(|a| a.imul(r14)), MUL_FLAGS, 305);
    check("imul r16,r16", &asm(|a| a.imul_2(bx, cx)), MUL_FLAGS, 306);
    check(
        "imul r32,m32",
        &asm(|a| a.imul_2(ecx, dword_ptr(rsi + 4))),
        MUL_FLAGS,
        307,
    );
    check(
        "imul r64,r64,imm",
        &asm(|a| a.imul_3(rax, rbx, -7)),
        MUL_FLAGS,
        308,
    );
    check(
        "imul r32,r32,imm32",
        &asm(|a| a.imul_3(edx, esi, 100_000)),
        MUL_FLAGS,
        309,
    );
}

/// DIV and IDIV with operands chosen so the quotient fits (the native run must not
/// fault); #DE itself is a unit test of the interpreter.
#[test]
fn test_diff_div_idiv() {
    // div r32: EDX < divisor keeps the quotient in 32 bits.
    let code = asm(|a| {
        a.and(edx, 0xff)?;
        a.or(ecx, 0x100)?;
        a.div(ecx)
    });
    check("div r32", &code, 0, 320);
    let code = asm(|a| {
        a.xor(edx, edx)?;
        a.or(r9, 1)?;
        a.div(r9)
    });
    check("div r64", &code, 0, 321);
    let code = asm(|a| {
        a.movzx(eax, al)?;
        a.or(bl, 0x80)?;
        a.div(bl)
    });
    check("div r8", &code, 0, 322);
    let code = asm(|a| {
        a.cqo()?;
        a.or(rcx, 3)?;
        a.btr(rcx, 63)?;
        a.idiv(rcx)
    });
    check("idiv r64", &code, 0, 323);
    let code = asm(|a| {
        a.cwd()?;
        a.and(bx, 0x3fff)?;
        a.or(bx, 0x4000)?;
        a.idiv(bx)
    });
    check("idiv r16", &code, 0, 324);
}

#[test]
fn test_diff_bit_test_and_scan() {
    let cf = Flags::CF | Flags::ZF;
    check("bt r64,r64", &asm(|a| a.bt(rax, rcx)), cf, 400);
    check("bts r32,imm", &asm(|a| a.bts(edx, 17)), cf, 401);
    check("btr r16,r16", &asm(|a| a.btr(bx, cx)), cf, 402);
    check("btc r64,imm", &asm(|a| a.btc(r11, 63)), cf, 403);
    let code = asm(|a| {
        a.and(ecx, 0x7ff)?;
        a.bts(dword_ptr(rsi), ecx)
    });
    check("bts m32,r32 (bit string)", &code, cf, 404);
    check("bsf r64", &asm(|a| a.bsf(rax, rbx)), Flags::ZF, 405);
    check("bsr r32", &asm(|a| a.bsr(ecx, edx)), Flags::ZF, 406);
    // A zero source (random ones never are): the whole destination stays as it was,
    // upper half included, which AMD documents and Intel's CPUs do.
    let zero_bsf = asm(|a| {
        a.xor(ebx, ebx)?;
        a.bsf(rax, rbx)
    });
    check("bsf r64, zero source", &zero_bsf, Flags::ZF, 409);
    let zero_bsr = asm(|a| {
        a.xor(edx, edx)?;
        a.bsr(ecx, edx)
    });
    check("bsr r32, zero source", &zero_bsr, Flags::ZF, 410);
    check("bswap r32", &asm(|a| a.bswap(r10d)), ALL, 407);
    check("bswap r64", &asm(|a| a.bswap(rdi)), ALL, 408);
}

#[test]
fn test_diff_cmov_setcc_and_moves() {
    check("cmovl r32", &asm(|a| a.cmovl(eax, ebx)), ALL, 500);
    check(
        "cmova r64",
        &asm(|a| a.cmova(rcx, qword_ptr(rsi))),
        ALL,
        501,
    );
    check("cmovp r16", &asm(|a| a.cmovp(dx, r9w)), ALL, 502);
    check("setg", &asm(|a| a.setg(al)), ALL, 503);
    check("setbe m8", &asm(|a| a.setbe(byte_ptr(rsi + 7))), ALL, 504);
    check("setno", &asm(|a| a.setno(r15b)), ALL, 505);
    check("movsx", &asm(|a| a.movsx(eax, bh)), ALL, 506);
    check("movsx r64", &asm(|a| a.movsx(rax, r9b)), ALL, 530);
    check(
        "movsxd",
        &asm(|a| a.movsxd(rdx, dword_ptr(rsi + 9))),
        ALL,
        507,
    );
    check("movzx", &asm(|a| a.movzx(ecx, word_ptr(rsi + 3))), ALL, 508);
    check(
        "mov r8h,m8",
        &asm(|a| a.mov(ch, byte_ptr(rsi + 1))),
        ALL,
        509,
    );
    check(
        "mov m16,imm",
        &asm(|a| a.mov(word_ptr(rsi + 30), 0x1234)),
        ALL,
        510,
    );
    check(
        "lea",
        &asm(|a| a.lea(r8, qword_ptr(rax + rbx * 4 + 0x77))),
        ALL,
        511,
    );
    check(
        "lea r32",
        &asm(|a| a.lea(ecx, qword_ptr(rdx + rdi * 8 - 9))),
        ALL,
        512,
    );
    check("xchg", &asm(|a| a.xchg(qword_ptr(rsi + 8), rbx)), ALL, 513);
    check("xadd", &asm(|a| a.xadd(dword_ptr(rsi), ecx)), ALL, 514);
    check(
        "cmpxchg",
        &asm(|a| a.cmpxchg(qword_ptr(rsi + 16), rdx)),
        ALL,
        515,
    );
    let code = asm(|a| {
        a.mov(rax, qword_ptr(rsi + 24))?;
        a.cmpxchg(qword_ptr(rsi + 24), rcx)
    });
    check("cmpxchg equal", &code, ALL, 516);
    for (i, code) in [
        asm(|a| a.cbw()),
        asm(|a| a.cwde()),
        asm(|a| a.cdqe()),
        asm(|a| a.cwd()),
        asm(|a| a.cdq()),
        asm(|a| a.cqo()),
    ]
    .iter()
    .enumerate()
    {
        check("sign extension", code, ALL, 520 + i as u64);
    }
}

#[test]
fn test_diff_branches_and_stackless_loops() {
    // Sum ECX down to zero with LOOP, then a Jcc chain.
    let code = asm(|a| {
        let mut top = a.create_label();
        let mut skip = a.create_label();
        a.and(ecx, 0x3f)?;
        a.xor(eax, eax)?;
        a.jrcxz(skip)?;
        a.set_label(&mut top)?;
        a.add(eax, ecx)?;
        a.loop_(top)?;
        a.set_label(&mut skip)?;
        a.cmp(eax, 100)?;
        let mut done = a.create_label();
        a.jle(done)?;
        a.sub(eax, 100)?;
        a.set_label(&mut done)?;
        a.nop()
    });
    check("loop/jcc", &code, ALL, 600);
}

/// #DE is the interpreter's own business (natively it would kill the test process).
#[test]
fn test_soft_divide_errors() {
    use gasang_softcpu::{Cpu, CpuState, Exception, FlatMemory};
    for (code, low, high, divisor) in [
        (asm(|a| a.div(ecx)), 1, 0, 0),                      // by zero
        (asm(|a| a.div(ecx)), 0, 5, 5),                      // quotient needs 33 bits
        (asm(|a| a.idiv(cx)), 0x8000, 0xffff, 0xffff),       // -32768 / -1
        (asm(|a| a.idiv(rcx)), 1 << 63, u64::MAX, u64::MAX), // i64::MIN / -1
    ] {
        let mut mem = FlatMemory::new();
        mem.map(0x40_0000, code);
        let mut state = CpuState::long_mode(0x40_0000);
        state.gpr[0] = low;
        state.gpr[1] = divisor;
        state.gpr[2] = high;
        let mut cpu = Cpu::new(state.clone());
        assert_eq!(cpu.step(&mut mem), Err(Exception::DivideError));
        assert_eq!(cpu.state, state, "a faulting instruction changes nothing");
    }
}

/// Forms the interpreter does not implement raise #UD and change nothing; found by the
/// softcpu_exec fuzz target (a far call through memory once overflowed a buffer).
#[test]
fn test_soft_unimplemented_forms_raise_ud() {
    use gasang_softcpu::{Cpu, CpuState, Exception, FlatMemory};
    for code in [
        vec![0x4e, 0xff, 0x1f],        // call far [rdi] (a 10-byte far pointer)
        asm(|a| a.lsl(eax, ecx)),      // LSL (not implemented)
        asm(|a| a.aesenc(xmm0, xmm1)), // AES-NI (not advertised)
        vec![0x62, 0x62, 0xbd, 0x96, 0xa6, 0x26], // EVEX vfmaddsub213pd xmm28 (fuzz-found)
        asm(|a| a.haddps(xmm0, xmm1)), // SSE3 (not advertised)
    ] {
        let mut mem = FlatMemory::new();
        mem.map(0x40_0000, code.clone());
        mem.map(0x1000, vec![0; 64]);
        let mut state = CpuState::long_mode(0x40_0000);
        state.gpr[7] = 0x1000;
        let mut cpu = Cpu::new(state.clone());
        assert_eq!(
            cpu.step(&mut mem),
            Err(Exception::InvalidOpcode),
            "{code:x?}"
        );
        assert_eq!(cpu.state, state);
    }
}

/// Decode once, but not stale: code that rewrites an instruction it already ran (and
/// that the CPU has cached) runs the new instruction.
#[test]
fn test_soft_self_modifying_code_runs_the_new_instruction() {
    use gasang_softcpu::{Cpu, CpuState, FlatMemory};
    // top: mov eax, 1; add ebx, eax; mov dword [top + 1], 5; dec ecx; jnz top
    let code = asm(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(eax, 1u32)?;
        a.add(ebx, eax)?;
        a.mov(dword_ptr(0x40_0001u64), 5u32)?;
        a.dec(ecx)?;
        a.jnz(top)
    });
    let mut mem = FlatMemory::new();
    mem.map(0x40_0000, code.clone());
    let mut state = CpuState::long_mode(0x40_0000);
    state.gpr[1] = 3; // ECX: three passes
    let mut cpu = Cpu::new(state);
    while cpu.state.rip != 0x40_0000 + code.len() as u64 {
        cpu.step(&mut mem).unwrap();
    }
    assert_eq!(
        cpu.state.gpr[3],
        1 + 5 + 5,
        "the patched immediate was executed"
    );
}

/// CPUID reports gasang's own model, RDTSC counts up.
#[test]
fn test_soft_cpuid_and_rdtsc() {
    use gasang_softcpu::{cpuid, Cpu, CpuState, FlatMemory};
    let code = asm(|a| {
        a.mov(eax, 1u32)?;
        a.cpuid()?;
        a.mov(r8d, edx)?;
        a.rdtsc()?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)?;
        a.mov(r9, rax)?;
        a.rdtscp()?;
        a.shl(rdx, 32)?;
        a.or(rax, rdx)
    });
    let mut mem = FlatMemory::new();
    mem.map(0x40_0000, code.clone());
    let mut cpu = Cpu::new(CpuState::long_mode(0x40_0000));
    while cpu.state.rip != 0x40_0000 + code.len() as u64 {
        cpu.step(&mut mem).unwrap();
    }
    assert_eq!(cpu.state.gpr[8], u64::from(cpuid(1, 0)[3]), "leaf 1 EDX");
    assert!(
        cpu.state.gpr[0] >= cpu.state.gpr[9],
        "the TSC does not go back"
    );
    assert_eq!(cpu.state.gpr[1], 0, "RDTSCP's TSC_AUX");
}
