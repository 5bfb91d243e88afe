//! Differential tests of x87, MMX, FXSAVE/FXRSTOR and the last SSE2 instructions
//! against the host CPU. Each case starts from a random x87 state: random stack top,
//! tags, precision and rounding control, and registers holding zeros, denormals,
//! pseudo-denormals, unnormals, infinities, NaNs, small integers and normals (every
//! exception masked: an unmasked one would kill the test process natively). FCW, FSW,
//! the tags, all eight registers, general and XMM registers, RFLAGS and memory must match.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use iced_x86::code_asm::*;
use oracle::{
    aligned, aligned_offset, asm, check_images, run_all, Emit, Host, Image, Native, Regs, Soft,
    ALL, DATA_LEN,
};

#[test]
fn test_diff_x87_memory_arithmetic() {
    run_all(
        &[
            ("fadd m32", |a| a.fadd(dword_ptr(rsi))),
            ("fmul m64", |a| a.fmul(qword_ptr(rsi + 8))),
            ("fsub m32", |a| a.fsub(dword_ptr(rsi + 4))),
            ("fsubr m64", |a| a.fsubr(qword_ptr(rsi + 16))),
            ("fdiv m32", |a| a.fdiv(dword_ptr(rsi + 12))),
            ("fdivr m64", |a| a.fdivr(qword_ptr(rsi + 24))),
            ("fcom m32", |a| a.fcom(dword_ptr(rsi))),
            ("fcomp m64", |a| a.fcomp(qword_ptr(rsi))),
            ("fiadd m16", |a| a.fiadd(word_ptr(rsi))),
            ("fimul m32", |a| a.fimul(dword_ptr(rsi))),
            ("fisub m16", |a| a.fisub(word_ptr(rsi + 2))),
            ("fidivr m32", |a| a.fidivr(dword_ptr(rsi + 4))),
            ("ficom m16", |a| a.ficom(word_ptr(rsi))),
            ("ficomp m32", |a| a.ficomp(dword_ptr(rsi))),
        ],
        2100,
    );
}

#[test]
fn test_diff_x87_loads_and_stores() {
    run_all(
        &[
            ("fld m32", |a| a.fld(dword_ptr(rsi))),
            ("fld m64", |a| a.fld(qword_ptr(rsi))),
            ("fld m80", |a| a.fld(tword_ptr(rsi))),
            ("fst m32", |a| a.fst(dword_ptr(rsi))),
            ("fstp m64", |a| a.fstp(qword_ptr(rsi + 8))),
            ("fstp m80", |a| a.fstp(tword_ptr(rsi + 16))),
            ("fild m16", |a| a.fild(word_ptr(rsi))),
            ("fild m32", |a| a.fild(dword_ptr(rsi))),
            ("fild m64", |a| a.fild(qword_ptr(rsi))),
            ("fist m16", |a| a.fist(word_ptr(rsi))),
            ("fistp m32", |a| a.fistp(dword_ptr(rsi))),
            ("fistp m64", |a| a.fistp(qword_ptr(rsi))),
            ("fisttp m64", |a| a.fisttp(qword_ptr(rsi))),
            ("fisttp m16", |a| a.fisttp(word_ptr(rsi))),
            ("fbld", |a| a.fbld(tword_ptr(rsi))),
            ("fbstp", |a| a.fbstp(tword_ptr(rsi + 32))),
            ("fld1 fldpi fldz", |a| {
                a.fld1()?;
                a.fldpi()?;
                a.fldz()?;
                a.fldl2e()?;
                a.fldl2t()?;
                a.fldlg2()?;
                a.fldln2()
            }),
        ],
        2200,
    );
}

