//! Differential tests of the SSE/SSE2 integer and data-movement instructions against the
//! host CPU: all 16 XMM registers, the general registers and memory must match. Memory
//! operands use RSI (the buffer, 16-byte aligned at +0x40 here).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use iced_x86::code_asm::*;
use oracle::run_all;

#[test]
fn test_diff_sse_moves() {
    run_all(
        &[
            ("movdqa r", |a| a.movdqa(xmm1, xmm9)),
            ("movdqa m,r", |a| a.movdqa(xmmword_ptr(rsi), xmm3)),
            ("movdqu r,m", |a| a.movdqu(xmm12, xmmword_ptr(rsi + 3))),
            ("movdqu m,r", |a| a.movdqu(xmmword_ptr(rsi + 5), xmm0)),
            ("movaps", |a| a.movaps(xmm2, xmmword_ptr(rsi + 16))),
            ("movups", |a| a.movups(xmmword_ptr(rsi + 1), xmm7)),
            ("movd x,r32", |a| a.movd(xmm4, ecx)),
            ("movd r32,x", |a| a.movd(edx, xmm5)),
            ("movd x,m32", |a| a.movd(xmm6, dword_ptr(rsi + 9))),
            ("movq x,r64", |a| a.movq(xmm8, rbx)),
            ("movq r64,x", |a| a.movq(r10, xmm11)),
            ("movq x,x", |a| a.movq(xmm13, xmm14)),
            ("movq x,m64", |a| a.movq(xmm15, qword_ptr(rsi + 24))),
            ("movq m64,x", |a| a.movq(qword_ptr(rsi + 40), xmm1)),
            ("pmovmskb", |a| a.pmovmskb(eax, xmm3)),
            ("movmskps", |a| a.movmskps(ecx, xmm10)),
            ("movmskpd", |a| a.movmskpd(r9d, xmm2)),
        ],
        900,
    );
}

#[test]
fn test_diff_sse_bitwise_and_arithmetic() {
    run_all(
        &[
            ("pxor", |a| a.pxor(xmm0, xmm1)),
            ("por m", |a| a.por(xmm2, xmmword_ptr(rsi))),
            ("pand", |a| a.pand(xmm3, xmm4)),
            ("pandn", |a| a.pandn(xmm5, xmm6)),
            ("xorps", |a| a.xorps(xmm7, xmm8)),
            ("andnpd", |a| a.andnpd(xmm9, xmm10)),
            ("paddb", |a| a.paddb(xmm0, xmm1)),
            ("paddw m", |a| a.paddw(xmm2, xmmword_ptr(rsi + 16))),
            ("paddd", |a| a.paddd(xmm3, xmm4)),
            ("paddq", |a| a.paddq(xmm5, xmm6)),
            ("psubb", |a| a.psubb(xmm7, xmm8)),
            ("psubw", |a| a.psubw(xmm9, xmm10)),
            ("psubd", |a| a.psubd(xmm11, xmm12)),
            ("psubq", |a| a.psubq(xmm13, xmm14)),
            ("paddusb", |a| a.paddusb(xmm0, xmm1)),
            ("psubusw", |a| a.psubusw(xmm2, xmm3)),
            ("paddsw", |a| a.paddsw(xmm4, xmm5)),
            ("psubsb", |a| a.psubsb(xmm6, xmm7)),
            ("pminub", |a| a.pminub(xmm8, xmm9)),
            ("pmaxub", |a| a.pmaxub(xmm10, xmm11)),
            ("pminsw", |a| a.pminsw(xmm12, xmm13)),
            ("pmaxsw", |a| a.pmaxsw(xmm14, xmm15)),
            ("pavgb", |a| a.pavgb(xmm0, xmm1)),
            ("pavgw", |a| a.pavgw(xmm2, xmm3)),
            ("pmullw", |a| a.pmullw(xmm4, xmm5)),
            ("pmulhw", |a| a.pmulhw(xmm6, xmm7)),
            ("pmulhuw", |a| a.pmulhuw(xmm8, xmm9)),
            ("pmuludq", |a| a.pmuludq(xmm10, xmm11)),
            ("psadbw", |a| a.psadbw(xmm12, xmm13)),
        ],
        1000,
    );
}

#[test]
fn test_diff_sse_compares() {
    run_all(
        &[
            ("pcmpeqb", |a| a.pcmpeqb(xmm0, xmm1)),
            ("pcmpeqb self", |a| a.pcmpeqb(xmm2, xmm2)),
            ("pcmpeqw", |a| a.pcmpeqw(xmm3, xmm4)),
            ("pcmpeqd m", |a| a.pcmpeqd(xmm5, xmmword_ptr(rsi))),
            ("pcmpgtb", |a| a.pcmpgtb(xmm6, xmm7)),
            ("pcmpgtw", |a| a.pcmpgtw(xmm8, xmm9)),
            ("pcmpgtd", |a| a.pcmpgtd(xmm10, xmm11)),
        ],
        1100,
    );
}

#[test]
fn test_diff_sse_shuffles_unpacks_packs_shifts() {
    run_all(
        &[
            ("punpcklbw", |a| a.punpcklbw(xmm0, xmm1)),
            ("punpckhbw", |a| a.punpckhbw(xmm2, xmm3)),
            ("punpcklwd", |a| a.punpcklwd(xmm4, xmm5)),
            ("punpckhwd", |a| a.punpckhwd(xmm6, xmm7)),
            ("punpckldq", |a| a.punpckldq(xmm8, xmm9)),
            ("punpckhdq", |a| a.punpckhdq(xmm10, xmm11)),
            ("punpcklqdq", |a| a.punpcklqdq(xmm12, xmm13)),
            ("punpckhqdq m", |a| a.punpckhqdq(xmm14, xmmword_ptr(rsi))),
            ("unpcklps", |a| a.unpcklps(xmm0, xmm1)),
            ("unpckhpd", |a| a.unpckhpd(xmm2, xmm3)),
            ("packsswb", |a| a.packsswb(xmm4, xmm5)),
            ("packssdw", |a| a.packssdw(xmm6, xmm7)),
            ("packuswb", |a| a.packuswb(xmm8, xmm9)),
            ("pshufd", |a| a.pshufd(xmm10, xmm11, 0x1b)),
            ("pshufd m", |a| a.pshufd(xmm12, xmmword_ptr(rsi), 0xd8)),
            ("pshuflw", |a| a.pshuflw(xmm13, xmm14, 0x93)),
            ("pshufhw", |a| a.pshufhw(xmm15, xmm0, 0x4e)),
            ("shufps", |a| a.shufps(xmm1, xmm2, 0x72)),
            ("shufpd", |a| a.shufpd(xmm3, xmm4, 1)),
            ("pslldq", |a| a.pslldq(xmm5, 5)),
            ("psrldq", |a| a.psrldq(xmm6, 11)),
            ("psrldq 16", |a| a.psrldq(xmm7, 16)),
            ("psllw imm", |a| a.psllw(xmm8, 3)),
            ("pslld x", |a| a.pslld(xmm9, xmm10)),
            ("psllq imm", |a| a.psllq(xmm11, 63)),
            ("psrlw x", |a| a.psrlw(xmm12, xmm13)),
            ("psrld imm", |a| a.psrld(xmm14, 31)),
            ("psrlq imm", |a| a.psrlq(xmm15, 64)),
            ("psraw imm", |a| a.psraw(xmm0, 9)),
            ("psrad x", |a| a.psrad(xmm1, xmm2)),
        ],
        1200,
    );
}
