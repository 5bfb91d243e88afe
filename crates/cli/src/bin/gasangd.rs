//! `gasangd`: the management daemon. It keeps VM definitions, runs each VM in a VMM
//! process of its own and serves the REST API (docs/api.yaml) on a Unix socket.
//!
//! A failure to start prints one line, `gasangd: <what went wrong>: <why>`, and
//! exits 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gasang_daemon::config::{self, DaemonConfig};

/// gasangd: the gasang management daemon.
#[derive(Debug, Parser)]
#[command(name = "gasangd", version, about)]
struct Args {
    /// The API socket (mode 0600).
    #[arg(long, default_value = config::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The database and each VM's runtime directory (console log, sockets).
    #[arg(long, default_value = config::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The gasang binary that runs each VM [default: the gasang beside gasangd].
    #[arg(long)]
    vmm: Option<PathBuf>,
    /// Active VMs' memory may add up to this many times the host's RAM.
    #[arg(long, default_value_t = config::DEFAULT_MEMORY_OVERCOMMIT)]
    memory_overcommit: f64,
    /// More log output on stderr (-v info, -vv debug). GASANG_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let default = ["warn", "info", "debug"][usize::from(args.verbose.min(2))];
    let filter = tracing_subscriber::EnvFilter::try_from_env("GASANG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let exe = std::env::current_exe().unwrap_or_default();
    let config = DaemonConfig {
        socket: args.socket,
        state_dir: args.state_dir,
        vmm: args.vmm.unwrap_or_else(|| config::default_vmm(&exe)),
        memory_overcommit: args.memory_overcommit,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(gasang_daemon::run(config)),
        Err(e) => {
            eprintln!("gasangd: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gasangd: {}", chain(&e));
            ExitCode::from(2)
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(&format!(": {e}"));
        source = e.source();
    }
    message
}
