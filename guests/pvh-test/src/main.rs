//! gasang's PVH test guest. It boots through PVH as a Linux kernel would, then prints
//! one `key: value` line per fact it finds, for the tests to compare with what gasang
//! was asked for:
//!
//! - `magic`, `cmdline`, `memmap` (one line per entry), `ram` (usable bytes), `modules`
//! - `date` from the CMOS RTC
//! - `acpi` (the OEM ID), `cpus` (enabled LAPICs in the MADT)
//!
//! and powers off through the FADT's PM1a control block with the DSDT's `\_S5` type.

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

#[no_mangle]
extern "C" fn rust_main(info: u64) -> ! {
    print("gasang-pvh-test: booted\n");
    report_start_info(info);
    report_date();
    match acpi::Tables::find(phys(info + start_info::RSDP_PADDR)) {
        Some(tables) => {
            print("acpi: ");
            tables.print_oem_id();
            print("\ncpus: ");
            dec(u64::from(tables.enabled_cpus()));
            print("\npoweroff: acpi\n");
            tables.power_off();
        }
        None => print("acpi: missing\n"),
    }
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
