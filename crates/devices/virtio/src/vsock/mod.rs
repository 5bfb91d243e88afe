//! virtio-vsock with Firecracker's hybrid host side: sockets between guest ports and
//! host UNIX sockets, with the spec's credit-based flow control ([`muxer`]).

mod connection;
mod handler;
pub mod muxer;
pub mod packet;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use handler::VsockHandler;
use muxer::Muxer;

use crate::device::{device_type, read_config_bytes, ActivateError, Activation, VirtioDevice};
use crate::worker::Worker;

/// Entries in each queue.
const QUEUE_SIZE: u16 = 256;
/// The lowest CID a guest may have: 0 to 2 are the hypervisor's and the host's.
pub const MIN_GUEST_CID: u64 = 3;

/// The vsock device cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// Another process listens on the socket path, or it is not a socket.
    #[error("the vsock socket {0} is in use")]
    InUse(PathBuf),
    /// The socket cannot be created.
    #[error("cannot create the vsock socket {0}")]
    Bind(PathBuf, #[source] std::io::Error),
}

/// A vsock device as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// The guest's CID (at least [`MIN_GUEST_CID`]).
    pub cid: u64,
    /// The host socket: host programs connect here; guest connections to port P
    /// arrive at `<socket>_P`.
    pub socket: PathBuf,
}

/// The vsock device.
#[derive(Debug)]
pub struct Vsock {
    config: VsockConfig,
    listener: UnixListener,
    worker: Option<Worker>,
}

impl Vsock {
    /// Binds `config`'s socket.
    pub fn new(config: &VsockConfig) -> Result<Self, VsockError> {
        let listener = muxer::bind(&config.socket)?;
        Ok(Self {
            config: config.clone(),
            listener,
            worker: None,
        })
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.worker = None;
        let _ = std::fs::remove_file(&self.config.socket);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u16 {
        device_type::VSOCK
    }

    fn pci_class(&self) -> u32 {
        0xff_0000
    }

    fn queue_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 3] // receive, transmit, event
    }

    fn features(&self) -> u64 {
        0 // stream sockets only
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config.cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let (rx, tx) = activation.take_rx_tx()?;
        let listener = self.listener.try_clone().map_err(ActivateError::Thread)?;
        let handler = VsockHandler {
            memory: activation.memory,
            rx,
            tx,
            interrupt: activation.interrupt,
            muxer: Muxer::new(self.config.cid, self.config.socket.clone(), listener),
            guest_cid: self.config.cid,
            buf: vec![0; packet::HEADER_LEN + packet::MAX_PAYLOAD],
        };
        let worker = Worker::spawn("virtio-vsock".into(), Arc::new(Mutex::new(handler)))
            .map_err(ActivateError::Thread)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        // Every connection ends with the thread that holds them.
        self.worker = None;
    }
}
