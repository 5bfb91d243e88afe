//! The `gasang` CLI's management commands (`define`, `start`, `list`, `console`, ...):
//! a client of gasangd's REST API on its Unix socket. It knows the daemon only
//! through `gasang-api`'s types and HTTP.

mod commands;
mod console;
mod edit;
mod http;
mod output;

use std::path::Path;

pub use commands::{vm_path, ManageCommand};
pub use http::{Client, ClientError};

/// The socket when neither `--socket` nor `GASANG_SOCKET` names one.
pub const DEFAULT_SOCKET: &str = "/run/gasang/gasang.sock";

/// Runs one management command against the daemon at `socket`.
pub fn run(socket: &Path, command: ManageCommand, json: bool) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Io(format!("cannot start the async runtime: {e}")))?;
    let client = Client::new(socket);
    let result = runtime.block_on(commands::run(&client, command, json));
    // Standard input is read on a blocking thread that may still wait for a key.
    runtime.shutdown_background();
    result
}
