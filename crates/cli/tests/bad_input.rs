//! Every wrong input gets one clear line naming the problem, a non-zero status, and no
//! panic or backtrace.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::{assert_one_line_error, gasang, pvh_guest, run_kernel, run_pvh};

fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("gasang-bad-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn test_bad_missing_kernel() {
    let out = gasang()
        .args(["run", "--kernel", "/nonexistent/vmlinuz"])
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        2,
        "cannot read kernel '/nonexistent/vmlinuz': No such file or directory",
    );
}

#[test]
fn test_bad_kernel_is_a_directory() {
    let out = gasang().args(["run", "--kernel", "/tmp"]).output().unwrap();
    assert_one_line_error(&out, 2, "cannot read kernel '/tmp'");
}

#[test]
fn test_bad_kernel_is_not_a_kernel() {
    let path = temp("text", &b"this is not a kernel\n".repeat(200));
    let out = gasang()
        .args(["run", "--kernel"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_one_line_error(
        &out,
        2,
        "is not a kernel: it is neither an ELF vmlinux nor a bzImage",
    );
}

#[test]
fn test_bad_kernel_is_a_truncated_elf() {
    let path = temp("elf", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    let out = gasang()
        .args(["run", "--kernel"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_one_line_error(&out, 2, "cannot load kernel");
}

/// An ELF32 kernel without a PVH note has no entry gasang can use.
#[test]
fn test_bad_elf32_kernel_without_pvh_note() {
    let path = common::elf32_guest("pvh-test-elf32-no-note", &["--remove-section=.note.Xen"]);
    let out = run_kernel(&path, &[]);
    assert_one_line_error(&out, 2, "32-bit ELF kernel without a Xen PVH entry note");
}

/// An ELF32 kernel whose segment would load outside guest RAM (at 1 GiB + 1 MiB in a
/// 64 MiB guest).
#[test]
fn test_bad_elf32_kernel_segment_outside_ram() {
    let path = common::elf32_guest(
        "pvh-test-elf32-high",
        &["--change-section-lma", "*+0x40000000"],
    );
    let out = run_kernel(&path, &["--memory", "64M"]);
    assert_one_line_error(&out, 2, "has a segment at 0x40100000");
}

/// An ELF32 file larger than guest RAM is refused before it is read (a sparse 2 GiB
/// file here, for a 64 MiB guest).
#[test]
fn test_bad_elf32_kernel_larger_than_ram() {
    let path = temp("elf32-huge", b"\x7fELF\x01\x01\x01");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let out = run_kernel(&path, &["--memory", "64M"]);
    std::fs::remove_file(&path).unwrap();
    assert_one_line_error(&out, 2, "(2147483648 bytes) is larger than guest RAM");
}

/// An ELF32 kernel cut short inside a segment, or with headers past its end.
#[test]
fn test_bad_elf32_kernel_truncated() {
    let whole = std::fs::read(common::elf32_guest("pvh-test-elf32-whole", &[])).unwrap();
    for (len, needle) in [
        (
            0x1100,
            "is cut short: a segment lies past the end of the file",
        ),
        (0x30, "cannot load 32-bit ELF kernel"),
    ] {
        let path = temp("elf32", &whole[..len]);
        let out = run_kernel(&path, &[]);
        std::fs::remove_file(&path).unwrap();
        assert_one_line_error(&out, 2, needle);
    }
}

#[test]
fn test_bad_initrd_missing() {
    let out = run_pvh(&["--initrd", "/nonexistent/initrd.img"]);
    assert_one_line_error(&out, 2, "cannot read initrd '/nonexistent/initrd.img'");
}

#[test]
fn test_bad_initrd_too_large_for_memory() {
    let path = temp("initrd", &vec![0u8; 20 << 20]);
    let out = run_pvh(&["--memory", "16M", "--initrd", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_one_line_error(&out, 2, "does not fit in guest memory");
}

#[test]
fn test_bad_memory_below_minimum() {
    let out = run_pvh(&["--memory", "8M"]);
    assert_one_line_error(&out, 2, "invalid --memory: 8 MiB is too little memory");
}

#[test]
fn test_bad_memory_not_a_size() {
    let out = run_pvh(&["--memory", "lots"]);
    assert_one_line_error(&out, 2, "invalid --memory: 'lots' is not a size");
}

#[test]
fn test_bad_memory_more_than_host() {
    let out = run_pvh(&["--memory", "64T"]);
    assert_one_line_error(&out, 2, "is more memory than this host can give a guest");
}

#[test]
fn test_bad_zero_vcpus() {
    let out = run_pvh(&["--vcpus", "0"]);
    assert_one_line_error(&out, 2, "invalid --vcpus: a guest needs at least 1 vCPU");
}

#[test]
fn test_bad_too_many_vcpus() {
    let out = run_pvh(&["--vcpus", "255"]);
    assert_one_line_error(
        &out,
        2,
        "invalid --vcpus: 255 vCPUs is more than the limit of 254",
    );
}

#[test]
fn test_bad_cmdline_not_ascii() {
    let out = run_pvh(&["--cmdline", "console=ttyS0 café"]);
    assert_one_line_error(&out, 2, "printable ASCII");
}

#[test]
fn test_bad_unknown_flag_is_a_usage_error() {
    let out = gasang().args(["run", "--kernal", "x"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unexpected argument '--kernal'"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

/// Runs `gasang ARGS` with an empty /dev, in a private mount namespace (needs root).
fn without_dev_kvm(args: &str) -> std::process::Output {
    let script = format!(
        "mount -t tmpfs none /dev && exec {} {args} --kernel {}",
        env!("CARGO_BIN_EXE_gasang"),
        pvh_guest().display()
    );
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap()
}

#[test]
fn test_bad_dev_kvm_missing() {
    let out = without_dev_kvm("run --accel kvm");
    assert_one_line_error(&out, 2, "/dev/kvm does not exist");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--accel soft"));
}

/// `--accel auto` (the default) is not an error without /dev/kvm: it says why it
/// chose the software CPU, and the guest runs there.
#[test]
fn test_auto_without_dev_kvm_runs_on_the_software_cpu() {
    let out = without_dev_kvm("-v run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("CPU backend: the software CPU: /dev/kvm does not exist"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("exit: poweroff"));
}

/// Runs gasang as `nobody`, who may not open the root-only /dev/kvm.
#[test]
fn test_bad_dev_kvm_not_permitted() {
    let guest = pvh_guest();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_gasang"))
        .args(["run", "--accel", "kvm", "--kernel"])
        .arg(guest)
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "permission denied opening /dev/kvm");
    assert!(String::from_utf8_lossy(&out.stderr).contains("'kvm' group"));
}

#[test]
fn test_bad_disk_missing() {
    let out = run_pvh(&["--disk", "/nonexistent/disk.img"]);
    assert_one_line_error(
        &out,
        2,
        "cannot open disk image /nonexistent/disk.img: No such file or directory",
    );
}

#[test]
fn test_bad_disk_unknown_option_and_bad_serial() {
    let out = run_pvh(&["--disk", "a.img,colour=red"]);
    assert_one_line_error(
        &out,
        2,
        "invalid --disk a.img,colour=red: unknown option 'colour'",
    );
    let out = run_pvh(&["--disk", "a.img,serial=has space"]);
    assert_one_line_error(&out, 2, "must be 1 to 20 printable ASCII characters");
    let out = run_pvh(&["--disk", ",readonly=on"]);
    assert_one_line_error(&out, 2, "no image path");
    let out = run_pvh(&["--disk", "a.img,cache=unsafe"]);
    assert_one_line_error(&out, 2, "'cache=unsafe': must be writeback or none");
    let out = run_pvh(&["--disk", "a.img,aio=native"]);
    assert_one_line_error(&out, 2, "'aio=native': must be io_uring or threads");
}

#[test]
fn test_bad_disk_cache_none_on_a_file_system_without_o_direct() {
    // ramfs has no O_DIRECT; it is mounted in a mount namespace of the test's own,
    // and goes away with it.
    let dir = common::scratch("nodirect");
    let script = format!(
        "mount --make-rprivate / && mount -t ramfs none '{d}' && truncate -s 1M '{d}/a.img' \
        && exec \"$0\" run --kernel '{k}' --disk '{d}/a.img,cache=none'",
        d = dir.display(),
        k = pvh_guest().display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script, env!("CARGO_BIN_EXE_gasang")])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_one_line_error(&out, 2, "cache=none needs O_DIRECT");
}

#[test]
fn test_bad_disk_locked_by_another_process() {
    let image = temp("locked.img", &[0u8; 4096]);
    // util-linux's flock(1) takes the lock QEMU and gasang take on a writable image.
    let mut holder = Command::new("flock")
        .arg("--exclusive")
        .arg(&image)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let path = image.display().to_string();
    let mut out = run_pvh(&["--disk", &path]);
    for _ in 0..50 {
        // flock(1) may not hold the lock yet.
        if out.status.code() == Some(2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = run_pvh(&["--disk", &path]);
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::fs::remove_file(&image).unwrap();
    assert_one_line_error(&out, 2, "is in use by another process");
}

#[test]
fn test_bad_net_back_end_and_mac() {
    let out = run_pvh(&["--net", "slirp"]);
    assert_one_line_error(
        &out,
        2,
        "'slirp' is not a network back end (use user or tap=NAME)",
    );
    let out = run_pvh(&["--net", "user,mac=01:00:5e:00:00:01"]);
    assert_one_line_error(
        &out,
        2,
        "must be six hex pairs like 52:54:00:12:34:56, unicast",
    );
    let out = run_pvh(&["--net", "user,mac=52:54:00:12:34"]);
    assert_one_line_error(&out, 2, "'mac=52:54:00:12:34'");
    let out = run_pvh(&["--net", "tap=t0,queues=4"]);
    assert_one_line_error(&out, 2, "unknown option 'queues'");
}

#[test]
fn test_bad_net_tap_missing_not_a_tap_or_not_permitted() {
    common::netns::enter_new_netns();
    let out = run_pvh(&["--net", "tap=gtap9"]);
    assert_one_line_error(
        &out,
        2,
        "there is no tap device 'gtap9' (create one with: ip tuntap add gtap9 mode tap)",
    );
    let out = run_pvh(&["--net", "tap=lo"]);
    assert_one_line_error(&out, 2, "'lo' is not a single-queue tap device");
    // A tap that belongs to root, opened by nobody.
    common::netns::sh("ip tuntap add gtap8 mode tap");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_gasang"))
        .args(["run", "--net", "tap=gtap8", "--kernel"])
        .arg(pvh_guest())
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "cannot open tap device 'gtap8': ");
    // EACCES where /dev/net/tun is root's alone, EPERM from TUNSETIFF where it is not.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Permission denied") || stderr.contains("Operation not permitted"),
        "{stderr}"
    );
}

#[test]
fn test_bad_net_user_without_passt() {
    let out = gasang()
        .env("PATH", "/nonexistent")
        .args(["run", "--net", "user", "--kernel"])
        .arg(pvh_guest())
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        2,
        "user networking needs passt, which is not installed (install the package 'passt')",
    );
}

#[test]
fn test_bad_vsock_cid_and_socket_in_use() {
    let out = run_pvh(&["--vsock", "cid=2,socket=/tmp/x.vsock"]);
    assert_one_line_error(
        &out,
        2,
        "'cid=2': must be a number from 3 to 4294967294 (0 to 2 are reserved)",
    );
    let out = run_pvh(&["--vsock", "cid=3"]);
    assert_one_line_error(&out, 2, "invalid --vsock cid=3: missing socket=");
    // A socket another process listens on is in use; a regular file is not ours to
    // replace either.
    let path = std::env::temp_dir().join(format!("gasang-bad-{}.vsock", std::process::id()));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let arg = format!("cid=3,socket={}", path.display());
    let out = run_pvh(&["--vsock", &arg]);
    assert_one_line_error(
        &out,
        2,
        &format!("the vsock socket {} is in use", path.display()),
    );
    drop(listener);
    std::fs::remove_file(&path).unwrap();
    let file = temp("plain.vsock", b"data");
    let arg = format!("cid=3,socket={}", file.display());
    let out = run_pvh(&["--vsock", &arg]);
    assert_one_line_error(&out, 2, "is in use");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"data",
        "the file is left alone"
    );
    std::fs::remove_file(&file).unwrap();
}
