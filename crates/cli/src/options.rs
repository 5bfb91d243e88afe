//! The comma-separated device options: `--disk PATH[,key=value]...`,
//! `--net user|tap=NAME[,mac=MAC]`.

use std::path::PathBuf;

use gasang_vmm::{AioConfig, BlockConfig, NetBackendConfig, NetConfig, VsockConfig, MIN_GUEST_CID};

const DISK_KEYS: &str = "readonly=on|off, serial=ID, cache=writeback|none, aio=io_uring|threads";
const NET_KEYS: &str = "mac=52:54:00:12:34:56";
const VSOCK_KEYS: &str = "cid=N, socket=PATH";

/// A device option is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// No path before the options.
    #[error("no image path")]
    NoPath,
    /// A `key` without `=value`, or a key gasang does not know.
    #[error("unknown option '{key}' (known: {known})")]
    UnknownKey {
        /// What was given.
        key: String,
        /// What the device takes.
        known: &'static str,
    },
    /// `--vsock` without one of its keys.
    #[error("missing {0}=")]
    Missing(&'static str),
    /// `--net` without `user` or `tap=NAME` first.
    #[error("'{0}' is not a network back end (use user or tap=NAME)")]
    NetBackend(String),
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
        direct: false,
        aio: AioConfig::Auto,
    };
    for part in parts {
        let (key, value) = key_value(part, DISK_KEYS)?;
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
            "cache" => {
                disk.direct = match value {
                    "writeback" => false,
                    "none" => true,
                    _ => return Err(bad(key, value, "must be writeback or none")),
                }
            }
            "aio" => {
                disk.aio = match value {
                    "io_uring" => AioConfig::IoUring,
                    "threads" => AioConfig::Threads,
                    _ => return Err(bad(key, value, "must be io_uring or threads")),
                }
            }
            _ => return Err(unknown(key, DISK_KEYS)),
        }
    }
    Ok(disk)
}

fn unknown(key: &str, known: &'static str) -> OptionError {
    OptionError::UnknownKey {
        key: key.into(),
        known,
    }
}

fn key_value<'a>(part: &'a str, known: &'static str) -> Result<(&'a str, &'a str), OptionError> {
    part.split_once('=').ok_or_else(|| unknown(part, known))
}

/// Parses `--net`'s value.
pub fn parse_net(arg: &str) -> Result<NetConfig, OptionError> {
    let mut parts = arg.split(',');
    let first = parts.next().unwrap_or_default();
    let backend = match first.split_once('=') {
        None if first == "user" => NetBackendConfig::User,
        Some(("tap", name)) if !name.is_empty() => NetBackendConfig::Tap { name: name.into() },
        _ => return Err(OptionError::NetBackend(first.into())),
    };
    let mut net = NetConfig { backend, mac: None };
    for part in parts {
        let (key, value) = key_value(part, NET_KEYS)?;
        match key {
            "mac" => net.mac = Some(parse_mac(value)?),
            _ => return Err(unknown(key, NET_KEYS)),
        }
    }
    Ok(net)
}

/// Parses `--vsock`'s value.
pub fn parse_vsock(arg: &str) -> Result<VsockConfig, OptionError> {
    let (mut cid, mut socket) = (None, None);
    for part in arg.split(',') {
        let (key, value) = key_value(part, VSOCK_KEYS)?;
        match key {
            "cid" => {
                let why = "must be a number from 3 to 4294967294 (0 to 2 are reserved)";
                let n: u64 = value.parse().map_err(|_| bad(key, value, why))?;
                if !(MIN_GUEST_CID..u64::from(u32::MAX)).contains(&n) {
                    return Err(bad(key, value, why));
                }
                cid = Some(n);
            }
            "socket" if !value.is_empty() => socket = Some(PathBuf::from(value)),
            "socket" => return Err(bad(key, value, "must be a path")),
            _ => return Err(unknown(key, VSOCK_KEYS)),
        }
    }
    Ok(VsockConfig {
        cid: cid.ok_or(OptionError::Missing("cid"))?,
        socket: socket.ok_or(OptionError::Missing("socket"))?,
    })
}

