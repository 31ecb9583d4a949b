//! A bare io_uring echo server, written directly on the `io-uring` crate:
//! the reference point for ringloop's io_uring backend.
//!
//! The straightforward best design, the same one ringloop's transports
//! use, without any of the loop around it:
//!
//! - one thread, one ring (4096 submission entries, a completion queue
//!   twice that), set up with `SINGLE_ISSUER | DEFER_TASKRUN` where the
//!   kernel has them, else `COOP_TASKRUN`, else no flags (the same
//!   fallback order as ringloop's driver);
//! - one `submit_and_wait(1)` per loop iteration: every submission queued
//!   while handling the previous batch of completions goes out in it;
//! - one single-shot `IORING_OP_ACCEPT` in flight, re-armed on each
//!   completion;
//! - per connection, exactly one operation in flight: a single-shot
//!   `IORING_OP_RECV` into the connection's own 64 KiB buffer (allocated
//!   uninitialised, as `malloc` would: pages the kernel never writes stay
//!   out of the RSS), then
//!   `IORING_OP_SEND` of what arrived (re-submitted for the rest after a
//!   short send), then the next receive. No provided buffer ring and no
//!   multishot receive: that would save the idle connections' buffers,
//!   but needs buffer-ring refill and `ENOBUFS` handling, and ringloop's
//!   transports receive the same way (single-shot, 64 KiB owned buffer).
//!
//! A receive of 0 bytes (the peer closed) or an error closes the
//! connection with `close(2)`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};

use super::RECV_BUF;
use crate::os::set_nodelay;

/// Submission queue entries.
const ENTRIES: u32 = 4096;

/// `user_data` = connection slot << 2 | operation.
const OP_ACCEPT: u64 = 0;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;

struct Conn {
    fd: RawFd,
    /// Capacity [`RECV_BUF`]; its length is the bytes received and being
    /// sent back (0 while a receive is in flight).
    buf: Vec<u8>,
    /// Of those, bytes already sent.
    sent: usize,
}

/// Builds the ring with the best setup flags the kernel accepts.
fn build_ring() -> io::Result<IoUring> {
    let mut last = None;
    for level in 0..3 {
        let mut b = IoUring::builder();
        b.setup_cqsize(ENTRIES * 2);
        match level {
            0 => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            1 => {
                b.setup_coop_taskrun();
            }
            _ => {}
        }
        match b.build(ENTRIES) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring_setup failed")))
}

/// Queues `entry`, submitting first if the submission queue is full.
fn push(
    submitter: &io_uring::Submitter<'_>,
    sq: &mut io_uring::SubmissionQueue<'_>,
    entry: &squeue::Entry,
) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an entry points to is owned by a `Conn`
        // whose slot is kept (and whose buffer is neither reallocated nor
        // touched) until the entry's completion has been reaped.
        if unsafe { sq.push(entry) }.is_ok() {
            return Ok(());
        }
        sq.sync();
        match submitter.submit() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        sq.sync();
    }
}

fn recv_entry(slot: usize, c: &mut Conn) -> squeue::Entry {
    c.buf.clear();
    opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), c.buf.capacity() as u32)
        .build()
        .user_data((slot as u64) << 2 | OP_RECV)
}

fn send_entry(slot: usize, c: &Conn) -> squeue::Entry {
    let rest = &c.buf[c.sent..];
    opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
        .build()
        .user_data((slot as u64) << 2 | OP_SEND)
}

/// Runs the bare io_uring echo server until the process ends.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut ring = build_ring()?;
    let (submitter, mut sq, mut cq) = ring.split();
    let lfd = listener.as_raw_fd();
    let accept = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(OP_ACCEPT);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    push(&submitter, &mut sq, &accept)?;
    loop {
        sq.sync();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        for cqe in cq.by_ref() {
            let res = cqe.result();
            let ud = cqe.user_data();
            let slot = (ud >> 2) as usize;
            match ud & 3 {
                OP_ACCEPT => {
                    if res >= 0 {
                        let fd = res;
                        let _ = set_nodelay(fd);
                        let slot = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let c = conns[slot].insert(Conn {
                            fd,
                            buf: Vec::with_capacity(RECV_BUF),
                            sent: 0,
                        });
                        push(&submitter, &mut sq, &recv_entry(slot, c))?;
                    } else if res != -libc::EINTR && res != -libc::EAGAIN {
                        eprintln!("bare-uring: accept: {}", io::Error::from_raw_os_error(-res));
                    }
                    push(&submitter, &mut sq, &accept)?;
                }
                OP_RECV => {
                    let Some(c) = conns[slot].as_mut() else {
                        continue;
                    };
                    if res > 0 {
                        // SAFETY: the kernel wrote `res` bytes (at most
                        // the capacity it was given) at the start.
                        unsafe { c.buf.set_len(res as usize) };
                        c.sent = 0;
                        push(&submitter, &mut sq, &send_entry(slot, c))?;
                    } else if res == -libc::EINTR || res == -libc::EAGAIN {
                        push(&submitter, &mut sq, &recv_entry(slot, c))?;
                    } else {
                        close(&mut conns, &mut free, slot);
                    }
                }
                OP_SEND => {
                    let Some(c) = conns[slot].as_mut() else {
                        continue;
                    };
                    if res >= 0 {
                        c.sent += res as usize;
                        if c.sent < c.buf.len() {
                            push(&submitter, &mut sq, &send_entry(slot, c))?;
                        } else {
                            push(&submitter, &mut sq, &recv_entry(slot, c))?;
                        }
                    } else if res == -libc::EINTR || res == -libc::EAGAIN {
                        push(&submitter, &mut sq, &send_entry(slot, c))?;
                    } else {
                        close(&mut conns, &mut free, slot);
                    }
                }
                _ => {}
            }
        }
    }
}

fn close(conns: &mut [Option<Conn>], free: &mut Vec<usize>, slot: usize) {
    if let Some(c) = conns[slot].take() {
        // SAFETY: the connection's only operation has completed, so the
        // kernel no longer uses the descriptor or the buffer.
        unsafe { libc::close(c.fd) };
        free.push(slot);
    }
}
