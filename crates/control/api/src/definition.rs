//! A VM's definition: what the user wrote in TOML, checked once. Its fields take the
//! same values as `gasang run`'s flags; the VMM checks the files themselves when it
//! starts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The longest VM name: it names a directory and appears in tables.
pub const MAX_NAME: usize = 64;
/// The largest definition accepted, in bytes.
pub const MAX_DEFINITION: usize = 64 << 10;

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// Larger than [`MAX_DEFINITION`].
    #[error("the definition is {0} bytes; at most {MAX_DEFINITION} are accepted")]
    TooLarge(usize),
    /// Not TOML, an unknown field, or a value of the wrong type: where, and what.
    #[error("line {line}, column {column}: {message}")]
    Toml {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column.
        column: usize,
        /// toml's message, on one line.
        message: String,
    },
    /// The name is not usable.
    #[error(
        "name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    Name(String),
    /// The memory size is not a size.
    #[error("memory {0:?}: not a size (e.g. 512M, 2G)")]
    Memory(String),
    /// No vCPU, or too many.
    #[error("vcpus = {0}: must be from 1 to 255")]
    Vcpus(u32),
    /// A path field is empty or relative.
    #[error("{field} {path:?}: must be an absolute path")]
    Path { field: &'static str, path: PathBuf },
    /// A value that would break `gasang run`'s `key=value,...` option syntax.
    #[error("{field} {value:?}: must not contain ','")]
    Comma { field: &'static str, value: String },
    /// A NIC's fields do not fit its mode.
    #[error("net {0}: {1}")]
    Net(usize, &'static str),
    /// The vsock CID is reserved.
    #[error("vsock cid = {0}: must be from 3 to 4294967294 (0 to 2 are reserved)")]
    Cid(u32),
}

/// The CPU backend, as `gasang run --accel`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM where it runs guest kernel code natively, the software CPU otherwise.
    #[default]
    Auto,
    /// Hardware-assisted, through /dev/kvm.
    Kvm,
    /// The software CPU.
    Soft,
}

/// Where the console is, as `gasang run --console`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleKind {
    /// The 8250 UART (ttyS0).
    #[default]
    Serial,
    /// A virtio-console port (hvc0).
    Virtio,
}

/// What the daemon does when a VM powers off, reboots or crashes (as `xl`'s
/// `on_poweroff`, `on_reboot`, `on_crash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitPolicy {
    /// The VM stops (a transient VM is also forgotten).
    Destroy,
    /// The VM starts again.
    Restart,
    /// The VM stays stopped in its end state, its console log kept, until destroyed.
    Preserve,
}

/// A NIC's back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// passt: DHCP, DNS and outbound TCP/UDP without root.
    User,
    /// An existing tap device.
    Tap,
}

/// A disk, as `gasang run --disk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskDefinition {
    /// The image file.
    pub path: PathBuf,
    /// The guest may only read.
    #[serde(default)]
    pub readonly: bool,
    /// The serial the guest sees (/dev/disk/by-id/virtio-SERIAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// "writeback" (the default) or "none" (O_DIRECT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

/// A NIC, as `gasang run --net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetDefinition {
    /// The back end.
    pub mode: NetMode,
    /// The tap device's name, with `mode = "tap"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// The guest's MAC address; one is derived when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A vsock device, as `gasang run --vsock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockDefinition {
    /// The guest's CID.
    pub cid: u32,
    /// The host-side UNIX socket.
    pub socket: PathBuf,
}

/// A VM definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDefinition {
    /// The VM's name, unique on the host.
    pub name: String,
    /// The kernel: a bzImage, a vmlinux or a PVH ELF.
    pub kernel: PathBuf,
    /// The initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line; `gasang run`'s default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Guest memory, e.g. "512M" or "2G".
    #[serde(default = "default_memory")]
    pub memory: String,
    /// vCPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// The CPU backend.
    #[serde(default)]
    pub accel: Accel,
    /// The console device.
    #[serde(default)]
    pub console: ConsoleKind,
    /// On a guest power-off.
    #[serde(default = "destroy")]
    pub on_poweroff: ExitPolicy,
    /// On a guest reboot.
    #[serde(default = "restart")]
    pub on_reboot: ExitPolicy,
    /// On a crash: a guest panic or triple fault, or the VMM process dying.
    #[serde(default = "destroy")]
    pub on_crash: ExitPolicy,
    /// Started when the daemon starts.
    #[serde(default)]
    pub autostart: bool,
    /// Disks, /dev/vda onwards in this order.
    #[serde(default, rename = "disk", skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskDefinition>,
    /// NICs.
    #[serde(default, rename = "net", skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<NetDefinition>,
    /// A vsock device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<VsockDefinition>,
    /// A virtio-rng device.
    #[serde(default)]
    pub rng: bool,
}

