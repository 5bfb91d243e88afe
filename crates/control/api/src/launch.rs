//! A definition as the `gasang run` command line that starts it: the daemon's only
//! way into a VMM, so the VMM checks the files and options itself, as it does for a
//! user.

use std::ffi::OsString;
use std::path::Path;

use crate::definition::{Accel, ConsoleKind, ExitPolicy, NetMode, VmDefinition};

impl VmDefinition {
    /// The arguments after the `gasang` program that run this VM supervised in
    /// `runtime_dir`. A reboot with `on_reboot = "restart"` boots again in the same
    /// process (the console and its scrollback stay); any other end exits it.
    pub fn run_args(&self, runtime_dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["run".into(), "--name".into(), (&self.name).into()];
        args.extend(["--runtime-dir".into(), runtime_dir.into()]);
        args.extend(["--kernel".into(), (&self.kernel).into()]);
        if let Some(initrd) = &self.initrd {
            args.extend(["--initrd".into(), initrd.into()]);
        }
        if let Some(cmdline) = &self.cmdline {
            args.extend(["--cmdline".into(), cmdline.into()]);
        }
        let accel = match self.accel {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Soft => "soft",
        };
        let console = match self.console {
            ConsoleKind::Serial => "serial",
            ConsoleKind::Virtio => "virtio",
        };
        let reboot = match self.on_reboot {
            ExitPolicy::Restart => "restart",
            ExitPolicy::Destroy | ExitPolicy::Preserve => "exit",
        };
        for (flag, value) in [
            ("--memory", self.memory.clone()),
            ("--vcpus", self.vcpus.to_string()),
            ("--accel", accel.into()),
            ("--console", console.into()),
            ("--on-reboot", reboot.into()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        self.device_args(&mut args);
        args
    }

    fn device_args(&self, args: &mut Vec<OsString>) {
        for disk in &self.disks {
            let mut value = OsString::from(&disk.path);
            if disk.readonly {
                value.push(",readonly=on");
            }
            for (key, field) in [("serial", &disk.serial), ("cache", &disk.cache)] {
                if let Some(v) = field {
                    value.push(format!(",{key}={v}"));
                }
            }
            args.extend(["--disk".into(), value]);
        }
        for net in &self.nets {
            let mut value = match (net.mode, &net.tap) {
                (NetMode::Tap, Some(tap)) => format!("tap={tap}"),
                _ => "user".to_string(),
            };
            if let Some(mac) = &net.mac {
                value.push_str(&format!(",mac={mac}"));
            }
            args.extend(["--net".into(), value.into()]);
        }
        if let Some(vsock) = &self.vsock {
            let mut value = OsString::from(format!("cid={},socket=", vsock.cid));
            value.push(&vsock.socket);
            args.extend(["--vsock".into(), value]);
        }
        if self.rng {
            args.push("--rng".into());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn test_the_documented_example_becomes_gasang_runs_flags() {
        let text = include_str!("../../../../docs/examples/web.toml");
        let web = VmDefinition::from_toml(text).unwrap();
        let args: Vec<String> = web
            .run_args(Path::new("/run/gasang/vms/web"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        assert!(line.starts_with("run --name web --runtime-dir /run/gasang/vms/web --kernel "));
        for expected in [
            "--memory 1G --vcpus 2 --accel auto --console serial --on-reboot restart",
            "--disk /var/lib/gasang/disks/web.img --disk",
            "/var/lib/gasang/disks/data.img,readonly=on,serial=data1,cache=none",
            "--net user --net tap=tap0,mac=52:54:00:12:34:56",
            "--vsock cid=3,socket=/run/web.vsock --rng",
        ] {
            assert!(line.contains(expected), "{expected:?} in {line}");
        }
        // The command line stays one argument, spaces and all.
        assert!(args.contains(&"console=ttyS0 root=/dev/vda rw".to_string()));
    }
}
