//! The provided buffer ring (`IORING_REGISTER_PBUF_RING`, kernel 5.19+).
//!
//! One per loop, shared by every stream transport: a multishot receive
//! takes a buffer from the ring only when data arrives, so an idle
//! connection holds no receive buffer at all. The kernel reports which
//! buffer it filled in the completion's flags; the transport lends it to
//! `data_received` as a [`RingBuf`] and the buffer goes back to the ring
//! when that value drops (after the callback returns).
//!
//! A buffer can also be *lent* for longer, as [`Bytes`]
//! ([`RingBuf::lend`]): the streams reader keeps received data that way
//! instead of copying it. A lent buffer may be dropped on any thread;
//! it comes back through a locked queue the loop drains each iteration
//! ([`BufRing::reclaim`]). At most half the ring is lent at once, so the
//! receives of every connection always have buffers to take.
//!
//! **Working set.** The kernel takes buffers in ring order, so a ring
//! kept full would cycle through all of its buffers, one after another:
//! 16 MiB by default, far more than the caches hold, and every receive
//! would copy into cold memory (and every send of a received slice copy
//! out of it). Measured at 16 KiB x 1 pipelined echo: 9.2 us of server CPU
//! per round trip with the whole ring cycling, 7.3 with 16 buffers in
//! all. So a freed buffer goes to a stack of spares, not straight back
//! into the ring, and before each submission ([`BufRing::top_up`]) the
//! ring is refilled from the top of that stack, the most recently used
//! (warmest) first, only up to what recent iterations took: twice the
//! recent peak per iteration, plus [`MIN_AVAILABLE`]. Receives refused
//! for lack of a buffer (`ENOBUFS`) count as demand too, so a burst
//! raises the level for the next iterations; a multishot receive refused
//! meanwhile is bridged by one single-shot receive (see
//! `transport/read.rs`).
//!
//! Memory: by default 256 buffers of 64 KiB
//! ([`EventLoopBuilder::recv_buffers`](crate::EventLoopBuilder::recv_buffers)),
//! reserved with `mmap` and made resident page by page as the kernel
//! first fills them (16 MiB of address space; what is resident is bounded
//! by the busiest moment, not by the number of connections).

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

use crate::returns::Returns;

/// The buffer group id multishot receives name.
pub(crate) const GROUP: u16 = 0;

/// Buffers kept in the ring beyond twice the recent peak demand.
pub(crate) const MIN_AVAILABLE: u16 = 8;

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

