//! Locks shared by device and vCPU threads.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data even if another thread panicked holding it: devices and
/// interrupt controllers stay consistent between calls (no call panics half-way), and
/// one panicked thread must not take every other thread of the machine with it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
