//! gasang's test guest. It boots through PVH as a Linux kernel would (or, built with
//! `--features linux64`, through the Linux 64-bit boot protocol as a vmlinux), then prints
//! one `key: value` line per fact it finds, for the tests to compare with what gasang
//! was asked for:
//!
//! - `magic`, `cmdline`, `memmap` (one line per entry), `ram` (usable bytes), `modules`
//! - `date` from the CMOS RTC
//! - `acpi` (the OEM ID), `cpus` (enabled LAPICs in the MADT)
//!
//! and then ends as the command line's `exit=` option says:
//!
//! - `exit=poweroff` (default): ACPI S5 through the FADT's PM1a control block with the
//!   DSDT's `\_S5` sleep type, as an OS does;
//! - `exit=debug:N`: writes N to the debug-exit port;
//! - `exit=reset-kbd` / `exit=reset-acpi`: the i8042's reset line / the FADT reset register;
//! - `exit=panic`: reports a panic through pvpanic;
//! - `exit=triple`: a triple fault (an exception with an empty IDT);
//! - `exit=halt`: halts forever, for the host to stop it;
//! - `exit=echo`: reads a line from the serial console, prints `echo: <line>`, then
//!   powers off.

#![no_std]
#![no_main]

mod acpi;
mod entry;
mod mem;
mod port;

use core::panic::PanicInfo;

use port::{dec, dec_padded, hex, print, putc};

/// `hvm_start_info` field offsets (Xen's PVH ABI, version 1).
mod start_info {
    pub const MAGIC: u64 = 0;
    pub const NR_MODULES: u64 = 12;
    pub const CMDLINE_PADDR: u64 = 24;
    pub const RSDP_PADDR: u64 = 32;
    pub const MEMMAP_PADDR: u64 = 40;
    pub const MEMMAP_ENTRIES: u64 = 48;
    /// Size of one memory map entry: addr, size, type, reserved.
    pub const MEMMAP_ENTRY: u64 = 24;
}

/// `boot_params` (the Linux zero page) field offsets.
mod zero_page {
    pub const ACPI_RSDP_ADDR: u64 = 0x070;
    pub const E820_ENTRIES: u64 = 0x1e8;
    pub const HEADER: u64 = 0x202;
    pub const RAMDISK_SIZE: u64 = 0x21c;
    pub const CMD_LINE_PTR: u64 = 0x228;
    pub const E820_TABLE: u64 = 0x2d0;
    /// Size of one e820 entry: addr, size, type (packed).
    pub const E820_ENTRY: u64 = 20;
}

/// What the loader told the guest, from either boot protocol.
struct BootInfo {
    /// `hvm_start_info.magic`, or the setup header's "HdrS".
    magic: u32,
    cmdline: u64,
    memmap: u64,
    memmap_entries: u64,
    memmap_stride: u64,
    rsdp: u64,
    modules: u32,
}

impl BootInfo {
    fn from_start_info(info: u64) -> Self {
        use start_info::*;
        Self {
            magic: phys(info + MAGIC),
            cmdline: phys(info + CMDLINE_PADDR),
            memmap: phys(info + MEMMAP_PADDR),
            memmap_entries: u64::from(phys::<u32>(info + MEMMAP_ENTRIES)),
            memmap_stride: MEMMAP_ENTRY,
            rsdp: phys(info + RSDP_PADDR),
            modules: phys(info + NR_MODULES),
        }
    }

    fn from_zero_page(zp: u64) -> Self {
        use zero_page::*;
        Self {
            magic: phys(zp + HEADER),
            cmdline: u64::from(phys::<u32>(zp + CMD_LINE_PTR)),
            memmap: zp + E820_TABLE,
            memmap_entries: u64::from(phys::<u8>(zp + E820_ENTRIES)),
            memmap_stride: E820_ENTRY,
            rsdp: phys(zp + ACPI_RSDP_ADDR),
            modules: u32::from(phys::<u32>(zp + RAMDISK_SIZE) != 0),
        }
    }
}

/// Reads a primitive at physical address `addr` (identity-mapped).
fn phys<T: Copy>(addr: u64) -> T {
    // SAFETY: the first GiB (4 GiB after the PVH entry) is identity-mapped; callers pass
    // addresses the loader gave us, and unaligned reads are allowed.
    unsafe { (addr as *const T).read_unaligned() }
}

/// Prints the NUL-terminated string at `addr` (up to 4 KiB).
fn print_c_str(addr: u64) {
    for i in 0..4096 {
        match phys::<u8>(addr + i) {
            0 => break,
            b => putc(b),
        }
    }
}

