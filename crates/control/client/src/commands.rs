//! The management commands: each is one or two API requests and a printout.

use std::path::PathBuf;
use std::time::Duration;

use gasang_api::{Event, HostInfo, VmInfo};
use http_body_util::BodyExt;
use hyper::Method;

use crate::http::{check, Client, ClientError};
use crate::output;

/// A management command (they need a running gasangd).
#[derive(Debug, clap::Subcommand)]
pub enum ManageCommand {
    /// Store a VM definition (a TOML file).
    Define {
        /// The definition.
        file: PathBuf,
    },
    /// Define a VM and start it; it is forgotten when it stops.
    Create {
        /// The definition.
        file: PathBuf,
    },
    /// Start a defined VM.
    Start(Name),
    /// The running VMs (with --all, every defined VM).
    List {
        /// Include the VMs that are not running.
        #[arg(long)]
        all: bool,
    },
    /// Attach this terminal to a VM's console (scrollback first; Ctrl-] detaches).
    Console(Name),
    /// Stop a VM's vCPUs.
    Pause(Name),
    /// Let a paused VM's vCPUs run.
    Resume(Name),
    /// Press a VM's ACPI power button; destroy it if it has not powered off in time.
    Shutdown {
        /// The VM.
        name: String,
        /// How long the guest has (e.g. 30s, 2m).
        #[arg(long, default_value = "60s", value_parser = parse_timeout)]
        timeout: Duration,
        /// Return only when the VM has stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Reset a VM, as its reset button would.
    Reboot(Name),
    /// Stop a VM now, without asking the guest.
    Destroy(Name),
    /// Forget a VM that is not running.
    Undefine(Name),
    /// One VM's state and settings.
    Info(Name),
    /// Change a VM's definition in $EDITOR (a running VM gets it at its next start).
    Edit(Name),
    /// Lifecycle events (with --follow, as they happen).
    Events {
        /// Keep printing new events.
        #[arg(long)]
        follow: bool,
    },
    /// The host's resources and what the VMs commit of them.
    Host,
}

/// A VM's name.
#[derive(Debug, clap::Args)]
pub struct Name {
    /// The VM.
    pub name: String,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b's') => (&text[..text.len() - 1], 1),
        Some(b'm') => (&text[..text.len() - 1], 60),
        Some(b'h') => (&text[..text.len() - 1], 3600),
        _ => (text, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 2m)"))?;
    Ok(Duration::from_secs(n.saturating_mul(scale)))
}

/// Runs `command` against the daemon at `client`; prints JSON with `json`.
pub async fn run(client: &Client, command: ManageCommand, json: bool) -> Result<(), ClientError> {
    use ManageCommand as C;
    match command {
        C::Define { file } => print_vm(json, &define(client, &file, false).await?),
        C::Create { file } => print_vm(json, &define(client, &file, true).await?),
        C::Start(n) => print_vm(json, &action(client, &n.name, "start").await?),
        C::Pause(n) => print_vm(json, &action(client, &n.name, "pause").await?),
        C::Resume(n) => print_vm(json, &action(client, &n.name, "resume").await?),
        C::Reboot(n) => print_vm(json, &action(client, &n.name, "reboot").await?),
        C::Destroy(n) => print_vm(json, &action(client, &n.name, "destroy").await?),
        C::Shutdown {
            name,
            timeout,
            wait,
        } => shutdown(client, &name, timeout, wait, json).await?,
        C::Undefine(n) => {
            client
                .call(Method::DELETE, &vm_path(&n.name, ""), None)
                .await?;
            if !json {
                println!("{} undefined", n.name);
            }
        }
        C::Info(n) => {
            let vm: VmInfo = client
                .json(Method::GET, &vm_path(&n.name, ""), None)
                .await?;
            print_json_or(json, &vm, || output::vm_details(&vm));
        }
        C::List { all } => {
            let mut vms: Vec<VmInfo> = client.json(Method::GET, "/v1/vms", None).await?;
            vms.retain(|vm| all || vm.state.is_active());
            print_json_or(json, &vms, || output::vm_table(&vms));
        }
        C::Host => {
            let host: HostInfo = client.json(Method::GET, "/v1/host", None).await?;
            print_json_or(json, &host, || output::host_details(&host));
        }
        C::Events { follow } => events(client, follow, json).await?,
        C::Console(n) => crate::console::attach(client, &n.name).await?,
        C::Edit(n) => crate::edit::edit(client, &n.name, json).await?,
    }
    Ok(())
}

/// The API path of VM `name`, with `suffix` ("/start").
pub fn vm_path(name: &str, suffix: &str) -> String {
    // Names are letters, digits, '.', '_' and '-': nothing to escape. Anything else
    // is sent escaped, and the daemon answers that no such VM exists.
    let escaped: String = name
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/v1/vms/{escaped}{suffix}")
}

async fn define(
    client: &Client,
    file: &std::path::Path,
    start: bool,
) -> Result<VmInfo, ClientError> {
    let text =
        std::fs::read(file).map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
    let path = if start {
        "/v1/vms?start=true&transient=true"
    } else {
        "/v1/vms"
    };
    client
        .json(Method::POST, path, Some(("application/toml", text)))
        .await
}

async fn action(client: &Client, name: &str, verb: &str) -> Result<VmInfo, ClientError> {
    client
        .json(Method::POST, &vm_path(name, &format!("/{verb}")), None)
        .await
}

async fn shutdown(
    client: &Client,
    name: &str,
    timeout: Duration,
    wait: bool,
    json: bool,
) -> Result<(), ClientError> {
    let path = vm_path(name, &format!("/shutdown?timeout={}", timeout.as_secs()));
    let mut vm: VmInfo = client.json(Method::POST, &path, None).await?;
    if wait {
        // The daemon destroys the VM at the timeout: a little longer is enough.
        let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(15);
        while vm.state.is_active() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match client.json(Method::GET, &vm_path(name, ""), None).await {
                Ok(now) => vm = now,
                // A transient VM is forgotten once it stops.
                Err(ClientError::Api(e)) if e.code == gasang_api::ErrorCode::NotFound => {
                    vm.state = gasang_api::VmState::Stopped;
                }
                Err(e) => return Err(e),
            }
        }
    }
    print_vm(json, &vm);
    Ok(())
}

async fn events(client: &Client, follow: bool, json: bool) -> Result<(), ClientError> {
    let path = if follow {
        "/v1/events?follow=true"
    } else {
        "/v1/events"
    };
    let response = client.send(Method::GET, path, None, None).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        if !status.is_success() {
            continue;
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_event(&line, json);
        }
    }
    check(status, &pending)
}

fn print_event(line: &[u8], json: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = out.write_all(line);
    } else if let Ok(event) = serde_json::from_slice::<Event>(line) {
        let _ = out.write_all(output::event_line(&event).as_bytes());
    }
    let _ = out.flush();
}

fn print_vm(json: bool, vm: &VmInfo) {
    let state = output::serde_plain(&vm.state);
    print_json_or(json, vm, || format!("{}: {state}\n", vm.name));
}

fn print_json_or<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_timeouts_and_paths() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("5"), Ok(Duration::from_secs(5)));
        assert!(parse_timeout("soon").is_err());
        assert_eq!(vm_path("web-1", "/start"), "/v1/vms/web-1/start");
        assert_eq!(vm_path("a/b", ""), "/v1/vms/a%2Fb");
    }
}
