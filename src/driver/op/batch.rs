//! The chunks of one gathered send or write, with the `iovec` array and
//! `msghdr` that describe them to the kernel.
//!
//! A transport's write buffer keeps one [`IoBatch`] and hands it to each
//! send in turn, so a send allocates nothing once the vectors have grown
//! to the connection's usual batch (a fresh chunk list, iovec array and
//! header per send were three allocations per round trip).
//!
//! A batch of one chunk (most sends of a request/response protocol) is
//! described by an iovec inside the batch itself, and senders hand it to
//! the kernel as a plain `send` ([`IoBatch::single`]): no second heap
//! line to touch, and no header or iovec array for the kernel to copy in.

use crate::transport::chunk::Chunk;
use crate::transport::chunk_list::ChunkList;

/// Chunks for one `sendmsg`/`writev`, and their description.
///
/// Boxed while in flight: the kernel reads `msg` and the iovecs at their
/// addresses until the operation completes.
///
/// Laid out so that a send of one chunk touches only the first cache
/// line of the box (`chunks`, whose first chunk is inline): at a
/// thousand connections each batch is cold when its send starts.
#[repr(C, align(64))]
pub(crate) struct IoBatch {
    /// The bytes to send, in order.
    pub(crate) chunks: ChunkList,
    /// The iovec of a batch of one chunk, for `writev`.
    single: libc::iovec,
    /// One per chunk when there are several, pointing into the chunks'
    /// heap memory (which does not move when a chunk value moves).
    iovecs: Vec<libc::iovec>,
    /// Points at `iovecs`, for a batch of several chunks.
    msg: libc::msghdr,
}

impl IoBatch {
    /// An empty batch.
    pub(crate) fn new() -> Box<IoBatch> {
        Box::new(IoBatch {
            chunks: ChunkList::default(),
            iovecs: Vec::new(),
            single: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: msghdr is plain data; all-zero is a valid empty
            // header.
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Describes the current chunks; call once they are in place and
    /// before the kernel sees the batch. A batch of one chunk is
    /// described by `single` alone (it is sent with a plain `send`, or
    /// written from [`iovecs`](Self::iovecs)); several get the iovec array
    /// and the header.
    pub(crate) fn prepare(&mut self) {
        if let Some(only) = self.chunks.single() {
            self.single = iovec(only);
            return;
        }
        self.iovecs.clear();
        self.iovecs.extend(self.chunks.iter().map(iovec));
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len() as _;
    }

    /// The bytes of a batch of exactly one chunk: send them with a plain
    /// `send`, which the kernel takes more cheaply than a `sendmsg`.
    pub(crate) fn single(&self) -> Option<&[u8]> {
        self.chunks.single().map(|c| &c[..])
    }

    /// The header for `sendmsg` (valid after [`prepare`](Self::prepare)
    /// for a batch that is not [`single`](Self::single)).
    pub(crate) fn msg(&self) -> &libc::msghdr {
        debug_assert!(self.chunks.len() != 1, "a single chunk is sent plainly");
        debug_assert_eq!(self.msg.msg_iovlen, self.chunks.len() as _);
        &self.msg
    }

    /// The iovec array for `writev` (valid after
    /// [`prepare`](Self::prepare)).
    pub(crate) fn iovecs(&self) -> &[libc::iovec] {
        if self.chunks.len() == 1 {
            std::slice::from_ref(&self.single)
        } else {
            &self.iovecs
        }
    }
}

fn iovec(c: &Chunk) -> libc::iovec {
    libc::iovec {
        iov_base: c.as_ptr() as *mut libc::c_void,
        iov_len: c.len(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn described(b: &IoBatch) -> Vec<Vec<u8>> {
        b.iovecs()
            .iter()
            .map(|v| {
                // SAFETY: each iovec points into a chunk `b` owns, of
                // `iov_len` bytes.
                unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }.to_vec()
            })
            .collect()
    }

    #[test]
    fn one_chunk_is_described_inline_and_sent_plainly() {
        let mut b = IoBatch::new();
        b.chunks.push(Chunk::from(Bytes::from_static(b"only")));
        b.prepare();
        assert_eq!(b.single(), Some(&b"only"[..]));
        assert_eq!(described(&b), vec![b"only".to_vec()]);
        assert_eq!(b.iovecs().as_ptr(), &b.single as *const _);
        // All a one-chunk send touches lies in the box's first line.
        let end = std::mem::offset_of!(IoBatch, chunks) + std::mem::size_of::<ChunkList>();
        assert!(end <= 64 && std::mem::align_of::<IoBatch>() == 64);
    }

    #[test]
    fn several_chunks_get_one_iovec_each_in_order() {
        let mut b = IoBatch::new();
        for part in [&b"ab"[..], b"", b"cde"] {
            b.chunks.push(Chunk::from(Bytes::copy_from_slice(part)));
        }
        b.prepare();
        assert_eq!(b.single(), None);
        assert_eq!(described(&b), vec![b"ab".to_vec(), vec![], b"cde".to_vec()]);
        assert_eq!(b.msg().msg_iovlen, 3);
        // Reused for one chunk after several: the description follows.
        let kept = b.chunks.drain_rev().last();
        b.chunks.push(kept.expect("three chunks"));
        b.prepare();
        assert_eq!(described(&b), vec![b"ab".to_vec()]);
        assert_eq!(b.single(), Some(&b"ab"[..]));
    }
}
