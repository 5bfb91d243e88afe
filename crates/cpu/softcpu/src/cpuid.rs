//! The CPU model CPUID reports: an Intel Ivy Bridge (family 6, model 58, stepping 9)
//! that advertises only what this CPU implements, so that software picks code paths
//! that work here.
//!
//! The vendor and family are real because software keys on them: glibc reads the
//! feature bits of leaf 1 only for the vendors it knows (with an unknown vendor it
//! finds no SSE2 and refuses to run), and Linux runs its generic, "may be unstable"
//! setup. Ivy Bridge is a model the kernel applies no erratum workaround to, that needs
//! no model-specific MSR gasang lacks, and whose speculation flaws are all denied by
//! IA32_ARCH_CAPABILITIES or absent with the features withheld (SRBDS needs RDRAND).
//! The Intel leaves that describe the machine are kept consistent with it: leaf 2
//! defers to leaf 4 (caches), leaf 4 and leaf 0xB (topology) describe one logical
//! processor, which the platform widens to its topology.

use crate::system::paging::PHYS_BITS;

/// The vendor string (EBX, EDX, ECX of leaf 0).
const VENDOR: &[u8; 12] = b"GenuineIntel";
/// The brand string (leaves 0x8000_0002..4).
const BRAND: &[u8; 48] = b"gasang software CPU (x86-64)\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Leaf 1 EDX: the x86-64 baseline FPU (0), TSC (4), CX8 (8), CMOV (15), MMX (23),
/// FXSR (24), SSE (25), SSE2 (26); and the system features the kernel requires, all
/// implemented: DE (2, CR4.DE), PSE (3, large pages), MSR (5), PAE (6), PGE (13,
/// global pages), PAT (16, the PAT MSR; caching attributes mean nothing here), CLFLUSH
/// (19: every x86-64 CPU has it, and PMDK's libpmem, which Debian's fio loads, aborts
/// without it).
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
    | (1 << 19)
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
/// Leaf 7 EBX: FCS and FDS deprecated (13): the x87 environment stores zero selectors,
/// as every Intel CPU since Haswell does. The rest of EBX and ECX stays zero: none of
/// their extensions (SMEP, SMAP, FSGSBASE, ERMS, ...) is implemented.
const LEAF7_EBX: u32 = 1 << 13;
/// Leaf 7 EDX: IA32_ARCH_CAPABILITIES (29).
const LEAF7_EDX: u32 = 1 << 29;

/// IA32_ARCH_CAPABILITIES: an interpreter executes nothing speculatively, so it has
/// none of the flaws the bits deny: RDCL_NO (0, Meltdown), SSB_NO (4), MDS_NO (5),
/// PSCHANGE_MC_NO (6), TAA_NO (8), SBDR_SSDP_NO (13), FBSDP_NO (14), PSDP_NO (15),
/// BHI_NO (20), PBRSB_NO (24), GDS_NO (26), RFDS_NO (27), ITS_NO (62). Without them a
/// kernel would pay for mitigations on every entry (page-table isolation, VERW buffer
/// clearing) or in every indirect branch (ITS's aligned thunks: Linux assumes a guest
/// of an Intel CPU may run on an affected one unless told otherwise).
pub const ARCH_CAPABILITIES: u64 = 1
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 13)
    | (1 << 14)
    | (1 << 15)
    | (1 << 20)
    | (1 << 24)
    | (1 << 26)
    | (1 << 27)
    | (1 << 62);

/// Family 6, model 58 (0x3a: extended model 3, model 0xa), stepping 9: Ivy Bridge.
const SIGNATURE: u32 = 0x0003_06a9;

/// The highest basic leaf: 0xB, topology (the platform may raise it).
const MAX_BASIC_LEAF: u32 = 0xb;

/// Leaf 2: one round (AL = 1), descriptor 0xFF: "the caches are in leaf 4".
const LEAF2_EAX: u32 = 0x0000_ff01;

/// The caches leaf 4 describes, as (type, level, ways, sets, inclusive): 64-byte lines,
/// one partition. L1d 32 KiB, L1i 32 KiB, L2 256 KiB, L3 8 MiB, as Ivy Bridge's.
const CACHES: [(u32, u32, u32, u32, bool); 4] = [
    (1, 1, 8, 64, false),
    (2, 1, 8, 64, false),
    (3, 2, 8, 512, false),
    (3, 3, 16, 8192, true),
];

/// Leaf 4 subleaf `sub`: one cache (type 0 past the last), shared by one logical
/// processor (EAX 14..26 and 26..32 are the platform's).
fn cache(sub: u32) -> [u32; 4] {
    let Some(&(kind, level, ways, sets, inclusive)) = CACHES.get(sub as usize) else {
        return [0; 4];
    };
    // Self-initializing (EAX 8); line size 64, partitions 1, ways, each minus one.
    let eax = kind | (level << 5) | (1 << 8);
    let ebx = ((ways - 1) << 22) | 63;
    [eax, ebx, sets - 1, u32::from(inclusive) << 1]
}