fn default_memory() -> String {
    "512M".into()
}
fn default_vcpus() -> u32 {
    1
}
fn destroy() -> ExitPolicy {
    ExitPolicy::Destroy
}
fn restart() -> ExitPolicy {
    ExitPolicy::Restart
}

impl VmDefinition {
    /// Parses and checks a TOML definition.
    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        if text.len() > MAX_DEFINITION {
            return Err(DefinitionError::TooLarge(text.len()));
        }
        let definition: Self = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        definition.validate()?;
        Ok(definition)
    }

    /// The definition as TOML, as `gasang edit` shows it.
    pub fn to_toml(&self) -> String {
        // A struct of strings, numbers, booleans and tables always serializes.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks what can be checked without the files.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if !valid_name(&self.name) {
            return Err(DefinitionError::Name(self.name.clone()));
        }
        memory_bytes(&self.memory).ok_or_else(|| DefinitionError::Memory(self.memory.clone()))?;
        if !(1..=255).contains(&self.vcpus) {
            return Err(DefinitionError::Vcpus(self.vcpus));
        }
        absolute("kernel", &self.kernel)?;
        if let Some(initrd) = &self.initrd {
            absolute("initrd", initrd)?;
        }
        for disk in &self.disks {
            absolute("disk path", &disk.path)?;
            no_comma("disk path", &disk.path.to_string_lossy())?;
            no_comma("disk serial", disk.serial.as_deref().unwrap_or(""))?;
        }
        for net in &self.nets {
            no_comma("net tap", net.tap.as_deref().unwrap_or(""))?;
        }
        for (k, net) in self.nets.iter().enumerate() {
            match (net.mode, &net.tap) {
                (NetMode::Tap, None) => {
                    return Err(DefinitionError::Net(k, "mode = \"tap\" needs tap = NAME"))
                }
                (NetMode::User, Some(_)) => {
                    return Err(DefinitionError::Net(k, "tap is for mode = \"tap\""))
                }
                _ => {}
            }
        }
        if let Some(vsock) = &self.vsock {
            if vsock.cid < 3 || vsock.cid == u32::MAX {
                return Err(DefinitionError::Cid(vsock.cid));
            }
            absolute("vsock socket", &vsock.socket)?;
            no_comma("vsock socket", &vsock.socket.to_string_lossy())?;
        }
        Ok(())
    }

    /// Guest memory in bytes (the definition is valid).
    pub fn memory_bytes(&self) -> u64 {
        memory_bytes(&self.memory).unwrap_or(0)
    }
}

/// A TOML error as one line: its position and message, without the source excerpt.
fn toml_error(text: &str, error: &toml::de::Error) -> DefinitionError {
    let at = error.span().map_or(0, |span| span.start.min(text.len()));
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    DefinitionError::Toml {
        line,
        column,
        message,
    }
}

/// A name fit for a directory, a URL path segment and a table.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn absolute(field: &'static str, path: &std::path::Path) -> Result<(), DefinitionError> {
    if path.is_absolute() {
        return Ok(());
    }
    Err(DefinitionError::Path {
        field,
        path: path.into(),
    })
}

fn no_comma(field: &'static str, value: &str) -> Result<(), DefinitionError> {
    if !value.contains(',') {
        return Ok(());
    }
    Err(DefinitionError::Comma {
        field,
        value: value.into(),
    })
}

