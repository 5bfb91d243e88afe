//! MSI-X: the capability, the vector table and the pending-bit array.
//!
//! Each vector is an [`MsiVector`] of the CPU backend (a KVM GSI route and irqfd, or the
//! software CPU's APIC bus). The table is kept in step with it: a vector that is
//! enabled and unmasked carries its message, any other carries none, and an
//! interrupt raised while it is masked waits in the pending-bit array until the guest
//! unmasks it.

use gasang_bus::{MsiMessage, MsiVector};

/// The MSI-X capability ID.
pub const CAP_ID: u8 = 0x11;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// Length of the capability.
pub const CAP_LEN: usize = 12;
/// Offset of the message control word in the capability.
pub const CONTROL_OFFSET: usize = 2;
const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    address: u64,
    data: u32,
    control: u32,
}

impl Default for Entry {
    fn default() -> Self {
        // Every vector comes out of reset masked.
        Self {
            address: 0,
            data: 0,
            control: ENTRY_MASKED,
        }
    }
}

impl Entry {
    /// The entry as the table lays it out.
    fn bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.data.to_le_bytes());
        bytes[12..].copy_from_slice(&self.control.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8; 16]) -> Self {
        let le32 = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Self {
            address: u64::from(le32(0)) | u64::from(le32(4)) << 32,
            data: le32(8),
            control: le32(12) & ENTRY_MASKED,
        }
    }
}

/// A function's MSI-X state.
pub struct Msix {
    entries: Vec<Entry>,
    pending: Vec<bool>,
    enabled: bool,
    function_mask: bool,
    vectors: Vec<Box<dyn MsiVector>>,
}

impl std::fmt::Debug for Msix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msix")
            .field("vectors", &self.entries.len())
            .field("enabled", &self.enabled)
            .field("function_mask", &self.function_mask)
            .finish()
    }
}

impl Msix {
    /// One table entry per vector of `vectors`.
    pub fn new(vectors: Vec<Box<dyn MsiVector>>) -> Self {
        Self {
            entries: vec![Entry::default(); vectors.len()],
            pending: vec![false; vectors.len()],
            enabled: false,
            function_mask: false,
            vectors,
        }
    }

    /// The number of vectors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The table's size in bytes.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// The capability's bytes and write mask, for a table at `table_offset` of BAR
    /// `bar` and the pending bits at `pba_offset` of the same BAR.
    pub fn capability(
        &self,
        bar: u8,
        table_offset: u32,
        pba_offset: u32,
    ) -> ([u8; CAP_LEN], [u8; CAP_LEN]) {
        let mut body = [0u8; CAP_LEN];
        body[0] = CAP_ID;
        let size = u16::try_from(self.entries.len().saturating_sub(1)).unwrap_or(0x7ff);
        body[2..4].copy_from_slice(&size.to_le_bytes());
        body[4..8].copy_from_slice(&(table_offset | u32::from(bar)).to_le_bytes());
        body[8..12].copy_from_slice(&(pba_offset | u32::from(bar)).to_le_bytes());
        let mut writable = [0u8; CAP_LEN];
        writable[3] = 0xc0;
        (body, writable)
    }

    /// The guest wrote the capability's message control word.
    pub fn control_written(&mut self, control: u16) {
        self.enabled = control & CONTROL_ENABLE != 0;
        self.function_mask = control & CONTROL_FUNCTION_MASK != 0;
        for vector in 0..self.entries.len() {
            self.sync(vector);
        }
    }

