//! The tap back end: an existing tap device, opened with a virtio-net header on every
//! frame (IFF_VNET_HDR), so that checksum and segmentation offloads pass through.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6,
};

use super::backend::NetBackend;
use super::header::HEADER_LEN;
use super::NetError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const TUN_F_CSUM: u32 = 0x01;
const TUN_F_TSO4: u32 = 0x02;
const TUN_F_TSO6: u32 = 0x04;
const TUN_F_TSO_ECN: u32 = 0x08;

/// `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _rest: [u8; 22],
}

/// An open tap device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens the existing tap device `name`.
    pub fn open(name: &str) -> Result<Self, NetError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(NetError::TapName(name.into()));
        }
        // Asked first: TUNSETIFF would create a missing tap rather than fail.
        if !interface_exists(name) {
            return Err(NetError::NoSuchTap(name.into()));
        }
        let failed = |source| NetError::TapOpen {
            name: name.into(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(failed)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _rest: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads a `struct ifreq`, which `req` is laid out as, and
        // writes the same struct back; `req` lives across the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // The interface exists, so EINVAL means it is no (single-queue) tap.
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Err(NetError::NotTap(name.into()));
            }
            return Err(failed(e));
        }
        let mut tap = Self {
            file,
            name: name.into(),
        };
        tap.ioctl_int(TUNSETVNETHDRSZ, HEADER_LEN as i32)
            .map_err(failed)?;
        tap.set_offloads(0).map_err(failed)?;
        Ok(tap)
    }

    fn ioctl_int(&self, request: libc::c_ulong, value: i32) -> std::io::Result<()> {
        // SAFETY: both tun requests used here read one int through the pointer, which
        // points at `value` for the duration of the call.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), request, &value) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether this network namespace has an interface `name` (sysfs may show another's).
fn interface_exists(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads the NUL-terminated string `name` owns.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

impl NetBackend for Tap {
    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<bool> {
        // A full tap queue drops the frame, as a full wire would.
        match self.file.write(frame) {
            Ok(_) => Ok(true),
            Err(e) if would_block(&e) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn set_offloads(&mut self, features: u64) -> std::io::Result<()> {
        let has = |bit: u32| features & (1 << bit) != 0;
        let mut flags = 0;
        if has(VIRTIO_NET_F_GUEST_CSUM) {
            flags |= TUN_F_CSUM;
            if has(VIRTIO_NET_F_GUEST_TSO4) {
                flags |= TUN_F_TSO4;
            }
            if has(VIRTIO_NET_F_GUEST_TSO6) {
                flags |= TUN_F_TSO6;
            }
            if has(VIRTIO_NET_F_GUEST_ECN) {
                flags |= TUN_F_TSO_ECN;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes its flags as the argument itself, not a pointer.
        let r =
            unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("tap {}", self.name)
    }
}
