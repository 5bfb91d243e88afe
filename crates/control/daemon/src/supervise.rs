//! Watching VMM processes: noticing each one's end, applying the VM's exit policy,
//! and finding the VMs still running when the daemon starts again.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gasang_api::{ApiError, EventKind, ExitPolicy, VmState};
use gasang_control::{ExitKind, RunState, CONSOLE_SOCKET, CONTROL_SOCKET};
use tokio::process::Child;
use tokio::sync::watch;

use crate::daemon::{internal, Daemon, Run, Slot};
use crate::store::StoreError;
use crate::{host, lifecycle, vmm};

/// A VM restarted this many times within [`RESTART_WINDOW`] is left crashed.
const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long a VMM whose machine stopped has to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Waits for the end of VM `name`'s run `generation`, then settles it.
pub async fn supervise(daemon: Arc<Daemon>, name: String, generation: u64, child: Option<Child>) {
    let dir = daemon.config.run_dir(&name);
    let pid = daemon
        .with_slot(&name, |s| Ok(s.run.as_ref().and_then(|r| r.pid)))
        .ok()
        .flatten();
    let mut child = child;
    vmm::wait_closed(&dir, pid).await;
    let status = wait_gone(&mut child, pid).await;
    let record = vmm::read_exit(&dir);
    let (kind, mut detail) = vmm::describe_exit(record.as_ref());
    if record.is_none() {
        if let Some(signal) = status.and_then(|s| s.signal()) {
            detail = format!("the VMM process was killed by signal {signal}");
        }
    }
    finish(&daemon, &name, generation, kind, &detail);
}

/// Waits until the process has gone (reaping it if it is ours); kills it if it
/// lingers after its machine stopped.
async fn wait_gone(child: &mut Option<Child>, pid: Option<u32>) -> Option<ExitStatus> {
    async fn gone(child: &mut Option<Child>, pid: Option<u32>) -> Option<ExitStatus> {
        match child {
            Some(child) => child.wait().await.ok(),
            None => {
                while pid.is_some_and(vmm::alive) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None
            }
        }
    }
    if let Ok(status) = tokio::time::timeout(EXIT_GRACE, gone(child, pid)).await {
        return status;
    }
    if let Some(pid) = pid {
        tracing::warn!(pid, "a VMM whose machine stopped did not exit; killing it");
        vmm::kill(pid);
    }
    gone(child, pid).await
}

/// Settles the end of run `generation` of VM `name`: its state, its event, its exit
/// policy.
pub(crate) fn finish(
    daemon: &Arc<Daemon>,
    name: &str,
    generation: u64,
    kind: ExitKind,
    detail: &str,
) {
    let dir = daemon.config.run_dir(name);
    for socket in [CONTROL_SOCKET, CONSOLE_SOCKET] {
        let _ = std::fs::remove_file(dir.join(socket));
    }
    let outcome = daemon.with_slot(name, |slot| Ok(settle(slot, generation, kind, detail)));
    let Ok(Some(outcome)) = outcome else {
        return;
    };
    daemon.events.emit(name, outcome.event, &outcome.reason);
    match outcome.restart {
        Some(why) => {
            daemon.events.emit(name, EventKind::Restarted, &why);
            tokio::spawn(restart(daemon.clone(), name.to_string(), why));
        }
        None => {
            let _ = forget_if_transient(daemon, name);
        }
    }
}

/// What the end of a run leads to.
struct Outcome {
    event: EventKind,
    reason: String,
    /// Start it again, for this reason.
    restart: Option<String>,
}

/// Updates the slot for the end of its run `generation` (none if that run is not the
/// slot's any more).
fn settle(slot: &mut Slot, generation: u64, kind: ExitKind, detail: &str) -> Option<Outcome> {
    if slot.run.as_ref()?.generation != generation {
        return None;
    }
    let run = slot.run.take()?;
    let d = &slot.stored.definition;
    let (policy, crashed) = match kind {
        ExitKind::Poweroff => (Some(("on_poweroff", d.on_poweroff)), false),
        ExitKind::Reboot => (Some(("on_reboot", d.on_reboot)), false),
        ExitKind::Crash | ExitKind::Failed => (Some(("on_crash", d.on_crash)), true),
        ExitKind::Quit => (None, false),
    };
    let mut reason = detail.to_string();
    let policy = match &run.destroying {
        Some(why) => {
            reason = why.clone();
            None
        }
        None => policy,
    };
    slot.last_exit = Some(reason.clone());
    let mut restart = None;
    slot.state = match policy {
        Some((field, ExitPolicy::Restart)) if may_restart(slot) => {
            restart = Some(format!("{field} = restart"));
            VmState::Stopped
        }
        Some((_, ExitPolicy::Restart)) => {
            reason.push_str(&format!(
                "; not restarted: it restarted {MAX_RESTARTS} times within {}s",
                RESTART_WINDOW.as_secs()
            ));
            slot.last_exit = Some(reason.clone());
            VmState::Crashed
        }
        Some((_, ExitPolicy::Preserve)) if crashed => VmState::Crashed,
        _ => VmState::Stopped,
    };
    run.ended.send_replace(true);
    let event = if crashed {
        EventKind::Crashed
    } else {
        EventKind::Stopped
    };
    Some(Outcome {
        event,
        reason,
        restart,
    })
}

