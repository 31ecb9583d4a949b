//! The chunks of one gathered send or write, with the `iovec` array and
//! `msghdr` that describe them to the kernel.
//!
//! A transport's write buffer keeps one [`IoBatch`] and hands it to each
//! send in turn, so a send allocates nothing once the vectors have grown
//! to the connection's usual batch (a fresh chunk list, iovec array and
//! header per send were three allocations per round trip).

use crate::transport::chunk::Chunk;

/// Chunks for one `sendmsg`/`writev`, and their description.
///
/// Boxed while in flight: the kernel reads `msg` and `iovecs` at their
/// addresses until the operation completes.
pub(crate) struct IoBatch {
    /// The bytes to send, in order.
    pub(crate) chunks: Vec<Chunk>,
    /// One per chunk, pointing into the chunks' heap memory (which does
    /// not move when a chunk value moves).
    iovecs: Vec<libc::iovec>,
    /// Points at `iovecs`.
    msg: libc::msghdr,
}

impl IoBatch {
    /// An empty batch.
    pub(crate) fn new() -> Box<IoBatch> {
        Box::new(IoBatch {
            chunks: Vec::new(),
            iovecs: Vec::new(),
            // SAFETY: msghdr is plain data; all-zero is a valid empty
            // header.
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Describes the current chunks; call once they are in place and
    /// before the kernel sees the batch.
    pub(crate) fn prepare(&mut self) {
        self.iovecs.clear();
        self.iovecs.extend(self.chunks.iter().map(|c| libc::iovec {
            iov_base: c.as_ptr() as *mut libc::c_void,
            iov_len: c.len(),
        }));
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len() as _;
    }

    /// The header for `sendmsg` (valid after [`prepare`](Self::prepare)).
    pub(crate) fn msg(&self) -> &libc::msghdr {
        debug_assert_eq!(self.msg.msg_iovlen, self.chunks.len() as _);
        &self.msg
    }

    /// The iovec array for `writev` (valid after
    /// [`prepare`](Self::prepare)).
    pub(crate) fn iovecs(&self) -> &[libc::iovec] {
        &self.iovecs
    }
}
