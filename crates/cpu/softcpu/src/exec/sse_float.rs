//! SSE/SSE2 floating point: each operation runs as the same instruction on the host
//! (gasang runs on x86-64 hosts only), with the guest's MXCSR controls (rounding, DAZ,
//! FTZ) and every exception masked, so the result and the exception flags are exactly
//! what the hardware gives. The flags are merged into the guest's MXCSR; a flag the
//! guest left unmasked raises #XM instead of writing the result, as on hardware.

use core::arch::asm;
use core::arch::x86_64::__m128i;

use iced_x86::{Mnemonic, OpKind};

use super::Exec;
use crate::cpu::Exception;
use crate::flags::Flags;

/// MXCSR: exception flags (bits 0-5) and their masks (bits 7-12).
const FLAGS: u32 = 0x3f;
const MASKS: u32 = 0x1f80;
/// The bits a guest may set (DAZ, FTZ and the rest); others make LDMXCSR #GP.
pub(super) const MXCSR_MASK: u32 = 0xffff;

fn to_m128(v: u128) -> __m128i {
    // SAFETY: __m128i and u128 are both 16 bytes of plain data.
    unsafe { core::mem::transmute::<u128, __m128i>(v) }
}

fn from_m128(v: __m128i) -> u128 {
    // SAFETY: as above.
    unsafe { core::mem::transmute::<__m128i, u128>(v) }
}

/// Runs `$template` (one SSE instruction on `$operands`) on the host under `$controls`
/// (a full MXCSR with every exception masked); evaluates to the MXCSR after it, whose
/// flags are the exceptions the instruction raised. The host's own MXCSR is restored.
macro_rules! under_mxcsr {
    ($controls:expr, $template:expr, $($operands:tt)*) => {{
        let mut csr: u32 = $controls;
        let mut saved: u32 = 0;
        // SAFETY: the template is one SSE instruction on the given registers; the host's
        // MXCSR is saved before and restored after, and every exception is masked while
        // it runs, so nothing traps. `csr` and `saved` are valid, writable u32s.
        unsafe {
            asm!(
                "stmxcsr [{saved}]",
                "ldmxcsr [{csr}]",
                $template,
                "stmxcsr [{csr}]",
                "ldmxcsr [{saved}]",
                csr = in(reg) &mut csr,
                saved = in(reg) &mut saved,
                $($operands)*
            );
        }
        csr
    }};
}

/// `dst = op(dst, src)` on the host; returns the result and the MXCSR after it.
macro_rules! host {
    ($template:expr, $a:expr, $b:expr, $controls:expr) => {{
        let mut a = to_m128($a);
        let b = to_m128($b);
        let csr = under_mxcsr!(
            $controls,
            $template,
            a = inout(xmm_reg) a,
            b = in(xmm_reg) b,
            options(nostack),
        );
        (from_m128(a), csr)
    }};
}

/// A compare with predicate `$imm` (0..=7).
macro_rules! compare {
    ($insn:literal, $imm:expr, $a:expr, $b:expr, $c:expr) => {
        match $imm & 7 {
            0 => host!(concat!($insn, " {a}, {b}, 0"), $a, $b, $c),
            1 => host!(concat!($insn, " {a}, {b}, 1"), $a, $b, $c),
            2 => host!(concat!($insn, " {a}, {b}, 2"), $a, $b, $c),
            3 => host!(concat!($insn, " {a}, {b}, 3"), $a, $b, $c),
            4 => host!(concat!($insn, " {a}, {b}, 4"), $a, $b, $c),
            5 => host!(concat!($insn, " {a}, {b}, 5"), $a, $b, $c),
            6 => host!(concat!($insn, " {a}, {b}, 6"), $a, $b, $c),
            _ => host!(concat!($insn, " {a}, {b}, 7"), $a, $b, $c),
        }
    };
}

impl Exec<'_> {
    /// The host MXCSR to compute under: the guest's controls, every exception masked.
    fn controls(&self) -> u32 {
        (self.st.mxcsr & !FLAGS) | MASKS
    }

    /// Merges `raised` flags; #XM if the guest left one of them unmasked.
    fn raise(&mut self, raised: u32) -> Result<(), Exception> {
        let raised = raised & FLAGS;
        self.st.mxcsr |= raised;
        let unmasked = !(self.st.mxcsr >> 7) & FLAGS;
        if raised & unmasked != 0 {
            return Err(Exception::SimdFloatingPoint);
        }
        Ok(())
    }
}

