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

/// EDX bit 28 of leaf 1: more than one logical processor per package.
pub const HTT_BIT: u32 = 1 << 28;
/// Leaf 0xB/0x1F level types.
pub const LEVEL_SMT: u32 = 1;
pub const LEVEL_CORE: u32 = 2;

impl CpuTopology {
    /// CPUID `leaf`/`sub` of vCPU `index` with this topology: the topology fields of
    /// leaves 1 (APIC ID, count, HTT), 4 (cores per package, who shares each cache) and
    /// 0xB/0x1F (the levels) set over `regs`, a CPU model's answer; other leaves as
    /// they are. Both CPU backends report topology through this one function.
    pub fn cpuid(self, index: u32, leaf: u32, sub: u32, regs: [u32; 4]) -> [u32; 4] {
        let [a, b, c, d] = regs;
        let apic_id = self.apic_id(index);
        let ids_per_package = 1u32 << self.core_bits();
        match leaf {
            1 => {
                let b = (b & 0xffff) | (ids_per_package.min(255) << 16) | (apic_id << 24);
                let d = if self.vcpus > 1 {
                    d | HTT_BIT
                } else {
                    d & !HTT_BIT
                };
                [a, b, c, d]
            }
            // Cores per package - 1 in EAX[31:26]; caches above L2 are shared by all cores.
            4 if a & 0x1f != 0 => {
                let level = (a >> 5) & 7;
                let sharing = if level >= 3 { ids_per_package - 1 } else { 0 };
                let a = (a & 0x3fff) | (sharing << 14) | ((ids_per_package - 1) << 26);
                [a, b, c, d]
            }
            // One thread per core, then the cores of the one package, then the end.
            0xb | 0x1f => match sub {
                0 => [0, 1, LEVEL_SMT << 8, apic_id],
                1 => [self.core_bits(), self.vcpus, (LEVEL_CORE << 8) | 1, apic_id],
                _ => [0, 0, sub & 0xff, apic_id],
            },
            _ => regs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_topology_cpuid_leaf1_and_leaf_b() {
        let topo = CpuTopology::new(3).unwrap();
        let [_, b, _, d] = topo.cpuid(2, 1, 0, [0, 0x0800, 0, 0]);
        assert_eq!((b >> 24, (b >> 16) & 0xff, b & 0xffff), (2, 4, 0x0800));
        assert_ne!(d & HTT_BIT, 0);
        let one = CpuTopology::new(1).unwrap();
        assert_eq!(one.cpuid(0, 1, 0, [0, 0, 0, HTT_BIT])[3] & HTT_BIT, 0);
        assert_eq!(
            topo.cpuid(2, 0xb, 1, [0; 4]),
            [2, 3, (LEVEL_CORE << 8) | 1, 2]
        );
        assert_eq!(topo.cpuid(2, 0xb, 2, [0; 4])[2] >> 8, 0, "the end");
    }

    #[test]
    fn test_topology_cpuid_leaf4_leaves_the_end_marker() {
        let topo = CpuTopology::new(4).unwrap();
        assert_eq!(topo.cpuid(0, 4, 4, [0; 4]), [0; 4]);
        let l3 = topo.cpuid(0, 4, 3, [0x163, 0, 0, 0]);
        assert_eq!((l3[0] >> 26, (l3[0] >> 14) & 0xfff), (3, 3));
    }

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
