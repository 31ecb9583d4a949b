//! Owned buffers the kernel may fill.
//!
//! An operation takes its buffer by value and gives it back with the
//! result, so the kernel never writes to memory the caller can touch.
//! Only heap-backed buffers qualify: their bytes stay where they are when
//! the owning value moves (an array on the stack would not).

use bytes::BytesMut;

mod sealed {
    pub trait Sealed {}
}

/// A heap buffer that receive operations fill in place
/// (`sock_recv_into`). The whole initialised length is offered to the
/// kernel: `vec![0; 4096]` receives up to 4096 bytes.
///
/// Implemented for `Vec<u8>`, `Box<[u8]>` and `BytesMut`; sealed.
pub trait IoBufMut: sealed::Sealed + 'static {
    /// The bytes the kernel may write.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

impl sealed::Sealed for Vec<u8> {}
impl IoBufMut for Vec<u8> {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

impl sealed::Sealed for Box<[u8]> {}
impl IoBufMut for Box<[u8]> {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

impl sealed::Sealed for BytesMut {}
impl IoBufMut for BytesMut {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}
