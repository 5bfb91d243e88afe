//! What the host CPU's vendor decides in an x87 or FXSAVE image, and how the oracle
//! normalises the native image to gasang's model (an Intel CPU with FCS and FDS
//! deprecated, error pointers always saved, no misaligned-SSE mask) before comparing.
//! Each mask is one field, and applies only on hosts that differ there; anything else
//! in the image is still compared byte for byte.

use std::arch::x86_64::__cpuid_count;

/// An image an instruction under test stores in the data buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// FXSAVE64: 64-bit FIP and FDP, no selectors.
    Fxsave64,
    /// FXSAVE: 32-bit FIP and FDP with their selectors FCS and FDS.
    Fxsave,
    /// The 28-byte protected-mode environment of FNSTENV, and FNSAVE's header.
    Environment,
}

/// Where the error-pointer fields are: FOP, FIP, FCS, FDP, FDS as (offset, length);
/// selectors of length 0 where the format has none.
struct Pointers {
    fop: (usize, usize),
    fip: (usize, usize),
    fcs: (usize, usize),
    fdp: (usize, usize),
    fds: (usize, usize),
}

impl Image {
    fn pointers(self) -> Pointers {
        match self {
            Image::Fxsave64 => Pointers {
                fop: (6, 2),
                fip: (8, 8),
                fcs: (0, 0),
                fdp: (16, 8),
                fds: (0, 0),
            },
            Image::Fxsave => Pointers {
                fop: (6, 2),
                fip: (8, 4),
                fcs: (12, 2),
                fdp: (16, 4),
                fds: (20, 2),
            },
            Image::Environment => Pointers {
                fip: (12, 4),
                fcs: (16, 2),
                fop: (18, 2),
                fdp: (20, 4),
                fds: (24, 2),
            },
        }
    }
}

/// The host's behaviour where vendors differ.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// CPUID.(7,0):EBX[13]: FCS and FDS are stored as zero (Intel since Haswell).
    zero_selectors: bool,
    /// The error pointers are saved and restored whatever the exception summary says:
    /// every Intel CPU, and AMD's with XSAVEERPTR (CPUID 0x8000_0008 EBX[2]). Older
    /// AMD CPUs keep them only while an exception is pending, which the tests (every
    /// exception masked) never have.
    saves_pointers: bool,
}

impl Host {
    /// This machine's CPU.
    pub fn this() -> Self {
        let (leaf0, leaf7, ext) = (
            __cpuid_count(0, 0),
            __cpuid_count(7, 0),
            __cpuid_count(0x8000_0008, 0),
        );
        let amd = [leaf0.ebx, leaf0.edx, leaf0.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
        Self {
            zero_selectors: leaf7.ebx & (1 << 13) != 0,
            saves_pointers: !amd || ext.ebx & (1 << 2) != 0,
        }
    }

    /// Whether the host saves the error pointers as gasang's model does.
    pub fn saves_pointers(self) -> bool {
        self.saves_pointers
    }

    /// Makes the native `image` (at `at` in `native`) what gasang's model stores where
    /// this host's vendor defines it otherwise, taking the soft CPU's bytes for fields
    /// the host does not define at all.
    pub fn normalise(self, native: &mut [u8], soft: &[u8], at: usize, image: Image) {
        let p = image.pointers();
        if image != Image::Environment {
            // MXCSR_MASK bit 17: AMD's MM, the misaligned-SSE exception mask, which
            // gasang's model (as Intel's) does not have.
            native[at + 30] &= !0x02;
        }
        if !self.zero_selectors {
            for (offset, len) in [p.fcs, p.fds] {
                native[at + offset..at + offset + len].fill(0);
            }
        }
        if !self.saves_pointers {
            for (offset, len) in [p.fop, p.fip, p.fcs, p.fdp, p.fds] {
                let field = at + offset..at + offset + len;
                native[field.clone()].copy_from_slice(&soft[field]);
            }
        }
    }
}
