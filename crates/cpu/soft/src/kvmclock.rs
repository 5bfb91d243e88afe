//! kvmclock, KVM's paravirtual clock, on the software backend too: the guest names a
//! page through an MSR, and the hypervisor writes there how to turn the TSC into
//! nanoseconds. The guest then reads time without trapping, and learns the TSC's rate
//! without calibrating it. With a constant-rate TSC one write per MSR write is enough.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// MSR_KVM_WALL_CLOCK_NEW: where to write the wall-clock time at system time 0.
pub const MSR_WALL_CLOCK: u32 = 0x4b56_4d00;
/// MSR_KVM_SYSTEM_TIME_NEW: this vCPU's time-info page (bit 0: enabled).
pub const MSR_SYSTEM_TIME: u32 = 0x4b56_4d01;
/// KVM's signature in CPUID leaf 0x4000_0000.
pub const SIGNATURE: &[u8; 12] = b"KVMKVMKVM\0\0\0";
/// CPUID 0x4000_0001 EAX: KVM_FEATURE_CLOCKSOURCE2 (3), the MSRs above, and
/// KVM_FEATURE_CLOCKSOURCE_STABLE_BIT (24): the stable flag may be trusted.
pub const FEATURES: u32 = (1 << 3) | (1 << 24);
/// PVCLOCK_TSC_STABLE_BIT: the TSC is the same on every vCPU and never jumps.
const TSC_STABLE: u8 = 1;

/// The multiplier and shift that turn TSC ticks at `tsc_hz` into nanoseconds:
/// `ns = ((ticks << shift) * mul) >> 32` (a negative shift shifts right), as KVM's
/// `kvm_get_time_scale` computes them.
pub fn scale(tsc_hz: u64) -> (u32, i8) {
    let scaled: u64 = 1_000_000_000;
    let (mut base, mut shift) = (tsc_hz.max(1), 0i8);
    while base > scaled * 2 || base >> 32 != 0 {
        base >>= 1;
        shift -= 1;
    }
    let (mut base32, mut scaled64) = (base as u32, scaled);
    while u64::from(base32) <= scaled64 || scaled64 >> 32 != 0 {
        if scaled64 >> 32 != 0 || base32 & 0x8000_0000 != 0 {
            scaled64 >>= 1;
        } else {
            base32 <<= 1;
        }
        shift += 1;
    }
    (((scaled64 << 32) / u64::from(base32)) as u32, shift)
}

/// `struct pvclock_vcpu_time_info`: at TSC `tsc` the system time was `system_ns`.
pub fn time_info(version: u32, tsc: u64, system_ns: u64, tsc_hz: u64) -> [u8; 32] {
    let (mul, shift) = scale(tsc_hz);
    let mut info = [0u8; 32];
    info[0..4].copy_from_slice(&version.to_le_bytes());
    info[8..16].copy_from_slice(&tsc.to_le_bytes());
    info[16..24].copy_from_slice(&system_ns.to_le_bytes());
    info[24..28].copy_from_slice(&mul.to_le_bytes());
    info[28] = shift as u8;
    info[29] = TSC_STABLE;
    info
}

/// `struct pvclock_wall_clock`: the wall-clock time when the system time was 0, given
/// the system time now.
pub fn wall_clock(version: u32, system_ns: u64) -> [u8; 12] {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let boot = now.saturating_sub(Duration::from_nanos(system_ns));
    let mut wall = [0u8; 12];
    wall[0..4].copy_from_slice(&version.to_le_bytes());
    wall[4..8].copy_from_slice(&(boot.as_secs() as u32).to_le_bytes());
    wall[8..12].copy_from_slice(&boot.subsec_nanos().to_le_bytes());
    wall
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest's side: `pvclock_scale_delta`.
    fn to_ns(ticks: u64, (mul, shift): (u32, i8)) -> u64 {
        let t = if shift < 0 {
            ticks >> -shift
        } else {
            ticks << shift
        };
        ((u128::from(t) * u128::from(mul)) >> 32) as u64
    }

    #[test]
    fn test_scale_turns_one_second_of_ticks_into_a_billion_ns() {
        for hz in [
            1_000_000_000,
            2_299_968_000,
            3_700_000_000,
            800_000_000,
            5_200_000_000,
        ] {
            let ns = to_ns(hz, scale(hz));
            assert!(ns.abs_diff(1_000_000_000) < 10, "{hz} Hz: {ns} ns");
        }
    }

    #[test]
    fn test_time_info_layout() {
        let info = time_info(2, 0x1122, 0x3344, 1_000_000_000);
        assert_eq!(u32::from_le_bytes(info[0..4].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(info[8..16].try_into().unwrap()), 0x1122);
        assert_eq!(u64::from_le_bytes(info[16..24].try_into().unwrap()), 0x3344);
        assert_eq!(info[29], TSC_STABLE);
        let wall = wall_clock(0, 0);
        let secs = u32::from_le_bytes(wall[4..8].try_into().unwrap());
        assert!(secs > 1_700_000_000, "the host's time: {secs}");
    }
}
