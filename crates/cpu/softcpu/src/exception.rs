//! Exceptions an instruction raises, and what delivering them needs: vector, error
//! code, fault or trap, and which pairs make a double fault.

use crate::memory::{Access, MemoryFault, NON_CANONICAL};

/// An exception the instruction raised; the guest's IDT (or, for `user-run`, a signal)
/// handles it. For a fault, RIP still points at the faulting instruction; for a trap
/// (INT3, INT n) it points past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exception {
    /// #DE: division by zero or a quotient too large.
    #[error("#DE divide error")]
    DivideError,
    /// #BP: INT3.
    #[error("#BP breakpoint")]
    Breakpoint,
    /// #UD: an invalid or unimplemented instruction.
    #[error("#UD invalid opcode")]
    InvalidOpcode,
    /// #NM: an x87/SSE instruction with CR0.TS set.
    #[error("#NM device not available")]
    DeviceNotAvailable,
    /// #DF: an exception while delivering another.
    #[error("#DF double fault")]
    DoubleFault,
    /// #NP with its error code (a not-present gate or segment).
    #[error("#NP segment not present ({0:#x})")]
    SegmentNotPresent(u32),
    /// #SS with its error code.
    #[error("#SS stack fault ({0:#x})")]
    StackFault(u32),
    /// #GP with its error code.
    #[error("#GP general protection ({0:#x})")]
    GeneralProtection(u32),
    /// #PF at `addr`, with the page-fault error code.
    #[error("#PF page fault at {addr:#x} (error {error_code:#x})")]
    PageFault {
        /// CR2.
        addr: u64,
        /// P, W/R, U/S, RSVD, I/D bits.
        error_code: u32,
    },
    /// #MF: an x87 exception the guest left unmasked, raised by the next waiting x87
    /// or MMX instruction.
    #[error("#MF x87 floating-point exception")]
    FloatingPoint,
    /// #XM: an SIMD floating-point exception the guest left unmasked in MXCSR.
    #[error("#XM SIMD floating-point exception")]
    SimdFloatingPoint,
    /// INT n: a software interrupt through IDT entry n.
    #[error("software interrupt {0:#x}")]
    SoftwareInterrupt(u8),
}

impl From<MemoryFault> for Exception {
    fn from(fault: MemoryFault) -> Self {
        if fault.reason & NON_CANONICAL != 0 {
            return Exception::GeneralProtection(0);
        }
        let error_code = fault.reason
            | match fault.access {
                Access::Read | Access::System => 0,
                Access::Write => 1 << 1,
                Access::Execute => 1 << 4,
            };
        Exception::PageFault {
            addr: fault.addr,
            error_code,
        }
    }
}

impl Exception {
    /// The IDT vector.
    pub fn vector(self) -> u8 {
        match self {
            Exception::DivideError => 0,
            Exception::Breakpoint => 3,
            Exception::InvalidOpcode => 6,
            Exception::DeviceNotAvailable => 7,
            Exception::DoubleFault => 8,
            Exception::SegmentNotPresent(_) => 11,
            Exception::StackFault(_) => 12,
            Exception::GeneralProtection(_) => 13,
            Exception::PageFault { .. } => 14,
            Exception::FloatingPoint => 16,
            Exception::SimdFloatingPoint => 19,
            Exception::SoftwareInterrupt(n) => n,
        }
    }

    /// The error code pushed with it, if it has one.
    pub fn error_code(self) -> Option<u32> {
        match self {
            Exception::DoubleFault => Some(0),
            Exception::SegmentNotPresent(e)
            | Exception::StackFault(e)
            | Exception::GeneralProtection(e) => Some(e),
            Exception::PageFault { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// A trap returns past the instruction; a fault restarts it.
    pub fn is_trap(self) -> bool {
        matches!(
            self,
            Exception::Breakpoint | Exception::SoftwareInterrupt(_)
        )
    }

    /// #DE, #TS, #NP, #SS, #GP: a second one while delivering one of them (or #PF)
    /// is a double fault.
    fn contributory(self) -> bool {
        matches!(
            self,
            Exception::DivideError
                | Exception::SegmentNotPresent(_)
                | Exception::StackFault(_)
                | Exception::GeneralProtection(_)
        )
    }

    /// What to deliver when `second` happened while delivering `self`: a double fault,
    /// or `second` itself.
    pub fn then(self, second: Exception) -> Exception {
        let page_fault = |e| matches!(e, Exception::PageFault { .. });
        if (self.contributory() && second.contributory())
            || (page_fault(self) && (page_fault(second) || second.contributory()))
        {
            Exception::DoubleFault
        } else {
            second
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_double_fault_classes() {
        let gp = Exception::GeneralProtection(0);
        let pf = Exception::PageFault {
            addr: 0,
            error_code: 0,
        };
        assert_eq!(gp.then(gp), Exception::DoubleFault);
        assert_eq!(pf.then(pf), Exception::DoubleFault);
        assert_eq!(pf.then(gp), Exception::DoubleFault);
        assert_eq!(
            gp.then(pf),
            pf,
            "#PF while delivering #GP is handled serially"
        );
        assert_eq!(Exception::InvalidOpcode.then(gp), gp);
    }
}
