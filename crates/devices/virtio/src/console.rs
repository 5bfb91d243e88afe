//! virtio-console with one port (hvc0 in Linux): what the guest writes goes to the
//! terminal, what the terminal types goes to the guest. No multiport, no resizing.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use gasang_bus::lock;
use gasang_memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use crate::device::{device_type, ActivateError, Activation, ActiveQueue, VirtioDevice};
use crate::interrupt::VirtioInterrupt;
use crate::queue::{serve_queue, watch_rx_tx, Chain, RX, TX};
use crate::worker::Worker;

/// Entries in each queue.
const QUEUE_SIZE: u16 = 256;
/// Typed input held while the guest reads none (a paste into a stopped guest).
const MAX_INPUT: usize = 64 << 10;
/// Event data of new input (beside the queues' [`RX`] and [`TX`]).
const INPUT: u32 = 2;

/// Where the terminal's input for the port waits.
#[derive(Debug)]
pub struct ConsolePortInput {
    bytes: Mutex<VecDeque<u8>>,
    ready: EventFd,
}

impl ConsolePortInput {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            bytes: Mutex::new(VecDeque::new()),
            ready: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Queues `input` for the guest (beyond [`MAX_INPUT`] waiting, it is dropped).
    pub fn push(&self, input: &[u8]) {
        {
            let mut bytes = lock(&self.bytes);
            let room = MAX_INPUT.saturating_sub(bytes.len());
            bytes.extend(&input[..input.len().min(room)]);
        }
        let _ = self.ready.write(1);
    }
}

type Output = Arc<Mutex<Box<dyn Write + Send>>>;

/// The console device.
pub struct VirtioConsole {
    output: Output,
    input: Arc<ConsolePortInput>,
    worker: Option<Worker>,
}

impl std::fmt::Debug for VirtioConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioConsole").finish_non_exhaustive()
    }
}

impl VirtioConsole {
    /// A console writing the guest's output to `output`.
    pub fn new(output: Box<dyn Write + Send>) -> std::io::Result<Self> {
        Ok(Self {
            output: Arc::new(Mutex::new(output)),
            input: Arc::new(ConsolePortInput::new()?),
            worker: None,
        })
    }

    /// Where to send the terminal's input.
    pub fn input(&self) -> Arc<ConsolePortInput> {
        self.input.clone()
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u16 {
        device_type::CONSOLE
    }

    fn pci_class(&self) -> u32 {
        0x07_8000 // a communication controller, as QEMU's virtio-serial
    }

    fn queue_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: none offered.
        data.fill(0);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let (rx, tx) = activation.take_rx_tx()?;
        let handler = ConsoleHandler {
            memory: activation.memory,
            rx,
            tx,
            interrupt: activation.interrupt,
            output: self.output.clone(),
            input: self.input.clone(),
            data: Vec::new(),
        };
        let worker = Worker::spawn("virtio-console".into(), Arc::new(Mutex::new(handler)))
            .map_err(ActivateError::Thread)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
    }
}

struct ConsoleHandler {
    memory: GuestMemory,
    rx: ActiveQueue,
    tx: ActiveQueue,
    interrupt: Arc<VirtioInterrupt>,
    output: Output,
    input: Arc<ConsolePortInput>,
    /// The chain being written out, kept between notifications.
    data: Vec<u8>,
}

impl ConsoleHandler {
    /// Moves waiting input into the receive queue's buffers.
    fn receive(&mut self) {
        let memory = &self.memory;
        let mut bytes = lock(&self.input.bytes);
        serve_queue(&mut self.rx, memory, &self.interrupt, |chain| {
            if bytes.is_empty() {
                return None;
            }
            Some(fill(chain, memory, &mut bytes))
        });
    }

    /// Writes what the guest sent to the output.
    fn transmit(&mut self) {
        let memory = &self.memory;
        let mut output = lock(&self.output);
        let data = &mut self.data;
        serve_queue(&mut self.tx, memory, &self.interrupt, |chain| {
            data.clear();
            for desc in chain.readable() {
                let len = (desc.len() as usize).min(MAX_INPUT);
                let at = data.len();
                data.resize(at + len, 0);
                if memory
                    .read_slice(&mut data[at..], GuestAddress(desc.addr().0))
                    .is_err()
                {
                    data.truncate(at);
                    break;
                }
            }
            // A terminal that went away loses the output; the guest goes on.
            let _ = output.write_all(data);
            Some(0)
        });
        let _ = output.flush();
    }
}

/// Moves bytes from `input` into the chain's writable buffers; returns how many.
fn fill(chain: Chain<'_>, memory: &GuestMemory, input: &mut VecDeque<u8>) -> u32 {
    let mut written = 0usize;
    for desc in chain.writable() {
        let n = (desc.len() as usize).min(input.len());
        if n == 0 {
            break;
        }
        let part: Vec<u8> = input.iter().take(n).copied().collect();
        if memory
            .write_slice(&part, GuestAddress(desc.addr().0))
            .is_err()
        {
            break;
        }
        input.drain(..n);
        written += n;
    }
    written as u32
}

impl MutEventSubscriber for ConsoleHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            RX => {
                let _ = self.rx.event.read();
                self.receive();
            }
            TX => {
                let _ = self.tx.event.read();
                self.transmit();
            }
            _ => {
                let _ = self.input.ready.read();
                self.receive();
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        watch_rx_tx(
            ops,
            &self.rx,
            &self.tx,
            Events::with_data(&self.input.ready, INPUT, EventSet::IN),
            "virtio-console",
        );
        self.transmit();
        self.receive();
    }
}
