//! `loop.sendfile(transport, file, ...)`: a file over a stream transport.
//!
//! asyncio's rules (`BaseEventLoop.sendfile`, Python 3.7): the transport
//! must not be closing; what was written before goes out first (the call
//! waits for the write buffer to drain); reading pauses for the duration;
//! `write()` during the call is an error; what is written after goes out
//! after the file. Zero copy first (SPLICE through a pipe on io_uring,
//! `sendfile(2)` on epoll, on a duplicate of the socket so the descriptor
//! stays valid whatever the transport does meanwhile); when that is
//! impossible (a pipe or character device, a file system that refuses
//! splice) the buffered fallback reads chunks and queues them on the
//! transport, pacing itself on the low-water mark so the buffer never holds
//! more than about one chunk, or, with `fallback = false`, the call fails
//! with [`SendfileNotAvailable`](crate::SendfileNotAvailable).
//!
//! `close()` during a sendfile lets it finish, then closes (flushing);
//! `abort()` ends it at once with an error.

use std::fs::File;
use std::future::Future;
use std::io;

use super::Transport;
use crate::error::SendfileNotAvailable;
use crate::event_loop::EventLoop;
use crate::net::sendfile::{ChunkReader, PositionGuard, FALLBACK_CHUNK};

/// Ends the sendfile state of a transport however the call ends
/// (success, error or the future dropped).
struct ActiveGuard<'t> {
    transport: &'t Transport,
    was_reading: bool,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.transport.inner.end_sendfile(self.was_reading);
    }
}

fn connection_lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection was lost during sendfile",
    )
}

impl EventLoop {
    /// Sends `count` bytes of `file` from `offset` (to the end of the file
    /// when `None`) over a stream transport; returns the number of bytes
    /// sent and leaves the file position at `offset + sent`
    /// (`loop.sendfile`).
    ///
    /// Zero copy where the kernel can (a regular file); otherwise the
    /// bytes are read and written through the transport when `fallback`
    /// is true, or the call fails with an error
    /// [`SendfileNotAvailable::is`] recognises. Errors: the transport is
    /// closing or another sendfile runs on it; `count == Some(0)`; a
    /// non-zero `offset` on a non-seekable file; the connection is lost
    /// meanwhile. [`Transport::write`] fails while the call runs.
    ///
    /// ```no_run
    /// # use ringloop::{EventLoop, Transport};
    /// # async fn serve(lp: EventLoop, transport: Transport) -> std::io::Result<()> {
    /// let file = std::fs::File::open("index.html")?;
    /// transport.write(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
    /// let sent = lp.sendfile(&transport, &file, 0, None, true).await?;
    /// println!("sent {sent} bytes");
    /// transport.close();
    /// # Ok(()) }
    /// ```
    pub fn sendfile<'a>(
        &self,
        transport: &Transport,
        file: &'a File,
        offset: u64,
        count: Option<usize>,
        fallback: bool,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        let lp = self.clone();
        let transport = transport.clone();
        async move {
            PositionGuard::check(file, offset, count)?;
            let was_reading = transport.inner.begin_sendfile()?;
            let _active = ActiveGuard {
                transport: &transport,
                was_reading,
            };
            // What was written before goes first.
            transport.wait_write_below(0).await;
            if transport.inner.state.borrow().conn_lost > 0 || transport.is_closed() {
                return Err(connection_lost());
            }
            let sock = transport.inner.dup_fd()?;
            match lp.sock_sendfile(&sock, file, offset, count, false).await {
                Err(e) if SendfileNotAvailable::is(&e) && fallback => {}
                other => return other,
            }
            drop(sock);
            let guard = PositionGuard::new(file, offset, count)?;
            send_through_buffer(&lp, &transport, file, count, guard).await
        }
    }
}

/// The fallback: read a chunk, wait for the buffer to fall to the
/// low-water mark, queue the chunk; finally wait for it all to leave.
async fn send_through_buffer(
    lp: &EventLoop,
    transport: &Transport,
    file: &File,
    count: Option<usize>,
    guard: PositionGuard<'_>,
) -> io::Result<usize> {
    let reader = ChunkReader::new(&lp.driver_ref(), lp.downgrade(), guard.is_regular());
    let lost = || transport.inner.state.borrow().conn_lost > 0 || transport.is_closed();
    while let Some(want) = guard.next_chunk(count, FALLBACK_CHUNK) {
        let position = if guard.is_regular() {
            guard.position()
        } else {
            u64::MAX
        };
        let chunk = reader.read(file, position, want).await?;
        if chunk.is_empty() {
            break;
        }
        let low = transport.get_write_buffer_limits().1;
        transport.wait_write_below(low).await;
        if lost() {
            return Err(connection_lost());
        }
        let n = chunk.len();
        transport.inner.push_sendfile_chunk(chunk);
        guard.add(n);
    }
    transport.wait_write_below(0).await;
    if lost() {
        return Err(connection_lost());
    }
    Ok(guard.sent())
}
