//! x87 arithmetic runs on the host's own x87 unit (gasang runs on x86-64 hosts only), so
//! 80-bit results, rounding, precision control, condition codes and the transcendental
//! instructions are exactly the hardware's.
//!
//! Each stub saves the host's x87/SSE state, loads the guest's image (every exception
//! masked, so nothing traps), runs one instruction on a host buffer standing in for the
//! guest's memory operand, saves the image back and restores the host's state.

use core::arch::asm;

use iced_x86::Code;

/// An FXSAVE64 image, aligned as FXSAVE and FXRSTOR require.
#[repr(C, align(16))]
pub(super) struct FxImage(pub [u8; crate::x87::FXSAVE_LEN]);

/// The largest x87 memory operand: FNSAVE's 108 bytes.
pub(super) const OPERAND_LEN: usize = 108;

/// A host stand-in for a memory operand.
pub(super) type Operand = [u8; OPERAND_LEN];

/// Runs one instruction on an image and an operand. `flags` holds the guest's
/// SF/ZF/AF/PF/CF in bits 8..16 (as LAHF/SAHF place them) going in, for FCMOVcc, and
/// the host's after the instruction coming out, for FCOMI.
pub(super) type Stub = fn(&mut FxImage, &mut Operand, u16) -> u16;

/// Runs `$body` between loading `$image` and saving it, as described above.
macro_rules! host_x87 {
    ($image:expr, $flags:expr, $body:expr, $($operands:tt)*) => {{
        let mut host = FxImage([0; crate::x87::FXSAVE_LEN]);
        let mut flags: u16 = $flags;
        // SAFETY: both areas are 512 bytes, 16-byte aligned and writable. The image's
        // MXCSR is the reset value (the caller builds it so), the only thing FXRSTOR
        // checks. The image's control word masks every x87 exception and its summary
        // bit is clear, so the instruction cannot trap; it touches at most the
        // OPERAND_LEN bytes of the operand buffer. The host's state is restored last.
        unsafe {
            asm!(
                "fxsave64 [{host}]",
                "fxrstor64 [{image}]",
                "sahf",
                $body,
                "lahf",
                "fxsave64 [{image}]",
                "fxrstor64 [{host}]",
                host = in(reg) host.0.as_mut_ptr(),
                image = in(reg) $image.0.as_mut_ptr(),
                $($operands)*
                inout("ax") flags,
                options(nostack),
            );
        }
        flags
    }};
}

/// Builds [`stub`] from three lists: instructions with a memory operand (`{m}` in the
/// template), with a register ST(i) (`{i}`), and with neither.
macro_rules! stubs {
    (
        memory { $($mcode:pat => $masm:literal,)* }
        registers { $($rcode:pat => $rasm:literal,)* }
        none { $($ncode:pat => $nasm:literal,)* }
    ) => {
        /// The stub for `code`, whose ST(i) operand (if any) is `i`; `None` for an
        /// instruction not run on the host.
        pub(super) fn stub(code: Code, i: usize) -> Option<Stub> {
            Some(match code {
                $($mcode => {
                    fn run(image: &mut FxImage, m: &mut Operand, flags: u16) -> u16 {
                        host_x87!(image, flags, $masm, m = in(reg) m.as_mut_ptr(),)
                    }
                    run
                })*
                $($rcode => {
                    fn run<const I: usize>(image: &mut FxImage, _: &mut Operand, flags: u16) -> u16 {
                        host_x87!(image, flags, $rasm, i = const I,)
                    }
                    const RUN: [Stub; 8] = [
                        run::<0>, run::<1>, run::<2>, run::<3>,
                        run::<4>, run::<5>, run::<6>, run::<7>,
                    ];
                    RUN[i % 8]
                })*
                $($ncode => {
                    fn run(image: &mut FxImage, _: &mut Operand, flags: u16) -> u16 {
                        host_x87!(image, flags, $nasm,)
                    }
                    run
                })*
                _ => return None,
            })
        }
    };
}