// SAFETY: a `Mapping` is an address range and its length, never changed
// after `new`. Who may read or write the bytes inside is decided by the
// ring protocol (the kernel fills a buffer only while it is in the ring)
// and by the holders of a `RingBuf` or a `Lease`, not by the mapping.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives access to nothing but the
// address and the length.
unsafe impl Sync for Mapping {}

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
    /// `bid * buf_size`. Shared with the lent buffers, which may outlive
    /// the ring.
    bufs: Arc<Mapping>,
    /// Buffers in the ring (a power of two, at most 32,768).
    entries: u16,
    /// Bytes per buffer: one completion carries at most this much.
    buf_size: usize,
    /// Our copy of the ring's tail (the kernel only reads it).
    tail: Cell<u16>,
    /// Buffers in the ring that the kernel has not taken yet: pushed,
    /// less the completions that named a buffer (counted by the driver,
    /// passed to [`top_up`](Self::top_up)).
    in_ring: Cell<u16>,
    /// Free buffers held back from the ring; the last one freed (the
    /// warmest) is the next one pushed.
    spare: RefCell<Vec<u16>>,
    /// The most buffers one iteration asked for lately, decaying by an
    /// eighth per iteration.
    peak: Cell<u16>,
    /// Buffers lent as `Bytes` and not yet reclaimed.
    lent: Cell<u16>,
    /// Where lent buffers come back (their ids).
    returns: Arc<Returns<u16>>,
    /// Scratch for `reclaim`.
    reclaimed: RefCell<Vec<u16>>,
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
            bufs: Arc::new(Mapping::new(usize::from(entries) * buf_size)?),
            tail: Cell::new(0),
            in_ring: Cell::new(0),
            spare: RefCell::new(Vec::with_capacity(usize::from(entries))),
            peak: Cell::new(0),
            lent: Cell::new(0),
            returns: Arc::default(),
            reclaimed: RefCell::default(),
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
        self.in_ring.set(self.in_ring.get() + 1);
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

    /// Buffer `bid` is free again: onto the spare stack, from which
    /// [`top_up`](Self::top_up) refills the ring.
    fn give_back(&self, bid: u16) {
        self.spare.borrow_mut().push(bid);
    }

    /// Refills the ring before a submission. Since the last call the
    /// kernel `took` that many buffers (completions that named one) and
    /// `refused` that many receives for lack of one (`ENOBUFS`); both
    /// count as demand. The ring is brought up to twice the recent peak
    /// demand plus [`MIN_AVAILABLE`], from the warm end of the spare
    /// stack.
    #[inline]
    pub(crate) fn top_up(&self, took: u32, refused: u32) {
        let took = took.min(u32::from(self.in_ring.get())) as u16;
        self.in_ring.set(self.in_ring.get() - took);
        let demand = took.saturating_add(refused.min(u32::from(u16::MAX)) as u16);
        let peak = self.peak.get();
        let peak = demand.max(peak - peak.div_ceil(8));
        self.peak.set(peak);
        let target = peak
            .saturating_mul(2)
            .saturating_add(MIN_AVAILABLE)
            .min(self.entries);
        if self.in_ring.get() < target {
            self.refill(target);
        }
    }

    fn refill(&self, target: u16) {
        let mut spare = self.spare.borrow_mut();
        let mut pushed = false;
        while self.in_ring.get() < target {
            let Some(bid) = spare.pop() else {
                break;
            };
            self.push(bid);
            pushed = true;
        }
        if pushed {
            self.publish();
        }
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

    /// Takes back the lent buffers given back since the last call (onto
    /// the spare stack). The driver calls it before each submission,
    /// before [`top_up`](Self::top_up).
    #[inline]
    pub(crate) fn reclaim(&self) {
        // Most iterations nothing came back.
        if self.returns.is_pending() {
            self.reclaim_returned();
        }
    }

    fn reclaim_returned(&self) {
        let mut scratch = self.reclaimed.borrow_mut();
        self.returns.take_into(&mut scratch);
        if scratch.is_empty() {
            return;
        }
        let mut spare = self.spare.borrow_mut();
        for bid in scratch.drain(..) {
            if bid < self.entries {
                spare.push(bid);
                self.lent.set(self.lent.get().saturating_sub(1));
            }
        }
    }

    /// Buffers lent and not yet reclaimed.
    #[cfg(test)]
    pub(crate) fn lent(&self) -> u16 {
        self.lent.get()
    }

    /// Returns the buffer of a completion nobody will read.
    pub(crate) fn release(&self, bid: u16) {
        if bid < self.entries {
            self.give_back(bid);
        }
    }
}

/// The id a [`RingBuf`] takes once lent as `Bytes`: no buffer (a ring has
/// at most 32,768).
const LENT: u16 = u16::MAX;

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

impl RingBuf {
    /// The buffer as `Bytes`, without copying, if fewer than half the
    /// ring's buffers are lent already; else `self` back. The buffer
    /// returns to the ring once the last `Bytes` sharing it is dropped
    /// (on any thread) and the loop next reclaims.
    pub(crate) fn lend(mut self) -> Result<Bytes, RingBuf> {
        let ring = &self.ring;
        if ring.lent.get() >= ring.entries / 2 {
            return Err(self);
        }
        ring.lent.set(ring.lent.get() + 1);
        let lease = Lease {
            bufs: ring.bufs.clone(),
            returns: ring.returns.clone(),
            offset: usize::from(self.bid) * ring.buf_size,
            len: self.len,
            bid: self.bid,
        };
        // The lease gives the buffer back now, not this value (which
        // still drops, releasing its hold on the ring).
        self.bid = LENT;
        Ok(Bytes::from_owner(lease))
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        // Not for `LENT`: `release` ignores ids the ring does not have.
        self.ring.release(self.bid);
    }
}

/// A lent buffer: owns buffer `bid` until dropped, then queues it for
/// [`BufRing::reclaim`].
struct Lease {
    bufs: Arc<Mapping>,
    returns: Arc<Returns<u16>>,
    /// `bid * buf_size`.
    offset: usize,
    len: usize,
    bid: u16,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `offset + len` is inside `bufs`, mapped while the `Arc`
        // lives (`bid < entries`, `len <= buf_size`: checked in `take`); the
        // buffer is out of the ring until this lease drops, so no one writes it.
        unsafe { std::slice::from_raw_parts(self.bufs.ptr.as_ptr().add(self.offset), self.len) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.returns.push(self.bid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of 4 buffers of 64 bytes, or `None` (with a note) where the
    /// kernel has no io_uring or no provided buffer rings.
    fn small_ring() -> Option<(IoUring, Rc<BufRing>)> {
        let ring = match IoUring::new(8) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipped: no io_uring here ({e})");
                return None;
            }
        };
        match BufRing::register(&ring, 4, 64) {
            Ok(br) => Some((ring, br)),
            Err(e) => {
                eprintln!("skipped: no provided buffer ring ({e})");
                None
            }
        }
    }

