//! One vsock stream between a guest port and a host UNIX socket: its state, its
//! credit both ways, and the bytes in flight between the ring and the socket.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::packet::{Op, SHUTDOWN_RCV, SHUTDOWN_SEND};

/// The receive buffer gasang advertises for each connection.
pub const CONN_BUF: u32 = 256 << 10;
/// Freed buffer space worth telling the guest about unasked.
const CREDIT_THRESHOLD: u32 = CONN_BUF / 4;
/// Longest `CONNECT <port>\n` line.
const MAX_LINE: usize = 32;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A host program connected to the main socket; its `CONNECT` line is not in yet.
    AwaitingConnect,
    /// The guest was asked to accept (a REQUEST is queued or sent).
    Requesting,
    /// Data flows.
    Connected,
    /// An RST is queued: the connection ends once it is sent.
    Closing,
}

/// A connection.
#[derive(Debug)]
pub struct Connection {
    /// The host side.
    pub stream: UnixStream,
    /// The host's port.
    pub local_port: u32,
    /// The guest's port.
    pub peer_port: u32,
    /// Where it is.
    pub state: State,
    /// Control packets to send, in order, with their shutdown flags.
    pub pending: VecDeque<(Op, u32)>,
    /// The socket had data the last time it was read (edge-triggered).
    pub readable: bool,
    /// Guest bytes not yet written to the socket.
    out: VecDeque<u8>,
    /// The guest's receive buffer and how much of it the guest has consumed.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes sent to the guest, and bytes of the guest's written to the socket.
    tx_cnt: u32,
    fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard.
    fwd_cnt_told: u32,
    /// The socket gave end-of-file; the guest's shutdown flags.
    host_eof: bool,
    guest_shutdown: u32,
    /// The `CONNECT` line so far.
    line: Vec<u8>,
}

impl Connection {
    /// A connection on `stream` in `state`.
    pub fn new(stream: UnixStream, local_port: u32, peer_port: u32, state: State) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            state,
            pending: VecDeque::new(),
            readable: true,
            out: VecDeque::new(),
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_told: 0,
            host_eof: false,
            guest_shutdown: 0,
            line: Vec::new(),
        }
    }

    /// Takes the credit fields of a packet from the guest.
    pub fn peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// Bytes the guest has room for.
    fn credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// The credit fields to put in a packet to the guest (and that it now knows them).
    pub fn our_credit(&mut self) -> (u32, u32) {
        self.fwd_cnt_told = self.fwd_cnt;
        (CONN_BUF, self.fwd_cnt)
    }

    /// Ends the connection: an RST, then it is gone.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.pending.push_back((Op::Rst, 0));
        self.state = State::Closing;
    }

    /// Guest data for the socket; false if the guest sent beyond its credit.
    pub fn guest_data(&mut self, data: &[u8]) -> bool {
        if self.out.len() + data.len() > CONN_BUF as usize {
            return false;
        }
        self.out.extend(data);
        self.flush();
        true
    }

    /// Writes what it can of the guest's bytes to the socket, and tells the guest
    /// about the freed space once it is worth a packet.
    pub fn flush(&mut self) {
        while !self.out.is_empty() {
            let (front, _) = self.out.as_slices();
            match self.stream.write(front) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return self.reset(),
            }
        }
        if self.out.is_empty() && self.guest_shutdown & SHUTDOWN_SEND != 0 {
            self.finish_guest_shutdown();
        }
        let told = self.fwd_cnt.wrapping_sub(self.fwd_cnt_told);
        let queued = self.pending.iter().any(|(op, _)| *op == Op::CreditUpdate);
        if told >= CREDIT_THRESHOLD && !queued && self.state == State::Connected {
            self.pending.push_back((Op::CreditUpdate, 0));
        }
    }

    /// The guest shut down `flags`.
    pub fn guest_shutdown(&mut self, flags: u32) {
        self.guest_shutdown |= flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        if self.out.is_empty() && self.guest_shutdown & SHUTDOWN_SEND != 0 {
            self.finish_guest_shutdown();
        }
    }

    fn finish_guest_shutdown(&mut self) {
        if self.guest_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
            // The guest closed its socket: it waits for our RST.
            self.reset();
        } else {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Reads socket data for the guest into `buf` (at most its credit); `None` when
    /// there is nothing to send now.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Option<usize> {
        let blocked = self.guest_shutdown & SHUTDOWN_RCV != 0;
        if self.state != State::Connected || !self.readable || self.host_eof || blocked {
            return None;
        }
        let want = buf.len().min(self.credit() as usize);
        if want == 0 {
            return None;
        }
        match self.stream.read(&mut buf[..want]) {
            Ok(0) => {
                self.host_eof = true;
                let flags = if self.guest_shutdown & SHUTDOWN_SEND != 0 {
                    SHUTDOWN_RCV | SHUTDOWN_SEND
                } else {
                    SHUTDOWN_SEND
                };
                self.pending.push_back((Op::Shutdown, flags));
                None
            }
            Ok(n) => {
                self.tx_cnt = self.tx_cnt.wrapping_add(n as u32);
                Some(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.readable = false;
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(_) => {
                self.reset();
                None
            }
        }
    }

    /// Reads the host program's `CONNECT <port>\n`: the port once it is all in, an
    /// error if the line is wrong (the socket then just closes).
    pub fn read_connect_line(&mut self) -> Result<Option<u32>, ()> {
        let mut byte = [0u8; 1];
        // One byte at a time: what follows the line is the stream's, not ours.
        while self.line.len() <= MAX_LINE {
            match self.stream.read(&mut byte) {
                Ok(0) => return Err(()),
                Ok(_) if byte[0] == b'\n' => {
                    let line = std::str::from_utf8(&self.line).map_err(|_| ())?;
                    let port = line.strip_prefix("CONNECT ").ok_or(())?;
                    return port.trim().parse().map(Some).map_err(|_| ());
                }
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Err(())
    }

    /// The guest accepted a host-initiated connection: tell the host program.
    pub fn accepted(&mut self) {
        self.state = State::Connected;
        let ok = format!("OK {}\n", self.local_port);
        // A few bytes into an empty socket buffer: they fit.
        if self.stream.write_all(ok.as_bytes()).is_err() {
            self.reset();
        }
    }
}
