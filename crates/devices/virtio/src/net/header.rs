//! The virtio-net header in front of every frame (`virtio_net_hdr_v1`), and the check
//! a transmitted frame's header passes before a back end sees it.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
};

/// Bytes of the header: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
/// num_buffers (virtio 1.x always has the last).
pub const HEADER_LEN: usize = 12;
/// Offset of `num_buffers`, which a received frame's first buffer carries.
pub const NUM_BUFFERS_OFFSET: usize = 10;
/// The largest frame either way, header included: a 64 KiB segmentation offload
/// packet with its Ethernet header, as Linux's virtio-net driver sends at most.
pub const MAX_FRAME: usize = HEADER_LEN + 65550;
/// The smallest frame: the header and an Ethernet header.
pub const MIN_FRAME: usize = HEADER_LEN + 14;

/// A transmitted frame's header cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than a header and an Ethernet header, or longer than [`MAX_FRAME`].
    #[error("a frame of {0} bytes")]
    Length(usize),
    /// A segmentation offload the driver did not negotiate, or an unknown one.
    #[error("segmentation offload {0:#x} was not negotiated")]
    Gso(u8),
    /// A checksum request that points outside the frame.
    #[error("a checksum at {start}+{offset} outside the frame")]
    Checksum {
        /// Where checksumming starts.
        start: u16,
        /// Where the checksum goes, from `start`.
        offset: u16,
    },
    /// Checksum offload asked for, but not negotiated.
    #[error("checksum offload was not negotiated")]
    NoChecksumOffload,
    /// Unknown flag bits.
    #[error("header flags {0:#x}")]
    Flags(u8),
}

/// The fields of a header that a transmit check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetHeader {
    /// NEEDS_CSUM, DATA_VALID.
    pub flags: u8,
    /// The segmentation offload, or GSO_NONE.
    pub gso_type: u8,
    /// Where the checksum starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl NetHeader {
    /// Reads the header at the front of `frame`.
    pub fn read(frame: &[u8]) -> Result<Self, HeaderError> {
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            return Err(HeaderError::Length(frame.len()));
        }
        let u16_at = |at: usize| u16::from_le_bytes([frame[at], frame[at + 1]]);
        Ok(Self {
            flags: frame[0],
            gso_type: frame[1],
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Checks the header of a frame of `frame_len` bytes (header included) against the
    /// driver's `features`: only what was negotiated may reach a back end.
    pub fn check(&self, frame_len: usize, features: u64) -> Result<(), HeaderError> {
        let known = (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) as u8;
        if self.flags & !known != 0 {
            return Err(HeaderError::Flags(self.flags));
        }
        let has = |bit: u32| features & (1 << bit) != 0;
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM as u8 != 0 {
            if !has(virtio_bindings::virtio_net::VIRTIO_NET_F_CSUM) {
                return Err(HeaderError::NoChecksumOffload);
            }
            let end = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
            if end > frame_len - HEADER_LEN {
                return Err(HeaderError::Checksum {
                    start: self.csum_start,
                    offset: self.csum_offset,
                });
            }
        }
        let ecn = self.gso_type & VIRTIO_NET_HDR_GSO_ECN as u8 != 0;
        let allowed = match u32::from(self.gso_type & !(VIRTIO_NET_HDR_GSO_ECN as u8)) {
            VIRTIO_NET_HDR_GSO_NONE => !ecn,
            VIRTIO_NET_HDR_GSO_TCPV4 => has(VIRTIO_NET_F_HOST_TSO4),
            VIRTIO_NET_HDR_GSO_TCPV6 => has(VIRTIO_NET_F_HOST_TSO6),
            VIRTIO_NET_HDR_GSO_UDP => has(VIRTIO_NET_F_HOST_UFO),
            _ => false,
        };
        if !allowed || (ecn && !has(VIRTIO_NET_F_HOST_ECN)) {
            return Err(HeaderError::Gso(self.gso_type));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_net::VIRTIO_NET_F_CSUM;

    fn frame(flags: u8, gso: u8, start: u16, offset: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0] = flags;
        f[1] = gso;
        f[6..8].copy_from_slice(&start.to_le_bytes());
        f[8..10].copy_from_slice(&offset.to_le_bytes());
        f
    }

    fn check(f: &[u8], features: u64) -> Result<(), HeaderError> {
        NetHeader::read(f)?.check(f.len(), features)
    }

    #[test]
    fn test_plain_frames_pass_and_bad_lengths_do_not() {
        assert_eq!(check(&frame(0, 0, 0, 0, 60), 0), Ok(()));
        assert_eq!(check(&[0u8; 20], 0), Err(HeaderError::Length(20)));
        let huge = vec![0u8; MAX_FRAME + 1];
        assert_eq!(check(&huge, 0), Err(HeaderError::Length(MAX_FRAME + 1)));
    }

    #[test]
    fn test_offloads_pass_only_when_negotiated_and_inside_the_frame() {
        let csum = 1 << VIRTIO_NET_F_CSUM;
        let tso4 = csum | 1 << VIRTIO_NET_F_HOST_TSO4;
        let needs = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
        let tcp4 = VIRTIO_NET_HDR_GSO_TCPV4 as u8;
        assert_eq!(
            check(&frame(needs, 0, 34, 16, 100), 0),
            Err(HeaderError::NoChecksumOffload)
        );
        assert_eq!(check(&frame(needs, 0, 34, 16, 100), csum), Ok(()));
        assert!(matches!(
            check(&frame(needs, 0, 80, 16, 100), csum),
            Err(HeaderError::Checksum { .. })
        ));
        assert_eq!(
            check(&frame(needs, tcp4, 34, 16, 100), csum),
            Err(HeaderError::Gso(tcp4))
        );
        assert_eq!(check(&frame(needs, tcp4, 34, 16, 100), tso4), Ok(()));
        assert_eq!(
            check(&frame(0, 0x7f, 0, 0, 100), u64::MAX),
            Err(HeaderError::Gso(0x7f))
        );
        assert_eq!(
            check(&frame(0x80, 0, 0, 0, 100), 0),
            Err(HeaderError::Flags(0x80))
        );
    }
}