/// Floating-point SSE/SSE2; `None` if `m` is not one of them.
pub fn execute(cx: &mut Exec<'_>, m: Mnemonic) -> Option<Result<(), Exception>> {
    use Mnemonic::*;
    Some(match m {
        Movss | Movsd => scalar_move(cx, if m == Movss { 32 } else { 64 }),
        Movhps | Movhpd | Movlps | Movlpd | Movhlps | Movlhps => half_move(cx, m),
        Ldmxcsr => ldmxcsr(cx),
        Stmxcsr => {
            let v = u64::from(cx.st.mxcsr);
            cx.write(0, v)
        }
        Comiss | Ucomiss | Comisd | Ucomisd => compare_flags(cx, m),
        Cvtsi2ss | Cvtsi2sd => int_to_float(cx, m),
        Cvtss2si | Cvttss2si | Cvtsd2si | Cvttsd2si => float_to_int(cx, m),
        _ => return arithmetic(cx, m),
    })
}

/// A packed conversion of `b` alone, for the MMX forms, which convert part of a
/// register: flags merge into MXCSR as for any SSE instruction.
pub(super) fn convert(cx: &mut Exec<'_>, m: Mnemonic, b: u128) -> Result<u128, Exception> {
    use Mnemonic::*;
    let c = cx.controls();
    let (r, csr) = match m {
        Cvtdq2ps => host!("cvtdq2ps {a}, {b}", 0, b, c),
        Cvtdq2pd => host!("cvtdq2pd {a}, {b}", 0, b, c),
        Cvtps2dq => host!("cvtps2dq {a}, {b}", 0, b, c),
        Cvttps2dq => host!("cvttps2dq {a}, {b}", 0, b, c),
        Cvtpd2dq => host!("cvtpd2dq {a}, {b}", 0, b, c),
        Cvttpd2dq => host!("cvttpd2dq {a}, {b}", 0, b, c),
        _ => return Err(Exception::InvalidOpcode),
    };
    cx.raise(csr)?;
    Ok(r)
}

/// MOVSS/MOVSD: register to register merges the low element; a load zeroes the rest.
fn scalar_move(cx: &mut Exec<'_>, bits: u32) -> Result<(), Exception> {
    let low = (1u128 << bits) - 1;
    let src = cx.xmm_value(1, false)? & low;
    match (cx.ins.op_kind(0), cx.ins.op_kind(1)) {
        (OpKind::Register, OpKind::Register) => {
            let dst = cx.xmm_value(0, false)?;
            cx.xmm_store(0, (dst & !low) | src, false)
        }
        _ => cx.xmm_store(0, src, false),
    }
}

/// MOVHPS/MOVHPD/MOVLPS/MOVLPD (one half to or from memory), MOVHLPS, MOVLHPS.
fn half_move(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    use Mnemonic::*;
    const LOW: u128 = u64::MAX as u128;
    let src = cx.xmm_value(1, false)?;
    if cx.ins.op_kind(0) == OpKind::Memory {
        let half = if matches!(m, Movhps | Movhpd) {
            src >> 64
        } else {
            src & LOW
        };
        return cx.xmm_store(0, half, false);
    }
    let dst = cx.xmm_value(0, false)?;
    let value = match m {
        Movhps | Movhpd => (dst & LOW) | ((src & LOW) << 64),
        Movlps | Movlpd => (dst & !LOW) | (src & LOW),
        Movhlps => (dst & !LOW) | (src >> 64),
        _ => (dst & LOW) | ((src & LOW) << 64),
    };
    cx.xmm_store(0, value, false)
}

fn ldmxcsr(cx: &mut Exec<'_>) -> Result<(), Exception> {
    let value = cx.read(0)? as u32;
    if value & !MXCSR_MASK != 0 {
        return Err(Exception::GeneralProtection(0));
    }
    cx.st.mxcsr = value;
    Ok(())
}