    /// Whether the guest enabled MSI-X.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn masked(&self, vector: usize) -> bool {
        !self.enabled || self.function_mask || self.entries[vector].control & ENTRY_MASKED != 0
    }

    /// Brings vector `vector`'s route up to date, and delivers what waited for it.
    fn sync(&mut self, vector: usize) {
        let message = (!self.masked(vector)).then(|| MsiMessage {
            address: self.entries[vector].address,
            data: self.entries[vector].data,
        });
        self.vectors[vector].set_message(message);
        if message.is_some() && self.pending[vector] {
            self.pending[vector] = false;
            self.vectors[vector].trigger();
        }
    }

    /// Reads the table at `offset` (dword or qword accesses; others read zeros).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(entry) = self.entries.get((offset / ENTRY_SIZE) as usize) else {
            return;
        };
        let bytes = entry.bytes();
        let at = (offset % ENTRY_SIZE) as usize;
        if matches!(data.len(), 4 | 8) && at + data.len() <= 16 {
            data.copy_from_slice(&bytes[at..at + data.len()]);
        }
    }

    /// Writes the table at `offset` (dword or qword accesses; others are dropped).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let vector = (offset / ENTRY_SIZE) as usize;
        let at = (offset % ENTRY_SIZE) as usize;
        let Some(entry) = self.entries.get_mut(vector) else {
            return;
        };
        if !matches!(data.len(), 4 | 8) || at + data.len() > 16 {
            return;
        }
        let mut bytes = entry.bytes();
        bytes[at..at + data.len()].copy_from_slice(data);
        *entry = Entry::from_bytes(&bytes);
        self.sync(vector);
    }

    /// Reads the pending-bit array at `offset`.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (k, byte) in data.iter_mut().enumerate() {
            let first = (offset as usize + k) * 8;
            *byte = (0..8)
                .filter(|bit| self.pending.get(first + bit).copied().unwrap_or(false))
                .fold(0, |acc, bit| acc | 1 << bit);
        }
    }

    /// Raises vector `vector`: delivered now, or pending while masked. Returns false
    /// if there is no such vector.
    pub fn notify(&mut self, vector: u16) -> bool {
        let vector = usize::from(vector);
        if vector >= self.entries.len() {
            return false;
        }
        if self.masked(vector) {
            self.pending[vector] = true;
        } else {
            self.vectors[vector].trigger();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records what the table did to the vector.
    #[derive(Default)]
    struct Recorder {
        message: Mutex<Option<MsiMessage>>,
        fired: Mutex<Vec<MsiMessage>>,
    }

    struct Probe(Arc<Recorder>);

    impl MsiVector for Probe {
        fn set_message(&self, message: Option<MsiMessage>) {
            *self.0.message.lock().unwrap() = message;
        }
        fn trigger(&self) {
            let message = self.0.message.lock().unwrap().expect("fired with no route");
            self.0.fired.lock().unwrap().push(message);
        }
    }

    fn msix(n: usize) -> (Msix, Vec<Arc<Recorder>>) {
        let recorders: Vec<_> = (0..n).map(|_| Arc::new(Recorder::default())).collect();
        let vectors = recorders
            .iter()
            .map(|r| Box::new(Probe(r.clone())) as Box<dyn MsiVector>)
            .collect();
        (Msix::new(vectors), recorders)
    }

    fn program(msix: &mut Msix, vector: u64, address: u32, data: u32) {
        msix.write_table(vector * 16, &address.to_le_bytes());
        msix.write_table(vector * 16 + 4, &0u32.to_le_bytes());
        msix.write_table(vector * 16 + 8, &data.to_le_bytes());
        msix.write_table(vector * 16 + 12, &0u32.to_le_bytes());
    }

    #[test]
    fn test_msix_delivers_programmed_message_when_enabled() {
        let (mut msix, rec) = msix(2);
        program(&mut msix, 1, 0xfee0_0000, 0x41);
        msix.control_written(CONTROL_ENABLE);
        assert!(msix.notify(1));
        let expected = MsiMessage {
            address: 0xfee0_0000,
            data: 0x41,
        };
        assert_eq!(*rec[1].fired.lock().unwrap(), [expected]);
        assert!(rec[0].fired.lock().unwrap().is_empty());
        assert!(!msix.notify(2));
    }

    #[test]
    fn test_msix_masked_vector_pends_until_unmasked() {
        let (mut msix, rec) = msix(1);
        msix.control_written(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        program(&mut msix, 0, 0xfee0_1000, 0x30);
        msix.notify(0);
        assert!(rec[0].fired.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 1);
        msix.control_written(CONTROL_ENABLE);
        assert_eq!(rec[0].fired.lock().unwrap().len(), 1);
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
    }

    #[test]
    fn test_msix_table_reads_back_and_resets_masked() {
        let (mut msix, _) = msix(1);
        let mut data = [0u8; 4];
        msix.read_table(12, &mut data);
        assert_eq!(u32::from_le_bytes(data), 1);
        msix.write_table(8, &0xabcdu32.to_le_bytes());
        msix.read_table(8, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0xabcd);
        msix.write_table(9, &[1, 2]);
        msix.write_table(0x100, &[0; 4]);
        msix.read_table(8, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0xabcd);
    }

    #[test]
    fn test_msix_capability_names_table_size_and_places() {
        let (msix, _) = msix(3);
        let (body, writable) = msix.capability(0, 0x4000, 0x5000);
        assert_eq!(body[0], CAP_ID);
        assert_eq!(u16::from_le_bytes([body[2], body[3]]), 2);
        assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 0x4000);
        assert_eq!(u32::from_le_bytes(body[8..12].try_into().unwrap()), 0x5000);
        assert_eq!(writable[3], 0xc0);
    }
}
