//! Starting, stopping, pausing and resetting VMs: each request checks and changes
//! the VM's state under the table's lock, then talks to its VMM without the lock.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gasang_api::{ApiError, ErrorCode, EventKind, VmDefinition, VmInfo, VmState};
use gasang_control::{Request, RunState};
use tokio::sync::watch;

use crate::daemon::{conflict, internal, state_word, Daemon, Run, Slot};
use crate::supervise;
use crate::vmm::{self, VmmError};

/// How long a VMM has to stop after a quit request before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(10);

/// Starts VM `name`; `why` is the event's reason.
pub async fn start(daemon: &Arc<Daemon>, name: &str, why: &str) -> Result<VmInfo, ApiError> {
    let (definition, generation) = begin_start(daemon, name)?;
    let dir = daemon.config.run_dir(name);
    let mut child = match vmm::spawn(&daemon.config.vmm, &definition, &dir) {
        Ok(child) => child,
        Err(e) => return Err(abandon_start(daemon, name, generation, &e)),
    };
    let info = match vmm::wait_ready(&dir, &mut child).await {
        Ok(info) => info,
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(abandon_start(daemon, name, generation, &e));
        }
    };
    let started = daemon.with_slot(name, |slot| {
        let run = slot.run.as_mut().filter(|r| r.generation == generation);
        let run = run.ok_or_else(|| conflict(format!("{name} was stopped while starting")))?;
        run.pid = Some(info.pid);
        run.backend = Some(info.accel.clone());
        run.started_unix_ms = info.started_unix_ms;
        slot.state = match info.state {
            RunState::Running => VmState::Running,
            RunState::Paused => VmState::Paused,
        };
        Ok(slot.info())
    })?;
    daemon.events.emit(name, EventKind::Started, why);
    let task = supervise::supervise(daemon.clone(), name.to_string(), generation, Some(child));
    tokio::spawn(task);
    Ok(started)
}

/// Checks that VM `name` may start, and marks it starting.
fn begin_start(daemon: &Daemon, name: &str) -> Result<(VmDefinition, u64), ApiError> {
    let committed = daemon.host_info().committed_memory_bytes;
    let limit = daemon.memory_limit();
    let ratio = daemon.config.memory_overcommit;
    daemon.with_slot(name, |slot| {
        if slot.run.is_some() {
            return Err(conflict(format!(
                "{name} is already {}",
                state_word(slot.state)
            )));
        }
        let definition = slot.stored.definition.clone();
        check_files(&definition)?;
        let wanted = committed + definition.memory_bytes();
        if wanted > limit {
            return Err(ApiError::new(
                ErrorCode::Overcommit,
                format!(
                    "starting {name} would commit {} MiB of guest memory; the limit is {} MiB \
                     ({ratio} x host RAM, gasangd --memory-overcommit)",
                    wanted >> 20,
                    limit >> 20
                ),
            ));
        }
        let generation = daemon.next_generation();
        slot.run = Some(Run {
            generation,
            pid: None,
            backend: None,
            started_unix_ms: crate::now_unix_ms(),
            destroying: None,
            ended: watch::channel(false).0,
        });
        slot.state = VmState::Starting;
        Ok((definition, generation))
    })
}

/// Every file the definition names can be opened for reading.
fn check_files(definition: &VmDefinition) -> Result<(), ApiError> {
    let mut files: Vec<(&str, &Path)> = vec![("kernel", &definition.kernel)];
    if let Some(initrd) = &definition.initrd {
        files.push(("initrd", initrd));
    }
    files.extend(definition.disks.iter().map(|d| ("disk", d.path.as_path())));
    for (what, path) in files {
        if let Err(e) = File::open(path) {
            return Err(ApiError::new(
                ErrorCode::MissingFile,
                format!("{what} {}: {e}", path.display()),
            ));
        }
    }
    Ok(())
}

/// A start failed: the VM is as it was, and the error says why.
fn abandon_start(daemon: &Daemon, name: &str, generation: u64, error: &VmmError) -> ApiError {
    let _ = daemon.with_slot(name, |slot| {
        if slot
            .run
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            if let Some(run) = slot.run.take() {
                run.ended.send_replace(true);
            }
            slot.state = VmState::Stopped;
        }
        Ok(())
    });
    let _ = supervise::forget_if_transient(daemon, name);
    match error {
        VmmError::Failed(why) => ApiError::new(ErrorCode::StartFailed, why.clone()),
        other => internal(other),
    }
}