    #[test]
    fn lent_buffers_come_back_from_any_thread_and_at_most_half_are_lent() {
        let Some((_ring, br)) = small_ring() else {
            return;
        };
        assert_eq!(
            (br.tail.get(), br.in_ring.get()),
            (4, 4),
            "all four in the ring"
        );
        let a = br.take(0, 10).unwrap().lend().ok().unwrap();
        let b = br.take(1, 64).unwrap().lend().ok().unwrap();
        assert_eq!(a.as_ptr(), br.buf_ptr(0).cast_const());
        assert_eq!((a.len(), b.len()), (10, 64));
        assert_eq!(br.lent(), 2);
        // Half the ring is lent: the third stays a plain ring buffer,
        // which is free again when dropped, and back in the ring at the
        // next top-up (the kernel took three).
        let c = br.take(2, 5).unwrap().lend();
        assert!(c.is_err(), "no more than half lent");
        drop(c);
        assert_eq!(br.tail.get(), 4, "not pushed before the top-up");
        br.top_up(3, 0);
        assert_eq!((br.tail.get(), br.in_ring.get()), (5, 2));

        // A slice keeps the buffer lent after the original is gone.
        let part = a.slice(2..4);
        drop(a);
        br.reclaim();
        br.top_up(0, 0);
        assert_eq!((br.lent(), br.tail.get()), (2, 5));
        std::thread::spawn(move || drop((part, b))).join().unwrap();
        assert_eq!(br.lent(), 2, "not back before the loop reclaims");
        br.reclaim();
        br.top_up(0, 0);
        assert_eq!((br.lent(), br.tail.get()), (0, 7), "both pushed back");
        br.reclaim();
        br.top_up(0, 0);
        assert_eq!(br.tail.get(), 7, "nothing pushed twice");
        assert!(br.take(3, 1).unwrap().lend().is_ok(), "lending again");
        assert_eq!(
            Rc::strong_count(&br),
            1,
            "a lent buffer does not hold the ring"
        );
    }

    /// The buffer the kernel takes next: the one at the ring's head.
    fn next_in_ring(br: &BufRing, head: &mut u16) -> u16 {
        let idx = usize::from(*head & (br.entries - 1));
        *head = head.wrapping_add(1);
        // SAFETY: `idx < entries`, inside the ring mapping; the slot was
        // written by `push` before it was published.
        unsafe { (*br.entries().add(idx)).bid() }
    }

    #[test]
    fn a_light_load_cycles_through_a_few_warm_buffers_and_a_burst_refills() {
        let ring = match IoUring::new(8) {
            Ok(r) => r,
            Err(e) => return eprintln!("skipped: no io_uring here ({e})"),
        };
        let br = match BufRing::register(&ring, 64, 64) {
            Ok(br) => br,
            Err(e) => return eprintln!("skipped: no provided buffer ring ({e})"),
        };
        // One receive per iteration, its buffer freed before the next:
        // a full ring would hand out all 64 in turn.
        let mut head = 0u16;
        let mut recent = std::collections::BTreeSet::new();
        for i in 0..400 {
            let bid = next_in_ring(&br, &mut head);
            drop(br.take(bid, 10).expect("a buffer of the ring"));
            br.top_up(1, 0);
            if i >= 300 {
                recent.insert(bid);
            }
        }
        let level = 2 + MIN_AVAILABLE;
        assert_eq!(br.in_ring.get(), level, "twice the peak, plus the floor");
        assert!(
            recent.len() <= usize::from(level) + 1,
            "{} buffers in use for one receive at a time: {recent:?}",
            recent.len()
        );
        // Receives refused for lack of a buffer raise the level at once.
        br.top_up(0, 30);
        assert_eq!(br.in_ring.get(), 64, "min(2 x 30 + floor, all 64)");
        let spare = br.spare.borrow().len();
        assert_eq!(spare, 0, "every free buffer is in the ring");
    }
}
