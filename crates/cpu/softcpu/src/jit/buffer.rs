//! Executable memory for translated blocks: one mapping per CPU, filled from the start
//! and emptied whole when full (every translation is then made again as needed).

/// Bytes of host code one CPU keeps (reserved, not committed: pages cost memory only
/// once code is written to them).
const SIZE: usize = 32 << 20;

/// A CPU's code buffer.
#[derive(Debug)]
pub(crate) struct CodeBuffer {
    base: *mut u8,
    used: usize,
    /// Counts the times the buffer was emptied: a translation made before is gone.
    pub epoch: u32,
}

// SAFETY: the buffer is owned by one CPU and only that CPU's thread writes or runs it;
// moving it to another thread moves that ownership.
unsafe impl Send for CodeBuffer {}

impl CodeBuffer {
    /// An empty buffer; `None` if the host refuses executable memory.
    pub fn new() -> Option<Self> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing;
        // no existing memory is touched. Readable, writable and executable: this CPU
        // writes host code and then runs it (the code is generated here, never taken
        // from the guest).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            tracing::info!(
                "software CPU: no executable memory for translated code: interpreting only"
            );
            return None;
        }
        Some(Self {
            base: base.cast(),
            used: 0,
            epoch: 0,
        })
    }

    /// Where the next code goes (code is assembled for its final address).
    pub fn next_address(&self) -> u64 {
        self.base as u64 + self.used as u64
    }

    /// Whether `len` more bytes fit; if not, empties the buffer (a new epoch).
    pub fn make_room(&mut self, len: usize) -> bool {
        if self.used + len <= SIZE {
            return true;
        }
        self.used = 0;
        self.epoch = self.epoch.wrapping_add(1);
        len <= SIZE
    }

    /// Copies `code`, assembled for [`CodeBuffer::next_address`] after
    /// [`CodeBuffer::make_room`] said it fits, into the buffer; returns its address.
    pub fn push(&mut self, code: &[u8]) -> u64 {
        assert!(self.used + code.len() <= SIZE, "make_room first");
        let at = self.next_address();
        // SAFETY: `used + len <= SIZE`: the bytes lie inside the mapping, which nothing
        // else references (no translated code runs while this CPU translates).
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.add(self.used), code.len())
        };
        // Blocks start 16-byte aligned.
        self.used = (self.used + code.len() + 15) & !15;
        at
    }
}

impl Drop for CodeBuffer {
    fn drop(&mut self) {
        // SAFETY: `base` is the mapping of SIZE bytes `new` made; no code runs from it
        // any more (the CPU that owned it is being dropped).
        unsafe { libc::munmap(self.base.cast(), SIZE) };
    }
}
