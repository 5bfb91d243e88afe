//! What the network device needs from the host side of its link.

use std::os::fd::RawFd;

/// The host side of a virtio-net link. Every frame either way starts with the
/// 12-byte virtio-net header; a back end without offloads adds or drops it.
pub trait NetBackend: Send {
    /// The descriptor to poll (edge-triggered, for reading and writing).
    fn fd(&self) -> RawFd;

    /// Reads the next frame into `buf` (at least [`super::header::MAX_FRAME`] bytes);
    /// `None` when there is none for now.
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;

    /// Sends `frame`. `false`: the back end is full and did not take it; try again
    /// once its descriptor is writable and [`NetBackend::flush`] has run.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<bool>;

    /// The descriptor became writable: pushes out what the back end holds.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// The receive offloads the driver accepted (its GUEST_* feature bits).
    fn set_offloads(&mut self, _features: u64) -> std::io::Result<()> {
        Ok(())
    }

    /// The back end ended (its peer went away): the reason, for a log line.
    fn ended(&mut self) -> Option<String> {
        None
    }

    /// What it is, for log lines.
    fn describe(&self) -> String;
}
