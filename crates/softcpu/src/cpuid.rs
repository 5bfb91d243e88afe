//! The CPU model CPUID reports: honest, it advertises only what this CPU implements,
//! so that software picks code paths that work here.

use crate::system::paging::PHYS_BITS;

/// The vendor string (EBX, EDX, ECX of leaf 0).
const VENDOR: &[u8; 12] = b"GasangSoftCP";
/// The brand string (leaves 0x8000_0002..4).
const BRAND: &[u8; 48] = b"gasang software CPU (x86-64)\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Leaf 1 EDX: the x86-64 baseline FPU (0), TSC (4), CX8 (8), CMOV (15), MMX (23),
/// FXSR (24), SSE (25), SSE2 (26); and the system features the kernel requires, all
/// implemented: DE (2, CR4.DE), PSE (3, large pages), MSR (5), PAE (6), PGE (13,
/// global pages), PAT (16, the PAT MSR; caching attributes mean nothing here).
const LEAF1_EDX: u32 = 1
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26);
/// Leaf 1 ECX: CMPXCHG16B (13), POPCNT (23).
const LEAF1_ECX: u32 = (1 << 13) | (1 << 23);
/// Leaf 0x8000_0001 EDX: SYSCALL (11), NX (20), RDTSCP (27), long mode (29).
const EXT1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 27) | (1 << 29);
/// Leaf 0x8000_0001 ECX: LZCNT (5).
const EXT1_ECX: u32 = 1 << 5;
/// Leaf 7 EDX: IA32_ARCH_CAPABILITIES (29). Leaf 7 EBX/ECX stay zero: none of their
/// extensions (SMEP, SMAP, FSGSBASE, ERMS, ...) is implemented.
const LEAF7_EDX: u32 = 1 << 29;

/// IA32_ARCH_CAPABILITIES: an interpreter executes nothing speculatively, so it has
/// none of the flaws the bits deny: RDCL_NO (0, Meltdown), SSB_NO (4), MDS_NO (5),
/// PSCHANGE_MC_NO (6), TAA_NO (8), SBDR_SSDP_NO (13), FBSDP_NO (14), PSDP_NO (15),
/// BHI_NO (20), GDS_NO (26), RFDS_NO (27). Without them a kernel would pay for
/// mitigations on every entry (page-table isolation, VERW buffer clearing).
pub const ARCH_CAPABILITIES: u64 = 1
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 13)
    | (1 << 14)
    | (1 << 15)
    | (1 << 20)
    | (1 << 26)
    | (1 << 27);

/// Family 6, model 1, stepping 0.
const SIGNATURE: u32 = 0x0000_0610;

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunks")))
}

/// EAX, EBX, ECX, EDX for CPUID `leaf` and subleaf `sub` (only leaf 7 has subleaves).
pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let vendor: Vec<u32> = words(VENDOR).collect();
    match leaf {
        0 => [7, vendor[0], vendor[2], vendor[1]],
        // CLFLUSH line size 8 x 8 bytes; one logical processor; APIC ID 0.
        1 => [SIGNATURE, (8 << 8) | (1 << 16), LEAF1_ECX, LEAF1_EDX],
        7 if sub == 0 => [0, 0, 0, LEAF7_EDX],
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [0, 0, EXT1_ECX, EXT1_EDX],
        0x8000_0002..=0x8000_0004 => {
            let at = ((leaf - 0x8000_0002) * 16) as usize;
            let w: Vec<u32> = words(&BRAND[at..at + 16]).collect();
            [w[0], w[1], w[2], w[3]]
        }
        // Physical and linear address bits (no 1 GiB pages: EXT1_EDX bit 26 is clear).
        0x8000_0008 => [PHYS_BITS | (48 << 8), 0, 0, 0],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpuid_vendor_and_max_leaf() {
        let [max, b, c, d] = cpuid(0, 0);
        assert_eq!(max, 7);
        let vendor: Vec<u8> = [b, d, c].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&vendor, VENDOR);
    }

    #[test]
    fn test_cpuid_advertises_only_implemented_features() {
        let [_, _, ecx, edx] = cpuid(1, 0);
        for (bit, name) in [
            (0, "x87"),
            (23, "MMX"),
            (24, "FXSR"),
            (25, "SSE"),
            (26, "SSE2"),
        ] {
            assert_ne!(edx & (1 << bit), 0, "{name}");
        }
        assert_eq!(ecx & 1, 0, "no SSE3");
        assert_ne!(edx & (1 << 8), 0, "CMPXCHG8B");
        assert_ne!(ecx & (1 << 13), 0, "CMPXCHG16B");
        assert_ne!(edx & (1 << 15), 0, "CMOV");
        assert_ne!(ecx & (1 << 23), 0, "POPCNT");
        for (bit, name) in [(3, "PSE"), (5, "MSR"), (6, "PAE"), (13, "PGE"), (16, "PAT")] {
            assert_ne!(edx & (1 << bit), 0, "{name}");
        }
        for (bit, name) in [
            (9, "APIC: the platform's"),
            (11, "SYSENTER"),
            (19, "CLFLUSH"),
        ] {
            assert_eq!(edx & (1 << bit), 0, "{name}");
        }
        let [_, _, _, ext] = cpuid(0x8000_0001, 0);
        assert_ne!(ext & (1 << 29), 0, "long mode");
        assert_eq!(ext & (1 << 26), 0, "no 1 GiB pages");
        assert_eq!(cpuid(0x8000_0008, 0)[0], 40 | (48 << 8));
        assert_eq!(cpuid(7, 0), [0, 0, 0, 1 << 29], "only ARCH_CAPABILITIES");
        assert_eq!(ARCH_CAPABILITIES & 1, 1, "RDCL_NO: no page-table isolation");
    }

    #[test]
    fn test_cpuid_brand_string() {
        let brand: Vec<u8> = (0x8000_0002..=0x8000_0004)
            .flat_map(|leaf| cpuid(leaf, 0))
            .flat_map(u32::to_le_bytes)
            .collect();
        assert!(brand.starts_with(b"gasang software CPU"));
    }
}
