//! The kernel command line.

use gasang_memory::layout::{CMDLINE, CMDLINE_MAX};
use gasang_memory::GuestMemory;
use linux_loader::cmdline::Cmdline;
use vm_memory::GuestAddress;

use crate::BootError;

/// The command line cannot be given to the kernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// Longer than the kernel accepts.
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The kernel's limit (without the terminating NUL).
        max: usize,
    },
    /// Contains something other than printable ASCII.
    #[error("the kernel command line may only contain printable ASCII characters")]
    NotAscii,
}

/// Validates `text` against the kernel's limit (`max` bytes, without the NUL).
pub fn build(text: &str, max: Option<usize>) -> Result<Cmdline, CmdlineError> {
    let max = max.unwrap_or(CMDLINE_MAX - 1).min(CMDLINE_MAX - 1);
    if text.len() > max {
        return Err(CmdlineError::TooLong {
            len: text.len(),
            max,
        });
    }
    let mut cmdline = Cmdline::new(max + 1).expect("capacity is at least 1");
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        cmdline
            .insert_str(trimmed)
            .map_err(|_| CmdlineError::NotAscii)?;
    }
    Ok(cmdline)
}

/// Writes the NUL-terminated command line at [`CMDLINE`].
pub fn write(memory: &GuestMemory, cmdline: &Cmdline) -> Result<(), BootError> {
    linux_loader::loader::load_cmdline(memory, GuestAddress(CMDLINE), cmdline)
        .map_err(BootError::CmdlineWrite)
}

/// The command line's length in bytes, without the NUL.
pub fn byte_len(cmdline: &Cmdline) -> usize {
    cmdline.as_cstring().map_or(0, |c| c.as_bytes().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_build_rejects_overlong_cmdline() {
        let err = build(&"x".repeat(100), Some(64)).unwrap_err();
        assert_eq!(err, CmdlineError::TooLong { len: 100, max: 64 });
    }

    #[test]
    fn test_build_rejects_non_ascii() {
        assert_eq!(
            build("console=ttyS0 é", None).unwrap_err(),
            CmdlineError::NotAscii
        );
    }

    #[test]
    fn test_build_accepts_kernel_limit_exactly() {
        let cmdline = build(&"y".repeat(64), Some(64)).unwrap();
        assert_eq!(byte_len(&cmdline), 64);
    }
}
