//! The host side of vsock, as Firecracker's hybrid vsock: a guest connection to host
//! port P becomes a connection to the UNIX socket `<socket>_P`; a host program that
//! connects to `<socket>` and writes `CONNECT P\n` reaches guest port P, and reads
//! `OK <host port>\n` once the guest accepted.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use gasang_bus::RateLimit;

use super::connection::{Connection, State};
use super::packet::{Header, Op, HOST_CID};
use super::VsockError;

/// The first event token of a connection (lower ones are the device's own).
pub const FIRST_TOKEN: u32 = 16;
/// Host ports for host-initiated connections start here, clear of guest-chosen ones.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Connections at most: each holds a host descriptor.
const MAX_CONNECTIONS: usize = 1024;
/// RSTs for strays held at most.
const MAX_ORPHANS: usize = 1024;

static VSOCK_LOG: RateLimit = RateLimit::new(10, 10);

/// A socket the device thread must start or stop watching.
#[derive(Debug)]
pub enum Watch {
    /// A new connection's socket, with its token.
    Add(RawFd, u32),
    /// A connection's socket: stop watching it, then close it.
    Remove(UnixStream),
}

/// Connections and the listening socket.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    path: PathBuf,
    listener: UnixListener,
    conns: HashMap<u32, Connection>,
    by_ports: HashMap<(u32, u32), u32>,
    next_token: u32,
    next_local_port: u32,
    /// RSTs for packets that name no connection.
    orphans: VecDeque<Header>,
    /// Sockets to watch or forget, for the device thread.
    pub watches: Vec<Watch>,
}

