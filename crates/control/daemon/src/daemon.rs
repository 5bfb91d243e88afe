//! The daemon's table of VMs: each VM's stored definition and its live state. The
//! table's lock is never held across an await; the database is written under it, so
//! the table and the database change together.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use gasang_api::{ApiError, ErrorCode, EventKind, HostInfo, VmDefinition, VmInfo, VmState};
use tokio::sync::watch;

use crate::config::DaemonConfig;
use crate::events::EventBus;
use crate::store::{Store, StoreError, StoredVm};

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory could not be made.
    #[error("cannot create the state directory {}", .0.display())]
    StateDir(PathBuf, #[source] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One VM.
#[derive(Debug)]
pub struct Slot {
    /// What is stored of it.
    pub stored: StoredVm,
    /// Its state.
    pub state: VmState,
    /// Its VMM process, from the start request until the process has gone.
    pub run: Option<Run>,
    /// How it last ended.
    pub last_exit: Option<String>,
    /// When an exit policy last restarted it: a VM that keeps crashing is given up on.
    pub restarts: VecDeque<Instant>,
}

/// A VMM process of one VM.
#[derive(Debug)]
pub struct Run {
    /// Tells this run from the VM's earlier and later ones.
    pub generation: u64,
    /// The process, once it answered.
    pub pid: Option<u32>,
    /// "kvm" or "soft", once it answered.
    pub backend: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// A destroy was asked for, and why: no exit policy applies to this end.
    pub destroying: Option<String>,
    /// Becomes true when the process has gone and the daemon has dealt with it.
    pub ended: watch::Sender<bool>,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Its settings.
    pub config: DaemonConfig,
    /// The lifecycle events.
    pub events: EventBus,
    store: Store,
    vms: Mutex<BTreeMap<String, Slot>>,
    generation: AtomicU64,
    host_memory: u64,
    host_cpus: u32,
}

pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no VM named {name:?}"))
}

pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Conflict, message)
}

pub(crate) fn internal(error: &dyn std::error::Error) -> ApiError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(&format!(": {e}"));
        source = e.source();
    }
    tracing::error!("{message}");
    ApiError::new(ErrorCode::Internal, message)
}

impl Daemon {
    /// Opens the state directory and loads the definitions (every VM stopped until
    /// [`crate::supervise::reattach_all`] finds the ones still running).
    pub fn open(config: DaemonConfig) -> Result<Self, DaemonError> {
        let state_dir = &config.state_dir;
        std::fs::create_dir_all(config.run_dir(""))
            .map_err(|e| DaemonError::StateDir(state_dir.clone(), e))?;
        let store = Store::open(&config.database())?;
        let vms = store
            .list()?
            .into_iter()
            .map(|stored| (stored.name().to_string(), Slot::new(stored)))
            .collect();
        Ok(Self {
            config,
            events: EventBus::default(),
            store,
            vms: Mutex::new(vms),
            generation: AtomicU64::new(1),
            host_memory: crate::host::memory_bytes(),
            host_cpus: crate::host::cpus(),
        })
    }

