//! `gasang console NAME`: this terminal on the VM's console, through the daemon's
//! upgraded connection. The terminal is raw while attached, so keys reach the guest
//! as typed; Ctrl-] (or the end of standard input) detaches and the VM runs on.

use std::io::{IsTerminal, Write};

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::commands::vm_path;
use crate::http::{check, Client, ClientError};

/// The detach key: Ctrl-], as telnet and virsh use.
pub const DETACH: u8 = 0x1d;

/// Puts the terminal back as it was when dropped.
struct RawMode(bool);

impl RawMode {
    fn enable() -> Self {
        let tty = std::io::stdin().is_terminal();
        Self(tty && crossterm::terminal::enable_raw_mode().is_ok())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// Attaches to VM `name`'s console until detached or the console closes.
pub async fn attach(client: &Client, name: &str) -> Result<(), ClientError> {
    let path = vm_path(name, "/console");
    let response = client
        .send(Method::GET, &path, None, Some("gasang-console"))
        .await?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = response.into_body().collect().await?.to_bytes();
        check(status, &body)?;
        return Err(ClientError::Unexpected(format!(
            "HTTP {status} to a console request"
        )));
    }
    let upgraded = hyper::upgrade::on(response).await?;
    let (mut from_vm, mut to_vm) = tokio::io::split(TokioIo::new(upgraded));
    eprint!("[attached to {name}'s console; Ctrl-] detaches]\r\n");
    let raw = RawMode::enable();
    let output = async {
        let mut buf = vec![0u8; 16 << 10];
        let mut stdout = std::io::stdout();
        while let Ok(n @ 1..) = from_vm.read(&mut buf).await {
            if stdout
                .write_all(&buf[..n])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    };
    let input = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            let keys = &buf[..n];
            let (typed, detach) = match keys.iter().position(|&b| b == DETACH) {
                Some(at) => (&keys[..at], true),
                None => (keys, false),
            };
            if to_vm.write_all(typed).await.is_err() || detach {
                break;
            }
        }
        let _ = to_vm.shutdown().await;
    };
    let closed = tokio::select! {
        () = output => true,
        () = input => false,
    };
    drop(raw);
    if closed {
        eprintln!("\r\n[{name}'s console closed: the VM stopped]");
    } else {
        eprintln!("\r\n[detached from {name}]");
    }
    Ok(())
}
