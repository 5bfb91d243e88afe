//! The lifecycle event stream: the last [`HISTORY`] events for a client that asks,
//! and every new one to each client that follows.

use std::collections::VecDeque;
use std::sync::Mutex;

use gasang_api::{Event, EventKind};
use tokio::sync::broadcast;

/// Events kept for `GET /v1/events`.
pub const HISTORY: usize = 1024;
/// Events a follower may fall behind by before it is told it missed some.
const BACKLOG: usize = 256;

/// The stream.
#[derive(Debug)]
pub struct EventBus {
    history: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            live: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventBus {
    /// Records that `kind` happened to `vm`, because of `reason`.
    pub fn emit(&self, vm: &str, kind: EventKind, reason: impl Into<String>) {
        let event = Event {
            time_unix_ms: crate::now_unix_ms(),
            vm: vm.to_string(),
            kind,
            reason: reason.into(),
        };
        tracing::info!(vm, ?kind, reason = %event.reason, "event");
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        // Sent under the lock, so that a new follower sees each event once: either
        // in the history it copies or on the channel it joined.
        let _ = self.live.send(event);
    }

    /// The history, and a receiver of everything after it.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (history.iter().cloned().collect(), self.live.subscribe())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn test_a_follower_sees_history_then_new_events_once() {
        let bus = EventBus::default();
        for k in 0..HISTORY + 5 {
            bus.emit(&format!("vm{k}"), EventKind::Defined, "defined");
        }
        let (history, mut live) = bus.subscribe();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0].vm, "vm5");
        bus.emit("new", EventKind::Started, "start request");
        let next = live.try_recv().unwrap();
        assert_eq!((next.vm.as_str(), next.kind), ("new", EventKind::Started));
        assert!(live.try_recv().is_err());
    }
}
