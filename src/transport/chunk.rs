//! One piece of a write buffer: bytes a send hands to the kernel.
//!
//! Most chunks own their bytes: the write buffer's tail, into which
//! `write` slices are copied ([`Chunk::Tail`], a `BytesMut` that comes
//! back to the buffer once sent, so no reference count is touched and
//! nothing is allocated per send), or what `write_bytes` was given
//! ([`Chunk::Bytes`]). A protocol that writes back (part of)
//! the data it is being handed in `data_received` (an echo, a proxy
//! relaying whole reads) gets a [`Chunk::Received`] instead: the slice of
//! the received buffer itself, sent without copying. The buffer (a
//! provided-ring buffer or the transport's own) goes back when the last
//! chunk holding it is dropped, that is when its send completes.

use std::ops::Deref;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

use super::read::ReadBuf;

/// Bytes queued for sending, oldest first in the write buffer.
pub(crate) enum Chunk {
    /// The write buffer's tail (copies of `write` slices), owned
    /// outright.
    Tail(BytesMut),
    /// Bytes given to `write_bytes`.
    Bytes(Bytes),
    /// `buf[start..end]`, a slice of a received buffer.
    Received {
        buf: Rc<ReadBuf>,
        start: usize,
        end: usize,
    },
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Tail(t) => t,
            Chunk::Bytes(b) => b,
            Chunk::Received { buf, start, end } => &buf[*start..*end],
        }
    }
}

impl From<Bytes> for Chunk {
    fn from(b: Bytes) -> Chunk {
        Chunk::Bytes(b)
    }
}

impl Chunk {
    /// Drops the first `n` bytes (`n <= len`), after a short send.
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Chunk::Tail(t) => t.advance(n),
            Chunk::Bytes(b) => *b = b.slice(n..),
            Chunk::Received { start, .. } => *start += n,
        }
    }

    /// Whether this chunk holds a received buffer.
    pub(crate) fn is_received(&self) -> bool {
        matches!(self, Chunk::Received { .. })
    }

    /// Turns a received slice into a copy the chunk owns, letting the
    /// received buffer go (a send that could not take everything: the
    /// rest may wait long, and a ring buffer must not wait with it).
    pub(crate) fn detach(&mut self) {
        if self.is_received() {
            *self = Chunk::Bytes(Bytes::copy_from_slice(self));
        }
    }
}

/// Where `data` lies inside `buf`, if it is a slice of it: the start
/// offset.
pub(crate) fn offset_within(buf: &[u8], data: &[u8]) -> Option<usize> {
    let base = buf.as_ptr() as usize;
    let at = data.as_ptr() as usize;
    let start = at.checked_sub(base)?;
    (start.checked_add(data.len())? <= buf.len()).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_only_for_slices_of_the_buffer() {
        let buf = vec![7u8; 100];
        assert_eq!(offset_within(&buf, &buf[10..20]), Some(10));
        assert_eq!(offset_within(&buf, &buf[..]), Some(0));
        assert_eq!(offset_within(&buf, &buf[100..]), Some(100));
        let other = [7u8; 100];
        assert_eq!(offset_within(&buf, &other[..10]), None);
        assert_eq!(offset_within(&buf[..50], &buf[40..60]), None);
    }

    #[test]
    fn a_received_chunk_advances_and_detaches() {
        let buf = Rc::new(ReadBuf::heap(b"hello world".to_vec()));
        let mut c = Chunk::Received {
            buf: buf.clone(),
            start: 0,
            end: 11,
        };
        c.advance(6);
        assert_eq!(&*c, b"world");
        assert_eq!(Rc::strong_count(&buf), 2);
        c.detach();
        assert!(!c.is_received());
        assert_eq!(&*c, b"world");
        assert_eq!(Rc::strong_count(&buf), 1, "the buffer is let go");
    }
}
