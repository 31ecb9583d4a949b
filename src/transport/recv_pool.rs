//! The loop's pool of receive buffers for single-shot receives.
//!
//! On epoll every stream receive is single-shot (on io_uring only when
//! the provided-buffer ring is missing or ran dry). A buffer per
//! connection, kept between receives, meant a hundred connections
//! receiving 16 KiB messages wrote into a hundred different 64 KiB
//! buffers: megabytes of cold memory for the kernel to copy into and out
//! of. The pool hands out the most recently returned buffer first, so
//! consecutive receives reuse the same few buffers, warm in cache, the
//! way the bare epoll server's one shared buffer is; and an idle
//! connection holds none. On epoll a receive takes its buffer only for
//! the system call itself (see `RecvPooled`), so a waiting receive holds
//! none either.
//!
//! A delivered buffer goes back when the last holder drops it: after
//! `data_received`, or when a write of it (see `chunk.rs`) completes.
//! A streams reader keeps what it receives as `Bytes`
//! ([`PooledBuf::into_bytes`]); such a buffer may be dropped on any
//! thread and comes back through a [`Returns`] queue, which the pool
//! drains when it runs out. So the same allocations are reused instead
//! of 64 KiB being allocated and freed per receive (which, through the
//! allocator trimming its heap, cost a page fault per 4 KiB).

use std::cell::RefCell;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::read::READ_BUF_SIZE;
use crate::returns::Returns;

/// Buffers kept for reuse at most (4 MiB of address space); more are
/// freed when they come back.
const MAX_KEPT: usize = 64;

/// Free receive buffers, last returned first.
#[derive(Default)]
pub(crate) struct RecvPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// Buffers lent as `Bytes` come back here.
    returns: Arc<Returns<Vec<u8>>>,
}

impl RecvPool {
    /// An empty buffer of [`READ_BUF_SIZE`] capacity.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        if free.is_empty() {
            // Lent buffers given back (swapped in: no allocation).
            self.returns.take_into(&mut free);
            free.truncate(MAX_KEPT);
        }
        match free.pop() {
            Some(mut buf) => {
                // A returned buffer still holds what it received.
                buf.clear();
                buf
            }
            None => Vec::with_capacity(READ_BUF_SIZE),
        }
    }

    /// Takes `buf` back (emptied), unless enough are kept.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < MAX_KEPT && buf.capacity() >= READ_BUF_SIZE {
            buf.clear();
            free.push(buf);
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.free.borrow().len()
    }
}

/// Received bytes in a pool buffer, which goes back to the pool on drop.
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
    pool: Rc<RecvPool>,
}

impl PooledBuf {
    pub(crate) fn new(buf: Vec<u8>, pool: Rc<RecvPool>) -> PooledBuf {
        PooledBuf { buf, pool }
    }

    /// The received bytes as `Bytes`, without copying. The buffer comes
    /// back to the pool when the last `Bytes` sharing it is dropped, on
    /// whatever thread.
    pub(crate) fn into_bytes(mut self) -> Bytes {
        Bytes::from_owner(Lent {
            buf: std::mem::take(&mut self.buf),
            home: self.pool.returns.clone(),
        })
    }
}

/// A pool buffer lent as `Bytes`.
struct Lent {
    buf: Vec<u8>,
    home: Arc<Returns<Vec<u8>>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.home.push(std::mem::take(&mut self.buf));
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_returned_is_the_next_one_taken() {
        let pool = Rc::new(RecvPool::default());
        let mut a = pool.take();
        a.extend_from_slice(b"abc");
        let b = pool.take();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let held = PooledBuf::new(a, pool.clone());
        assert_eq!(&*held, b"abc");
        drop(held);
        pool.give(b);
        assert_eq!(pool.kept(), 2);
        let first = pool.take();
        assert_eq!(first.as_ptr(), pb, "last in, first out");
        let again = pool.take();
        assert_eq!(again.as_ptr(), pa);
        assert!(again.is_empty() && again.capacity() >= READ_BUF_SIZE);
    }

    #[test]
    fn a_buffer_lent_as_bytes_comes_back_from_any_thread() {
        let pool = Rc::new(RecvPool::default());
        let mut v = pool.take();
        let at = v.as_ptr();
        v.extend_from_slice(b"payload");
        let bytes = PooledBuf::new(v, pool.clone()).into_bytes();
        assert_eq!(&bytes[..], b"payload");
        assert_eq!(bytes.as_ptr(), at, "not copied");
        assert_eq!(pool.kept(), 0, "lent, not in the pool");
        // While lent, the next receive gets another buffer.
        let other = pool.take();
        assert_ne!(other.as_ptr(), at);
        pool.give(other);
        let part = bytes.slice(3..);
        std::thread::spawn(move || drop(bytes)).join().unwrap();
        assert_eq!(&part[..], b"load", "a slice keeps it lent");
        std::thread::spawn(move || drop(part)).join().unwrap();
        // Back: once the pool's own buffer is used, the lent one is
        // taken again, emptied.
        drop(pool.take());
        let again = pool.take();
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= READ_BUF_SIZE);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let pool = RecvPool::default();
        let taken: Vec<Vec<u8>> = (0..MAX_KEPT + 5).map(|_| pool.take()).collect();
        for b in taken {
            pool.give(b);
        }
        assert_eq!(pool.kept(), MAX_KEPT);
        drop(pool.take());
        pool.give(Vec::new());
        assert_eq!(pool.kept(), MAX_KEPT - 1, "small buffers are not kept");
    }
}