/// Binds `path`: a stale socket left by a dead process is replaced, a live one is not.
pub fn bind(path: &Path) -> Result<UnixListener, VsockError> {
    let in_use = || VsockError::InUse(path.to_path_buf());
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() || UnixStream::connect(path).is_ok() {
                return Err(in_use());
            }
            std::fs::remove_file(path).map_err(|e| VsockError::Bind(path.into(), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VsockError::Bind(path.into(), e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| VsockError::Bind(path.into(), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| VsockError::Bind(path.into(), e))?;
    Ok(listener)
}

impl Muxer {
    /// The host side for guest `guest_cid`, listening on `listener` (bound at `path`,
    /// which the device removes when it goes).
    pub fn new(guest_cid: u64, path: PathBuf, listener: UnixListener) -> Self {
        Self {
            guest_cid,
            path,
            listener,
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            next_token: FIRST_TOKEN,
            next_local_port: FIRST_LOCAL_PORT,
            orphans: VecDeque::new(),
            watches: Vec::new(),
        }
    }

    /// The listening socket's descriptor.
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    fn add(&mut self, conn: Connection) {
        let token = self.next_token;
        self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_TOKEN);
        self.watches
            .push(Watch::Add(conn.stream.as_raw_fd(), token));
        self.by_ports
            .insert((conn.local_port, conn.peer_port), token);
        self.conns.insert(token, conn);
    }

    fn remove(&mut self, token: u32) {
        if let Some(conn) = self.conns.remove(&token) {
            self.watches.push(Watch::Remove(conn.stream));
            self.by_ports.remove(&(conn.local_port, conn.peer_port));
        }
    }

    /// Host programs connecting to the main socket.
    pub fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if self.conns.len() >= MAX_CONNECTIONS {
                continue; // dropped: the host program sees its socket close
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let port = self.free_local_port();
            self.add(Connection::new(stream, port, 0, State::AwaitingConnect));
        }
    }

    fn free_local_port(&mut self) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.values().any(|c| c.local_port == port) {
                return port;
            }
        }
    }

    /// A connection's socket is ready.
    pub fn socket_ready(&mut self, token: u32, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if writable {
            conn.flush();
        }
        if !readable {
            return;
        }
        conn.readable = true;
        if conn.state != State::AwaitingConnect {
            return;
        }
        match conn.read_connect_line() {
            Ok(Some(port)) => {
                // Re-keyed: the guest's port is known now.
                self.by_ports.remove(&(conn.local_port, 0));
                conn.peer_port = port;
                conn.state = State::Requesting;
                conn.pending.push_back((Op::Request, 0));
                self.by_ports.insert((conn.local_port, port), token);
            }
            Ok(None) => {}
            Err(()) => self.remove(token),
        }
    }

    /// A packet from the guest, with its payload.
    pub fn guest_packet(&mut self, header: &Header, payload: &[u8]) {
        let key = (header.dst_port, header.src_port);
        let Some(&token) = self.by_ports.get(&key) else {
            return self.unknown(header);
        };
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.peer_credit(header.buf_alloc, header.fwd_cnt);
        match (header.op, conn.state) {
            (Op::Rw, State::Connected) => {
                if !conn.guest_data(payload) {
                    conn.reset();
                }
            }
            (Op::Response, State::Requesting) => conn.accepted(),
            (Op::Shutdown, State::Connected) => conn.guest_shutdown(header.flags),
            (Op::CreditRequest, State::Connected) => {
                // One queued answer is enough, however often the guest asks.
                if !conn.pending.iter().any(|(op, _)| *op == Op::CreditUpdate) {
                    conn.pending.push_back((Op::CreditUpdate, 0));
                }
            }
            (Op::CreditUpdate, _) => {}
            (Op::Rst, _) => self.remove(token),
            _ => conn.reset(),
        }
    }

    /// A packet for no connection: a guest connecting to the host, or a stray.
    fn unknown(&mut self, header: &Header) {
        if header.op == Op::Request && self.conns.len() < MAX_CONNECTIONS {
            let path = format!("{}_{}", self.path.display(), header.dst_port);
            match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(stream) => {
                    let mut conn =
                        Connection::new(stream, header.dst_port, header.src_port, State::Connected);
                    conn.peer_credit(header.buf_alloc, header.fwd_cnt);
                    conn.pending.push_back((Op::Response, 0));
                    self.add(conn);
                    return;
                }
                Err(e) => {
                    if VSOCK_LOG.allow() {
                        tracing::info!("vsock: the guest's connection to {path} failed: {e}");
                    }
                }
            }
        }
        // Bounded: a guest that sends strays and reads nothing gets no more answers.
        if header.op != Op::Rst && self.orphans.len() < MAX_ORPHANS {
            self.orphans
                .push_back(self.reply(header.dst_port, header.src_port, Op::Rst));
        }
    }

    fn reply(&self, local_port: u32, peer_port: u32, op: Op) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: local_port,
            dst_port: peer_port,
            len: 0,
            op,
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
    }

    /// The next packet for the guest: its header, with its payload read into `data`
    /// (at most `data.len()` bytes). `None` when nothing is ready.
    pub fn next_packet(&mut self, data: &mut [u8]) -> Option<Header> {
        if let Some(rst) = self.orphans.pop_front() {
            return Some(rst);
        }
        let tokens: Vec<u32> = self.conns.keys().copied().collect();
        for token in tokens {
            if let Some(header) = self.packet_of(token, data) {
                return Some(header);
            }
        }
        None
    }

    fn packet_of(&mut self, token: u32, data: &mut [u8]) -> Option<Header> {
        let conn = self.conns.get_mut(&token)?;
        let (op, flags, len) = match conn.pending.pop_front() {
            Some((op, flags)) => (op, flags, 0),
            None => match conn.read_data(data) {
                Some(n) => (Op::Rw, 0, n),
                // The read may have queued a SHUTDOWN (end of file) or an RST: it goes
                // now, since no socket event will come to send it later.
                None => conn.pending.pop_front().map(|(op, flags)| (op, flags, 0))?,
            },
        };
        let (buf_alloc, fwd_cnt) = conn.our_credit();
        let (local, peer) = (conn.local_port, conn.peer_port);
        if op == Op::Rst {
            self.remove(token);
        }
        Some(Header {
            flags,
            len: len as u32,
            buf_alloc,
            fwd_cnt,
            ..self.reply(local, peer, op)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};

    use super::*;
    use crate::vsock::packet::{SHUTDOWN_RCV, SHUTDOWN_SEND};

    const GUEST: u64 = 3;

    fn muxer(name: &str) -> (Muxer, PathBuf) {
        let dir = std::env::temp_dir().join(format!("gasang-muxer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.vsock");
        let listener = bind(&path).unwrap();
        (Muxer::new(GUEST, path.clone(), listener), path)
    }

    fn from_guest(op: Op, src_port: u32, dst_port: u32, buf_alloc: u32) -> Header {
        Header {
            src_cid: GUEST,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len: 0,
            op,
            flags: 0,
            buf_alloc,
            fwd_cnt: 0,
        }
    }

    fn next(m: &mut Muxer) -> Option<(Header, Vec<u8>)> {
        let mut data = vec![0u8; 4096];
        let h = m.next_packet(&mut data)?;
        Some((h, data[..h.len as usize].to_vec()))
    }

    #[test]
    fn test_guest_connects_to_a_host_listener_and_data_flows_within_credit() {
        let (mut m, path) = muxer("guest");
        let host = UnixListener::bind(format!("{}_6000", path.display())).unwrap();
        m.guest_packet(&from_guest(Op::Request, 1111, 6000, 8), &[]);
        let (resp, _) = next(&mut m).unwrap();
        assert_eq!(
            (resp.op, resp.src_port, resp.dst_port),
            (Op::Response, 6000, 1111)
        );
        assert_eq!(resp.buf_alloc, super::super::connection::CONN_BUF);
        let (mut peer, _) = host.accept().unwrap();
        let mut rw = from_guest(Op::Rw, 1111, 6000, 8);
        rw.len = 5;
        m.guest_packet(&rw, b"hello");
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // The guest advertised 8 bytes: 20 from the host go 8 at a time.
        peer.write_all(&[7u8; 20]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (data, bytes) = next(&mut m).unwrap();
        assert_eq!((data.op, bytes.len()), (Op::Rw, 8));
        assert!(next(&mut m).is_none(), "no credit left");
        let mut credit = from_guest(Op::CreditUpdate, 1111, 6000, 8);
        credit.fwd_cnt = 8;
        m.guest_packet(&credit, &[]);
        assert_eq!(next(&mut m).unwrap().1.len(), 8);
    }

    #[test]
    fn test_host_end_of_file_reaches_the_guest_without_another_event() {
        let (mut m, path) = muxer("eof");
        let host = UnixListener::bind(format!("{}_6000", path.display())).unwrap();
        m.guest_packet(&from_guest(Op::Request, 1111, 6000, 1 << 16), &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Response);
        let (mut peer, _) = host.accept().unwrap();
        peer.write_all(b"last").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(next(&mut m).unwrap().1, b"last");
        // The read that finds end of file yields the SHUTDOWN itself: a hang, were it
        // left for a socket event that edge-triggered epoll never sends again.
        let (shut, _) = next(&mut m).unwrap();
        assert_eq!((shut.op, shut.flags), (Op::Shutdown, SHUTDOWN_SEND));
        assert!(next(&mut m).is_none());
    }

    #[test]
    fn test_guest_connection_to_nothing_and_strays_get_rsts() {
        let (mut m, _path) = muxer("refused");
        m.guest_packet(&from_guest(Op::Request, 1, 7000, 0), &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Rst);
        m.guest_packet(&from_guest(Op::Rw, 1, 7000, 0), &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Rst);
        // An RST for nothing is not answered.
        m.guest_packet(&from_guest(Op::Rst, 1, 7000, 0), &[]);
        assert!(next(&mut m).is_none());
    }

    #[test]
    fn test_host_connect_line_reaches_the_guest_and_gets_ok() {
        let (mut m, path) = muxer("host");
        let mut host = UnixStream::connect(&path).unwrap();
        host.write_all(b"CONNECT 5000\n").unwrap();
        m.accept();
        let token = FIRST_TOKEN;
        m.socket_ready(token, true, false);
        let (req, _) = next(&mut m).unwrap();
        assert_eq!(
            (req.op, req.dst_port, req.dst_cid),
            (Op::Request, 5000, GUEST)
        );
        assert!(req.src_port >= FIRST_LOCAL_PORT);
        m.guest_packet(&from_guest(Op::Response, 5000, req.src_port, 1 << 16), &[]);
        let mut line = String::new();
        BufReader::new(&host).read_line(&mut line).unwrap();
        assert_eq!(line, format!("OK {}\n", req.src_port));
    }

    #[test]
    fn test_bad_connect_lines_close_the_socket() {
        let (mut m, path) = muxer("badline");
        for line in [&b"CONNECT x\n"[..], b"HELLO 5\n", &[b'C'; 64]] {
            let mut host = UnixStream::connect(&path).unwrap();
            host.write_all(line).unwrap();
            m.accept();
            let token = m.next_token - 1;
            m.socket_ready(token, true, false);
            assert!(next(&mut m).is_none(), "{line:?}");
            assert!(m.conns.is_empty(), "{line:?}");
        }
    }

    #[test]
    fn test_guest_beyond_its_credit_or_closing_gets_an_rst() {
        let (mut m, path) = muxer("credit");
        let _host = UnixListener::bind(format!("{}_6000", path.display())).unwrap();
        m.guest_packet(&from_guest(Op::Request, 1, 6000, 64), &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Response);
        let mut rw = from_guest(Op::Rw, 1, 6000, 64);
        let too_much = vec![0u8; super::super::connection::CONN_BUF as usize + 1];
        rw.len = too_much.len() as u32;
        // The host side does not read: the bytes cannot all leave.
        m.guest_packet(&rw, &too_much);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Rst);
        assert!(m.conns.is_empty());
        m.guest_packet(&from_guest(Op::Request, 2, 6000, 64), &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Response);
        let mut shut = from_guest(Op::Shutdown, 2, 6000, 64);
        shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
        m.guest_packet(&shut, &[]);
        assert_eq!(next(&mut m).unwrap().0.op, Op::Rst);
        assert!(m.conns.is_empty());
    }
}
