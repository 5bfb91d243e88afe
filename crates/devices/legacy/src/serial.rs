//! COM1: vm-superio's 8250 UART, with an input queue in front of its 64-byte FIFO.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;

use gasang_bus::{BusDevice, IrqLine, RateLimit};
use vm_superio::Trigger;

/// Console input waiting for FIFO room; beyond this, input is dropped.
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Raises the UART's IRQ as an edge.
struct IrqTrigger(Box<dyn IrqLine>);

impl Trigger for IrqTrigger {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.pulse();
        Ok(())
    }
}

/// A 16550-compatible UART whose output goes to `W` and whose input is queued.
pub struct Serial {
    uart: vm_superio::Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
    pending: VecDeque<u8>,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Serial {
    /// A UART raising `irq` and writing what the guest sends to `out`.
    pub fn new(irq: Box<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        Self {
            uart: vm_superio::Serial::new(IrqTrigger(irq), out),
            pending: VecDeque::new(),
        }
    }

    /// Queues console input for the guest; it enters the FIFO as the guest drains it.
    pub fn queue_input(&mut self, bytes: &[u8]) {
        static DROPPED: RateLimit = RateLimit::new(1, 10);
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending.len());
        if bytes.len() > room && DROPPED.allow() {
            tracing::warn!("serial: the guest is not reading its console; input dropped");
        }
        self.pending.extend(&bytes[..bytes.len().min(room)]);
        self.refill();
    }

    fn refill(&mut self) {
        while !self.pending.is_empty() && self.uart.fifo_capacity() > 0 {
            let n = self.uart.fifo_capacity().min(self.pending.len());
            let chunk: Vec<u8> = self.pending.drain(..n).collect();
            if self.uart.enqueue_raw_bytes(&chunk).is_err() {
                // The UART is in loopback mode: it accepts no external input.
                break;
            }
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(offset);
        }
        self.refill();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        static FAILED: RateLimit = RateLimit::new(1, 10);
        let (Some(value), Ok(offset)) = (data.first(), u8::try_from(offset)) else {
            return;
        };
        if let Err(e) = self.uart.write(offset, *value) {
            if FAILED.allow() {
                tracing::warn!("serial: cannot write guest output: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct CountIrq(Arc<AtomicUsize>);

    impl IrqLine for CountIrq {
        fn set_level(&self, high: bool) {
            if high {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    const DATA: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;

    #[test]
    fn test_serial_guest_output_reaches_writer() {
        let sink = Sink::default();
        let mut serial = Serial::new(Box::new(CountIrq::default()), Box::new(sink.clone()));
        for b in b"hi\n" {
            serial.write(DATA, &[*b]);
        }
        assert_eq!(*sink.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn test_serial_queued_input_beyond_fifo_is_delivered_in_order() {
        let irq = CountIrq::default();
        let mut serial = Serial::new(Box::new(irq.clone()), Box::new(Sink::default()));
        serial.write(IER, &[1]); // receive-data interrupt on
        let input: Vec<u8> = (0..200u8).collect();
        serial.queue_input(&input);
        let mut got = Vec::new();
        let mut byte = [0u8];
        loop {
            serial.read(LSR, &mut byte);
            if byte[0] & 1 == 0 {
                break;
            }
            serial.read(DATA, &mut byte);
            got.push(byte[0]);
        }
        assert_eq!(got, input);
        assert!(irq.0.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn test_serial_input_beyond_pending_limit_is_dropped_not_grown() {
        let mut serial = Serial::new(Box::new(CountIrq::default()), Box::new(Sink::default()));
        serial.queue_input(&vec![b'x'; MAX_PENDING_INPUT * 2]);
        assert!(serial.pending.len() <= MAX_PENDING_INPUT);
    }
}
