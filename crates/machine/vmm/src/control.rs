//! The control socket: a supervisor (gasangd, or a script) pauses, resumes, shuts
//! down, resets and stops this VMM, and reads its state, with the line-delimited JSON
//! of [`gasang_control`].
//!
//! A thread named `control` accepts; each connection has a thread of its own, so that
//! a client that sends half a line holds up nobody else. The socket outlives reboots
//! in place: each boot attaches its machine ([`ControlTarget`]) while it runs.

use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gasang_bus::lock;
use gasang_control::{
    encode, read_message, DeviceTraps, ProtocolError, Reply, Request, RunState, VmmInfo, VmmStats,
};
use gasang_legacy::acpi_pm::AcpiPm;

use crate::exit::{ExitLatch, ExitReason};
use crate::io::MachineIo;
use crate::vcpus::PauseGate;

/// At most this many control connections at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;

/// What a request acts on: the machine of the current boot.
#[derive(Debug, Clone)]
pub struct ControlTarget {
    /// Stops the machine.
    pub exit: Arc<ExitLatch>,
    /// Pauses the vCPUs.
    pub gate: Arc<PauseGate>,
    /// The ACPI power button.
    pub acpi_pm: Arc<Mutex<AcpiPm>>,
    /// The trap counters.
    pub io: Arc<MachineIo>,
}

/// The control socket's server.
#[derive(Debug, Clone)]
pub struct ControlServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    info: Mutex<VmmInfo>,
    target: Mutex<Option<ControlTarget>>,
    connections: AtomicUsize,
}

impl ControlServer {
    /// Binds `path` and serves it; `info` is what `info` reports (its state and boots
    /// are kept current here).
    pub fn serve(path: &Path, info: VmmInfo) -> std::io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        let server = Self {
            shared: Arc::new(Shared {
                info: Mutex::new(info),
                target: Mutex::new(None),
                connections: AtomicUsize::new(0),
            }),
        };
        let acceptor = server.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    acceptor.accept(stream);
                }
            })?;
        Ok(server)
    }

    /// A boot's machine is up: requests act on it until [`Self::detach`].
    pub fn attach(&self, target: ControlTarget) {
        lock(&self.shared.info).boots += 1;
        *lock(&self.shared.target) = Some(target);
    }

    /// The boot's machine is going.
    pub fn detach(&self) {
        *lock(&self.shared.target) = None;
    }

    fn accept(&self, stream: UnixStream) {
        if self.shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            return tracing::warn!("control connection refused: {MAX_CONNECTIONS} open");
        }
        let server = self.clone();
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                server.converse(stream);
                server.shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("cannot serve a control connection: {e}");
        }
    }

    /// Answers requests until the client closes or sends something unreadable.
    fn converse(&self, stream: UnixStream) {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        loop {
            let reply = match read_message::<Request>(&mut reader) {
                Ok(Some(request)) => self.handle(&request),
                Ok(None) | Err(ProtocolError::Io(_)) => return,
                Err(ProtocolError::TooLong) => {
                    let _ = writer
                        .write_all(encode(&Reply::Error("request too long".into())).as_bytes());
                    return;
                }
                Err(e @ ProtocolError::Json(_)) => {
                    Reply::Error(format!("{e}: {}", source_text(&e)))
                }
            };
            if writer.write_all(encode(&reply).as_bytes()).is_err() {
                return;
            }
        }
    }

    /// Acts on one request.
    pub fn handle(&self, request: &Request) -> Reply {
        let target = lock(&self.shared.target).clone();
        match (request, target) {
            (Request::Info, target) => {
                let mut info = lock(&self.shared.info).clone();
                if target.is_some_and(|t| t.gate.paused()) {
                    info.state = RunState::Paused;
                }
                Reply::Info(info)
            }
            (request, Some(target)) => act(request, &target),
            (_, None) => Reply::Error("the machine is between boots: try again".into()),
        }
    }
}

/// Acts on a request other than `info`.
fn act(request: &Request, target: &ControlTarget) -> Reply {
    match request {
        Request::Info => Reply::Done,
        Request::Pause if target.gate.pause() => Reply::Done,
        Request::Pause => Reply::Error("a vCPU did not stop within 5 s".into()),
        Request::Resume => {
            target.gate.resume();
            Reply::Done
        }
        Request::PowerButton => {
            lock(&target.acpi_pm).press_power_button();
            Reply::Done
        }
        Request::Reset => {
            target.exit.exit(ExitReason::Reset);
            Reply::Done
        }
        Request::Quit => {
            target.exit.exit(ExitReason::Quit);
            Reply::Done
        }
        Request::Stats => Reply::Stats(stats(&target.io)),
    }
}

fn stats(io: &MachineIo) -> VmmStats {
    let traps = io.traps();
    let row = |space: &'static str| {
        move |t: &gasang_bus::RangeTraps| DeviceTraps {
            name: t.name.to_string(),
            space: space.to_string(),
            base: t.base,
            reads: t.reads,
            writes: t.writes,
        }
    };
    let mut devices: Vec<DeviceTraps> = traps.pio.iter().map(row("port")).collect();
    devices.extend(traps.mmio.iter().map(row("mmio")));
    VmmStats {
        devices,
        unknown: traps.unknown,
    }
}

fn source_text(error: &dyn std::error::Error) -> String {
    error.source().map(|s| s.to_string()).unwrap_or_default()
}
