//! The console on the terminal: stdout gets guest output, stdin feeds the UART, or
//! with `--console virtio` the virtio-console port. Or, for a VMM with no terminal,
//! on a UNIX socket ([`ConsoleHub`]).
//!
//! On a TTY, stdin is put in raw mode (so Ctrl-C reaches the guest) and Ctrl-A X quits,
//! as in QEMU; Ctrl-A Ctrl-A sends one Ctrl-A. Otherwise stdin is a plain pipe.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use gasang_bus::lock;
use gasang_legacy::Serial;
use gasang_virtio::console::ConsolePortInput;

use crate::console_socket::{ConsoleHub, HubWriter};
use crate::exit::{ExitLatch, ExitReason};

const CTRL_A: u8 = 0x01;

/// The console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// tcgetattr or tcsetattr failed.
    #[error("cannot put the terminal in raw mode")]
    RawMode(#[source] std::io::Error),
    /// The console socket could not be bound.
    #[error("cannot listen on the console socket {}", path.display())]
    Socket {
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The terminal's original settings, restored on drop.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Result<Self, ConsoleError> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is stdin, open for the process's life; `saved` is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(ConsoleError::RawMode(std::io::Error::last_os_error()));
        }
        let mut raw = saved;
        // SAFETY: `raw` is a valid termios to modify in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: as for tcgetattr; `raw` is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(ConsoleError::RawMode(std::io::Error::last_os_error()));
        }
        Ok(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores settings read from the same fd by `enter`.
        unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

/// Where the guest's console is: the process's terminal, or a socket.
pub struct Console {
    raw: Option<RawTerminal>,
    hub: Option<Arc<ConsoleHub>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            // Bounded: a client that stopped reading does not keep the VMM alive.
            hub.drain(std::time::Duration::from_secs(2));
        }
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("tty", &self.raw.is_some())
            .field("socket", &self.hub.is_some())
            .finish()
    }
}

impl Console {
    /// Uses stdin and stdout; raw mode when stdin is a TTY.
    pub fn stdio() -> Result<Self, ConsoleError> {
        // SAFETY: isatty only inspects the fd.
        let tty = unsafe { libc::isatty(std::io::stdin().as_raw_fd()) } == 1;
        let raw = if tty {
            Some(RawTerminal::enter()?)
        } else {
            None
        };
        Ok(Self { raw, hub: None })
    }

    /// A console on the UNIX socket `path` (see [`ConsoleHub`]); stdin is not read.
    pub fn socket(path: &std::path::Path) -> Result<Self, ConsoleError> {
        let hub = ConsoleHub::serve(path).map_err(|source| ConsoleError::Socket {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            raw: None,
            hub: Some(hub),
        })
    }

    /// Where guest output goes.
    pub fn output(&self) -> Box<dyn Write + Send> {
        match &self.hub {
            Some(hub) => Box::new(HubWriter(hub.clone())),
            None => Box::new(FlushingStdout),
        }
    }

    /// Connects the console's input to `sink`: for the terminal, the stdin
    /// subscriber for the VMM thread's event loop.
    pub fn input(&self, sink: Box<dyn InputSink>, exit: Arc<ExitLatch>) -> Option<ConsoleInput> {
        if let Some(hub) = &self.hub {
            hub.set_sink(sink);
            return None;
        }
        Some(ConsoleInput {
            sink,
            exit,
            escapes: self.raw.is_some(),
            after_ctrl_a: false,
        })
    }
}

/// Stdout, flushed after every write: a prompt without a newline must show.
struct FlushingStdout;

impl Write for FlushingStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// The device the terminal types into.
pub trait InputSink: Send {
    /// Hands `bytes` to the guest.
    fn send(&self, bytes: &[u8]);
}

impl InputSink for Arc<Mutex<Serial>> {
    fn send(&self, bytes: &[u8]) {
        lock(self).queue_input(bytes);
    }
}

impl InputSink for Arc<ConsolePortInput> {
    fn send(&self, bytes: &[u8]) {
        self.push(bytes);
    }
}

/// Reads stdin on the VMM thread.
pub struct ConsoleInput {
    sink: Box<dyn InputSink>,
    exit: Arc<ExitLatch>,
    escapes: bool,
    after_ctrl_a: bool,
}

impl std::fmt::Debug for ConsoleInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleInput")
            .field("escapes", &self.escapes)
            .finish()
    }
}

impl ConsoleInput {
    /// Strips escape sequences from `bytes`; acts on them.
    fn filter(&mut self, bytes: &[u8]) -> Vec<u8> {
        if !self.escapes {
            return bytes.to_vec();
        }
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            match (self.after_ctrl_a, b) {
                (false, CTRL_A) => self.after_ctrl_a = true,
                (false, b) => out.push(b),
                (true, b'x' | b'X') => {
                    self.exit.exit(ExitReason::ConsoleQuit);
                    self.after_ctrl_a = false;
                }
                (true, b) => {
                    out.push(b);
                    self.after_ctrl_a = false;
                }
            }
        }
        out
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 1024];
        let n = match read_stdin(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            // End of input: the guest keeps running without it.
            let _ = ops.remove(events);
            return;
        }
        let input = self.filter(&buf[..n]);
        self.sink.send(&input);
    }

    fn init(&mut self, ops: &mut EventOps) {
        // A regular file or /dev/null cannot be polled: then there is simply no input.
        if let Err(e) = ops.add(Events::new(&std::io::stdin(), EventSet::IN)) {
            tracing::debug!("console input disabled: stdin cannot be polled ({e:?})");
        }
    }
}

/// One read(2) of whatever stdin has. Not std's `Stdin`: it buffers, and epoll would not
/// see input already sitting in that buffer.
fn read_stdin(buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; stdin's fd is open.
    let n = unsafe {
        libc::read(
            std::io::stdin().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(escapes: bool) -> (ConsoleInput, Arc<ExitLatch>) {
        let exit = Arc::new(ExitLatch::new().unwrap());
        let serial = Serial::new(Box::new(gasang_bus::NoIrq), Box::new(std::io::sink()));
        let input = ConsoleInput {
            sink: Box::new(Arc::new(Mutex::new(serial))),
            exit: exit.clone(),
            escapes,
            after_ctrl_a: false,
        };
        (input, exit)
    }

    #[test]
    fn test_console_ctrl_a_x_quits() {
        let (mut input, exit) = input(true);
        assert_eq!(input.filter(b"ls\x01x"), b"ls");
        assert_eq!(exit.reason(), Some(ExitReason::ConsoleQuit));
    }

    #[test]
    fn test_console_ctrl_a_twice_sends_one_ctrl_a() {
        let (mut input, exit) = input(true);
        assert_eq!(input.filter(b"\x01\x01a"), b"\x01a");
        assert_eq!(exit.reason(), None);
    }

    #[test]
    fn test_console_pipe_mode_passes_everything() {
        let (mut input, exit) = input(false);
        assert_eq!(input.filter(b"\x01x"), b"\x01x");
        assert_eq!(exit.reason(), None);
    }
}
