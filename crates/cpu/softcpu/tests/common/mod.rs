//! What the system micro-guest tests share: guest RAM, tracking code pages as a
//! platform's does (so that system mode caches decoded blocks here too).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code)] // each test file uses what it needs

pub mod machine;

use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::system::ram::GuestRam;

#[derive(Clone)]
#[repr(align(4096))]
struct Page([u8; 4096]);

/// Guest RAM from physical 0.
pub struct Ram {
    ram: GuestRam,
    // Owns the bytes `ram` points into; declared after it, so dropped after it.
    pages: Vec<Page>,
}

impl Ram {
    /// `len` bytes (a multiple of 4 KiB) of zeroed RAM.
    pub fn new(len: usize) -> Self {
        let mut pages = vec![Page([0; 4096]); len / 4096];
        // SAFETY: the pages are page-aligned, live as long as `ram` (same struct, dropped
        // after it) and are never resized.
        let ram = unsafe { GuestRam::new(pages.as_mut_ptr().cast(), len) };
        Self { ram, pages }
    }

    pub fn u64(&self, at: u64) -> u64 {
        let (page, offset) = (at as usize / 4096, at as usize % 4096);
        u64::from_le_bytes(self.pages[page].0[offset..offset + 8].try_into().unwrap())
    }

    pub fn set_u64(&mut self, at: u64, v: u64) {
        self.ram.write(at, &v.to_le_bytes());
    }

    pub fn put(&mut self, at: u64, bytes: &[u8]) {
        self.ram.write(at, bytes);
    }
}

impl PhysicalMemory for Ram {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        self.ram.read(addr, buf)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) {
        self.ram.write(addr, buf)
    }
    fn compare_exchange(&mut self, addr: u64, len: usize, old: u128, new: u128) -> bool {
        self.ram.compare_exchange(addr, len, old, new)
    }
    fn code_version(&mut self, addr: u64) -> Option<u64> {
        self.ram.code_version(addr)
    }
    fn code_generation(&self) -> Option<u64> {
        self.ram.code_generation()
    }
    fn host_page(&mut self, page: u64, write: bool) -> Option<u64> {
        self.ram.host_page(page, write)
    }
    fn code_marks(&self) -> u64 {
        self.ram.code_marks()
    }
}
