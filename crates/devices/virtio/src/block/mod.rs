//! virtio-blk on a raw image: reads, writes and flushes (`fdatasync`) straight
//! between the image and guest memory on io_uring or a thread pool, discard and
//! write-zeroes as holes punched in the file, the serial for GET_ID, one queue per
//! vCPU.

mod disk;
mod handler;
pub mod io;
pub mod request;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use disk::{Disk, DiskError};
use handler::{BlockHandler, BlockParts};
pub use io::AioConfig;
use io::IoEngine;

use crate::device::{device_type, read_config_bytes, ActivateError, Activation, VirtioDevice};
use crate::worker::Worker;

/// Bytes of a serial (GET_ID's answer).
pub const SERIAL_LEN: usize = 20;
/// Entries in each request queue.
pub const QUEUE_SIZE: u16 = 256;

const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_BLK_SIZE: u64 = 1 << 6;
const F_FLUSH: u64 = 1 << 9;
const F_CONFIG_WCE: u64 = 1 << 11;
const F_MQ: u64 = 1 << 12;
const F_DISCARD: u64 = 1 << 13;
const F_WRITE_ZEROES: u64 = 1 << 14;
/// Offset of the `writeback` byte in the configuration.
const WRITEBACK_OFFSET: u64 = 32;
const CONFIG_LEN: usize = 60;

/// A disk as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// The raw image.
    pub path: PathBuf,
    /// The guest may not write.
    pub read_only: bool,
    /// The serial (at most 20 bytes), shown in /dev/disk/by-id/virtio-SERIAL.
    pub serial: Option<String>,
    /// `cache=none`: bypass the host's page cache (O_DIRECT).
    pub direct: bool,
    /// Which engine runs the I/O.
    pub aio: AioConfig,
}

/// The block device.
#[derive(Debug)]
pub struct Block {
    disk: Arc<Disk>,
    serial: [u8; SERIAL_LEN],
    queues: u16,
    writeback: Arc<AtomicBool>,
    /// Run I/O through io_uring (else the thread pool).
    uring: bool,
    worker: Option<Worker>,
}

impl Block {
    /// Opens and locks `config`'s image, with `queues` request queues.
    pub fn new(config: &BlockConfig, queues: u16) -> Result<Self, DiskError> {
        let disk = Disk::open(&config.path, config.read_only, config.direct)?;
        let uring = choose_engine(config)?;
        let mut serial = [0u8; SERIAL_LEN];
        if let Some(s) = &config.serial {
            let n = s.len().min(SERIAL_LEN);
            serial[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        Ok(Self {
            disk: Arc::new(disk),
            serial,
            queues: queues.max(1),
            writeback: Arc::new(AtomicBool::new(true)),
            uring,
            worker: None,
        })
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let put = |c: &mut [u8; CONFIG_LEN], at: usize, bytes: &[u8]| {
            c[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut c, 0, &self.disk.sectors().to_le_bytes());
        put(&mut c, 12, &u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        put(&mut c, 20, &512u32.to_le_bytes()); // blk_size
        c[WRITEBACK_OFFSET as usize] = u8::from(self.writeback.load(Ordering::Relaxed));
        put(&mut c, 34, &self.queues.to_le_bytes());
        let whole_disk = u32::try_from(self.disk.sectors()).unwrap_or(u32::MAX);
        put(&mut c, 36, &whole_disk.to_le_bytes()); // max_discard_sectors
        put(&mut c, 40, &1u32.to_le_bytes()); // max_discard_seg
        put(&mut c, 44, &8u32.to_le_bytes()); // discard_sector_alignment: 4 KiB
        put(&mut c, 48, &whole_disk.to_le_bytes()); // max_write_zeroes_sectors
        put(&mut c, 52, &1u32.to_le_bytes()); // max_write_zeroes_seg
        c[56] = 1; // write_zeroes_may_unmap
        c
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u16 {
        device_type::BLOCK
    }

    fn pci_class(&self) -> u32 {
        0x01_8000
    }

    fn queue_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; usize::from(self.queues)]
    }

    fn features(&self) -> u64 {
        let mut features = F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_CONFIG_WCE;
        if self.queues > 1 {
            features |= F_MQ;
        }
        if self.disk.read_only() {
            features |= F_RO;
        } else {
            features |= F_DISCARD | F_WRITE_ZEROES;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if offset == WRITEBACK_OFFSET && data.len() == 1 {
            self.writeback.store(data[0] != 0, Ordering::Relaxed);
        }
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if activation.queues.is_empty() {
            return Err(ActivateError::MissingQueue(0));
        }
        // Without CONFIG_WCE the driver cannot see the setting: writeback, and it
        // flushes (FLUSH is offered).
        if activation.features & F_CONFIG_WCE == 0 {
            self.writeback.store(true, Ordering::Relaxed);
        }
        let depth = activation.queues.len() * usize::from(QUEUE_SIZE);
        let engine =
            IoEngine::new(self.disk.clone(), self.uring, depth).map_err(ActivateError::Thread)?;
        let parts = BlockParts {
            memory: activation.memory,
            interrupt: activation.interrupt,
            disk: self.disk.clone(),
            serial: self.serial,
            writeback: self.writeback.clone(),
        };
        let handler = BlockHandler::new(engine, parts, activation.queues);
        let worker = Worker::spawn("virtio-blk".into(), Arc::new(Mutex::new(handler)))
            .map_err(ActivateError::Thread)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
        self.writeback.store(true, Ordering::Relaxed);
    }
}

/// Whether `config`'s disk runs on io_uring: asked for and available, or left to
/// gasang and available. Says which at `-v`.
fn choose_engine(config: &BlockConfig) -> Result<bool, DiskError> {
    let path = config.path.display();
    let uring = match (config.aio, io::uring_available()) {
        (AioConfig::Threads, _) => false,
        (_, Ok(())) => true,
        (AioConfig::IoUring, Err(source)) => {
            return Err(DiskError::NoUring {
                path: config.path.clone(),
                source,
            })
        }
        (AioConfig::Auto, Err(e)) => {
            tracing::info!("virtio-blk {path}: io_uring unavailable ({e})");
            false
        }
    };
    let engine = io::engine_name(uring);
    let cache = if config.direct {
        "none (O_DIRECT)"
    } else {
        "writeback"
    };
    tracing::info!("virtio-blk {path}: I/O through {engine}, host cache {cache}");
    Ok(uring)
}
