//! The Linux 64-bit boot protocol's zero page (`boot_params`).

use gasang_memory::layout::{CMDLINE, ZERO_PAGE};
use gasang_memory::GuestMemory;
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use vm_memory::GuestAddress;

use crate::{BootError, BootInfo, LoadedKernel};

/// "HdrS": the setup header's magic.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// The boot sector signature.
const BOOT_FLAG: u16 = 0xaa55;
/// "Undefined boot loader" (0xff): gasang has no registered ID.
const LOADER_TYPE: u8 = 0xff;
/// Alignment a vmlinux without a setup header expects (CONFIG_PHYSICAL_ALIGN default).
const KERNEL_ALIGNMENT: u32 = 0x0100_0000;

/// Builds the zero page for `kernel` (without writing it).
pub fn zero_page(kernel: &LoadedKernel, boot: &BootInfo<'_>) -> Result<boot_params, BootError> {
    let mut params = boot_params::default();
    match kernel.setup_header {
        Some(header) => params.hdr = header,
        None => {
            params.hdr.boot_flag = BOOT_FLAG;
            params.hdr.header = HDRS_MAGIC;
            params.hdr.kernel_alignment = KERNEL_ALIGNMENT;
        }
    }
    params.hdr.type_of_loader = LOADER_TYPE;
    params.hdr.cmd_line_ptr = u32::try_from(CMDLINE).expect("the command line is below 4 GiB");
    params.hdr.cmdline_size = u32::try_from(boot.cmdline_len).expect("checked against the limit");
    if let Some(initrd) = boot.initrd {
        // The initrd is placed below 4 GiB (see initrd.rs), so both fit.
        params.hdr.ramdisk_image = u32::try_from(initrd.addr).expect("initrd below 4 GiB");
        params.hdr.ramdisk_size = u32::try_from(initrd.size).expect("initrd below 4 GiB");
    }
    params.acpi_rsdp_addr = boot.firmware.rsdp;
    if boot.ranges.len() > params.e820_table.len() {
        return Err(BootError::TooManyRanges(boot.ranges.len()));
    }
    for (slot, range) in params.e820_table.iter_mut().zip(boot.ranges) {
        *slot = boot_e820_entry {
            addr: range.start,
            size: range.len,
            r#type: range.kind.e820_type(),
        };
    }
    params.e820_entries = u8::try_from(boot.ranges.len()).expect("at most 128 entries");
    Ok(params)
}

/// Writes the zero page at [`ZERO_PAGE`].
pub fn write_zero_page(
    memory: &GuestMemory,
    kernel: &LoadedKernel,
    boot: &BootInfo<'_>,
) -> Result<(), BootError> {
    let params = zero_page(kernel, boot)?;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE)),
        memory,
    )
    .map_err(|source| BootError::Configure {
        what: "zero page",
        source,
    })
}
