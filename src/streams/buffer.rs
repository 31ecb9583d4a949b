//! The [`StreamReader`](super::StreamReader)'s byte buffer.
//!
//! Received data arrives either as a slice, which is copied in, or, from
//! a stream transport, as `Bytes` that already own it (a lent receive
//! buffer, see `StreamInner::shared_received`). When the buffer is empty
//! such `Bytes` simply become the buffer, and reads hand out slices of
//! them: the bytes a task reads are the ones the kernel wrote, with no
//! copy in between. Data arriving while unread data is buffered is
//! appended by copying, as before.

use std::ops::Deref;

use bytes::{Bytes, BytesMut};

/// Unread received bytes, in one contiguous run.
pub(crate) enum RxBuffer {
    /// Copies, appended to.
    Owned(BytesMut),
    /// Received `Bytes`, not copied.
    Shared(Bytes),
}

impl Default for RxBuffer {
    fn default() -> Self {
        RxBuffer::Owned(BytesMut::new())
    }
}

impl Deref for RxBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            RxBuffer::Owned(b) => b,
            RxBuffer::Shared(b) => b,
        }
    }
}

impl RxBuffer {
    /// Appends a copy of `data`.
    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        match self {
            RxBuffer::Owned(b) => b.extend_from_slice(data),
            RxBuffer::Shared(s) => {
                let mut b = BytesMut::with_capacity(s.len() + data.len());
                b.extend_from_slice(s);
                b.extend_from_slice(data);
                *self = RxBuffer::Owned(b);
            }
        }
    }

    /// Appends `data`: without copying when nothing is buffered.
    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if self.is_empty() {
            *self = RxBuffer::Shared(data);
        } else {
            self.push_slice(&data);
        }
    }

    /// Takes the first `n` bytes (`n <= len`).
    pub(crate) fn split_to(&mut self, n: usize) -> Bytes {
        match self {
            RxBuffer::Owned(b) => b.split_to(n).freeze(),
            RxBuffer::Shared(s) => s.split_to(n),
        }
    }

    /// Takes everything.
    pub(crate) fn take_all(&mut self) -> Bytes {
        self.split_to(self.len())
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        match self {
            RxBuffer::Owned(b) => b.clear(),
            RxBuffer::Shared(s) => s.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_into_an_empty_buffer_are_not_copied() {
        let mut buf = RxBuffer::default();
        let data = Bytes::from(b"hello world".to_vec());
        let at = data.as_ptr();
        buf.push_bytes(data);
        let hello = buf.split_to(6);
        assert_eq!(&hello[..], b"hello ");
        assert_eq!(hello.as_ptr(), at, "a slice of the received bytes");
        assert_eq!(&buf[..], b"world");
    }

    #[test]
    fn data_after_unread_data_is_appended_in_order() {
        let mut buf = RxBuffer::default();
        buf.push_bytes(Bytes::from_static(b"ab"));
        buf.push_slice(b"cd");
        buf.push_bytes(Bytes::from_static(b"ef"));
        assert_eq!(&buf[..], b"abcdef");
        assert_eq!(&buf.split_to(3)[..], b"abc");
        assert_eq!(&buf.take_all()[..], b"def");
        assert!(buf.is_empty());
        buf.push_slice(b"gh");
        buf.clear();
        assert!(buf.is_empty());
        buf.push_bytes(Bytes::from_static(b"ij"));
        assert_eq!(&buf.take_all()[..], b"ij");
    }
}