#[test]
fn test_diff_x87_register_forms() {
    run_all(
        &[
            ("fadd st0,st3", |a| a.fadd_2(st0, st3)),
            ("fmul st5,st0", |a| a.fmul_2(st5, st0)),
            ("fsub st0,st1", |a| a.fsub_2(st0, st1)),
            ("fsub st2,st0", |a| a.fsub_2(st2, st0)),
            ("fsubr st4,st0", |a| a.fsubr_2(st4, st0)),
            ("fdiv st0,st7", |a| a.fdiv_2(st0, st7)),
            ("fdivr st6,st0", |a| a.fdivr_2(st6, st0)),
            ("faddp", |a| a.faddp(st1, st0)),
            ("fsubp", |a| a.fsubp(st3, st0)),
            ("fsubrp", |a| a.fsubrp(st2, st0)),
            ("fdivp", |a| a.fdivp(st1, st0)),
            ("fdivrp", |a| a.fdivrp(st5, st0)),
            ("fmulp", |a| a.fmulp(st7, st0)),
            ("fld st4", |a| a.fld(st4)),
            ("fst st2", |a| a.fst(st2)),
            ("fstp st3", |a| a.fstp(st3)),
            ("fxch st5", |a| a.fxch(st0, st5)),
            ("ffree st1", |a| a.ffree(st1)),
            ("fcom st2", |a| a.fcom_2(st0, st2)),
            ("fucomp st1", |a| a.fucomp(st0, st1)),
            ("fcompp", |a| a.fcompp()),
            ("fucompp", |a| a.fucompp()),
            ("fcomi", |a| a.fcomi(st0, st1)),
            ("fucomi", |a| a.fucomi(st0, st6)),
            ("fcomip", |a| a.fcomip(st0, st2)),
            ("fucomip", |a| a.fucomip(st0, st3)),
            ("fcmovb", |a| a.fcmovb(st0, st1)),
            ("fcmovne", |a| a.fcmovne(st0, st4)),
            ("fcmovnbe", |a| a.fcmovnbe(st0, st7)),
            ("fcmovu", |a| a.fcmovu(st0, st2)),
        ],
        2300,
    );
}

#[test]
fn test_diff_x87_functions() {
    run_all(
        &[
            ("fchs fabs", |a| {
                a.fchs()?;
                a.fabs()
            }),
            ("ftst", |a| a.ftst()),
            ("fxam", |a| a.fxam()),
            ("f2xm1", |a| a.f2xm1()),
            ("fyl2x", |a| a.fyl2x()),
            ("fyl2xp1", |a| a.fyl2xp1()),
            ("fptan", |a| a.fptan()),
            ("fpatan", |a| a.fpatan()),
            ("fxtract", |a| a.fxtract()),
            ("fprem", |a| a.fprem()),
            ("fprem1", |a| a.fprem1()),
            ("fsqrt", |a| a.fsqrt()),
            ("fsincos", |a| a.fsincos()),
            ("fsin fcos", |a| {
                a.fsin()?;
                a.fcos()
            }),
            ("frndint", |a| a.frndint()),
            ("fscale", |a| a.fscale()),
            ("fincstp fdecstp", |a| {
                a.fincstp()?;
                a.fincstp()?;
                a.fdecstp()
            }),
            ("fnop", |a| a.fnop()),
        ],
        2400,
    );
}

#[test]
fn test_diff_x87_control_and_environment() {
    run_all(
        &[
            ("fnstsw ax", |a| a.fnstsw(ax)),
            ("fnstsw m", |a| a.fnstsw(word_ptr(rsi))),
            ("fnstcw", |a| a.fnstcw(word_ptr(rsi))),
            // A random control word may unmask a pending exception: only non-waiting
            // instructions follow (the harness's FXSAVE and FNINIT).
            ("fldcw", |a| a.fldcw(word_ptr(rsi))),
            ("fnclex", |a| a.fnclex()),
            ("fninit", |a| a.fninit()),
            ("fldenv", |a| a.fldenv(ptr(rsi + 8))),
            ("frstor", |a| a.frstor(ptr(rsi + 4))),
            ("fxrstor64", |a| {
                a.mov(dword_ptr(rsi + 24), 0x1f80)?;
                a.fxrstor64(ptr(rsi))
            }),
            ("fxrstor", |a| {
                a.mov(dword_ptr(rsi + 0x80 + 24), 0x9fc0)?;
                a.fxrstor(ptr(rsi + 0x80))
            }),
        ],
        2500,
    );
}

/// The stored images: the error-pointer fields and MXCSR_MASK are where vendors
/// differ, normalised on hosts that differ from gasang's model (`oracle::vendor`).
const IMAGES: [(&str, Emit, usize, Image); 4] = [
    (
        "fnstenv",
        |a| a.fnstenv(ptr(rsi + 8)),
        8,
        Image::Environment,
    ),
    ("fnsave", |a| a.fnsave(ptr(rsi + 4)), 4, Image::Environment),
    ("fxsave64", |a| a.fxsave64(ptr(rsi)), 0, Image::Fxsave64),
    ("fxsave", |a| a.fxsave(ptr(rsi + 0x80)), 0x80, Image::Fxsave),
];

