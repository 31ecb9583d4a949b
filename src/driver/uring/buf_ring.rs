//! The provided buffer ring (`IORING_REGISTER_PBUF_RING`, kernel 5.19+).
//!
//! One per loop, shared by every stream transport: a multishot receive
//! takes a buffer from the ring only when data arrives, so an idle
//! connection holds no receive buffer at all. The kernel reports which
//! buffer it filled in the completion's flags; the transport lends it to
//! `data_received` as a [`RingBuf`] and the buffer goes back to the ring
//! when that value drops (after the callback returns).
//!
//! Memory: by default 256 buffers of 64 KiB
//! ([`EventLoopBuilder::recv_buffers`](crate::EventLoopBuilder::recv_buffers)),
//! reserved with `mmap` and made resident page by page as the kernel
//! first fills them (16 MiB of address space; what is resident is bounded
//! by the busiest moment, not by the number of connections).

use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group id multishot receives name.
pub(crate) const GROUP: u16 = 0;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping at an address the kernel
        // picks; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping `new` created, and
        // nothing points into it any more (the ring is unregistered or the
        // driver leaked its reference, see `BufRing`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The loop's provided buffer ring.
///
/// The driver registers it and holds one `Rc`; each lent [`RingBuf`] holds
/// another, so the memory outlives every borrower. The driver unregisters
/// it at shutdown once no operation can use it any more.
pub(crate) struct BufRing {
    /// `entries` ring entries (`struct io_uring_buf`), page aligned.
    ring: Mapping,
    /// `entries * buf_size` bytes of buffers; buffer `bid` at
    /// `bid * buf_size`.
    bufs: Mapping,
    /// Buffers in the ring (a power of two, at most 32,768).
    entries: u16,
    /// Bytes per buffer: one completion carries at most this much.
    buf_size: usize,
    /// Our copy of the ring's tail (the kernel only reads it).
    tail: Cell<u16>,
}

impl BufRing {
    /// Maps the memory, fills the ring with `entries` buffers of
    /// `buf_size` bytes (checked by the builder: a power of two up to
    /// 32,768, and 1 byte to 1 MiB) and registers it with `ring` as group
    /// [`GROUP`].
    pub(crate) fn register(
        ring: &IoUring,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<Rc<BufRing>> {
        if !entries.is_power_of_two() || entries > 32768 || buf_size == 0 || buf_size > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "receive buffers: a power of two up to 32768, of 1 byte to 1 MiB",
            ));
        }
        let entry_size = std::mem::size_of::<BufRingEntry>();
        let br = BufRing {
            ring: Mapping::new(usize::from(entries) * entry_size)?,
            bufs: Mapping::new(usize::from(entries) * buf_size)?,
            tail: Cell::new(0),
            entries,
            buf_size,
        };
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        // SAFETY: the ring is page aligned (mmap), its entries initialised,
        // and it stays mapped until the driver unregisters it (or forever,
        // when shutdown gave up on operations still in flight).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                br.ring.ptr.as_ptr() as u64,
                entries,
                GROUP,
                0,
            )?;
        }
        Ok(Rc::new(br))
    }

    fn entries(&self) -> *mut BufRingEntry {
        self.ring.ptr.as_ptr().cast()
    }

    /// Writes buffer `bid` into the ring slot at our tail (not yet visible
    /// to the kernel: see [`publish`](Self::publish)).
    fn push(&self, bid: u16) {
        let tail = self.tail.get();
        let idx = usize::from(tail & (self.entries - 1));
        // SAFETY: `idx < entries` (inside the mapping); the kernel ignores
        // this slot until the published tail passes it; `resv` (slot 0's
        // holds the tail) is not written.
        unsafe {
            let e = &mut *self.entries().add(idx);
            e.set_addr(self.buf_ptr(bid) as u64);
            e.set_len(self.buf_size as u32);
            e.set_bid(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Makes every pushed slot visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field is the `resv` u16 of slot 0, inside the
        // mapping, 2-byte aligned; the kernel reads it with an acquire
        // load, so a release store orders the slot writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries()) as *const AtomicU16;
            (*tail).store(self.tail.get(), Ordering::Release);
        }
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: callers pass `bid < entries`, so the offset stays inside
        // `bufs`.
        unsafe { self.bufs.ptr.as_ptr().add(usize::from(bid) * self.buf_size) }
    }

    /// Gives buffer `bid` back to the kernel.
    fn give_back(&self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    /// The buffer a completion names, holding its first `len` bytes.
    /// `None` for an id or length the ring never handed out (a kernel
    /// bug; never trusted).
    pub(crate) fn take(self: &Rc<Self>, bid: u16, len: usize) -> Option<RingBuf> {
        if bid >= self.entries || len > self.buf_size {
            return None;
        }
        Some(RingBuf {
            ring: self.clone(),
            bid,
            len,
        })
    }

    /// Returns the buffer of a completion nobody will read.
    pub(crate) fn release(&self, bid: u16) {
        if bid < self.entries {
            self.give_back(bid);
        }
    }
}

/// One filled buffer of the ring, lent to the transport; it returns to
/// the ring when dropped.
pub(crate) struct RingBuf {
    ring: Rc<BufRing>,
    bid: u16,
    len: usize,
}

impl std::ops::Deref for RingBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the kernel filled the first `len` bytes of buffer `bid`
        // (`bid < entries`, `len <= buf_size`, checked in `take`) and will not touch it
        // again until we give it back in `drop`.
        unsafe { std::slice::from_raw_parts(self.ring.buf_ptr(self.bid), self.len) }
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        self.ring.give_back(self.bid);
    }
}
