//! What the system micro-guest tests share: guest RAM.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use gasang_softcpu::system::paging::PhysicalMemory;

/// Guest RAM: 4 MiB from physical 0.
pub struct Ram(pub Vec<u8>);

impl PhysicalMemory for Ram {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        let at = addr as usize;
        match self.0.get(at..at + buf.len()) {
            Some(src) => buf.copy_from_slice(src),
            None => buf.fill(0xff),
        }
    }

    fn write(&mut self, addr: u64, buf: &[u8]) {
        let at = addr as usize;
        if let Some(dst) = self.0.get_mut(at..at + buf.len()) {
            dst.copy_from_slice(buf);
        }
    }
}

impl Ram {
    pub fn u64(&self, at: u64) -> u64 {
        u64::from_le_bytes(self.0[at as usize..at as usize + 8].try_into().unwrap())
    }
    pub fn set_u64(&mut self, at: u64, v: u64) {
        self.0[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put(&mut self, at: u64, bytes: &[u8]) {
        self.0[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
}