fn report_boot_info(info: &BootInfo) {
    print("magic: ");
    port::hex_digits(u64::from(info.magic), 8);
    print("\ncmdline: ");
    print_c_str(info.cmdline);
    let mut ram = 0;
    for i in 0..info.memmap_entries {
        let entry = info.memmap + i * info.memmap_stride;
        let (addr, size, kind) = (
            phys::<u64>(entry),
            phys::<u64>(entry + 8),
            phys::<u32>(entry + 16),
        );
        print("\nmemmap: ");
        hex(addr);
        putc(b' ');
        hex(size);
        putc(b' ');
        dec(u64::from(kind));
        if kind == 1 {
            ram += size;
        }
    }
    print("\nram: ");
    dec(ram);
    print("\nmodules: ");
    dec(u64::from(info.modules));
    putc(b'\n');
}

fn cmos(reg: u8) -> u64 {
    port::outb(0x70, reg);
    let v = port::inb(0x71);
    // Status B bit 2: binary; otherwise BCD.
    port::outb(0x70, 0x0b);
    let binary = port::inb(0x71) & 4 != 0;
    u64::from(if binary { v } else { (v >> 4) * 10 + (v & 0xf) })
}

fn report_date() {
    print("date: ");
    dec_padded(cmos(0x32) * 100 + cmos(0x09), 4);
    for (sep, reg) in [
        (b'-', 0x08),
        (b'-', 0x07),
        (b' ', 0x04),
        (b':', 0x02),
        (b':', 0x00),
    ] {
        putc(sep);
        dec_padded(cmos(reg), 2);
    }
    putc(b'\n');
}

/// The value of `exit=` on the command line at `cmdline`, as bytes (empty if absent).
fn exit_option(cmdline: u64) -> &'static [u8] {
    let len = (0..4096)
        .find(|&i| phys::<u8>(cmdline + i) == 0)
        .unwrap_or(0);
    // SAFETY: `len` bytes at `cmdline` are identity-mapped and were just read.
    let text = unsafe { core::slice::from_raw_parts(cmdline as *const u8, len as usize) };
    text.split(|&b| b == b' ')
        .find_map(|word| word.strip_prefix(b"exit="))
        .unwrap_or(b"")
}

/// Ends the machine as `exit=` says; `tables` powers off by default.
fn exit(option: &[u8], tables: Option<&acpi::Tables>) {
    print("exit: ");
    if option.is_empty() {
        print("poweroff");
    }
    for &b in option {
        putc(b);
    }
    putc(b'\n');
    match option {
        b"reset-kbd" => port::outb(0x64, 0xfe),
        b"reset-acpi" => {
            if let Some(t) = tables {
                t.reset();
            }
        }
        b"panic" => port::outb(0x505, 1),
        b"triple" => triple_fault(),
        b"halt" => halt(),
        b"echo" => {
            echo_line();
            exit(b"poweroff", tables);
        }
        _ => match option.strip_prefix(b"debug:") {
            Some(code) => {
                let code = code
                    .iter()
                    .fold(0u32, |a, d| a * 10 + u32::from(d.wrapping_sub(b'0')));
                port::outb(0x501, code as u8);
            }
            None => {
                if let Some(t) = tables {
                    t.power_off();
                }
            }
        },
    }
}

/// Echoes one line of console input (up to 256 bytes, CR or LF ends it).
fn echo_line() {
    print("ready: echo\n");
    print("echo: ");
    for _ in 0..256 {
        match port::getc() {
            b'\n' | b'\r' => break,
            b => putc(b),
        }
    }
    putc(b'\n');
}

/// Loads an empty IDT and raises #UD: with no handler, #UD -> #GP -> #DF -> shutdown.
fn triple_fault() {
    let idtr = [0u16; 5];
    // SAFETY: deliberately makes every exception unhandleable; the machine shuts down.
    unsafe { core::arch::asm!("lidt [{}]", "ud2", in(reg) idtr.as_ptr()) };
}

/// The PVH entry's Rust half.
#[no_mangle]
extern "C" fn rust_main(start_info: u64) -> ! {
    run(&BootInfo::from_start_info(start_info))
}

/// The 64-bit boot protocol entry's Rust half.
#[no_mangle]
extern "C" fn rust_main_linux64(zero_page: u64) -> ! {
    run(&BootInfo::from_zero_page(zero_page))
}

fn run(info: &BootInfo) -> ! {
    print("gasang-pvh-test: booted\n");
    report_boot_info(info);
    report_date();
    let tables = acpi::Tables::find(info.rsdp);
    match &tables {
        Some(tables) => {
            print("acpi: ");
            tables.print_oem_id();
            print("\ncpus: ");
            dec(u64::from(tables.enabled_cpus()));
            putc(b'\n');
        }
        None => print("acpi: missing\n"),
    }
    exit(exit_option(info.cmdline), tables.as_ref());
    halt()
}

fn halt() -> ! {
    loop {
        // SAFETY: hlt only waits for an interrupt.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    print("panic\n");
    halt()
}
