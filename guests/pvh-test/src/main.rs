//! gasang's PVH test guest. It boots through PVH as a Linux kernel would, then prints
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
//! - `exit=halt`: halts forever, for the host to stop it.

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

/// Reads a primitive at physical address `addr` (identity-mapped).
fn phys<T: Copy>(addr: u64) -> T {
    // SAFETY: the first 4 GiB are identity-mapped; callers pass addresses the
    // hypervisor gave us, and unaligned reads are allowed.
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

fn report_start_info(info: u64) {
    use start_info::*;
    print("magic: ");
    port::hex_digits(u64::from(phys::<u32>(info + MAGIC)), 8);
    print("\ncmdline: ");
    print_c_str(phys(info + CMDLINE_PADDR));
    let memmap: u64 = phys(info + MEMMAP_PADDR);
    let mut ram = 0;
    for i in 0..u64::from(phys::<u32>(info + MEMMAP_ENTRIES)) {
        let entry = memmap + i * MEMMAP_ENTRY;
        let (addr, size, kind) = (phys::<u64>(entry), phys::<u64>(entry + 8), phys::<u32>(entry + 16));
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
    dec(u64::from(phys::<u32>(info + NR_MODULES)));
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
    for (sep, reg) in [(b'-', 0x08), (b'-', 0x07), (b' ', 0x04), (b':', 0x02), (b':', 0x00)] {
        putc(sep);
        dec_padded(cmos(reg), 2);
    }
    putc(b'\n');
}

/// The value of `exit=` on the command line at `cmdline`, as bytes (empty if absent).
fn exit_option(cmdline: u64) -> &'static [u8] {
    let len = (0..4096).find(|&i| phys::<u8>(cmdline + i) == 0).unwrap_or(0);
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
        _ => match option.strip_prefix(b"debug:") {
            Some(code) => {
                let code = code.iter().fold(0u32, |a, d| a * 10 + u32::from(d.wrapping_sub(b'0')));
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

/// Loads an empty IDT and raises #UD: with no handler, #UD -> #GP -> #DF -> shutdown.
fn triple_fault() {
    let idtr = [0u16; 5];
    // SAFETY: deliberately makes every exception unhandleable; the machine shuts down.
    unsafe { core::arch::asm!("lidt [{}]", "ud2", in(reg) idtr.as_ptr()) };
}

#[no_mangle]
extern "C" fn rust_main(info: u64) -> ! {
    print("gasang-pvh-test: booted\n");
    report_start_info(info);
    report_date();
    let tables = acpi::Tables::find(phys(info + start_info::RSDP_PADDR));
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
    exit(exit_option(phys(info + start_info::CMDLINE_PADDR)), tables.as_ref());
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
