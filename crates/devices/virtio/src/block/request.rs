//! A virtio-blk request as a descriptor chain carries it (virtio 1.x, 5.2.6): a
//! 16-byte header the driver wrote, data buffers, and a status byte at the end.
//!
//! Everything here is guest-controlled: a chain may be short, loop (virtio-queue
//! ends it), point anywhere, or mix buffer directions. Parsing never trusts it; what
//! is not a well-formed request is an error the device answers with IOERR, or drops
//! if there is no status byte to answer in.

use gasang_memory::GuestMemory;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

/// Bytes of the request header: type, reserved, sector.
pub const HEADER_LEN: u32 = 16;
/// A sector, as requests count them.
pub const SECTOR: u64 = 512;

/// What the driver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Read sectors into the buffers.
    In,
    /// Write the buffers to sectors.
    Out,
    /// Make every completed write durable.
    Flush,
    /// Return the device's serial (20 bytes).
    GetId,
    /// Deallocate ranges (each 16 bytes in the buffers).
    Discard,
    /// Zero ranges (each 16 bytes in the buffers).
    WriteZeroes,
    /// A type gasang does not implement.
    Unsupported(u32),
}

impl RequestKind {
    fn from_type(value: u32) -> Self {
        match value {
            0 => Self::In,
            1 => Self::Out,
            4 => Self::Flush,
            8 => Self::GetId,
            11 => Self::Discard,
            13 => Self::WriteZeroes,
            other => Self::Unsupported(other),
        }
    }

    /// Whether the device writes into the data buffers.
    fn device_writes(self) -> bool {
        matches!(self, Self::In | Self::GetId)
    }
}

/// A guest buffer: part of one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its type.
    pub kind: RequestKind,
    /// The first sector (In, Out).
    pub sector: u64,
    /// The data buffers, in order.
    pub data: Vec<Segment>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

impl Request {
    /// Bytes of data.
    pub fn data_len(&self) -> u64 {
        self.data.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// Why a chain is not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No writable byte at the end for the status: nothing to answer in.
    #[error("the chain has no status byte")]
    NoStatus,
    /// The header is shorter than 16 bytes, or not readable.
    #[error("the request header is missing or short")]
    BadHeader,
    /// A data buffer goes the wrong way for the request's type.
    #[error("a data buffer has the wrong direction")]
    WrongDirection,
    /// The chain's buffers could not be read from guest memory.
    #[error("the request header is not in guest RAM")]
    Memory,
}

/// A request parsed from `descriptors` (a chain, in order). On an error other than
/// [`RequestError::NoStatus`], the status byte's address comes with it.
pub fn parse(
    descriptors: &[Descriptor],
    memory: &GuestMemory,
) -> Result<Request, (RequestError, Option<GuestAddress>)> {
    let last = descriptors.last().ok_or((RequestError::NoStatus, None))?;
    if !last.is_write_only() || last.len() == 0 {
        return Err((RequestError::NoStatus, None));
    }
    let status = GuestAddress(last.addr().0.wrapping_add(u64::from(last.len()) - 1));
    let fail = |e| Err((e, Some(status)));
    let mut segments: Vec<(Segment, bool)> = descriptors
        .iter()
        .map(|d| {
            (
                Segment {
                    addr: d.addr(),
                    len: d.len(),
                },
                d.is_write_only(),
            )
        })
        .collect();
    // The status byte is not data.
    if let Some((last, _)) = segments.last_mut() {
        last.len -= 1;
    }
    let Some(header) = take_header(&mut segments) else {
        return fail(RequestError::BadHeader);
    };
    let Ok(words) = read_header(memory, &header) else {
        return fail(RequestError::Memory);
    };
    let kind = RequestKind::from_type(words.0);
    let data: Vec<(Segment, bool)> = segments.into_iter().filter(|(s, _)| s.len > 0).collect();
    if data.iter().any(|&(_, w)| w != kind.device_writes()) {
        return fail(RequestError::WrongDirection);
    }
    Ok(Request {
        kind,
        sector: words.1,
        data: data.into_iter().map(|(s, _)| s).collect(),
        status,
    })
}

/// Takes the first 16 readable bytes off the front of `segments`.
fn take_header(segments: &mut Vec<(Segment, bool)>) -> Option<Vec<Segment>> {
    let mut header = Vec::new();
    let mut need = HEADER_LEN;
    while need > 0 {
        let (first, writable) = segments.first_mut()?;
        if *writable {
            return None;
        }
        let take = first.len.min(need);
        header.push(Segment {
            addr: first.addr,
            len: take,
        });
        need -= take;
        first.addr = GuestAddress(first.addr.0.wrapping_add(u64::from(take)));
        first.len -= take;
        if first.len == 0 {
            segments.remove(0);
        }
    }
    Some(header)
}

/// The header's type and sector.
fn read_header(
    memory: &GuestMemory,
    header: &[Segment],
) -> Result<(u32, u64), vm_memory::GuestMemoryError> {
    let mut bytes = [0u8; HEADER_LEN as usize];
    let mut at = 0;
    for s in header {
        let len = s.len as usize;
        memory.read_slice(&mut bytes[at..at + len], s.addr)?;
        at += len;
    }
    let kind = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut sector = [0u8; 8];
    sector.copy_from_slice(&bytes[8..16]);
    Ok((kind, u64::from_le_bytes(sector)))
}

#[cfg(test)]
mod tests {
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::split::Descriptor;