/// Whether the restart policy may act again now, counting this restart if so.
fn may_restart(slot: &mut Slot) -> bool {
    let now = Instant::now();
    slot.restarts
        .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
    if slot.restarts.len() >= MAX_RESTARTS {
        return false;
    }
    slot.restarts.push_back(now);
    true
}

/// Starts a VM again for its exit policy. Boxed: a start spawns a supervisor, which
/// may restart, which starts.
fn restart(
    daemon: Arc<Daemon>,
    name: String,
    why: String,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if let Err(e) = lifecycle::start(&daemon, &name, &why).await {
            let reason = format!("{why} failed: {e}");
            let _ = daemon.with_slot(&name, |slot| {
                slot.last_exit = Some(reason.clone());
                Ok(())
            });
            daemon.events.emit(&name, EventKind::Crashed, reason);
        }
    })
}

/// Forgets a transient VM that has stopped.
pub(crate) fn forget_if_transient(daemon: &Daemon, name: &str) -> Result<(), ApiError> {
    let mut table = daemon.table();
    let finished = table
        .get(name)
        .is_some_and(|s| s.is_finished_transient() && s.state != VmState::Crashed);
    if finished {
        daemon.store().remove(name).map_err(|e| internal(&e))?;
        let _ = std::fs::remove_dir_all(daemon.config.run_dir(name));
        table.remove(name);
        drop(table);
        daemon
            .events
            .emit(name, EventKind::Undefined, "a transient VM stopped");
    }
    Ok(())
}

/// Finds the VMs whose VMM processes outlived the last daemon, and settles those
/// that ended while no daemon watched. Runtime directories from an earlier host boot
/// (another boot ID) are stale: their VMs ended with the host.
pub async fn reattach_all(daemon: &Arc<Daemon>) -> Result<(), StoreError> {
    let boot = host::boot_id();
    let same_boot = daemon.store().meta("boot_id")?.as_deref() == Some(boot.as_str());
    let names: Vec<String> = daemon.table().keys().cloned().collect();
    for name in &names {
        if daemon.config.run_dir(name).join(CONTROL_SOCKET).exists() {
            reattach(daemon, name, same_boot).await;
        }
    }
    daemon.store().set_meta("boot_id", &boot)?;
    Ok(())
}

async fn reattach(daemon: &Arc<Daemon>, name: &str, same_boot: bool) {
    let generation = daemon.next_generation();
    let _ = daemon.with_slot(name, |slot| {
        slot.run = Some(Run {
            generation,
            pid: None,
            backend: None,
            started_unix_ms: crate::now_unix_ms(),
            destroying: None,
            ended: watch::channel(false).0,
        });
        slot.state = VmState::Starting;
        Ok(())
    });
    let dir = daemon.config.run_dir(name);
    let mut answer = None;
    for _ in 0..3 {
        match vmm::info(&dir).await {
            Ok(info) if same_boot && info.name.as_deref() == Some(name) => {
                answer = Some(info);
                break;
            }
            Ok(_) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let Some(info) = answer else {
        let (kind, detail) = match vmm::read_exit(&dir) {
            _ if !same_boot => (ExitKind::Quit, "the host restarted".to_string()),
            record => vmm::describe_exit(record.as_ref()),
        };
        let detail = format!("while gasangd was not running: {detail}");
        finish(daemon, name, generation, kind, &detail);
        return;
    };
    let _ = daemon.with_slot(name, |slot| {
        if let Some(run) = slot.run.as_mut() {
            run.pid = Some(info.pid);
            run.backend = Some(info.accel.clone());
            run.started_unix_ms = info.started_unix_ms;
        }
        slot.state = match info.state {
            RunState::Running => VmState::Running,
            RunState::Paused => VmState::Paused,
        };
        Ok(())
    });
    let why = format!("gasangd restarted; VMM pid {}", info.pid);
    daemon.events.emit(name, EventKind::Reattached, why);
    tokio::spawn(supervise(
        daemon.clone(),
        name.to_string(),
        generation,
        None,
    ));
}

/// Starts every autostart VM that is stopped.
pub async fn autostart(daemon: &Arc<Daemon>) {
    let names: Vec<String> = daemon
        .table()
        .values()
        .filter(|s| s.stored.definition.autostart && s.run.is_none())
        .map(|s| s.stored.name().to_string())
        .collect();
    let starts: Vec<_> = names
        .into_iter()
        .map(|name| {
            let daemon = daemon.clone();
            tokio::spawn(async move {
                if let Err(e) = lifecycle::start(&daemon, &name, "autostart").await {
                    tracing::warn!(vm = name, "autostart failed: {e}");
                    let _ = daemon.with_slot(&name, |slot| {
                        slot.last_exit = Some(format!("autostart failed: {e}"));
                        Ok(())
                    });
                }
            })
        })
        .collect();
    for start in starts {
        let _ = start.await;
    }
}
