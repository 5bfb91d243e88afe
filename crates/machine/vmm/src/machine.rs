//! Building and running one machine.

use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use gasang_boot::Firmware;
use gasang_memory::{create_guest_memory, ram_ranges};
use gasang_vcpu::{AccelError, Accelerator};

use crate::config::{RebootAction, VmConfig};
use crate::console::{Console, ConsoleInput, InputSink};
use crate::control::{ControlServer, ControlTarget};
use crate::devices;
use crate::exit::{ExitLatch, ExitReason};
use crate::io::{MachineIo, TrapCounts};
use crate::pci;
use crate::signals::Signals;
use crate::vcpus::VcpuThreads;

/// The machine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Guest RAM could not be mapped.
    #[error(transparent)]
    Memory(#[from] gasang_memory::GuestMemoryError),
    /// The kernel, initrd or command line is unusable.
    #[error(transparent)]
    Boot(#[from] gasang_boot::BootError),
    /// The ACPI tables could not be written.
    #[error(transparent)]
    Acpi(#[from] gasang_acpi::AcpiError),
    /// The CPU backend refused.
    #[error(transparent)]
    Accel(#[from] AccelError),
    /// Two devices claim the same addresses (a gasang bug).
    #[error("cannot place the legacy devices")]
    Bus(#[from] gasang_bus::BusError),
    /// A PCI device could not be created.
    #[error(transparent)]
    Pci(#[from] pci::PciError),
    /// The event loop failed.
    #[error("the VMM event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    /// A thread, eventfd or signal handler could not be created.
    #[error("cannot set up the VMM's threads and events")]
    Host(#[from] std::io::Error),
}

/// How a machine's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Why it stopped.
    pub reason: ExitReason,
    /// Where its trapped accesses went (the last boot's, after reboots).
    pub traps: TrapCounts,
}

/// Where a machine's console and control requests come from.
#[derive(Debug)]
pub struct MachineHost<'a> {
    /// The console.
    pub console: &'a Console,
    /// The control socket, if there is one.
    pub control: Option<&'a ControlServer>,
}

/// Runs the machine `config` describes on `accel` until it stops for good.
///
/// A guest reboot restarts the machine in place when `config.on_reboot` says so.
pub fn run(
    config: &VmConfig,
    accel: &dyn Accelerator,
    host: &MachineHost<'_>,
) -> Result<RunReport, VmmError> {
    let signals = Signals::install()?;
    loop {
        let report = run_once(config, accel, host, &signals)?;
        if report.reason == ExitReason::Reset && config.on_reboot == RebootAction::Restart {
            tracing::info!("the guest rebooted: resetting the machine");
            continue;
        }
        return Ok(report);
    }
}

fn run_once(
    config: &VmConfig,
    accel: &dyn Accelerator,
    host: &MachineHost<'_>,
    signals: &Signals,
) -> Result<RunReport, VmmError> {
    let console = host.console;
    let memory = create_guest_memory(config.memory)?;
    let ranges = ram_ranges(config.memory);
    let pci_host = config.devices.any().then(|| pci::host(config.memory));
    let acpi = devices::acpi_machine(config.topology, pci_host);
    let rsdp = gasang_acpi::write_tables(&memory, &acpi)?;
    let boot = gasang_boot::load(&memory, &config.boot, &ranges, Firmware { rsdp })?;
    tracing::debug!("guest memory, ACPI tables and kernel loaded");
    let vm = accel.create_vm(&memory, config.topology)?;
    tracing::debug!("{} VM created", accel.name());
    let exit = Arc::new(ExitLatch::new()?);
    let io = Arc::new(MachineIo::default());
    let legacy = devices::attach(
        &io.pio,
        vm.as_ref(),
        exit.clone(),
        console.output(),
        config.memory,
    )?;
    let queues = u16::try_from(config.topology.vcpus()).unwrap_or(u16::MAX);
    let virtio = pci::create_devices(&config.devices, queues, || console.output())?;
    // Held until the machine stops: dropping it stops the devices' threads.
    let _pci = pci_host
        .map(|host| pci::attach(&io, &vm, &memory, &host, virtio.devices))
        .transpose()?;
    let input: Box<dyn InputSink> = match virtio.console_input {
        Some(port) => Box::new(port),
        None => Box::new(legacy.serial.clone()),
    };
    // Before the vCPUs run: a console client's first keystrokes must find the device.
    let console_input = console.input(input, exit.clone());
    let vcpus = (0..config.topology.vcpus())
        .map(|index| vm.create_vcpu(index, &boot))
        .collect::<Result<Vec<_>, _>>()?;
    let threads = VcpuThreads::spawn(vcpus, &io, &exit)?;
    tracing::debug!("{} vCPU threads started", config.topology.vcpus());
    if let Some(control) = host.control {
        control.attach(ControlTarget {
            exit: exit.clone(),
            gate: threads.gate(),
            acpi_pm: legacy.acpi_pm.clone(),
            io: io.clone(),
        });
    }
    let looped = event_loop(&exit, console_input, signals);
    if let Some(control) = host.control {
        control.detach();
    }
    threads.stop();
    tracing::debug!("{} guest accesses reached no device", io.unknown_accesses());
    looped?;
    Ok(RunReport {
        reason: exit
            .reason()
            .expect("the event loop only ends once a reason is set"),
        traps: io.traps(),
    })
}

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The VMM thread: console input (from the terminal) and signals until the machine
/// stops.
fn event_loop(
    exit: &Arc<ExitLatch>,
    input: Option<ConsoleInput>,
    signals: &Signals,
) -> Result<(), VmmError> {
    let mut events = EventManager::<Subscriber>::new().map_err(VmmError::EventLoop)?;
    events.add_subscriber(Arc::new(Mutex::new(ExitWatcher(exit.clone()))));
    events.add_subscriber(Arc::new(Mutex::new(signals.subscriber(exit.clone()))));
    if let Some(input) = input {
        events.add_subscriber(Arc::new(Mutex::new(input)));
    }
    while exit.reason().is_none() {
        events.run().map_err(VmmError::EventLoop)?;
    }
    Ok(())
}

/// Wakes the event loop when a vCPU or device sets the exit reason.
#[derive(Debug)]
struct ExitWatcher(Arc<ExitLatch>);

impl MutEventSubscriber for ExitWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // Draining is all: the loop checks the reason after every wake-up.
        let _ = self.0.wake_fd().read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.wake_fd(), EventSet::IN)) {
            tracing::error!("cannot watch for machine exits: {e:?}");
        }
    }
}
