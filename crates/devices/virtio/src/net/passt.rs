//! The user-mode back end: passt, started as a child on one end of a socket pair.
//! Frames cross the socket as QEMU's stream netdev sends them: a 4-byte big-endian
//! length, then the Ethernet frame (no virtio-net header, no offloads).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use super::backend::NetBackend;
use super::header::{HEADER_LEN, MAX_FRAME};
use super::NetError;

/// The largest Ethernet frame on the stream.
const MAX_ETHERNET: usize = MAX_FRAME - HEADER_LEN;
/// Bytes of outgoing frames held while passt is slow, before the device waits.
const HIGH_WATER: usize = 1 << 20;

/// A running passt and its socket.
#[derive(Debug)]
pub struct Passt {
    stream: UnixStream,
    child: Child,
    /// Received bytes not yet framed: `inbuf[start..end]`.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Framed bytes not yet written: `out[out_at..]`.
    out: Vec<u8>,
    out_at: usize,
}

impl Passt {
    /// Starts passt on a new socket pair.
    pub fn start() -> Result<Self, NetError> {
        let (ours, theirs) = UnixStream::pair().map_err(NetError::PasstStart)?;
        inheritable(&theirs).map_err(NetError::PasstStart)?;
        let child = Command::new("passt")
            .args(["--foreground", "--quiet", "--fd"])
            .arg(theirs.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => NetError::PasstMissing,
                _ => NetError::PasstStart(e),
            })?;
        drop(theirs);
        ours.set_nonblocking(true).map_err(NetError::PasstStart)?;
        tracing::info!("network: passt, pid {}", child.id());
        Ok(Self {
            stream: ours,
            child,
            inbuf: vec![0; 2 * (4 + MAX_ETHERNET)],
            start: 0,
            end: 0,
            out: Vec::new(),
            out_at: 0,
        })
    }

    /// The next whole frame in `inbuf`, copied into `buf` behind a blank header.
    fn next_frame(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        let have = &self.inbuf[self.start..self.end];
        if have.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([have[0], have[1], have[2], have[3]]) as usize;
        if len == 0 || len > MAX_ETHERNET {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("passt sent a frame of {len} bytes"),
            ));
        }
        if have.len() < 4 + len {
            return Ok(None);
        }
        buf[..HEADER_LEN].fill(0);
        buf[HEADER_LEN..HEADER_LEN + len].copy_from_slice(&have[4..4 + len]);
        self.start += 4 + len;
        Ok(Some(HEADER_LEN + len))
    }
}

/// Clears close-on-exec on `socket`, so that passt inherits it.
fn inheritable(socket: &UnixStream) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor `socket` owns changes only its flags.
    let r = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_SETFD, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl NetBackend for Passt {
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            if let Some(n) = self.next_frame(buf)? {
                return Ok(Some(n));
            }
            // Keep the partial frame, at the front.
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            match self.stream.read(&mut self.inbuf[self.end..]) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<bool> {
        if self.out.len() - self.out_at > HIGH_WATER {
            self.flush()?;
            if self.out.len() - self.out_at > HIGH_WATER {
                return Ok(false);
            }
        }
        let ethernet = &frame[HEADER_LEN..];
        self.out
            .extend_from_slice(&(ethernet.len() as u32).to_be_bytes());
        self.out.extend_from_slice(ethernet);
        self.flush()?;
        Ok(true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while self.out_at < self.out.len() {
            match self.stream.write(&self.out[self.out_at..]) {
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(())
    }

    fn ended(&mut self) -> Option<String> {
        let _ = self.child.kill();
        let status = self.child.wait().ok()?;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let why = stderr
            .lines()
            .rfind(|l| !l.contains("syslog"))
            .unwrap_or("no message");
        Some(format!("passt stopped ({status}): {why}"))
    }

    fn describe(&self) -> String {
        format!("passt (pid {})", self.child.id())
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