/// Leaf 0xB subleaf `sub` for one logical processor with x2APIC ID 0: the SMT level
/// (type 1), the core level (type 2), then the end (type 0).
fn topology(sub: u32) -> [u32; 4] {
    match sub {
        0 => [0, 1, 1 << 8, 0],
        1 => [0, 1, (2 << 8) | 1, 0],
        _ => [0, 0, sub & 0xff, 0],
    }
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunks")))
}

/// EAX, EBX, ECX, EDX for CPUID `leaf` and subleaf `sub` (leaves 4, 7 and 0xB have
/// subleaves).
pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let vendor: Vec<u32> = words(VENDOR).collect();
    match leaf {
        0 => [MAX_BASIC_LEAF, vendor[0], vendor[2], vendor[1]],
        // CLFLUSH line size 8 x 8 bytes; one logical processor; APIC ID 0.
        1 => [SIGNATURE, (8 << 8) | (1 << 16), LEAF1_ECX, LEAF1_EDX],
        2 => [LEAF2_EAX, 0, 0, 0],
        4 => cache(sub),
        7 if sub == 0 => [0, LEAF7_EBX, 0, LEAF7_EDX],
        0xb => topology(sub),
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [0, 0, EXT1_ECX, EXT1_EDX],
        0x8000_0002..=0x8000_0004 => {
            let at = ((leaf - 0x8000_0002) * 16) as usize;
            let w: Vec<u32> = words(&BRAND[at..at + 16]).collect();
            [w[0], w[1], w[2], w[3]]
        }
        // The L2 cache as Intel reports it here too (size in KiB, 8-way: encoding 6,
        // 64-byte lines), for tools that read only this leaf (lscpu, older glibc).
        0x8000_0006 => [0, 0, (256 << 16) | (6 << 12) | 64, 0],
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
        assert_eq!(max, 0xb);
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
        for (bit, name) in [
            (3, "PSE"),
            (5, "MSR"),
            (6, "PAE"),
            (13, "PGE"),
            (16, "PAT"),
            (19, "CLFLUSH"),
        ] {
            assert_ne!(edx & (1 << bit), 0, "{name}");
        }
        for (bit, name) in [(9, "APIC: the platform's"), (11, "SYSENTER")] {
            assert_eq!(edx & (1 << bit), 0, "{name}");
        }
        let [_, _, _, ext] = cpuid(0x8000_0001, 0);
        assert_ne!(ext & (1 << 29), 0, "long mode");
        assert_eq!(ext & (1 << 26), 0, "no 1 GiB pages");
        assert_eq!(cpuid(0x8000_0008, 0)[0], 40 | (48 << 8));
        assert_eq!(
            cpuid(7, 0),
            [0, 1 << 13, 0, 1 << 29],
            "only FCS/FDS deprecation and ARCH_CAPABILITIES"
        );
        assert_eq!(ARCH_CAPABILITIES & 1, 1, "RDCL_NO: no page-table isolation");
    }

    #[test]
    fn test_cpuid_is_an_intel_family_6_model_58() {
        let [signature, ..] = cpuid(1, 0);
        let family = (signature >> 8) & 0xf;
        let model = ((signature >> 12) & 0xf0) | ((signature >> 4) & 0xf);
        assert_eq!((family, model, signature & 0xf), (6, 58, 9));
        assert_eq!(cpuid(2, 0)[0] & 0xff, 1, "leaf 2: one round");
    }

    #[test]
    fn test_cpuid_leaf4_lists_the_caches_then_ends() {
        let size = |[_, b, c, _]: [u32; 4]| {
            let (ways, parts, line) = ((b >> 22) + 1, ((b >> 12) & 0x3ff) + 1, (b & 0xfff) + 1);
            ways * parts * line * (c + 1)
        };
        let sizes: Vec<u32> = (0..4).map(|s| size(cpuid(4, s))).collect();
        assert_eq!(sizes, [32 << 10, 32 << 10, 256 << 10, 8 << 20]);
        let levels: Vec<u32> = (0..4).map(|s| (cpuid(4, s)[0] >> 5) & 7).collect();
        assert_eq!(levels, [1, 1, 2, 3]);
        assert_eq!(cpuid(4, 4)[0] & 0x1f, 0, "no fifth cache");
        assert_eq!(
            cpuid(0x8000_0006, 0)[2] >> 16,
            256,
            "the L2 in KiB, as leaf 4 has it"
        );
    }

    #[test]
    fn test_cpuid_leaf_b_describes_one_logical_processor() {
        assert_eq!((cpuid(0xb, 0)[1], (cpuid(0xb, 0)[2] >> 8) & 0xff), (1, 1));
        assert_eq!((cpuid(0xb, 1)[1], (cpuid(0xb, 1)[2] >> 8) & 0xff), (1, 2));
        assert_eq!((cpuid(0xb, 2)[1], (cpuid(0xb, 2)[2] >> 8) & 0xff), (0, 0));
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
