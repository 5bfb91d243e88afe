//! The console on a UNIX socket, for a VMM that runs with no terminal (under
//! gasangd): guest output goes to a scrollback ring and to every connected client;
//! what a client sends is typed into the guest.
//!
//! A client first gets the scrollback, then the live console. Each client has a
//! writer thread fed through a bounded queue, so a slow or stopped client never holds
//! up a vCPU: when its queue is full it is disconnected (it can reconnect and read
//! the scrollback again).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::console::InputSink;

/// Guest output kept for clients that connect later.
pub const SCROLLBACK_BYTES: usize = 256 * 1024;
/// Output chunks queued per client before it counts as stuck.
const CLIENT_QUEUE: usize = 1024;
/// At most this many clients at once; more are refused.
const MAX_CLIENTS: usize = 16;

/// The console's shared state.
#[derive(Default)]
pub struct ConsoleHub {
    inner: Mutex<HubState>,
    /// Where input goes: the console device of the current boot. A lock of its own,
    /// never held with `inner`: a vCPU writing output holds the device's lock, then
    /// `inner`; input takes this, then the device's.
    sink: Mutex<Option<Box<dyn InputSink>>>,
}

#[derive(Default)]
struct HubState {
    scrollback: VecDeque<u8>,
    clients: Vec<SyncSender<Arc<[u8]>>>,
    /// The clients' writer threads, to wait for at the end.
    writers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ConsoleHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("ConsoleHub")
            .field("scrollback", &state.scrollback.len())
            .field("clients", &state.clients.len())
            .finish()
    }
}

impl ConsoleHub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `path` and serves clients on a thread of its own, named `console`.
    pub fn serve(path: &Path) -> std::io::Result<Arc<Self>> {
        let listener = UnixListener::bind(path)?;
        let hub = Arc::new(Self::default());
        let server = hub.clone();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    server.accept(stream);
                }
            })?;
        Ok(hub)
    }

    /// Sets where client input goes (each boot has its own console device).
    pub fn set_sink(&self, sink: Box<dyn InputSink>) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Guest output: into the scrollback, and to every client.
    pub fn output(&self, bytes: &[u8]) {
        let mut state = self.lock();
        state.scrollback.extend(bytes);
        let excess = state.scrollback.len().saturating_sub(SCROLLBACK_BYTES);
        state.scrollback.drain(..excess);
        let chunk: Arc<[u8]> = bytes.into();
        state
            .clients
            .retain(|client| match client.try_send(chunk.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!("a console client fell behind: disconnected");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// Ends the live console: each client still gets what was queued for it (the
    /// guest's last words before a power-off), within `limit`, then its socket closes.
    pub fn drain(&self, limit: Duration) {
        let writers = {
            let mut state = self.lock();
            // Dropping the senders ends each writer once its queue is empty.
            state.clients.clear();
            std::mem::take(&mut state.writers)
        };
        let deadline = Instant::now() + limit;
        while writers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The scrollback now.
    #[cfg(test)]
    fn scrollback(&self) -> Vec<u8> {
        self.lock().scrollback.iter().copied().collect()
    }

    fn accept(self: &Arc<Self>, stream: UnixStream) {
        let (sender, queue) = sync_channel::<Arc<[u8]>>(CLIENT_QUEUE);
        let reader = match stream.try_clone() {
            Ok(reader) => reader,
            Err(e) => return tracing::warn!("cannot serve a console client: {e}"),
        };
        {
            let mut state = self.lock();
            if state.clients.len() >= MAX_CLIENTS {
                return tracing::warn!("console client refused: {MAX_CLIENTS} already");
            }
            // The scrollback goes first, queued under the lock so that no output is
            // lost or repeated between it and the live console.
            let scrollback: Vec<u8> = state.scrollback.iter().copied().collect();
            if sender.try_send(scrollback.into()).is_err() {
                return;
            }
            state.clients.push(sender);
        }
        let spawned = std::thread::Builder::new()
            .name("console-out".into())
            .spawn(move || write_client(stream, &queue))
            .map(|writer| {
                let mut state = self.lock();
                state.writers.retain(|w| !w.is_finished());
                state.writers.push(writer);
            });
        let hub = self.clone();
        let spawned = spawned.and_then(|()| {
            std::thread::Builder::new()
                .name("console-in".into())
                .spawn(move || hub.read_client(reader))
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a console client's threads: {e}");
        }
    }

    /// Types what the client sends into the guest, until it closes.
    fn read_client(&self, mut stream: UnixStream) {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(sink) = sink.as_ref() {
                sink.send(&buf[..n]);
            }
        }
        // Closing our side ends the writer's next write too.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Writes queued output to one client until either side goes.
fn write_client(mut stream: UnixStream, queue: &std::sync::mpsc::Receiver<Arc<[u8]>>) {
    while let Ok(chunk) = queue.recv() {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The hub as the console devices' output.
pub struct HubWriter(pub Arc<ConsoleHub>);

impl Write for HubWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.output(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    struct Typed(Arc<Mutex<Vec<u8>>>);

    impl InputSink for Typed {
        fn send(&self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
    }

    #[test]
    fn test_scrollback_keeps_the_newest_bytes() {
        let hub = ConsoleHub::default();
        hub.output(&vec![b'a'; SCROLLBACK_BYTES]);
        hub.output(b"tail");
        let kept = hub.scrollback();
        assert_eq!(kept.len(), SCROLLBACK_BYTES);
        assert!(kept.ends_with(b"atail"));
    }

    #[test]
    fn test_drain_delivers_the_last_output_then_closes() {
        let dir = std::env::temp_dir().join(format!("gasang-drain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        let _ = std::fs::remove_file(&path);
        let hub = ConsoleHub::serve(&path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        while hub.lock().writers.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        hub.output(b"last words\n");
        hub.drain(std::time::Duration::from_secs(5));
        let mut all = String::new();
        client.read_to_string(&mut all).unwrap();
        assert_eq!(all, "last words\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_client_gets_scrollback_then_live_output_and_types() {
        let dir = std::env::temp_dir().join(format!("gasang-hub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        let _ = std::fs::remove_file(&path);
        let hub = ConsoleHub::serve(&path).unwrap();
        let typed = Arc::new(Mutex::new(Vec::new()));
        hub.set_sink(Box::new(Typed(typed.clone())));
        hub.output(b"early\n");
        let mut client = UnixStream::connect(&path).unwrap();
        let mut lines = std::io::BufReader::new(client.try_clone().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "early\n");
        hub.output(b"live\n");
        line.clear();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "live\n");
        client.write_all(b"ls\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while typed.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(&*typed.lock().unwrap(), b"ls\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