    use super::*;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn desc(addr: u64, len: u32, write: bool) -> Descriptor {
        let flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
        Descriptor::new(addr, len, flags, 0)
    }

    fn header(memory: &GuestMemory, at: u64, kind: u32, sector: u64) {
        memory.write_obj(kind, GuestAddress(at)).unwrap();
        memory.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    #[test]
    fn test_parse_read_request_in_three_descriptors() {
        let memory = memory();
        header(&memory, 0x1000, 0, 7);
        let chain = [
            desc(0x1000, 16, false),
            desc(0x2000, 4096, true),
            desc(0x3000, 1, true),
        ];
        let request = parse(&chain, &memory).unwrap();
        assert_eq!(request.kind, RequestKind::In);
        assert_eq!(request.sector, 7);
        assert_eq!(
            request.data,
            [Segment {
                addr: GuestAddress(0x2000),
                len: 4096
            }]
        );
        assert_eq!(request.status, GuestAddress(0x3000));
    }

    #[test]
    fn test_parse_header_split_and_joined_with_data() {
        let memory = memory();
        header(&memory, 0x1000, 1, 9);
        let chain = [
            desc(0x1000, 8, false),
            desc(0x1008, 8 + 512, false),
            desc(0x3000, 1, true),
        ];
        let request = parse(&chain, &memory).unwrap();
        assert_eq!((request.kind, request.sector), (RequestKind::Out, 9));
        assert_eq!(
            request.data,
            [Segment {
                addr: GuestAddress(0x1010),
                len: 512
            }]
        );
    }

    #[test]
    fn test_parse_status_is_last_byte_of_last_writable_descriptor() {
        let memory = memory();
        header(&memory, 0x1000, 0, 0);
        let chain = [desc(0x1000, 16, false), desc(0x2000, 513, true)];
        let request = parse(&chain, &memory).unwrap();
        assert_eq!(request.status, GuestAddress(0x2200));
        assert_eq!(request.data_len(), 512);
    }

    #[test]
    fn test_parse_refuses_malformed_chains() {
        let memory = memory();
        header(&memory, 0x1000, 1, 0);
        assert_eq!(parse(&[], &memory).unwrap_err().0, RequestError::NoStatus);
        let no_status = [desc(0x1000, 16, false)];
        assert_eq!(
            parse(&no_status, &memory).unwrap_err().0,
            RequestError::NoStatus
        );
        let short = [desc(0x1000, 8, false), desc(0x3000, 1, true)];
        assert_eq!(
            parse(&short, &memory).unwrap_err(),
            (RequestError::BadHeader, Some(GuestAddress(0x3000)))
        );
        let wrong = [
            desc(0x1000, 16, false),
            desc(0x2000, 512, true),
            desc(0x3000, 1, true),
        ];
        assert_eq!(
            parse(&wrong, &memory).unwrap_err().0,
            RequestError::WrongDirection
        );
        let outside = [desc(0x10_0000_0000, 16, false), desc(0x3000, 1, true)];
        assert_eq!(
            parse(&outside, &memory).unwrap_err().0,
            RequestError::Memory
        );
    }
}
