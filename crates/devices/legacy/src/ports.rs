//! The device map: port ranges and ISA IRQs of gasang's legacy devices.
//! docs/ARCHITECTURE.md lists the same map.

/// COM1: an 8250/16550 UART.
pub const SERIAL_PORT: u16 = 0x3f8;
/// COM1's eight registers.
pub const SERIAL_LEN: u16 = 8;
/// COM1's ISA IRQ.
pub const SERIAL_IRQ: u8 = 4;
/// The i8042 keyboard controller: data at 0x60, command/status at 0x64.
pub const I8042_PORT: u16 = 0x60;
/// 0x60..=0x64.
pub const I8042_LEN: u16 = 5;
/// CMOS index (0x70) and data (0x71).
pub const CMOS_PORT: u16 = 0x70;
/// Two ports.
pub const CMOS_LEN: u16 = 2;
/// QEMU-compatible isa-debug-exit.
pub const DEBUG_EXIT_PORT: u16 = 0x501;
/// One port (any access width up to 4).
pub const DEBUG_EXIT_LEN: u16 = 4;
/// QEMU-compatible pvpanic (ACPI ID QEMU0001).
pub const PVPANIC_PORT: u16 = 0x505;
/// One port.
pub const PVPANIC_LEN: u16 = 1;
/// ACPI power-management block (see [`crate::AcpiPm`] for its registers).
pub const ACPI_PM_PORT: u16 = 0x600;
/// Its length.
pub const ACPI_PM_LEN: u16 = 0x20;
/// The SCI's ISA IRQ (level-triggered, active high: the MADT says so).
pub const SCI_IRQ: u8 = 9;