#[test]
fn test_diff_x87_stored_environments_and_fxsave_images() {
    for (i, (name, op, offset, image)) in IMAGES.into_iter().enumerate() {
        let code = aligned(op);
        check_images(name, &code, 2550 + i as u64, |_| ALL, &[(offset, image)]);
    }
}

/// A difference planted in a real image is caught after normalisation: the same FXSAVE
/// and FNSTENV run natively and in software from one state, normalised, compare equal;
/// one bit changed in a field no vendor normalisation touches (FSW, MXCSR_MASK's DAZ
/// bit) or, on hosts that save it as gasang's model does, in FIP, makes them differ.
#[test]
fn test_diff_x87_planted_image_difference_is_caught() {
    let host = Host::this();
    for (name, op, offset, image) in [IMAGES[0], IMAGES[2]] {
        let code = aligned(op);
        let mut data = vec![0u8; DATA_LEN];
        let mut regs = Regs::default();
        regs.gpr[6] = data.as_ptr() as u64;
        let (_, soft) = Soft::new(&code, data.as_ptr() as u64, DATA_LEN).run(&regs, &data);
        Native::new(&code).run(&mut regs);
        let at = aligned_offset(&data) + offset;
        host.normalise(&mut data, &soft, at, image);
        assert_eq!(data, soft, "{name}: the same image");
        let fsw = if image == Image::Environment { 4 } else { 2 };
        let mut fields = vec![
            (fsw, 0x01),
            (if image == Image::Environment { 8 } else { 28 }, 0x40),
        ];
        if host.saves_pointers() {
            fields.push((if image == Image::Environment { 12 } else { 8 }, 0x10));
        }
        for (field, bit) in fields {
            let mut planted = soft.clone();
            planted[at + field] ^= bit;
            let mut native = data.clone();
            host.normalise(&mut native, &planted, at, image);
            assert_ne!(native, planted, "{name}: byte {field} bit {bit:#x} planted");
        }
    }
}