stubs! {
    memory {
        Code::Fadd_m32fp => "fadd dword ptr [{m}]",
        Code::Fmul_m32fp => "fmul dword ptr [{m}]",
        Code::Fcom_m32fp => "fcom dword ptr [{m}]",
        Code::Fcomp_m32fp => "fcomp dword ptr [{m}]",
        Code::Fsub_m32fp => "fsub dword ptr [{m}]",
        Code::Fsubr_m32fp => "fsubr dword ptr [{m}]",
        Code::Fdiv_m32fp => "fdiv dword ptr [{m}]",
        Code::Fdivr_m32fp => "fdivr dword ptr [{m}]",
        Code::Fld_m32fp => "fld dword ptr [{m}]",
        Code::Fst_m32fp => "fst dword ptr [{m}]",
        Code::Fstp_m32fp => "fstp dword ptr [{m}]",
        Code::Fadd_m64fp => "fadd qword ptr [{m}]",
        Code::Fmul_m64fp => "fmul qword ptr [{m}]",
        Code::Fcom_m64fp => "fcom qword ptr [{m}]",
        Code::Fcomp_m64fp => "fcomp qword ptr [{m}]",
        Code::Fsub_m64fp => "fsub qword ptr [{m}]",
        Code::Fsubr_m64fp => "fsubr qword ptr [{m}]",
        Code::Fdiv_m64fp => "fdiv qword ptr [{m}]",
        Code::Fdivr_m64fp => "fdivr qword ptr [{m}]",
        Code::Fld_m64fp => "fld qword ptr [{m}]",
        Code::Fst_m64fp => "fst qword ptr [{m}]",
        Code::Fstp_m64fp => "fstp qword ptr [{m}]",
        Code::Fld_m80fp => "fld tbyte ptr [{m}]",
        Code::Fstp_m80fp => "fstp tbyte ptr [{m}]",
        Code::Fiadd_m16int => "fiadd word ptr [{m}]",
        Code::Fimul_m16int => "fimul word ptr [{m}]",
        Code::Ficom_m16int => "ficom word ptr [{m}]",
        Code::Ficomp_m16int => "ficomp word ptr [{m}]",
        Code::Fisub_m16int => "fisub word ptr [{m}]",
        Code::Fisubr_m16int => "fisubr word ptr [{m}]",
        Code::Fidiv_m16int => "fidiv word ptr [{m}]",
        Code::Fidivr_m16int => "fidivr word ptr [{m}]",
        Code::Fild_m16int => "fild word ptr [{m}]",
        Code::Fist_m16int => "fist word ptr [{m}]",
        Code::Fistp_m16int => "fistp word ptr [{m}]",
        Code::Fisttp_m16int => "fisttp word ptr [{m}]",
        Code::Fiadd_m32int => "fiadd dword ptr [{m}]",
        Code::Fimul_m32int => "fimul dword ptr [{m}]",
        Code::Ficom_m32int => "ficom dword ptr [{m}]",
        Code::Ficomp_m32int => "ficomp dword ptr [{m}]",
        Code::Fisub_m32int => "fisub dword ptr [{m}]",
        Code::Fisubr_m32int => "fisubr dword ptr [{m}]",
        Code::Fidiv_m32int => "fidiv dword ptr [{m}]",
        Code::Fidivr_m32int => "fidivr dword ptr [{m}]",
        Code::Fild_m32int => "fild dword ptr [{m}]",
        Code::Fist_m32int => "fist dword ptr [{m}]",
        Code::Fistp_m32int => "fistp dword ptr [{m}]",
        Code::Fisttp_m32int => "fisttp dword ptr [{m}]",
        Code::Fild_m64int => "fild qword ptr [{m}]",
        Code::Fistp_m64int => "fistp qword ptr [{m}]",
        Code::Fisttp_m64int => "fisttp qword ptr [{m}]",
        Code::Fbld_m80bcd => "fbld tbyte ptr [{m}]",
        Code::Fbstp_m80bcd => "fbstp tbyte ptr [{m}]",
        Code::Fldenv_m28byte => "fldenv [{m}]",
        Code::Fnstenv_m28byte | Code::Fstenv_m28byte => "fnstenv [{m}]",
        Code::Frstor_m108byte => "frstor [{m}]",
        Code::Fnsave_m108byte | Code::Fsave_m108byte => "fnsave [{m}]",
    }
    registers {
        Code::Fadd_st0_sti => "fadd st(0), st({i})",
        Code::Fmul_st0_sti => "fmul st(0), st({i})",
        Code::Fcom_st0_sti | Code::Fcom_st0_sti_DCD0 => "fcom st({i})",
        Code::Fcomp_st0_sti | Code::Fcomp_st0_sti_DCD8 | Code::Fcomp_st0_sti_DED0 => "fcomp st({i})",
        Code::Fsub_st0_sti => "fsub st(0), st({i})",
        Code::Fsubr_st0_sti => "fsubr st(0), st({i})",
        Code::Fdiv_st0_sti => "fdiv st(0), st({i})",
        Code::Fdivr_st0_sti => "fdivr st(0), st({i})",
        Code::Fadd_sti_st0 => "fadd st({i}), st(0)",
        Code::Fmul_sti_st0 => "fmul st({i}), st(0)",
        Code::Fsub_sti_st0 => "fsub st({i}), st(0)",
        Code::Fsubr_sti_st0 => "fsubr st({i}), st(0)",
        Code::Fdiv_sti_st0 => "fdiv st({i}), st(0)",
        Code::Fdivr_sti_st0 => "fdivr st({i}), st(0)",
        Code::Faddp_sti_st0 => "faddp st({i}), st(0)",
        Code::Fmulp_sti_st0 => "fmulp st({i}), st(0)",
        Code::Fsubp_sti_st0 => "fsubp st({i}), st(0)",
        Code::Fsubrp_sti_st0 => "fsubrp st({i}), st(0)",
        Code::Fdivp_sti_st0 => "fdivp st({i}), st(0)",
        Code::Fdivrp_sti_st0 => "fdivrp st({i}), st(0)",
        Code::Fld_sti => "fld st({i})",
        Code::Fst_sti => "fst st({i})",
        Code::Fstp_sti | Code::Fstpnce_sti | Code::Fstp_sti_DFD0 | Code::Fstp_sti_DFD8 => "fstp st({i})",
        Code::Fxch_st0_sti | Code::Fxch_st0_sti_DDC8 | Code::Fxch_st0_sti_DFC8 => "fxch st({i})",
        Code::Ffree_sti => "ffree st({i})",
        Code::Ffreep_sti => "ffreep st({i})",
        Code::Fucom_st0_sti => "fucom st({i})",
        Code::Fucomp_st0_sti => "fucomp st({i})",
        Code::Fcomi_st0_sti => "fcomi st(0), st({i})",
        Code::Fcomip_st0_sti => "fcomip st(0), st({i})",
        Code::Fucomi_st0_sti => "fucomi st(0), st({i})",
        Code::Fucomip_st0_sti => "fucomip st(0), st({i})",
        Code::Fcmovb_st0_sti => "fcmovb st(0), st({i})",
        Code::Fcmove_st0_sti => "fcmove st(0), st({i})",
        Code::Fcmovbe_st0_sti => "fcmovbe st(0), st({i})",
        Code::Fcmovu_st0_sti => "fcmovu st(0), st({i})",
        Code::Fcmovnb_st0_sti => "fcmovnb st(0), st({i})",
        Code::Fcmovne_st0_sti => "fcmovne st(0), st({i})",
        Code::Fcmovnbe_st0_sti => "fcmovnbe st(0), st({i})",
        Code::Fcmovnu_st0_sti => "fcmovnu st(0), st({i})",
    }
    none {
        Code::Fnop => "fnop",
        Code::Fchs => "fchs",
        Code::Fabs => "fabs",
        Code::Ftst => "ftst",
        Code::Fxam => "fxam",
        Code::Fld1 => "fld1",
        Code::Fldl2t => "fldl2t",
        Code::Fldl2e => "fldl2e",
        Code::Fldpi => "fldpi",
        Code::Fldlg2 => "fldlg2",
        Code::Fldln2 => "fldln2",
        Code::Fldz => "fldz",
        Code::F2xm1 => "f2xm1",
        Code::Fyl2x => "fyl2x",
        Code::Fptan => "fptan",
        Code::Fpatan => "fpatan",
        Code::Fxtract => "fxtract",
        Code::Fprem1 => "fprem1",
        Code::Fdecstp => "fdecstp",
        Code::Fincstp => "fincstp",
        Code::Fprem => "fprem",
        Code::Fyl2xp1 => "fyl2xp1",
        Code::Fsqrt => "fsqrt",
        Code::Fsincos => "fsincos",
        Code::Frndint => "frndint",
        Code::Fscale => "fscale",
        Code::Fsin => "fsin",
        Code::Fcos => "fcos",
        Code::Fucompp => "fucompp",
        Code::Fcompp => "fcompp",
    }
}
