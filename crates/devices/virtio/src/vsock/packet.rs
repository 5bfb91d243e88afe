//! The virtio-vsock packet header (`struct virtio_vsock_hdr`, 44 bytes, little-endian)
//! and the checks a packet from the guest passes before the host side acts on it.

/// Bytes of the header.
pub const HEADER_LEN: usize = 44;
/// The host's CID.
pub const HOST_CID: u64 = 2;
/// The only socket type offered: stream.
pub const TYPE_STREAM: u16 = 1;
/// Most payload bytes in one packet (Linux sends at most 64 KiB).
pub const MAX_PAYLOAD: usize = 64 << 10;

/// Shutdown flag: the sender will receive no more.
pub const SHUTDOWN_RCV: u32 = 1;
/// Shutdown flag: the sender will send no more.
pub const SHUTDOWN_SEND: u32 = 2;

/// What a packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Open a connection.
    Request,
    /// Accept one.
    Response,
    /// Refuse or end one at once.
    Rst,
    /// End one direction or both ([`SHUTDOWN_RCV`], [`SHUTDOWN_SEND`]).
    Shutdown,
    /// Data.
    Rw,
    /// The sender's buffer space, unasked.
    CreditUpdate,
    /// Asks for a credit update.
    CreditRequest,
}

impl Op {
    fn from_u16(op: u16) -> Option<Self> {
        Some(match op {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Rst,
            4 => Self::Shutdown,
            5 => Self::Rw,
            6 => Self::CreditUpdate,
            7 => Self::CreditRequest,
            _ => return None,
        })
    }

    fn to_u16(self) -> u16 {
        match self {
            Self::Request => 1,
            Self::Response => 2,
            Self::Rst => 3,
            Self::Shutdown => 4,
            Self::Rw => 5,
            Self::CreditUpdate => 6,
            Self::CreditRequest => 7,
        }
    }
}

/// A packet from the guest the host side cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than a header.
    #[error("a {0}-byte packet header")]
    Short(usize),
    /// An operation the spec does not define.
    #[error("operation {0}")]
    Op(u16),
    /// Not a stream packet.
    #[error("socket type {0}")]
    Type(u16),
    /// From a CID that is not the guest's, or to one that is not the host's.
    #[error("from CID {src} to CID {dst}")]
    Address {
        /// The source CID.
        src: u64,
        /// The destination CID.
        dst: u64,
    },
    /// A payload length beyond [`MAX_PAYLOAD`], or beyond the bytes that follow.
    #[error("a payload of {0} bytes")]
    Length(u32),
}

/// A packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload bytes.
    pub len: u32,
    /// The operation.
    pub op: Op,
    /// Shutdown flags.
    pub flags: u32,
    /// The sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from this connection so far.
    pub fwd_cnt: u32,
}

impl Header {
    /// Reads a header the guest `guest_cid` sent, with `available` payload bytes
    /// after it.
    pub fn parse(bytes: &[u8], guest_cid: u64, available: usize) -> Result<Self, PacketError> {
        if bytes.len() < HEADER_LEN {
            return Err(PacketError::Short(bytes.len()));
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
        let raw_op = u16_at(30);
        let op = Op::from_u16(raw_op).ok_or(PacketError::Op(raw_op))?;
        let kind = u16_at(28);
        if kind != TYPE_STREAM {
            return Err(PacketError::Type(kind));
        }
        let (src, dst) = (u64_at(0), u64_at(8));
        if src != guest_cid || dst != HOST_CID {
            return Err(PacketError::Address { src, dst });
        }
        let len = u32_at(24);
        if len as usize > MAX_PAYLOAD || len as usize > available {
            return Err(PacketError::Length(len));
        }
        Ok(Self {
            src_cid: src,
            dst_cid: dst,
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len,
            op,
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&TYPE_STREAM.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_u16().to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(op: Op) -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1234,
            dst_port: 5000,
            len: 10,
            op,
            flags: 0,
            buf_alloc: 1 << 18,
            fwd_cnt: 7,
        }
    }

    #[test]
    fn test_header_round_trips() {
        for op in [Op::Request, Op::Rw, Op::Shutdown, Op::CreditRequest] {
            let h = header(op);
            assert_eq!(Header::parse(&h.to_bytes(), 3, 10), Ok(h));
        }
    }

    #[test]
    fn test_header_refuses_what_the_guest_may_not_send() {
        let good = header(Op::Rw).to_bytes();
        assert_eq!(
            Header::parse(&good[..43], 3, 10),
            Err(PacketError::Short(43))
        );
        assert_eq!(Header::parse(&good, 3, 9), Err(PacketError::Length(10)));
        assert_eq!(
            Header::parse(&good, 4, 10),
            Err(PacketError::Address { src: 3, dst: 2 })
        );
        let mut bad = good;
        bad[30] = 9;
        assert_eq!(Header::parse(&bad, 3, 10), Err(PacketError::Op(9)));
        let mut bad = good;
        bad[28] = 2;
        assert_eq!(Header::parse(&bad, 3, 10), Err(PacketError::Type(2)));
        let mut bad = good;
        bad[24..28].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(
            Header::parse(&bad, 3, usize::MAX),
            Err(PacketError::Length(_))
        ));
    }
}
