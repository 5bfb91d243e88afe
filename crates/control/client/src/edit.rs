//! `gasang edit NAME`: the definition in $VISUAL or $EDITOR, stored again if changed.
//! An edit the daemon refuses is kept in a file, so that no typing is lost.

use hyper::Method;

use crate::commands::vm_path;
use crate::http::{Client, ClientError};

/// Edits VM `name`'s definition.
pub async fn edit(client: &Client, name: &str, json: bool) -> Result<(), ClientError> {
    let path = vm_path(name, "/definition");
    let old = client.call(Method::GET, &path, None).await?;
    let file = std::env::temp_dir().join(format!("gasang-edit-{name}-{}.toml", std::process::id()));
    let io = |e: std::io::Error| ClientError::Io(format!("{}: {e}", file.display()));
    std::fs::write(&file, &old).map_err(io)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .args(["-c", "exec $0 \"$1\"", &editor])
        .arg(&file)
        .status()
        .map_err(io)?;
    if !status.success() {
        let _ = std::fs::remove_file(&file);
        return Err(ClientError::Io(format!(
            "{editor} failed ({status}); nothing changed"
        )));
    }
    let new = std::fs::read(&file).map_err(io)?;
    if new == old {
        let _ = std::fs::remove_file(&file);
        if !json {
            println!("{name}: no change");
        }
        return Ok(());
    }
    let stored: Result<gasang_api::VmInfo, _> = client
        .json(
            Method::PUT,
            &vm_path(name, ""),
            Some(("application/toml", new)),
        )
        .await;
    match stored {
        Ok(vm) => {
            let _ = std::fs::remove_file(&file);
            if json {
                println!("{}", serde_json::to_string_pretty(&vm).unwrap_or_default());
            } else {
                println!("{name}: definition stored");
            }
            Ok(())
        }
        Err(ClientError::Api(e)) => Err(ClientError::Io(format!(
            "{e} (your edit is kept in {})",
            file.display()
        ))),
        Err(e) => Err(e),
    }
}
