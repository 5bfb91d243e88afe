//! CPU topology: how many vCPUs, and the APIC IDs and CPUID topology they imply.

/// The most vCPUs a guest can have: xAPIC IDs are 8 bits and 0xff is broadcast.
pub const MAX_VCPUS: u32 = 254;

/// The requested vCPU count is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    /// Zero vCPUs.
    #[error("a guest needs at least 1 vCPU")]
    NoVcpus,
    /// More than the limit.
    #[error("{0} vCPUs is more than the limit of {MAX_VCPUS}")]
    TooMany(u32),
}

/// One socket of `vcpus` single-threaded cores. APIC ID = vCPU index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    vcpus: u32,
}

impl CpuTopology {
    /// Validates a vCPU count.
    pub fn new(vcpus: u32) -> Result<Self, TopologyError> {
        match vcpus {
            0 => Err(TopologyError::NoVcpus),
            n if n > MAX_VCPUS => Err(TopologyError::TooMany(n)),
            n => Ok(Self { vcpus: n }),
        }
    }

    /// Number of vCPUs.
    pub fn vcpus(self) -> u32 {
        self.vcpus
    }

    /// The local APIC ID of vCPU `index`.
    pub fn apic_id(self, index: u32) -> u32 {
        index
    }

    /// Bits of the APIC ID that number the cores within the socket (CPUID 0xB/0x1F shift).
    pub fn core_bits(self) -> u32 {
        u32::BITS - (self.vcpus - 1).leading_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_topology_rejects_zero_and_too_many() {
        assert_eq!(CpuTopology::new(0), Err(TopologyError::NoVcpus));
        assert_eq!(CpuTopology::new(255), Err(TopologyError::TooMany(255)));
        assert!(CpuTopology::new(254).is_ok());
    }

    #[test]
    fn test_topology_core_bits_round_up_to_power_of_two() {
        let bits = |n| CpuTopology::new(n).unwrap().core_bits();
        assert_eq!(
            [bits(1), bits(2), bits(3), bits(4), bits(5), bits(254)],
            [0, 1, 2, 2, 3, 8]
        );
    }
}