/// "512M", "2G", "1024K": bytes, or `None` when not a size of at least 1 MiB.
fn memory_bytes(size: &str) -> Option<u64> {
    let digits = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (num, suffix) = size.split_at(digits);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "K" | "KIB" => 10,
        "" | "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        _ => return None,
    };
    let bytes = num.parse::<u64>().ok()?.checked_mul(1 << shift)?;
    (bytes >= 1 << 20).then_some(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;

    const WEB: &str = r#"
name = "web"
kernel = "/var/lib/gasang/images/vmlinuz"
initrd = "/var/lib/gasang/images/initrd.img"
cmdline = "console=ttyS0 root=/dev/vda rw"
memory = "1G"
vcpus = 2
accel = "auto"
on_crash = "restart"
autostart = true

[[disk]]
path = "/var/lib/gasang/disks/web.img"

[[net]]
mode = "user"
"#;

    #[test]
    fn test_the_issue_example_parses_with_defaults_and_round_trips() {
        let web = VmDefinition::from_toml(WEB).unwrap();
        assert_eq!((web.vcpus, web.memory_bytes()), (2, 1 << 30));
        assert_eq!(web.on_crash, ExitPolicy::Restart);
        assert_eq!(web.on_poweroff, ExitPolicy::Destroy);
        assert_eq!(web.on_reboot, ExitPolicy::Restart);
        assert_eq!(web.console, ConsoleKind::Serial);
        assert_eq!(web.disks.len(), 1);
        assert_eq!(VmDefinition::from_toml(&web.to_toml()).unwrap(), web);
    }

    #[test]
    fn test_bad_definitions_name_their_problem() {
        // A field the daemon does not know, at the top and in a table.
        let unknown_top = VmDefinition::from_toml(&format!("colour = \"blue\"\n{WEB}"));
        let err = unknown_top.unwrap_err().to_string();
        assert!(
            err.starts_with("line 1, column 1: unknown field `colour`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        let unknown_disk = format!("{WEB}[[disk]]\npath = \"/d\"\nsize = 1\n");
        let err = VmDefinition::from_toml(&unknown_disk)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `size`"), "{err}");
        let replace = |from: &str, to: &str| VmDefinition::from_toml(&WEB.replace(from, to));
        let err = |r: Result<VmDefinition, DefinitionError>| r.unwrap_err().to_string();
        assert!(err(replace("\"web\"", "\"../etc\"")).contains("name \"../etc\""));
        assert!(err(replace("\"web\"", "\"\"")).contains("name \"\""));
        assert!(err(replace("\"1G\"", "\"lots\"")).contains("memory \"lots\""));
        assert!(err(replace("\"1G\"", "\"1K\"")).contains("memory"));
        assert!(err(replace("vcpus = 2", "vcpus = 0")).contains("vcpus = 0"));
        assert!(err(replace("vcpus = 2", "vcpus = \"two\"")).contains("invalid type"));
        assert!(
            err(replace("\"/var/lib/gasang/images/vmlinuz\"", "\"vmlinuz\"")).contains("kernel")
        );
        assert!(err(replace("mode = \"user\"", "mode = \"tap\"")).contains("needs tap"));
        assert!(err(replace("disks/web.img", "disks/a,b.img")).contains("must not contain ','"));
        let big = format!("{WEB}#{}", "x".repeat(MAX_DEFINITION));
        assert!(matches!(
            VmDefinition::from_toml(&big),
            Err(DefinitionError::TooLarge(_))
        ));
    }

    #[test]
    fn test_the_documented_example_has_every_field_and_parses() {
        let text = include_str!("../../../../docs/examples/web.toml");
        let web = VmDefinition::from_toml(text).unwrap();
        assert_eq!((web.disks.len(), web.nets.len()), (2, 2));
        assert!(web.rng && web.vsock.is_some() && web.disks[1].readonly);
        assert_eq!(VmDefinition::from_toml(&web.to_toml()).unwrap(), web);
    }

    #[test]
    fn test_names_sizes_and_cids() {
        for good in ["web", "a", "db-1.test_2", &"x".repeat(MAX_NAME)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "é", &"x".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(memory_bytes("512"), Some(512 << 20));
        assert_eq!(memory_bytes("2G"), Some(2 << 30));
        assert_eq!(memory_bytes("99999999999999999G"), None);
        let vsock = "[vsock]\ncid = 2\nsocket = \"/run/v.sock\"\n";
        let err = VmDefinition::from_toml(&format!("{WEB}{vsock}")).unwrap_err();
        assert!(err.to_string().contains("cid = 2"), "{err}");
    }
}
