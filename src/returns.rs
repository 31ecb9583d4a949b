//! [`Returns`]: where buffers lent out as `Bytes` come back.
//!
//! A receive buffer handed to user code as `Bytes` (see
//! `driver/uring/buf_ring.rs` and `transport/recv_pool.rs`) may be
//! dropped on any thread, so its owner cannot give it straight back to
//! the loop's single-threaded structures. It pushes it here instead, and
//! the loop takes everything queued at its next look. An atomic flag
//! keeps the lock off the loop's path while nothing came back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// A queue of returned items, filled from any thread and drained by the
/// loop.
pub(crate) struct Returns<T> {
    /// Something is queued (read without the lock).
    pending: AtomicBool,
    items: Mutex<Vec<T>>,
}

impl<T> Default for Returns<T> {
    fn default() -> Self {
        Returns {
            pending: AtomicBool::new(false),
            items: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Returns<T> {
    /// Queues `item` (from any thread).
    pub(crate) fn push(&self, item: T) {
        // A panic while the lock was held cannot leave the Vec invalid:
        // carry on with it.
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        items.push(item);
        self.pending.store(true, Ordering::Release);
    }

    /// Whether anything was pushed since the last
    /// [`take_into`](Self::take_into) (one atomic load).
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Moves everything queued into `out` (swapping vectors, so neither
    /// side allocates in the steady state when `out` starts empty).
    /// Nothing, and no lock, when nothing was queued.
    pub(crate) fn take_into(&self, out: &mut Vec<T>) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if out.is_empty() {
            std::mem::swap(&mut *items, out);
        } else {
            out.append(&mut items);
        }
        self.pending.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_pushed_on_other_threads_are_taken_once() {
        let r: Arc<Returns<u32>> = Arc::default();
        let mut out = Vec::new();
        r.take_into(&mut out);
        assert!(out.is_empty());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let r = r.clone();
                std::thread::spawn(move || r.push(i))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        r.push(9);
        out.push(100);
        r.take_into(&mut out);
        out.sort();
        assert_eq!(out, [0, 1, 2, 3, 9, 100]);
        let mut again = Vec::new();
        r.take_into(&mut again);
        assert!(again.is_empty(), "taken once");
    }
}