/// Every MMX instruction, and the SSE2 ones that complete the set.
const MMX: &[(&str, Emit)] = &[
    ("paddb", |a| a.paddb(mm0, mm1)),
    ("paddsw", |a| a.paddsw(mm2, mm3)),
    ("psubusb m", |a| a.psubusb(mm4, qword_ptr(rsi))),
    ("psubq", |a| a.psubq(mm5, mm6)),
    ("paddq", |a| a.paddq(mm7, mm0)),
    ("pmullw", |a| a.pmullw(mm1, mm2)),
    ("pmulhw", |a| a.pmulhw(mm3, mm4)),
    ("pmaddwd", |a| a.pmaddwd(mm5, mm6)),
    ("pmuludq", |a| a.pmuludq(mm7, mm1)),
    ("pcmpgtw", |a| a.pcmpgtw(mm0, mm2)),
    ("pcmpeqb", |a| a.pcmpeqb(mm3, mm3)),
    ("pand pandn por pxor", |a| {
        a.pand(mm0, mm1)?;
        a.pandn(mm2, mm3)?;
        a.por(mm4, mm5)?;
        a.pxor(mm6, mm7)
    }),
    ("packsswb", |a| a.packsswb(mm0, mm1)),
    ("packssdw", |a| a.packssdw(mm2, mm3)),
    ("packuswb", |a| a.packuswb(mm4, mm5)),
    ("punpcklbw m32", |a| a.punpcklbw(mm6, dword_ptr(rsi))),
    ("punpckhbw", |a| a.punpckhbw(mm7, mm0)),
    ("punpckhwd", |a| a.punpckhwd(mm1, mm2)),
    ("punpckhdq", |a| a.punpckhdq(mm3, mm4)),
    ("punpckldq", |a| a.punpckldq(mm5, mm6)),
    ("psllw imm", |a| a.psllw(mm0, 3)),
    ("psrlq mm", |a| a.psrlq(mm1, mm2)),
    ("psrad imm", |a| a.psrad(mm3, 40)),
    ("psraw m", |a| a.psraw(mm4, qword_ptr(rsi))),
    ("pavgb pavgw", |a| {
        a.pavgb(mm0, mm1)?;
        a.pavgw(mm2, mm3)
    }),
    ("pminub pmaxsw", |a| {
        a.pminub(mm4, mm5)?;
        a.pmaxsw(mm6, mm7)
    }),
    ("psadbw", |a| a.psadbw(mm0, mm1)),
    ("pmulhuw", |a| a.pmulhuw(mm2, mm3)),
    ("pshufw", |a| a.pshufw(mm4, mm5, 0x1b)),
    ("pmovmskb", |a| a.pmovmskb(eax, mm6)),
    ("pextrw", |a| a.pextrw(ecx, mm7, 2)),
    ("pinsrw", |a| a.pinsrw(mm0, edx, 3)),
    ("pinsrw m", |a| a.pinsrw(mm1, word_ptr(rsi), 1)),
    ("movd", |a| {
        a.movd(mm2, eax)?;
        a.movd(ecx, mm3)?;
        a.movd(dword_ptr(rsi), mm4)
    }),
    ("movq", |a| {
        a.movq(mm5, rax)?;
        a.movq(rcx, mm6)?;
        a.movq(qword_ptr(rsi + 8), mm7)?;
        a.movq(mm0, qword_ptr(rsi + 16))?;
        a.movq(mm1, mm2)
    }),
    ("movntq", |a| a.movntq(qword_ptr(rsi), mm3)),
    ("movq2dq movdq2q", |a| {
        a.movq2dq(xmm0, mm4)?;
        a.movdq2q(mm5, xmm1)
    }),
    ("maskmovq", |a| {
        a.mov(rdi, rsi)?;
        a.maskmovq(mm6, mm7)
    }),
    ("cvtpi2ps", |a| a.cvtpi2ps(xmm2, mm0)),
    ("cvtpi2pd m", |a| a.cvtpi2pd(xmm3, qword_ptr(rsi))),
    ("cvtps2pi", |a| a.cvtps2pi(mm1, xmm4)),
    ("cvttps2pi", |a| a.cvttps2pi(mm2, xmm5)),
    ("cvtpd2pi", |a| a.cvtpd2pi(mm3, xmm6)),
    ("cvttpd2pi m", |a| a.cvttpd2pi(mm4, xmmword_ptr(rsi))),
    ("emms", |a| {
        a.paddb(mm0, mm1)?;
        a.emms()
    }),
    ("pmaddwd xmm", |a| a.pmaddwd(xmm0, xmm1)),
    ("pextrw xmm", |a| a.pextrw(eax, xmm2, 5)),
    ("pinsrw xmm", |a| a.pinsrw(xmm3, ecx, 6)),
    ("maskmovdqu", |a| {
        a.mov(rdi, rsi)?;
        a.maskmovdqu(xmm4, xmm5)
    }),
    ("movnti", |a| a.movnti(qword_ptr(rsi), rax)),
];

#[test]
fn test_diff_mmx_and_last_sse2() {
    run_all(MMX, 2600);
}

/// An unmasked exception is raised (#MF) by the next waiting instruction, not by the
/// one that caused it; FNSTSW still reads the status.
#[test]
fn test_soft_x87_unmasked_exception_waits_for_next_instruction() {
    use gasang_softcpu::{Cpu, CpuState, Exception, FlatMemory, Memory};
    let code = asm(|a| {
        a.fldz()?;
        a.fld1()?;
        a.fdiv_2(st0, st1)?; // 1 / 0: ZE
        a.fnstsw(ax)?;
        a.wait()
    });
    let mut mem = FlatMemory::new();
    mem.map(0x40_0000, code);
    let mut state = CpuState::long_mode(0x40_0000);
    state.x87.fcw = 0x037f & !0x4; // ZE unmasked
    let mut cpu = Cpu::new(state);
    for _ in 0..4 {
        cpu.step(&mut mem).unwrap();
    }
    let fsw = cpu.state.gpr[0] as u16;
    assert_eq!(fsw & 0x84, 0x84, "ZE and ES in {fsw:#x}");
    let rip = cpu.state.rip;
    assert_eq!(cpu.step(&mut mem), Err(Exception::FloatingPoint));
    assert_eq!(cpu.state.rip, rip, "FWAIT faults precisely");
    let _ = mem.code_version(0);
}
