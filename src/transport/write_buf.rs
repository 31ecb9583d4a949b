//! The write buffer of a stream transport, and its flow-control limits.
//!
//! Bytes given to `write` wait here until the transport's send operation
//! takes them. A send takes many chunks at once (one `sendmsg` with many
//! iovecs); what the kernel did not accept comes back to the front, in
//! order. The size that flow control watches counts every byte not yet
//! accepted by the kernel, including those in flight.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::chunk::Chunk;
use super::chunk_list::ChunkList;
use super::read::ReadBuf;
use crate::driver::op::batch::IoBatch;

/// asyncio's default high-water mark (64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// asyncio's default low-water mark (16 KiB).
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;
/// The most iovecs one send takes (Linux's `IOV_MAX`).
pub(crate) const MAX_IOVECS: usize = 1024;
/// `Bytes` smaller than this are copied into the tail chunk, so many
/// small writes leave as few iovecs; larger ones are queued as they are.
const COALESCE_BELOW: usize = 16 * 1024;
/// The most received buffers one connection's write buffer holds (queued
/// or in flight); beyond that, writes of received data are copied.
const MAX_RECEIVED: usize = 2;

/// Flow-control limits: `pause_writing` above `high`, `resume_writing` at
/// `low` or below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) high: usize,
    pub(crate) low: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            high: DEFAULT_HIGH_WATER,
            low: DEFAULT_LOW_WATER,
        }
    }
}

impl Limits {
    /// asyncio's `set_write_buffer_limits` rules: no `high` means 64 KiB,
    /// or four times `low` when only `low` is given; no `low` means a
    /// quarter of `high`; `high < low` is an error.
    pub(crate) fn new(high: Option<usize>, low: Option<usize>) -> Result<Limits, crate::Error> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, Some(l)) => l.saturating_mul(4),
            (None, None) => DEFAULT_HIGH_WATER,
        };
        let low = low.unwrap_or(high / 4);
        if high < low {
            return Err(crate::Error::InvalidInput(
                "high must be >= low (set_write_buffer_limits)",
            ));
        }
        Ok(Limits { high, low })
    }
}

/// Unsent bytes, oldest first.
#[derive(Default)]
pub(crate) struct WriteBuffer {
    chunks: VecDeque<Chunk>,
    /// Writes are copied here; it becomes a chunk when a send starts.
    tail: BytesMut,
    /// An emptied tail allocation a completed send gave back while the
    /// tail was in use; it becomes the tail at the next send.
    spare: BytesMut,
    /// Bytes queued here, not counting those in flight.
    queued: usize,
    /// Bytes handed to a send that has not completed.
    in_flight: usize,
    /// [`Chunk::Received`] chunks queued or in flight.
    received: usize,
    /// The send batch between sends (`None` while one is in flight, or
    /// before the first send).
    batch: Option<Box<IoBatch>>,
}

impl WriteBuffer {
    /// Every byte the kernel has not accepted yet.
    pub(crate) fn size(&self) -> usize {
        self.queued + self.in_flight
    }

