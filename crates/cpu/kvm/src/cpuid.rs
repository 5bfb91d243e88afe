//! The CPUID each vCPU reports: the host's, as KVM can virtualize it, with gasang's
//! topology (APIC IDs, leaves 4, 0xB and 0x1F) and the hypervisor bit.
//!
//! KVM's supported list already carries its paravirtual leaves (0x4000_0000
//! "KVMKVMKVM" and 0x4000_0001 with kvmclock, PV EOI, steal time, PV unhalt, ...);
//! they are passed through unchanged.

use gasang_vcpu::CpuTopology;
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// ECX bit 31 of leaf 1: "running under a hypervisor".
const HYPERVISOR_BIT: u32 = 1 << 31;
/// The highest basic leaf gasang reports, so that 0x1F (V2 topology) exists.
const MAX_BASIC_LEAF: u32 = 0x1f;

/// The list could not hold the topology leaves.
#[derive(Debug, thiserror::Error)]
#[error("too many CPUID entries")]
pub struct CpuidFull;

/// CPUID for vCPU `index` of `topology`, from KVM's supported list.
pub fn vcpu_cpuid(
    supported: &CpuId,
    topology: CpuTopology,
    index: u32,
) -> Result<CpuId, CpuidFull> {
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| e.function != 0xb && e.function != 0x1f)
        .copied()
        .collect();
    for entry in &mut entries {
        patch_entry(entry, topology, index);
    }
    for leaf in [0xb, 0x1f] {
        entries.extend(topology_leaf(leaf, topology, index));
    }
    CpuId::from_entries(&entries).map_err(|_| CpuidFull)
}

fn patch_entry(entry: &mut kvm_cpuid_entry2, topology: CpuTopology, index: u32) {
    let regs = [entry.eax, entry.ebx, entry.ecx, entry.edx];
    [entry.eax, entry.ebx, entry.ecx, entry.edx] =
        topology.cpuid(index, entry.function, entry.index, regs);
    match entry.function {
        0 => entry.eax = entry.eax.max(MAX_BASIC_LEAF),
        1 => entry.ecx |= HYPERVISOR_BIT,
        _ => {}
    }
}

/// Sub-leaves of 0xB or 0x1F: SMT level (1 thread per core), core level, then the end.
fn topology_leaf(function: u32, topology: CpuTopology, index: u32) -> [kvm_cpuid_entry2; 3] {
    [0, 1, 2].map(|sub| {
        let [eax, ebx, ecx, edx] = topology.cpuid(index, function, sub, [0; 4]);
        kvm_cpuid_entry2 {
            function,
            index: sub,
            flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasang_vcpu::topology::{HTT_BIT, LEVEL_CORE, LEVEL_SMT};

    fn supported() -> CpuId {
        let leaf = |function, eax, ebx, ecx, edx| kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        };
        CpuId::from_entries(&[
            leaf(0, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            leaf(1, 0xc06f2, 0x0000_0800, 0x0120_2000, 0x0f8b_fbff),
            leaf(4, 0x0000_0163, 0, 0, 0),
            leaf(0xb, 0, 0, 0, 0),
        ])
        .unwrap()
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn test_vcpu_cpuid_leaf1_has_apic_id_count_and_hypervisor_bit() {
        let topo = CpuTopology::new(3).unwrap();
        let leaf1 = find(&vcpu_cpuid(&supported(), topo, 2).unwrap(), 1, 0);
        assert_eq!(leaf1.ebx >> 24, 2);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_eq!(leaf1.ebx & 0xffff, 0x0800);
        assert_ne!(leaf1.ecx & HYPERVISOR_BIT, 0);
        assert_ne!(leaf1.edx & HTT_BIT, 0);
    }

    #[test]
    fn test_vcpu_cpuid_uniprocessor_clears_htt() {
        let topo = CpuTopology::new(1).unwrap();
        let leaf1 = find(&vcpu_cpuid(&supported(), topo, 0).unwrap(), 1, 0);
        assert_eq!(leaf1.edx & HTT_BIT, 0);
    }

    #[test]
    fn test_vcpu_cpuid_leaf_b_and_1f_describe_cores() {
        let topo = CpuTopology::new(4).unwrap();
        let cpuid = vcpu_cpuid(&supported(), topo, 3).unwrap();
        for leaf in [0xb, 0x1f] {
            let smt = find(&cpuid, leaf, 0);
            let core = find(&cpuid, leaf, 1);
            let end = find(&cpuid, leaf, 2);
            assert_eq!(
                (smt.eax, smt.ebx, smt.ecx >> 8, smt.edx),
                (0, 1, LEVEL_SMT, 3)
            );
            assert_eq!(
                (core.eax, core.ebx, core.ecx >> 8, core.edx),
                (2, 4, LEVEL_CORE, 3)
            );
            assert_eq!(end.ecx >> 8, 0);
        }
        assert_eq!(find(&cpuid, 0, 0).eax, MAX_BASIC_LEAF);
    }

    #[test]
    fn test_vcpu_cpuid_leaf4_counts_cores_per_package() {
        let topo = CpuTopology::new(4).unwrap();
        let leaf4 = find(&vcpu_cpuid(&supported(), topo, 0).unwrap(), 4, 0);
        assert_eq!(leaf4.eax >> 26, 3);
        assert_eq!(leaf4.eax & 0x3fff, 0x163);
        assert_eq!((leaf4.eax >> 14) & 0xfff, 3, "an L3 is shared by all cores");
    }
}