    /// The table, locked.
    pub(crate) fn table(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` on VM `name`'s slot, under the lock.
    pub(crate) fn with_slot<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Slot) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let mut table = self.table();
        let slot = table.get_mut(name).ok_or_else(|| not_found(name))?;
        f(slot)
    }

    /// A number no run had before.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed)
    }

    /// Every VM, by name.
    pub fn list(&self) -> Vec<VmInfo> {
        self.table().values().map(Slot::info).collect()
    }

    /// VM `name`.
    pub fn get(&self, name: &str) -> Result<VmInfo, ApiError> {
        self.with_slot(name, |slot| Ok(slot.info()))
    }

    /// VM `name`'s definition.
    pub fn definition(&self, name: &str) -> Result<VmDefinition, ApiError> {
        self.with_slot(name, |slot| Ok(slot.stored.definition.clone()))
    }

    /// Stores a new VM.
    pub fn define(&self, definition: VmDefinition, transient: bool) -> Result<VmInfo, ApiError> {
        let name = definition.name.clone();
        let max = self.config.max_name();
        if name.len() > max {
            return Err(ApiError::new(
                ErrorCode::InvalidDefinition,
                format!("name {name:?}: at most {max} characters fit under this state directory"),
            ));
        }
        let mut table = self.table();
        if table.contains_key(&name) {
            return Err(conflict(format!("a VM named {name:?} is already defined")));
        }
        let stored = StoredVm {
            definition,
            transient,
        };
        self.store.put(&stored).map_err(|e| internal(&e))?;
        let slot = Slot::new(stored);
        let info = slot.info();
        table.insert(name.clone(), slot);
        self.events
            .emit(&name, EventKind::Defined, "define request");
        Ok(info)
    }

    /// Replaces VM `name`'s definition; a running VM gets it at its next start.
    pub fn redefine(&self, name: &str, definition: VmDefinition) -> Result<VmInfo, ApiError> {
        if definition.name != name {
            return Err(ApiError::new(
                ErrorCode::InvalidDefinition,
                format!(
                    "the definition is named {:?}, not {name:?}; a VM cannot be renamed",
                    definition.name
                ),
            ));
        }
        self.with_slot(name, |slot| {
            let stored = StoredVm {
                definition,
                transient: slot.stored.transient,
            };
            self.store.put(&stored).map_err(|e| internal(&e))?;
            slot.stored = stored;
            self.events
                .emit(name, EventKind::Defined, "definition replaced");
            Ok(slot.info())
        })
    }

    /// Forgets a VM that is not running.
    pub fn undefine(&self, name: &str) -> Result<(), ApiError> {
        let mut table = self.table();
        let slot = table.get(name).ok_or_else(|| not_found(name))?;
        if slot.run.is_some() {
            return Err(conflict(format!(
                "{name} is {}; destroy it first",
                state_word(slot.state)
            )));
        }
        self.store.remove(name).map_err(|e| internal(&e))?;
        table.remove(name);
        let _ = std::fs::remove_dir_all(self.config.run_dir(name));
        self.events
            .emit(name, EventKind::Undefined, "undefine request");
        Ok(())
    }

    /// The host's resources and the VMs' share of them.
    pub fn host_info(&self) -> HostInfo {
        let table = self.table();
        let active = table.values().filter(|s| s.run.is_some());
        let (memory, vcpus, count) = active.fold((0u64, 0u32, 0u32), |(m, v, n), s| {
            let d = &s.stored.definition;
            (m + d.memory_bytes(), v + d.vcpus, n + 1)
        });
        HostInfo {
            memory_bytes: self.host_memory,
            memory_limit_bytes: self.memory_limit(),
            committed_memory_bytes: memory,
            cpus: self.host_cpus,
            committed_vcpus: vcpus,
            defined: u32::try_from(table.len()).unwrap_or(u32::MAX),
            active: count,
        }
    }

    /// The most guest memory the active VMs may have together.
    pub(crate) fn memory_limit(&self) -> u64 {
        // Rounding a ratio of a byte count: precision past 2^53 bytes does not matter.
        (self.host_memory as f64 * self.config.memory_overcommit) as u64
    }
}

/// The state as a word for messages ("running", "shutting down").
pub(crate) fn state_word(state: VmState) -> &'static str {
    match state {
        VmState::Stopped => "stopped",
        VmState::Starting => "starting",
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::ShuttingDown => "shutting down",
        VmState::Crashed => "crashed",
    }
}

impl Slot {
    fn new(stored: StoredVm) -> Self {
        Self {
            stored,
            state: VmState::Stopped,
            run: None,
            last_exit: None,
            restarts: VecDeque::new(),
        }
    }

    /// The VM as `GET /v1/vms` shows it.
    pub fn info(&self) -> VmInfo {
        let d = &self.stored.definition;
        let run = self.run.as_ref();
        VmInfo {
            name: d.name.clone(),
            state: self.state,
            accel: d.accel,
            backend: run.and_then(|r| r.backend.clone()),
            vcpus: d.vcpus,
            memory_bytes: d.memory_bytes(),
            pid: run.and_then(|r| r.pid),
            uptime_ms: run
                .filter(|r| r.pid.is_some())
                .map(|r| crate::now_unix_ms().saturating_sub(r.started_unix_ms)),
            autostart: d.autostart,
            transient: self.stored.transient,
            last_exit: self.last_exit.clone(),
        }
    }
}
