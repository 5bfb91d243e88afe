//! Differential tests of SSE/SSE2 floating point against the host CPU, under random
//! MXCSR rounding modes, DAZ, FTZ and sticky flags (exceptions masked: an unmasked one
//! would kill the test process natively). Random bit patterns give NaNs, infinities,
//! denormals and zeros often; registers, RFLAGS, memory and MXCSR must all match.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use iced_x86::code_asm::*;
use oracle::{asm, run_all};

#[test]
fn test_diff_sse_float_arithmetic() {
    run_all(
        &[
            ("addps", |a| a.addps(xmm0, xmm1)),
            ("addpd m", |a| a.addpd(xmm2, xmmword_ptr(rsi))),
            ("addss", |a| a.addss(xmm3, xmm4)),
            ("addsd m", |a| a.addsd(xmm5, qword_ptr(rsi + 8))),
            ("subps", |a| a.subps(xmm6, xmm7)),
            ("subsd", |a| a.subsd(xmm8, xmm9)),
            ("mulpd", |a| a.mulpd(xmm10, xmm11)),
            ("mulss m", |a| a.mulss(xmm12, dword_ptr(rsi + 4))),
            ("divps", |a| a.divps(xmm13, xmm14)),
            ("divsd", |a| a.divsd(xmm15, xmm0)),
            ("minps", |a| a.minps(xmm1, xmm2)),
            ("maxsd", |a| a.maxsd(xmm3, xmm4)),
            ("minss", |a| a.minss(xmm5, xmm6)),
            ("maxpd", |a| a.maxpd(xmm7, xmm8)),
            ("sqrtps", |a| a.sqrtps(xmm9, xmm10)),
            ("sqrtsd", |a| a.sqrtsd(xmm11, xmm12)),
            ("sqrtss m", |a| a.sqrtss(xmm13, dword_ptr(rsi))),
            ("sqrtpd", |a| a.sqrtpd(xmm14, xmm15)),
        ],
        1300,
    );
}

#[test]
fn test_diff_sse_float_compares() {
    run_all(
        &[
            ("cmpps eq", |a| a.cmpps(xmm0, xmm1, 0)),
            ("cmppd lt", |a| a.cmppd(xmm2, xmm3, 1)),
            ("cmpss le", |a| a.cmpss(xmm4, xmm5, 2)),
            ("cmpsd unord", |a| a.cmpsd_3(xmm6, xmm7, 3)),
            ("cmpps neq", |a| a.cmpps(xmm8, xmm9, 4)),
            ("cmppd nlt", |a| a.cmppd(xmm10, xmm11, 5)),
            ("cmpss nle", |a| a.cmpss(xmm12, xmm13, 6)),
            ("cmpsd ord", |a| a.cmpsd_3(xmm14, xmm15, 7)),
            ("comiss", |a| a.comiss(xmm0, xmm1)),
            ("ucomiss m", |a| a.ucomiss(xmm2, dword_ptr(rsi))),
            ("comisd", |a| a.comisd(xmm3, xmm4)),
            ("ucomisd", |a| a.ucomisd(xmm5, xmm6)),
        ],
        1400,
    );
}

#[test]
fn test_diff_sse_float_conversions() {
    run_all(
        &[
            ("cvtsi2sd r64", |a| a.cvtsi2sd(xmm0, rax)),
            ("cvtsi2sd r32", |a| a.cvtsi2sd(xmm1, ecx)),
            ("cvtsi2ss r64", |a| a.cvtsi2ss(xmm2, rdx)),
            ("cvtsi2ss m32", |a| a.cvtsi2ss(xmm3, dword_ptr(rsi))),
            ("cvttsd2si r64", |a| a.cvttsd2si(rbx, xmm4)),
            ("cvtsd2si r32", |a| a.cvtsd2si(r8d, xmm5)),
            ("cvttss2si r32", |a| a.cvttss2si(r9d, xmm6)),
            ("cvtss2si r64", |a| a.cvtss2si(r10, xmm7)),
            ("cvtss2sd", |a| a.cvtss2sd(xmm8, xmm9)),
            ("cvtsd2ss", |a| a.cvtsd2ss(xmm10, xmm11)),
            ("cvtps2pd", |a| a.cvtps2pd(xmm12, xmm13)),
            ("cvtpd2ps", |a| a.cvtpd2ps(xmm14, xmm15)),
            ("cvtdq2ps", |a| a.cvtdq2ps(xmm0, xmm1)),
            ("cvtps2dq", |a| a.cvtps2dq(xmm2, xmm3)),
            ("cvttps2dq", |a| a.cvttps2dq(xmm4, xmm5)),
            ("cvtdq2pd", |a| a.cvtdq2pd(xmm6, xmm7)),
            ("cvtpd2dq", |a| a.cvtpd2dq(xmm8, xmm9)),
            ("cvttpd2dq", |a| a.cvttpd2dq(xmm10, xmm11)),
        ],
        1500,
    );
}