    /// Nothing queued (a send may still be in flight).
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Appends a copy of `data`, at the end of the tail whatever its
    /// size: the copy is needed anyway (the caller keeps its slice). The
    /// tail is sent as it is ([`Chunk::Tail`]) and its allocation comes
    /// back once sent (see [`complete_send`](Self::complete_send)), so
    /// an echo allocates nothing per write: a fresh allocation per large
    /// write made the allocator trim and fault pages back in (a quarter
    /// of the server's time in a pipelined echo). The tail grows only as
    /// far as the writes need (a connection that wrote a 64-byte greeting
    /// keeps 64 bytes, one that wrote 64 KiB bursts keeps 64 KiB).
    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        self.tail.reserve(data.len());
        self.tail.extend_from_slice(data);
        self.queued += data.len();
    }

    /// Appends `data` without copying.
    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if data.len() < COALESCE_BELOW {
            self.push_slice(&data);
            return;
        }
        self.push_chunk(Chunk::Bytes(data));
    }

    /// Appends `buf[start..end]` without copying, holding the received
    /// buffer until it is sent. False (nothing queued) when
    /// [`MAX_RECEIVED`] received buffers are held already: the caller
    /// copies instead, so that a connection whose peer does not read
    /// cannot hold many ring buffers.
    pub(crate) fn push_received(&mut self, buf: &Rc<ReadBuf>, start: usize, end: usize) -> bool {
        if self.received >= MAX_RECEIVED || start > end || end > buf.len() {
            return false;
        }
        self.received += 1;
        self.push_chunk(Chunk::Received {
            buf: buf.clone(),
            start,
            end,
        });
        true
    }

    fn push_chunk(&mut self, chunk: Chunk) {
        self.flush_tail();
        self.queued += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn flush_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = self.take_tail();
            self.chunks.push_back(Chunk::Tail(tail));
        }
    }

    /// The tail, replaced by the spare allocation.
    fn take_tail(&mut self) -> BytesMut {
        let next = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.tail, next)
    }

    /// A sent tail chunk's allocation, back for reuse: as the tail if
    /// nothing was written meanwhile, else as the spare. The smaller of
    /// two allocations is let go.
    fn reuse_tail(&mut self, mut t: BytesMut) {
        t.clear();
        if self.tail.is_empty() && self.tail.capacity() < t.capacity() {
            std::mem::swap(&mut self.tail, &mut t);
        }
        if self.spare.capacity() < t.capacity() {
            self.spare = t;
        }
    }

    /// Everything queued, when it is all copies in the tail and no send is
    /// in flight (the usual reply): an epoll transport sends it straight
    /// from here with one system call, then calls
    /// [`consume_tail`](Self::consume_tail). `None` otherwise.
    pub(crate) fn tail_only(&self) -> Option<&[u8]> {
        (self.chunks.is_empty() && self.in_flight == 0 && !self.tail.is_empty())
            .then_some(&self.tail[..])
    }

    /// The first `n` bytes of the tail were sent straight from it: they
    /// are dropped, the allocation kept.
    pub(crate) fn consume_tail(&mut self, n: usize) {
        let n = n.min(self.tail.len());
        if n == self.tail.len() {
            self.tail.clear();
        } else {
            bytes::Buf::advance(&mut self.tail, n);
        }
        self.queued -= n;
    }

    /// The next send's batch, filled with up to [`MAX_IOVECS`] chunks;
    /// `None` when nothing is queued. Give it back with
    /// [`complete_batch`](Self::complete_batch).
    pub(crate) fn take_batch(&mut self) -> Option<Box<IoBatch>> {
        if self.is_empty() {
            return None;
        }
        let mut batch = self.batch.take().unwrap_or_else(IoBatch::new);
        self.take_for_send(&mut batch.chunks);
        Some(batch)
    }

    /// A send of `batch` finished having sent `sent` bytes (0 for one
    /// that failed or was never submitted): see
    /// [`complete_send`](Self::complete_send). The batch is kept for the
    /// next send.
    pub(crate) fn complete_batch(&mut self, mut batch: Box<IoBatch>, sent: usize) {
        self.complete_send(&mut batch.chunks, sent);
        self.batch = Some(batch);
    }

    /// Moves up to [`MAX_IOVECS`] chunks into `out` (empty) for one send.
    fn take_for_send(&mut self, out: &mut ChunkList) {
        debug_assert!(out.is_empty());
        if self.chunks.is_empty() {
            // Only the tail (the usual case): straight into the send,
            // without touching the queue's memory.
            if !self.tail.is_empty() {
                let tail = self.take_tail();
                self.queued -= tail.len();
                self.in_flight += tail.len();
                out.push(Chunk::Tail(tail));
            }
            return;
        }
        self.flush_tail();
        let n = self.chunks.len().min(MAX_IOVECS);
        let mut bytes = 0;
        for c in self.chunks.drain(..n) {
            bytes += c.len();
            out.push(c);
        }
        self.queued -= bytes;
        self.in_flight += bytes;
    }

    /// A send of `chunks` finished having sent `sent` bytes: the sent
    /// ones are dropped (received buffers go back), what was not sent
    /// goes back to the front, in order, as copies the buffer owns (a
    /// short send means the peer is slow, and a received buffer must not
    /// wait on it). `chunks` is left empty, its allocation kept.
    fn complete_send(&mut self, chunks: &mut ChunkList, sent: usize) {
        if let Some(len) = chunks.single().map(|c| c.len()) {
            if sent >= len {
                // The usual case: one chunk, sent whole.
                self.in_flight -= len;
                if let Some(c) = chunks.take_single() {
                    self.sent_whole(c);
                }
                return;
            }
        }
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        self.in_flight -= total;
        let sent = sent.min(total);
        // Last chunk first: each unsent one goes to the queue's front.
        let mut end = total;
        for mut c in chunks.drain_rev() {
            let start = end - c.len();
            end = start;
            if start + c.len() <= sent {
                self.sent_whole(c);
                continue;
            }
            c.advance(sent.saturating_sub(start));
            if c.is_received() {
                c.detach();
                self.received -= 1;
            }
            self.queued += c.len();
            self.chunks.push_front(c);
        }
    }

    /// A chunk that was sent in full: dropped (a received buffer goes
    /// back), a tail's allocation kept for reuse.
    fn sent_whole(&mut self, c: Chunk) {
        match c {
            Chunk::Tail(t) => self.reuse_tail(t),
            Chunk::Received { .. } => self.received -= 1,
            Chunk::Bytes(_) => {}
        }
    }

    /// Drops everything queued (abort). Bytes in flight are still
    /// counted until their send completes.
    pub(crate) fn clear(&mut self) {
        for c in self.chunks.drain(..) {
            if c.is_received() {
                self.received -= 1;
            }
        }
        self.tail.clear();
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_asyncio() {
        assert_eq!(Limits::new(None, None).unwrap(), Limits::default());
        assert_eq!(
            Limits::new(None, Some(100)).unwrap(),
            Limits {
                high: 400,
                low: 100
            }
        );
        assert_eq!(
            Limits::new(Some(100), None).unwrap(),
            Limits { high: 100, low: 25 }
        );
        assert_eq!(
            Limits::new(Some(0), None).unwrap(),
            Limits { high: 0, low: 0 }
        );
        assert!(Limits::new(Some(10), Some(11)).is_err());
    }

    fn take(b: &mut WriteBuffer) -> ChunkList {
        let mut out = ChunkList::default();
        b.take_for_send(&mut out);
        out
    }

    /// Sends everything queued, each send taken whole; the bytes sent.
    fn send_all(b: &mut WriteBuffer) -> Vec<u8> {
        let mut sent = Vec::new();
        while !b.is_empty() {
            let mut chunks = take(b);
            for c in &chunks {
                sent.extend_from_slice(c);
            }
            let n: usize = chunks.iter().map(|c| c.len()).sum();
            b.complete_send(&mut chunks, n);
        }
        sent
    }

    #[test]
    fn sends_straight_from_the_tail_keep_order_and_counts() {
        let mut b = WriteBuffer::default();
        assert!(b.tail_only().is_none(), "nothing queued");
        b.push_slice(b"hello ");
        b.push_slice(b"world");
        assert_eq!(b.tail_only(), Some(&b"hello world"[..]));
        b.consume_tail(4); // a short send
        assert_eq!((b.size(), b.tail_only()), (7, Some(&b"o world"[..])));
        b.push_slice(b"!");
        b.consume_tail(8);
        assert!(b.is_empty() && b.size() == 0 && b.tail_only().is_none());
        // Once a send is in flight, or a chunk is queued, the tail is not
        // all there is.
        b.push_slice(b"ab");
        let mut inflight = take(&mut b);
        b.push_slice(b"cd");
        assert!(b.tail_only().is_none(), "a send in flight");
        b.complete_send(&mut inflight, 2);
        assert_eq!(b.tail_only(), Some(&b"cd"[..]));
        b.push_bytes(Bytes::from(vec![b'x'; 20_000]));
        assert!(b.tail_only().is_none(), "a chunk queued");
        assert_eq!(&send_all(&mut b)[..4], b"cdxx");
        assert_eq!(b.size(), 0);
    }

    #[test]
    fn partial_sends_keep_order() {
        let mut b = WriteBuffer::default();
        b.push_slice(b"abc");
        b.push_bytes(Bytes::from(vec![b'x'; 20_000]));
        b.push_slice(b"def");
        assert_eq!(b.size(), 20_006);
        let mut chunks = take(&mut b);
        assert_eq!(chunks.len(), 3, "abc, the big chunk, def");
        assert_eq!(b.size(), 20_006);
        b.complete_send(&mut chunks, 5);
        assert!(chunks.is_empty());
        assert_eq!(b.size(), 20_001);
        let all = send_all(&mut b);
        assert_eq!(all.len(), 20_001);
        assert!(all[..19_998].iter().all(|&c| c == b'x'));
        assert_eq!(&all[19_998..], b"def");
        assert_eq!(b.size(), 0);
    }

    #[test]
    fn the_tail_allocation_is_reused_once_sent() {
        let mut b = WriteBuffer::default();
        let mut seen = Vec::new();
        for round in 0..4u8 {
            // Large and small writes alike go through the tail.
            b.push_slice(&vec![round; 40_000]);
            b.push_slice(b"tail");
            let mut chunks = take(&mut b);
            assert_eq!(chunks.len(), 1, "coalesced into one chunk");
            assert_eq!(chunks[0].len(), 40_004);
            assert!(chunks[0][..40_000].iter().all(|&c| c == round));
            seen.push(chunks[0].as_ptr());
            b.complete_send(&mut chunks, 40_004);
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "a new allocation per burst: {seen:?}"
        );
    }

    #[test]
    fn with_a_send_in_flight_two_tail_allocations_take_turns() {
        let mut b = WriteBuffer::default();
        let mut in_flight = take_after(&mut b, 1_000, 0);
        let mut seen = std::collections::HashSet::new();
        for round in 1..20u8 {
            // The next burst is written while the previous one is in
            // flight, then the previous one completes.
            let next = take_after(&mut b, 1_000, round);
            b.complete_send(&mut in_flight, 1_000);
            in_flight = next;
            seen.insert(in_flight[0].as_ptr());
        }
        assert!(seen.len() <= 2, "{} allocations", seen.len());
        b.complete_send(&mut in_flight, 1_000);
        assert_eq!(b.size(), 0);
    }

    /// Writes `n` bytes of `v` and takes them for a send.
    fn take_after(b: &mut WriteBuffer, n: usize, v: u8) -> ChunkList {
        b.push_slice(&vec![v; n]);
        let chunks = take(b);
        assert!(chunks.len() == 1 && chunks[0].iter().all(|&c| c == v));
        chunks
    }

    #[test]
    fn received_buffers_are_sent_in_place_and_let_go() {
        let mut b = WriteBuffer::default();
        let rx = Rc::new(ReadBuf::heap((0..=255u8).cycle().take(10_000).collect()));
        b.push_slice(b"head:");
        assert!(b.push_received(&rx, 100, 9_100));
        b.push_slice(b":tail");
        assert_eq!(b.size(), 9_010);
        let mut chunks = take(&mut b);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[1].as_ptr(),
            rx[100..].as_ptr(),
            "sent from the received buffer, not a copy"
        );
        // A short send: the unsent part of the received slice becomes a
        // copy, so the buffer is no longer held.
        b.complete_send(&mut chunks, 5 + 4_000);
        assert_eq!(Rc::strong_count(&rx), 1);
        let out = send_all(&mut b);
        let mut want = rx[4_100..9_100].to_vec();
        want.extend_from_slice(b":tail");
        assert_eq!(out, want);
        assert_eq!(b.size(), 0);
    }

    #[test]
    fn at_most_two_received_buffers_are_held() {
        let mut b = WriteBuffer::default();
        let rx = Rc::new(ReadBuf::heap(vec![1; 4096]));
        assert!(b.push_received(&rx, 0, 4096));
        assert!(b.push_received(&rx, 0, 4096));
        assert!(!b.push_received(&rx, 0, 4096), "the third is copied");
        assert!(!b.push_received(&rx, 10, 5000), "out of range");
        let mut chunks = take(&mut b);
        b.complete_send(&mut chunks, 8192);
        assert_eq!(Rc::strong_count(&rx), 1);
        assert!(b.push_received(&rx, 0, 4096), "sent ones no longer count");
        b.clear();
        assert_eq!(Rc::strong_count(&rx), 1, "abort lets queued ones go");
        assert!(b.push_received(&rx, 0, 4096));
    }

    #[test]
    fn clear_keeps_in_flight_count() {
        let mut b = WriteBuffer::default();
        b.push_slice(b"hello");
        let mut chunks = take(&mut b);
        b.push_slice(b"world");
        b.clear();
        assert_eq!(b.size(), 5);
        b.complete_send(&mut chunks, 5);
        assert_eq!(b.size(), 0);
    }
}
