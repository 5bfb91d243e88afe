//! The comma-separated device options: `--disk PATH[,key=value]...`.

use std::path::PathBuf;

use gasang_vmm::BlockConfig;

/// A device option is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// No path before the options.
    #[error("no image path")]
    NoPath,
    /// A `key` without `=value`, or a key gasang does not know.
    #[error("unknown option '{0}' (known: readonly=on|off, serial=ID)")]
    UnknownKey(String),
    /// A value the key does not take.
    #[error("'{key}={value}': {why}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What it must be.
        why: &'static str,
    },
}

fn bad(key: &str, value: &str, why: &'static str) -> OptionError {
    OptionError::BadValue {
        key: key.into(),
        value: value.into(),
        why,
    }
}

fn on_off(key: &str, value: &str) -> Result<bool, OptionError> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(bad(key, value, "must be on or off")),
    }
}

/// Parses `--disk`'s value.
pub fn parse_disk(arg: &str) -> Result<BlockConfig, OptionError> {
    let mut parts = arg.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or(OptionError::NoPath)?;
    let mut disk = BlockConfig {
        path: PathBuf::from(path),
        read_only: false,
        serial: None,
    };
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| OptionError::UnknownKey(part.into()))?;
        match key {
            "readonly" => disk.read_only = on_off(key, value)?,
            "serial" => {
                let printable = value.bytes().all(|b| b.is_ascii_graphic());
                if value.is_empty() || value.len() > 20 || !printable {
                    return Err(bad(
                        key,
                        value,
                        "must be 1 to 20 printable ASCII characters",
                    ));
                }
                disk.serial = Some(value.into());
            }
            _ => return Err(OptionError::UnknownKey(key.into())),
        }
    }
    Ok(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_disk_path_and_options() {
        let disk = parse_disk("/tmp/a.img,readonly=on,serial=data1").unwrap();
        assert_eq!(disk.path, PathBuf::from("/tmp/a.img"));
        assert!(disk.read_only);
        assert_eq!(disk.serial.as_deref(), Some("data1"));
        assert!(!parse_disk("b.img").unwrap().read_only);
    }

    #[test]
    fn test_parse_disk_refuses_bad_options() {
        assert_eq!(parse_disk(",readonly=on"), Err(OptionError::NoPath));
        assert_eq!(
            parse_disk("a,colour=red"),
            Err(OptionError::UnknownKey("colour".into()))
        );
        assert_eq!(
            parse_disk("a,readonly"),
            Err(OptionError::UnknownKey("readonly".into()))
        );
        assert!(matches!(
            parse_disk("a,readonly=maybe"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            parse_disk("a,serial=012345678901234567890"),
            Err(OptionError::BadValue { .. })
        ));
    }
}