/// Stops VM `name` now: a quit request, then SIGKILL if it does not stop in time.
/// A crashed (preserved) VM is only marked stopped.
pub async fn destroy(daemon: &Arc<Daemon>, name: &str, why: &str) -> Result<VmInfo, ApiError> {
    let (pid, mut ended, mut info) = daemon.with_slot(name, |slot| {
        let info = slot.info();
        match slot.run.as_mut() {
            None if slot.state == VmState::Crashed => {
                slot.state = VmState::Stopped;
                Ok((None, None, slot.info()))
            }
            None => Err(conflict(format!("{name} is not running"))),
            Some(run) => match run.pid {
                None => Err(conflict(format!(
                    "{name} is starting; destroy it once it has"
                ))),
                Some(pid) => {
                    run.destroying = Some(why.to_string());
                    Ok((Some(pid), Some(run.ended.subscribe()), info))
                }
            },
        }
    })?;
    if let (Some(pid), Some(ended)) = (pid, ended.as_mut()) {
        let dir = daemon.config.run_dir(name);
        let _ = vmm::command(&dir, Request::Quit).await;
        let done = tokio::time::timeout(QUIT_GRACE, ended.wait_for(|e| *e))
            .await
            .is_ok();
        if !done {
            tracing::warn!(vm = name, pid, "the VMM did not quit; killing it");
            vmm::kill(pid);
            let _ = ended.wait_for(|e| *e).await;
        }
        info = daemon.get(name).unwrap_or(VmInfo {
            state: VmState::Stopped,
            pid: None,
            uptime_ms: None,
            backend: None,
            ..info
        });
    }
    supervise::forget_if_transient(daemon, name)?;
    Ok(info)
}

/// Presses VM `name`'s power button; destroys it if it has not powered off after
/// `timeout`.
pub async fn shutdown(
    daemon: &Arc<Daemon>,
    name: &str,
    timeout: Duration,
) -> Result<VmInfo, ApiError> {
    let generation = daemon.with_slot(name, |slot| match (slot.state, &slot.run) {
        (VmState::Running | VmState::ShuttingDown, Some(run)) => {
            slot.state = VmState::ShuttingDown;
            Ok(run.generation)
        }
        (state, _) => Err(refuse(name, state, "running")),
    })?;
    send(daemon, name, Request::PowerButton).await?;
    daemon.events.emit(
        name,
        EventKind::ShutdownRequested,
        format!("shutdown request (destroyed after {}s)", timeout.as_secs()),
    );
    let daemon2 = daemon.clone();
    let name2 = name.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let still = daemon2
            .with_slot(&name2, |s| Ok(s.run.as_ref().map(|r| r.generation)))
            .ok()
            .flatten();
        if still == Some(generation) {
            let why = format!(
                "it did not power off within {}s of the power button",
                timeout.as_secs()
            );
            let _ = destroy(&daemon2, &name2, &why).await;
        }
    });
    daemon.get(name)
}

/// Parks VM `name`'s vCPUs (`pause`) or lets them run again.
pub async fn pause(daemon: &Arc<Daemon>, name: &str, pause: bool) -> Result<VmInfo, ApiError> {
    let (from, to, request, kind) = if pause {
        (
            VmState::Running,
            VmState::Paused,
            Request::Pause,
            EventKind::Paused,
        )
    } else {
        (
            VmState::Paused,
            VmState::Running,
            Request::Resume,
            EventKind::Resumed,
        )
    };
    let needs = if pause { "running" } else { "paused" };
    let changes = daemon.with_slot(name, |slot| match slot.state {
        s if s == from => Ok(true),
        s if s == to => Ok(false),
        s => Err(refuse(name, s, needs)),
    })?;
    if changes {
        send(daemon, name, request).await?;
        daemon.with_slot(name, |slot| {
            if slot.state == from {
                slot.state = to;
            }
            Ok(())
        })?;
        let why = if pause {
            "pause request"
        } else {
            "resume request"
        };
        daemon.events.emit(name, kind, why);
    }
    daemon.get(name)
}

/// Resets VM `name`, as its reset button would.
pub async fn reboot(daemon: &Arc<Daemon>, name: &str) -> Result<VmInfo, ApiError> {
    daemon.with_slot(name, |slot| match slot.state {
        VmState::Running | VmState::ShuttingDown => Ok(()),
        s => Err(refuse(name, s, "running")),
    })?;
    send(daemon, name, Request::Reset).await?;
    daemon
        .events
        .emit(name, EventKind::Restarted, "reboot request");
    daemon.get(name)
}

fn refuse(name: &str, state: VmState, needs: &str) -> ApiError {
    conflict(format!(
        "{name} is {}; it must be {needs}",
        state_word(state)
    ))
}

async fn send(daemon: &Daemon, name: &str, request: Request) -> Result<(), ApiError> {
    let dir = daemon.config.run_dir(name);
    vmm::command(&dir, request).await.map_err(|e| match e {
        VmmError::Refused(why) => conflict(format!("{name}: {why}")),
        other => internal(&other),
    })
}

impl Slot {
    /// Whether this slot's VM is a transient one with no VMM process left.
    pub(crate) fn is_finished_transient(&self) -> bool {
        self.stored.transient && self.run.is_none()
    }
}