/// (U)COMISS/(U)COMISD: ZF, PF, CF from the comparison; OF, SF, AF cleared.
fn compare_flags(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    use Mnemonic::*;
    let (a, b, c) = (
        cx.xmm_value(0, false)?,
        cx.xmm_value(1, false)?,
        cx.controls(),
    );
    let (a, b) = (to_m128(a), to_m128(b));
    let rflags: u64;
    // PUSHFQ/POP use the stack (so no `nostack`) and leave it balanced.
    macro_rules! compare_into_rflags {
        ($insn:literal) => {
            under_mxcsr!(
                c,
                concat!($insn, " {a}, {b}\npushfq\npop {f}"),
                a = in(xmm_reg) a,
                b = in(xmm_reg) b,
                f = out(reg) rflags,
            )
        };
    }
    let csr = match m {
        Comiss => compare_into_rflags!("comiss"),
        Ucomiss => compare_into_rflags!("ucomiss"),
        Comisd => compare_into_rflags!("comisd"),
        _ => compare_into_rflags!("ucomisd"),
    };
    cx.raise(csr)?;
    cx.set_flags(Flags::ARITH, rflags & (Flags::ZF | Flags::PF | Flags::CF));
    Ok(())
}

/// `op(dst, integer register)` on the host, as `host!` but with a general register.
macro_rules! host_from_int {
    ($template:expr, $a:expr, $r:expr, $controls:expr) => {{
        let mut a = to_m128($a);
        let r: u64 = $r;
        let csr = under_mxcsr!(
            $controls,
            $template,
            a = inout(xmm_reg) a,
            r = in(reg) r,
            options(nostack),
        );
        (from_m128(a), csr)
    }};
}

/// `integer register = op(xmm)` on the host. The result is a plain `out`, not `lateout`:
/// the pointers to `csr` and `saved` are still used after the instruction writes it.
macro_rules! host_to_int {
    ($template:expr, $b:expr, $controls:expr) => {{
        let b = to_m128($b);
        let r: u64;
        let csr = under_mxcsr!(
            $controls,
            $template,
            r = out(reg) r,
            b = in(xmm_reg) b,
            options(nostack),
        );
        (r, csr)
    }};
}

/// CVTSI2SS/CVTSI2SD xmm, r/m32 or r/m64.
fn int_to_float(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    let (dst, src, c) = (cx.xmm_value(0, false)?, cx.read(1)?, cx.controls());
    let (r, csr) = match (m == Mnemonic::Cvtsi2ss, cx.bits(1) == 64) {
        (true, false) => host_from_int!("cvtsi2ss {a}, {r:e}", dst, src, c),
        (true, true) => host_from_int!("cvtsi2ss {a}, {r}", dst, src, c),
        (false, false) => host_from_int!("cvtsi2sd {a}, {r:e}", dst, src, c),
        (false, true) => host_from_int!("cvtsi2sd {a}, {r}", dst, src, c),
    };
    cx.raise(csr)?;
    cx.xmm_store(0, r, false)
}

/// CVT(T)SS2SI / CVT(T)SD2SI r32 or r64, xmm/m.
fn float_to_int(cx: &mut Exec<'_>, m: Mnemonic) -> Result<(), Exception> {
    use Mnemonic::*;
    let (b, c) = (cx.xmm_value(1, false)?, cx.controls());
    let (r, csr) = match (m, cx.bits(0) == 64) {
        (Cvtss2si, false) => host_to_int!("cvtss2si {r:e}, {b}", b, c),
        (Cvtss2si, true) => host_to_int!("cvtss2si {r}, {b}", b, c),
        (Cvttss2si, false) => host_to_int!("cvttss2si {r:e}, {b}", b, c),
        (Cvttss2si, true) => host_to_int!("cvttss2si {r}, {b}", b, c),
        (Cvtsd2si, false) => host_to_int!("cvtsd2si {r:e}, {b}", b, c),
        (Cvtsd2si, true) => host_to_int!("cvtsd2si {r}, {b}", b, c),
        (_, false) => host_to_int!("cvttsd2si {r:e}, {b}", b, c),
        (_, true) => host_to_int!("cvttsd2si {r}, {b}", b, c),
    };
    cx.raise(csr)?;
    cx.write(0, r)
}