#[test]
fn test_diff_sse_float_moves_and_mxcsr() {
    run_all(
        &[
            ("movss r,r", |a| a.movss(xmm0, xmm1)),
            ("movss r,m", |a| a.movss(xmm2, dword_ptr(rsi + 4))),
            ("movss m,r", |a| a.movss(dword_ptr(rsi + 8), xmm3)),
            ("movsd r,r", |a| a.movsd_2(xmm4, xmm5)),
            ("movsd r,m", |a| a.movsd_2(xmm6, qword_ptr(rsi + 16))),
            ("movsd m,r", |a| a.movsd_2(qword_ptr(rsi + 24), xmm7)),
            ("movhps r,m", |a| a.movhps(xmm8, qword_ptr(rsi))),
            ("movhps m,r", |a| a.movhps(qword_ptr(rsi + 32), xmm9)),
            ("movlpd r,m", |a| a.movlpd(xmm10, qword_ptr(rsi + 8))),
            ("movlps m,r", |a| a.movlps(qword_ptr(rsi + 40), xmm11)),
            ("movhlps", |a| a.movhlps(xmm12, xmm13)),
            ("movlhps", |a| a.movlhps(xmm14, xmm15)),
            ("stmxcsr", |a| a.stmxcsr(dword_ptr(rsi + 48))),
        ],
        1600,
    );
}

/// LDMXCSR then arithmetic under the loaded rounding mode; #XM and #GP are the
/// interpreter's own (natively they would kill the test process).
#[test]
fn test_soft_mxcsr_load_unmasked_exception_and_reserved_bits() {
    use gasang_softcpu::{Cpu, CpuState, Exception, FlatMemory};
    let code = asm(|a| {
        a.ldmxcsr(dword_ptr(0x1000))?;
        a.divsd(xmm0, xmm1)
    });
    let run = |mxcsr: u32| {
        let mut mem = FlatMemory::new();
        mem.map(0x40_0000, code.clone());
        mem.map(0x1000, mxcsr.to_le_bytes().to_vec());
        let mut state = CpuState::long_mode(0x40_0000);
        state.xmm[0] = u128::from(1.0f64.to_bits());
        state.xmm[1] = 0; // divide by zero
        let mut cpu = Cpu::new(state);
        let first = cpu.step(&mut mem);
        let second = first.and_then(|_| cpu.step(&mut mem));
        (second, cpu.state)
    };
    let (result, state) = run(0x1f80);
    assert_eq!(result, Ok(None), "masked: the result is infinity");
    assert_eq!(state.xmm[0] as u64, f64::INFINITY.to_bits());
    assert_eq!(state.mxcsr & 0x4, 0x4, "ZE is set");
    let (result, state) = run(0x1f80 & !(1 << 9));
    assert_eq!(
        result,
        Err(Exception::SimdFloatingPoint),
        "ZE unmasked: #XM"
    );
    assert_eq!(
        state.xmm[0] as u64,
        1.0f64.to_bits(),
        "and the result is not written"
    );
    let (result, _) = run(0x1_1f80);
    assert_eq!(
        result,
        Err(Exception::GeneralProtection(0)),
        "reserved MXCSR bits: #GP"
    );
}
