//! `gasang`: run virtual machines.
//!
//! Every failure prints one line, `gasang: <what went wrong>: <why>`, and exits
//! non-zero; nothing here panics on bad input.

mod accel;
mod args;
mod managed;
mod options;

use std::process::ExitCode;

use clap::Parser;
use gasang_control::{ExitKind, ExitRecord};
use gasang_vmm::{Console, ExitReason, MachineHost, RangeTraps, TrapCounts};

use crate::args::{Cli, Command, RunArgs, UserRunArgs};

/// Exit status for a machine that crashed (triple fault, panic, backend error).
const STATUS_GUEST_CRASHED: u8 = 1;
/// Exit status for a configuration or host error before the guest ran.
const STATUS_SETUP_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Run(args) => run(&args),
        Command::UserRun(args) => user_run(&args),
        Command::Manage(command) => manage(&cli.socket, command, cli.json),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GASANG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn fail(error: &dyn std::error::Error, runtime_dir: Option<&std::path::Path>) -> ExitCode {
    let message = gasang_vmm::error_chain(error);
    eprintln!("gasang: {message}");
    if let Some(dir) = runtime_dir {
        let record = ExitRecord {
            kind: ExitKind::Failed,
            detail: message,
            status: STATUS_SETUP_FAILED,
        };
        managed::record_exit(dir, &record);
    }
    ExitCode::from(STATUS_SETUP_FAILED)
}

fn run(args: &RunArgs) -> ExitCode {
    let dir = args.runtime_dir.as_deref();
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) => return fail(&e, dir),
    };
    let accel = match accel::choose(args.accel) {
        Ok((accel, why)) => {
            tracing::info!("CPU backend: {why}");
            accel
        }
        Err(e) => return fail(&e, dir),
    };
    let (console, control) = match dir {
        Some(dir) => {
            match managed::Managed::start(dir, args.name.as_deref(), accel.name(), &config) {
                Ok(managed) => (managed.console, Some(managed.control)),
                Err(e) => return fail(&e, None),
            }
        }
        None => match Console::stdio() {
            Ok(console) => (console, None),
            Err(e) => return fail(&e, None),
        },
    };
    let host = MachineHost {
        console: &console,
        control: control.as_ref(),
    };
    let outcome = gasang_vmm::run(&config, accel.as_ref(), &host);
    drop(console);
    match outcome {
        Ok(run) => {
            if args.stats {
                print_traps(&run.traps);
            }
            let ending = ending(&run.reason);
            if let Some(message) = &ending.message {
                eprintln!("gasang: {message}");
            }
            if let Some(dir) = dir {
                let detail = ending
                    .message
                    .clone()
                    .unwrap_or_else(|| "powered off".into());
                let record = ExitRecord {
                    kind: ending.kind,
                    detail,
                    status: ending.status,
                };
                managed::record_exit(dir, &record);
            }
            ExitCode::from(ending.status)
        }
        Err(e) => fail(&e, dir),
    }
}

/// `--stats`: one line per device the guest reached, busiest first, then the total.
fn print_traps(traps: &TrapCounts) {
    let mut rows: Vec<(&str, &RangeTraps)> = traps.pio.iter().map(|t| ("port", t)).collect();
    rows.extend(traps.mmio.iter().map(|t| ("mmio", t)));
    rows.sort_by_key(|(_, t)| std::cmp::Reverse(t.reads + t.writes));
    eprintln!("gasang: traps to devices (reads, writes):");
    let mut total = traps.unknown;
    for (space, t) in rows.iter().filter(|(_, t)| t.reads + t.writes > 0) {
        let range = format!("{space} {:#x}+{:#x}", t.base, t.len);
        eprintln!(
            "  {:<12} {range:<26} {:>12} {:>12}",
            t.name, t.reads, t.writes
        );
        total += t.reads + t.writes;
    }
    eprintln!("  {:<12} {:<26} {:>25}", "no device", "", traps.unknown);
    eprintln!("  {:<12} {:<26} {total:>25}", "total", "");
}

/// How a run ended: what to tell the user (nothing for a plain poweroff), the exit
/// status, and the category a supervisor's policies act on.
struct Ending {
    message: Option<String>,
    status: u8,
    kind: ExitKind,
}

fn ending(reason: &ExitReason) -> Ending {
    let (message, status, kind) = match reason {
        ExitReason::PowerOff => (None, 0, ExitKind::Poweroff),
        ExitReason::Reset => (Some("the guest rebooted".to_string()), 0, ExitKind::Reboot),
        ExitReason::ConsoleQuit => (Some("quit from the console".to_string()), 0, ExitKind::Quit),
        ExitReason::Quit => (Some("quit on request".to_string()), 0, ExitKind::Quit),
        ExitReason::Signal(n) => (Some(format!("stopped by signal {n}")), 0, ExitKind::Quit),
        ExitReason::DebugExit(code) => (
            None,
            u8::try_from(*code).unwrap_or(u8::MAX),
            ExitKind::Poweroff,
        ),
        ExitReason::GuestPanic => (
            Some("the guest kernel panicked (reported through pvpanic)".into()),
            1,
            ExitKind::Crash,
        ),
        ExitReason::TripleFault { vcpu } => (
            Some(format!("the guest triple-faulted on vCPU {vcpu}")),
            STATUS_GUEST_CRASHED,
            ExitKind::Crash,
        ),
        ExitReason::VcpuFailed(why) => (Some(why.clone()), STATUS_GUEST_CRASHED, ExitKind::Crash),
    };
    Ending {
        message,
        status,
        kind,
    }
}

/// A management command: 0, or 1 with the daemon's (or the connection's) one line.
fn manage(socket: &std::path::Path, command: gasang_client::ManageCommand, json: bool) -> ExitCode {
    match gasang_client::run(socket, command, json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gasang: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `gasang user-run`: the program's own exit status, or 128 + the signal that killed it.
fn user_run(args: &UserRunArgs) -> ExitCode {
    use std::os::unix::ffi::OsStrExt;
    let mut argv = vec![args.program.as_os_str().as_bytes().to_vec()];
    argv.extend(args.args.iter().map(|a| a.as_bytes().to_vec()));
    let env: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    match gasang_user::run(&args.program, &argv, &env) {
        Ok(status) => ExitCode::from((status & 0xff) as u8),
        Err(e) => {
            eprintln!("gasang: {}", gasang_vmm::error_chain(&e));
            ExitCode::from(u8::try_from(e.exit_status()).unwrap_or(u8::MAX))
        }
    }
}