/// Packed and scalar arithmetic, min/max, sqrt, compares and conversions between float
/// formats: `dst = op(dst, src)` (sqrt and conversions read only `src`).
fn arithmetic(cx: &mut Exec<'_>, m: Mnemonic) -> Option<Result<(), Exception>> {
    use Mnemonic::*;
    let run = |cx: &mut Exec<'_>| -> Result<(u128, u32), Exception> {
        let a = cx.xmm_value(0, false)?;
        let aligned = cx.ins.op_kind(1) == OpKind::Memory && cx.ins.memory_size().size() == 16;
        let b = cx.xmm_value(1, aligned)?;
        let c = cx.controls();
        let imm = if cx.ins.op_count() > 2 {
            cx.ins.immediate(2)
        } else {
            0
        };
        Ok(match m {
            Addps => host!("addps {a}, {b}", a, b, c),
            Addpd => host!("addpd {a}, {b}", a, b, c),
            Addss => host!("addss {a}, {b}", a, b, c),
            Addsd => host!("addsd {a}, {b}", a, b, c),
            Subps => host!("subps {a}, {b}", a, b, c),
            Subpd => host!("subpd {a}, {b}", a, b, c),
            Subss => host!("subss {a}, {b}", a, b, c),
            Subsd => host!("subsd {a}, {b}", a, b, c),
            Mulps => host!("mulps {a}, {b}", a, b, c),
            Mulpd => host!("mulpd {a}, {b}", a, b, c),
            Mulss => host!("mulss {a}, {b}", a, b, c),
            Mulsd => host!("mulsd {a}, {b}", a, b, c),
            Divps => host!("divps {a}, {b}", a, b, c),
            Divpd => host!("divpd {a}, {b}", a, b, c),
            Divss => host!("divss {a}, {b}", a, b, c),
            Divsd => host!("divsd {a}, {b}", a, b, c),
            Minps => host!("minps {a}, {b}", a, b, c),
            Minpd => host!("minpd {a}, {b}", a, b, c),
            Minss => host!("minss {a}, {b}", a, b, c),
            Minsd => host!("minsd {a}, {b}", a, b, c),
            Maxps => host!("maxps {a}, {b}", a, b, c),
            Maxpd => host!("maxpd {a}, {b}", a, b, c),
            Maxss => host!("maxss {a}, {b}", a, b, c),
            Maxsd => host!("maxsd {a}, {b}", a, b, c),
            Sqrtps => host!("sqrtps {a}, {b}", a, b, c),
            Sqrtpd => host!("sqrtpd {a}, {b}", a, b, c),
            Sqrtss => host!("sqrtss {a}, {b}", a, b, c),
            Sqrtsd => host!("sqrtsd {a}, {b}", a, b, c),
            Cmpps => compare!("cmpps", imm, a, b, c),
            Cmppd => compare!("cmppd", imm, a, b, c),
            Cmpss => compare!("cmpss", imm, a, b, c),
            Cmpsd => compare!("cmpsd", imm, a, b, c),
            Cvtss2sd => host!("cvtss2sd {a}, {b}", a, b, c),
            Cvtsd2ss => host!("cvtsd2ss {a}, {b}", a, b, c),
            Cvtps2pd => host!("cvtps2pd {a}, {b}", a, b, c),
            Cvtpd2ps => host!("cvtpd2ps {a}, {b}", a, b, c),
            Cvtdq2ps => host!("cvtdq2ps {a}, {b}", a, b, c),
            Cvtps2dq => host!("cvtps2dq {a}, {b}", a, b, c),
            Cvttps2dq => host!("cvttps2dq {a}, {b}", a, b, c),
            Cvtdq2pd => host!("cvtdq2pd {a}, {b}", a, b, c),
            Cvtpd2dq => host!("cvtpd2dq {a}, {b}", a, b, c),
            Cvttpd2dq => host!("cvttpd2dq {a}, {b}", a, b, c),
            _ => return Err(Exception::InvalidOpcode),
        })
    };
    match run(cx) {
        Err(Exception::InvalidOpcode) => None,
        Err(e) => Some(Err(e)),
        Ok((value, csr)) => Some(cx.raise(csr).and_then(|()| cx.xmm_store(0, value, false))),
    }
}
