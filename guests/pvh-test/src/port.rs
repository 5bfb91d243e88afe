//! Port I/O and the serial console. Output avoids `core::fmt`: its integer formatting
//! uses SSE, which this guest must not execute (see .cargo/config.toml).

/// Reads a byte from `port`.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port I/O has no memory effects; this guest owns the machine.
    unsafe { core::arch::asm!("in al, dx", out("al") value, in("dx") port, options(nostack)) };
    value
}

/// Writes a byte to `port`.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack)) };
}

/// Writes a 16-bit word to `port`.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `inb`.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") value, options(nostack)) };
}

const COM1: u16 = 0x3f8;
const LSR_THR_EMPTY: u8 = 0x20;

/// Sends one byte to COM1.
pub fn putc(b: u8) {
    while inb(COM1 + 5) & LSR_THR_EMPTY == 0 {}
    outb(COM1, b);
}

const LSR_DATA_READY: u8 = 0x01;

/// Waits for and returns one byte from COM1.
pub fn getc() -> u8 {
    while inb(COM1 + 5) & LSR_DATA_READY == 0 {
        core::hint::spin_loop();
    }
    inb(COM1)
}

/// Sends `s`.
pub fn print(s: &str) {
    for b in s.bytes() {
        putc(b);
    }
}

/// `v` in decimal.
pub fn dec(v: u64) {
    if v >= 10 {
        dec(v / 10);
    }
    putc(b'0' + (v % 10) as u8);
}

/// `v` in decimal, zero-padded to `width` digits.
pub fn dec_padded(v: u64, width: u32) {
    if width > 1 {
        dec_padded(v / 10, width - 1);
    }
    putc(b'0' + (v % 10) as u8);
}

/// `v` in hexadecimal with a `0x` prefix.
pub fn hex(v: u64) {
    print("0x");
    hex_digits(
        v,
        if v == 0 {
            1
        } else {
            (64 - v.leading_zeros()).div_ceil(4)
        },
    );
}

/// The low `digits` hex digits of `v`.
pub fn hex_digits(v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = ((v >> (i * 4)) & 0xf) as u8;
        putc(if d < 10 { b'0' + d } else { b'a' + d - 10 });
    }
}
