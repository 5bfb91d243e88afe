//! Command-line arguments, and their validation into a [`VmConfig`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use gasang_boot::BootConfig;
use gasang_memory::{host_total_memory, MemorySize, MemorySizeError};
use gasang_vcpu::{CpuTopology, TopologyError};
use gasang_vmm::{PciDevicesConfig, RebootAction, VmConfig};

use crate::options::{parse_disk, parse_net, parse_vsock, OptionError};

/// The kernel command line when none is given: the serial console, and no reboot
/// loop after a panic (gasang reports the panic instead).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

/// gasang: a hypervisor.
#[derive(Debug, Parser)]
#[command(name = "gasang", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). GASANG_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// gasangd's API socket, for the management commands.
    #[arg(long, global = true, env = "GASANG_SOCKET", default_value = gasang_client::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the management commands' results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a kernel with its serial console on this terminal.
    Run(RunArgs),
    /// Run a static x86-64 Linux program on the software CPU, in user mode.
    UserRun(UserRunArgs),
    /// Management commands, through gasangd.
    #[command(flatten)]
    Manage(gasang_client::ManageCommand),
}

/// `gasang user-run`.
#[derive(Debug, clap::Args)]
pub struct UserRunArgs {
    /// The program: a statically linked x86-64 Linux executable.
    #[arg(value_name = "PROGRAM")]
    pub program: PathBuf,
    /// Its arguments, passed as they are.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<std::ffi::OsString>,
}

/// CPU backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// KVM where it runs guest kernel code natively, the software CPU otherwise (the
    /// choice and its reason are logged; -v shows them).
    Auto,
    /// Hardware-assisted virtualization through /dev/kvm.
    Kvm,
    /// gasang's software CPU: no hardware help needed.
    Soft,
}

/// What a guest reboot does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnReboot {
    /// Stop with exit status 0.
    Exit,
    /// Reset the machine and boot again.
    Restart,
}

/// Where the terminal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsoleKind {
    /// The 8250 UART (ttyS0): every byte traps to gasang.
    Serial,
    /// A virtio-console port (hvc0): bytes travel in rings.
    Virtio,
}

/// `gasang run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The kernel: a bzImage, an ELF vmlinux, or a PVH ELF.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,
    /// An initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line [default: "console=ttyS0 panic=-1", with
    /// --console virtio "console=hvc0 panic=-1"].
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Guest memory: a number with an optional K, M, G or T suffix (a bare number is MiB).
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u32,
    /// The CPU backend.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// What a guest reboot does.
    #[arg(long, value_enum, default_value_t = OnReboot::Exit)]
    pub on_reboot: OnReboot,
    /// A virtio-blk disk: a raw image, PATH[,readonly=on][,serial=ID]
    /// [,cache=writeback|none][,aio=io_uring|threads]. Repeatable: the guest sees
    /// /dev/vda, /dev/vdb, ... in this order.
    #[arg(long, value_name = "PATH[,OPTIONS]")]
    pub disk: Vec<String>,
    /// A virtio-net card: `user` (passt: DHCP, DNS, outbound TCP and UDP, no root) or
    /// `tap=NAME` (an existing tap device), then [,mac=MAC]. Repeatable.
    #[arg(long, value_name = "user|tap=NAME[,mac=MAC]")]
    pub net: Vec<String>,
    /// The terminal: the serial port, or a virtio-console port (the guest needs
    /// console=hvc0, the default command line then).
    #[arg(long, value_enum, default_value_t = ConsoleKind::Serial)]
    pub console: ConsoleKind,
    /// A virtio-vsock device: the guest's CID (3 or more) and the host's UNIX socket.
    /// Host programs connect to PATH and write `CONNECT <port>\n`; the guest's
    /// connections to host port P arrive at PATH_P.
    #[arg(long, value_name = "cid=N,socket=PATH")]
    pub vsock: Option<String>,
    /// At exit, print on stderr how often the guest trapped to each device (software
    /// CPU: every port and MMIO access; KVM: the exits that reached gasang).
    #[arg(long)]
    pub stats: bool,
    /// A virtio-rng entropy source, fed by the host's getrandom.
    #[arg(long)]
    pub rng: bool,
    /// Run supervised, with no terminal: the console on DIR/console.sock (scrollback
    /// first, then live), control requests on DIR/control.sock, and the end recorded
    /// in DIR/exit.json. gasangd starts VMMs this way.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// The VM's name, as the control socket reports it.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// An argument value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// --memory.
    #[error("invalid --memory")]
    Memory(#[source] MemorySizeError),
    /// --vcpus.
    #[error("invalid --vcpus")]
    Vcpus(#[source] TopologyError),
    /// A device option: --disk, --net, ...
    #[error("invalid --{flag} {arg}")]
    Device {
        /// The option.
        flag: &'static str,
        /// The value given.
        arg: String,
        /// What is wrong with it.
        #[source]
        source: OptionError,
    },
}

impl RunArgs {
    /// Validates the arguments once, into the machine's configuration.
    pub fn to_config(&self) -> Result<VmConfig, ArgsError> {
        let memory: MemorySize = self.memory.parse().map_err(ArgsError::Memory)?;
        let memory = match host_total_memory() {
            Some(total) => memory.check_host_limit(total).map_err(ArgsError::Memory)?,
            None => memory,
        };
        let topology = CpuTopology::new(self.vcpus).map_err(ArgsError::Vcpus)?;
        let disks = device_list("disk", &self.disk, parse_disk)?;
        let nets = device_list("net", &self.net, parse_net)?;
        let vsock = device_list("vsock", self.vsock.as_slice(), parse_vsock)?.pop();
        Ok(VmConfig {
            memory,
            topology,
            boot: BootConfig {
                kernel: self.kernel.clone(),
                initrd: self.initrd.clone(),
                cmdline: self.cmdline.clone().unwrap_or_else(|| match self.console {
                    ConsoleKind::Serial => DEFAULT_CMDLINE.into(),
                    ConsoleKind::Virtio => DEFAULT_CMDLINE.replace("ttyS0", "hvc0"),
                }),
            },
            on_reboot: match self.on_reboot {
                OnReboot::Exit => RebootAction::Exit,
                OnReboot::Restart => RebootAction::Restart,
            },
            devices: PciDevicesConfig {
                disks,
                nets,
                rng: self.rng,
                virtio_console: self.console == ConsoleKind::Virtio,
                vsock,
            },
        })
    }
}

/// Parses each value of a repeatable device option.
fn device_list<T>(
    flag: &'static str,
    args: &[String],
    parse: impl Fn(&str) -> Result<T, OptionError>,
) -> Result<Vec<T>, ArgsError> {
    args.iter()
        .map(|arg| {
            parse(arg).map_err(|source| ArgsError::Device {
                flag,
                arg: arg.clone(),
                source,
            })
        })
        .collect()
}
