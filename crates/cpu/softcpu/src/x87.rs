//! The x87 floating-point unit's state, which the MMX registers alias, and its FXSAVE
//! image (the form the guest saves and restores it in, and the host loads it from).

/// FCW after FNINIT: every exception masked, 64-bit precision, round to nearest.
pub const FCW_INIT: u16 = 0x037f;
/// A control word as loaded: bit 6 reads as one, bits 7 and 13..16 as zero.
pub fn loaded_fcw(value: u16) -> u16 {
    (value & 0x1f3f) | 0x40
}

/// FSW: the exception flags (IE, DE, ZE, OE, UE, PE) and their masks in FCW.
pub const FSW_EXCEPTIONS: u16 = 0x3f;
/// FSW: exception summary (ES) and busy (B), set while an unmasked exception is pending.
pub const FSW_PENDING: u16 = (1 << 7) | (1 << 15);
/// FSW: the top-of-stack field.
const FSW_TOP: u16 = 7 << 11;
/// Bits 64..80 of an 80-bit register: sign and exponent, all ones once MMX writes it.
const MMX_EXPONENT: u128 = 0xffff << 64;
/// The 80 bits of a register.
const REGISTER_BITS: u128 = (1 << 80) - 1;

/// Size of an FXSAVE area.
pub const FXSAVE_LEN: usize = 512;

/// The x87 unit: control, status, tags, last-instruction pointers and eight registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X87State {
    /// Control word.
    pub fcw: u16,
    /// Status word (TOP in bits 11..14).
    pub fsw: u16,
    /// Abridged tag word, as FXSAVE stores it: bit `i` set if physical register `i`
    /// holds a value.
    pub ftw: u8,
    /// Last opcode. Like recent CPUs, it is kept only for an unmasked exception, and
    /// this CPU stores 0 even then.
    pub fop: u16,
    /// Address of the last non-control x87 instruction.
    pub fip: u64,
    /// Address of its memory operand.
    pub fdp: u64,
    /// Physical registers R0..R7 (not stack order), 80 bits each; MMn is Rn's low half.
    pub regs: [u128; 8],
}

impl Default for X87State {
    fn default() -> Self {
        Self {
            fcw: FCW_INIT,
            fsw: 0,
            ftw: 0,
            fop: 0,
            fip: 0,
            fdp: 0,
            regs: [0; 8],
        }
    }
}

/// The little-endian u16 at `at` of a saved image.
pub(crate) fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The little-endian u32 at `at` of a saved image.
pub(crate) fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl X87State {
    /// The stack top: ST(i) is physical register `(top + i) % 8`.
    pub fn top(&self) -> usize {
        usize::from((self.fsw & FSW_TOP) >> 11)
    }

    /// ST(i), 80 bits.
    pub fn st(&self, i: usize) -> u128 {
        self.regs[(self.top() + i) % 8]
    }

    /// MMn.
    pub fn mm(&self, n: usize) -> u64 {
        self.regs[n % 8] as u64
    }

    /// Writes MMn; its sign and exponent become all ones, as on hardware.
    pub fn set_mm(&mut self, n: usize, value: u64) {
        self.regs[n % 8] = u128::from(value) | MMX_EXPONENT;
    }

    /// What every MMX instruction but EMMS does first: TOP becomes 0 and every register
    /// is tagged valid.
    pub fn enter_mmx(&mut self) {
        self.fsw &= !FSW_TOP;
        self.ftw = 0xff;
    }

    /// Sets ES and B from the exception flags the control word leaves unmasked.
    pub fn summarize(&mut self) {
        let unmasked = self.fsw & FSW_EXCEPTIONS & !self.fcw;
        if unmasked == 0 {
            self.fsw &= !FSW_PENDING;
        } else {
            self.fsw |= FSW_PENDING;
        }
    }

    /// An unmasked exception waits for the next waiting x87 or MMX instruction (#MF).
    pub fn pending(&self) -> bool {
        self.fsw & FSW_PENDING != 0
    }

    /// Writes the x87 part (bytes 0..24 and 32..160) of an FXSAVE image. `wide` is the
    /// 64-bit format (FXSAVE64); the other stores 32-bit pointers and zero selectors.
    pub fn save(&self, out: &mut [u8], wide: bool) {
        out[0..2].copy_from_slice(&self.fcw.to_le_bytes());
        out[2..4].copy_from_slice(&self.fsw.to_le_bytes());
        out[4] = self.ftw;
        out[5] = 0;
        out[6..8].copy_from_slice(&self.fop.to_le_bytes());
        if wide {
            out[8..16].copy_from_slice(&self.fip.to_le_bytes());
            out[16..24].copy_from_slice(&self.fdp.to_le_bytes());
        } else {
            out[8..16].copy_from_slice(&(self.fip & 0xffff_ffff).to_le_bytes());
            out[16..24].copy_from_slice(&(self.fdp & 0xffff_ffff).to_le_bytes());
        }
        for i in 0..8 {
            let at = 32 + 16 * i;
            out[at..at + 16].copy_from_slice(&(self.st(i) & REGISTER_BITS).to_le_bytes());
        }
    }

    /// Reads the x87 part of an FXSAVE image (see [`Self::save`]).
    pub fn restore(bytes: &[u8], wide: bool) -> Self {
        let pointer = |at| {
            let v = le64(bytes, at);
            if wide {
                v
            } else {
                v & 0xffff_ffff
            }
        };
        let mut state = Self {
            fcw: le16(bytes, 0),
            fsw: le16(bytes, 2),
            ftw: bytes[4],
            fop: le16(bytes, 6) & 0x7ff,
            fip: pointer(8),
            fdp: pointer(16),
            regs: [0; 8],
        };
        let top = state.top();
        for i in 0..8 {
            let at = 32 + 16 * i;
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes[at..at + 16]);
            state.regs[(top + i) % 8] = u128::from_le_bytes(b) & REGISTER_BITS;
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_x87_image_round_trips_in_stack_order() {
        let mut st = X87State {
            fsw: 5 << 11,
            ftw: 0b1110_0000,
            fip: 0x1234_5678_9abc,
            ..Default::default()
        };
        for (i, r) in st.regs.iter_mut().enumerate() {
            *r = 0x4000_8000_0000_0000_0000 + i as u128;
        }
        let mut image = [0u8; FXSAVE_LEN];
        st.save(&mut image, true);
        // ST(0) is R5.
        assert_eq!(image[32], 5);
        assert_eq!(X87State::restore(&image, true), st);
        let narrow = X87State::restore(&image, false);
        assert_eq!(narrow.fip, 0x5678_9abc);
    }

    #[test]
    fn test_mmx_writes_set_the_exponent_and_reset_top() {
        let mut st = X87State {
            fsw: 3 << 11,
            ..Default::default()
        };
        st.enter_mmx();
        st.set_mm(2, 0xdead_beef);
        assert_eq!(st.top(), 0);
        assert_eq!(st.ftw, 0xff);
        assert_eq!(st.st(2), 0xffff_0000_0000_dead_beef);
        assert_eq!(st.mm(2), 0xdead_beef);
    }

    #[test]
    fn test_summary_follows_unmasked_flags() {
        let mut st = X87State {
            fcw: FCW_INIT & !0x4,
            fsw: 0x4,
            ..Default::default()
        };
        st.summarize();
        assert!(st.pending());
        st.fcw = FCW_INIT;
        st.summarize();
        assert!(!st.pending());
    }
}
