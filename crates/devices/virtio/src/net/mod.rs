//! virtio-net: one receive and one transmit queue, on a tap device (with checksum
//! and segmentation offloads) or on passt (user-mode networking, no root).

mod backend;
mod handler;
pub mod header;
mod passt;
mod tap;

use std::sync::{Arc, Mutex};

pub use backend::NetBackend;
use handler::NetHandler;
pub use passt::Passt;
pub use tap::Tap;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};

use crate::device::{device_type, read_config_bytes, ActivateError, Activation, VirtioDevice};
use crate::worker::Worker;

/// Entries in each queue.
pub const QUEUE_SIZE: u16 = 256;

/// A network device cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Not a possible interface name.
    #[error("'{0}' is not a network interface name")]
    TapName(String),
    /// No such interface.
    #[error("there is no tap device '{0}' (create one with: ip tuntap add {0} mode tap)")]
    NoSuchTap(String),
    /// The interface is not a tap.
    #[error("'{0}' is not a single-queue tap device")]
    NotTap(String),
    /// The tap exists but cannot be used.
    #[error("cannot open tap device '{name}'")]
    TapOpen {
        /// The tap.
        name: String,
        /// Why (not permitted, in use, ...).
        #[source]
        source: std::io::Error,
    },
    /// `--net user` without passt.
    #[error("user networking needs passt, which is not installed (install the package 'passt')")]
    PasstMissing,
    /// passt would not start.
    #[error("cannot start passt")]
    PasstStart(#[source] std::io::Error),
}

/// Where the link's other end is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackendConfig {
    /// An existing tap device.
    Tap {
        /// Its name.
        name: String,
    },
    /// User-mode networking through passt: DHCP, DNS and outbound TCP and UDP.
    User,
}

/// A network card as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The other end of the link.
    pub backend: NetBackendConfig,
    /// Its MAC address; a random locally administered one if none.
    pub mac: Option<[u8; 6]>,
}

/// The network device.
pub struct Net {
    backend: Arc<Mutex<Box<dyn NetBackend>>>,
    offloads: bool,
    mac: [u8; 6],
    worker: Option<Worker>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("mac", &self.mac).finish()
    }
}

/// A random MAC in QEMU's 52:54:00 prefix (locally administered, unicast).
fn random_mac() -> [u8; 6] {
    let mut tail = [0u8; 3];
    if crate::rng::getrandom(&mut tail).is_err() {
        tail = [0x12, 0x34, 0x56];
    }
    [0x52, 0x54, 0x00, tail[0], tail[1], tail[2]]
}

impl Net {
    /// Opens `config`'s back end.
    pub fn new(config: &NetConfig) -> Result<Self, NetError> {
        let (backend, offloads): (Box<dyn NetBackend>, bool) = match &config.backend {
            NetBackendConfig::Tap { name } => (Box::new(Tap::open(name)?), true),
            NetBackendConfig::User => (Box::new(Passt::start()?), false),
        };
        Ok(Self {
            backend: Arc::new(Mutex::new(backend)),
            offloads,
            mac: config.mac.unwrap_or_else(random_mac),
            worker: None,
        })
    }

    /// Its MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u16 {
        device_type::NET
    }

    fn pci_class(&self) -> u32 {
        0x02_0000
    }

    fn queue_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2]
    }

    fn features(&self) -> u64 {
        let bits = |list: &[u32]| list.iter().fold(0u64, |f, b| f | 1 << b);
        let mut features = bits(&[
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_STATUS,
            VIRTIO_NET_F_MRG_RXBUF,
        ]);
        if self.offloads {
            features |= bits(&[
                VIRTIO_NET_F_CSUM,
                VIRTIO_NET_F_GUEST_CSUM,
                VIRTIO_NET_F_GUEST_TSO4,
                VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_HOST_TSO4,
                VIRTIO_NET_F_HOST_TSO6,
            ]);
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        read_config_bytes(&config, offset, data);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let (rx, tx) = activation.take_rx_tx()?;
        {
            let mut backend = gasang_bus::lock(&self.backend);
            if let Err(e) = backend.set_offloads(activation.features) {
                tracing::warn!("{}: cannot set receive offloads: {e}", backend.describe());
            }
        }
        let handler = NetHandler::new(activation, rx, tx, self.backend.clone());
        let worker = Worker::spawn("virtio-net".into(), Arc::new(Mutex::new(handler)))
            .map_err(ActivateError::Thread)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
        let _ = gasang_bus::lock(&self.backend).set_offloads(0);
    }
}