/// Six hex pairs separated by colons, unicast (a guest NIC cannot own a group address).
fn parse_mac(value: &str) -> Result<[u8; 6], OptionError> {
    let why = "must be six hex pairs like 52:54:00:12:34:56, unicast";
    let mut mac = [0u8; 6];
    let mut pairs = value.split(':');
    for byte in &mut mac {
        let pair = pairs.next().filter(|p| p.len() == 2);
        *byte = pair
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| bad("mac", value, why))?;
    }
    if pairs.next().is_some() || mac[0] & 1 != 0 {
        return Err(bad("mac", value, why));
    }
    Ok(mac)
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
        let tuned = parse_disk("c.img,cache=none,aio=threads").unwrap();
        assert!(tuned.direct);
        assert_eq!(tuned.aio, AioConfig::Threads);
        let default = parse_disk("d.img,cache=writeback").unwrap();
        assert_eq!((default.direct, default.aio), (false, AioConfig::Auto));
        assert_eq!(
            parse_disk("e.img,aio=io_uring").unwrap().aio,
            AioConfig::IoUring
        );
    }

    #[test]
    fn test_parse_disk_refuses_bad_options() {
        assert_eq!(parse_disk(",readonly=on"), Err(OptionError::NoPath));
        assert_eq!(
            parse_disk("a,colour=red"),
            Err(unknown("colour", DISK_KEYS))
        );
        assert_eq!(
            parse_disk("a,readonly"),
            Err(unknown("readonly", DISK_KEYS))
        );
        assert!(matches!(
            parse_disk("a,readonly=maybe"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            parse_disk("a,serial=012345678901234567890"),
            Err(OptionError::BadValue { .. })
        ));
        for bad in ["a,cache=writethrough", "a,aio=native"] {
            assert!(
                matches!(parse_disk(bad), Err(OptionError::BadValue { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn test_parse_net_back_ends_and_macs() {
        let user = parse_net("user").unwrap();
        assert_eq!((user.backend, user.mac), (NetBackendConfig::User, None));
        let tap = parse_net("tap=tap0,mac=52:54:00:AB:cd:01").unwrap();
        assert_eq!(
            tap.backend,
            NetBackendConfig::Tap {
                name: "tap0".into()
            }
        );
        assert_eq!(tap.mac, Some([0x52, 0x54, 0, 0xab, 0xcd, 1]));
    }

    #[test]
    fn test_parse_net_refuses_bad_values() {
        for arg in ["", "tap", "tap=", "slirp", "bridge=br0"] {
            assert_eq!(
                parse_net(arg),
                Err(OptionError::NetBackend(
                    arg.split(',').next().unwrap().into()
                )),
                "{arg}"
            );
        }
        for mac in [
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "01:00:5e:00:00:01",
            "52-54-00-12-34-56",
            "52:54:00:12:34:5g",
            "52:54:00:12:34:567",
        ] {
            assert!(
                matches!(
                    parse_net(&format!("user,mac={mac}")),
                    Err(OptionError::BadValue { .. })
                ),
                "{mac}"
            );
        }
        assert_eq!(parse_net("user,vlan=3"), Err(unknown("vlan", NET_KEYS)));
    }

    #[test]
    fn test_parse_vsock() {
        let v = parse_vsock("cid=3,socket=/run/vm1.vsock").unwrap();
        assert_eq!((v.cid, v.socket), (3, PathBuf::from("/run/vm1.vsock")));
        for cid in ["0", "2", "-1", "x", "4294967295"] {
            let arg = format!("cid={cid},socket=/s");
            assert!(
                matches!(parse_vsock(&arg), Err(OptionError::BadValue { .. })),
                "{cid}"
            );
        }
        assert_eq!(parse_vsock("cid=3"), Err(OptionError::Missing("socket")));
        assert_eq!(parse_vsock("socket=/s"), Err(OptionError::Missing("cid")));
        assert_eq!(
            parse_vsock("cid=3,socket=/s,port=1"),
            Err(unknown("port", VSOCK_KEYS))
        );
    }
}
