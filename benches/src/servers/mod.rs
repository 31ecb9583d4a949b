//! The echo servers the echo benchmark compares, one per [`ServerKind`].
//!
//! Every server takes an already listening, non-blocking
//! [`TcpListener`] on `127.0.0.1` (see [`listen_local`]), echoes every
//! byte it receives on every connection it accepts, sets `TCP_NODELAY` on
//! accepted sockets, and closes a connection when the peer closes its
//! side. [`serve`] runs one until the process ends; the benchmark runs
//! each in a process of its own (see [`crate::child`]) so that the
//! process's CPU time is exactly the server's.
//!
//! Servers that keep a receive buffer per connection use 64 KiB
//! ([`RECV_BUF`]), the size of a ringloop transport's receive buffer.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use ringloop::Backend;

pub mod bare_epoll;
pub mod bare_uring;
pub mod ringloop_echo;
pub mod tokio_echo;

/// Receive buffer size of the servers that keep one per connection (the
/// size of a ringloop transport's receive buffer).
pub const RECV_BUF: usize = 64 * 1024;

/// `listen` backlog of every server (the kernel caps it at
/// `net.core.somaxconn`); large, so thousands of connects in a burst are
/// not dropped and retried a second later.
pub const BACKLOG: i32 = 4096;

/// One of the compared echo servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// ringloop `create_server` with an echo [`ringloop::Protocol`]
    /// (`transport.write` inside `data_received`), loop on io_uring.
    ProtoUring,
    /// The same on the epoll backend.
    ProtoEpoll,
    /// ringloop streams (`start_server`, `StreamReader::read` /
    /// `StreamWriter::write` + `drain`), io_uring.
    StreamsUring,
    /// The same on the epoll backend.
    StreamsEpoll,
    /// ringloop `sock_accept` / `sock_recv` / `sock_sendall`, one task
    /// per connection, io_uring.
    SockUring,
    /// The same on the epoll backend.
    SockEpoll,
    /// tokio `current_thread`: `TcpListener`, one task per connection,
    /// `read` / `write_all`.
    Tokio,
    /// A bare io_uring loop on the `io-uring` crate ([`bare_uring`]).
    BareUring,
    /// A bare epoll loop on libc ([`bare_epoll`]).
    BareEpoll,
}

impl ServerKind {
    /// Every server, in table column order.
    pub const ALL: [ServerKind; 9] = [
        ServerKind::ProtoUring,
        ServerKind::StreamsUring,
        ServerKind::SockUring,
        ServerKind::BareUring,
        ServerKind::ProtoEpoll,
        ServerKind::StreamsEpoll,
        ServerKind::SockEpoll,
        ServerKind::BareEpoll,
        ServerKind::Tokio,
    ];

    /// The name used on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::ProtoUring => "ringloop-proto-uring",
            ServerKind::ProtoEpoll => "ringloop-proto-epoll",
            ServerKind::StreamsUring => "ringloop-streams-uring",
            ServerKind::StreamsEpoll => "ringloop-streams-epoll",
            ServerKind::SockUring => "ringloop-sock-uring",
            ServerKind::SockEpoll => "ringloop-sock-epoll",
            ServerKind::Tokio => "tokio",
            ServerKind::BareUring => "bare-uring",
            ServerKind::BareEpoll => "bare-epoll",
        }
    }

    /// A short column label (tables are wide).
    pub fn short(self) -> &'static str {
        match self {
            ServerKind::ProtoUring => "proto-uring",
            ServerKind::ProtoEpoll => "proto-epoll",
            ServerKind::StreamsUring => "streams-uring",
            ServerKind::StreamsEpoll => "streams-epoll",
            ServerKind::SockUring => "sock-uring",
            ServerKind::SockEpoll => "sock-epoll",
            ServerKind::Tokio => "tokio",
            ServerKind::BareUring => "bare-uring",
            ServerKind::BareEpoll => "bare-epoll",
        }
    }

    /// The server with this exact [`name`](Self::name) or
    /// [`short`](Self::short) label.
    pub fn from_name(name: &str) -> Option<ServerKind> {
        ServerKind::ALL
            .into_iter()
            .find(|k| k.name() == name || k.short() == name)
    }

    /// The kernel interface the server waits on: io_uring or epoll
    /// (tokio uses epoll, through mio).
    pub fn backend(self) -> Backend {
        match self {
            ServerKind::ProtoUring
            | ServerKind::StreamsUring
            | ServerKind::SockUring
            | ServerKind::BareUring => Backend::Uring,
            _ => Backend::Epoll,
        }
    }

    /// True for the ringloop servers.
    pub fn is_ringloop(self) -> bool {
        !matches!(
            self,
            ServerKind::Tokio | ServerKind::BareUring | ServerKind::BareEpoll
        )
    }
}

/// Runs the echo server `kind` on `listener` until the process ends (or
/// an error stops it).
pub fn serve(kind: ServerKind, listener: TcpListener) -> io::Result<()> {
    match kind {
        ServerKind::ProtoUring => ringloop_echo::serve_proto(Backend::Uring, listener),
        ServerKind::ProtoEpoll => ringloop_echo::serve_proto(Backend::Epoll, listener),
        ServerKind::StreamsUring => ringloop_echo::serve_streams(Backend::Uring, listener),
        ServerKind::StreamsEpoll => ringloop_echo::serve_streams(Backend::Epoll, listener),
        ServerKind::SockUring => ringloop_echo::serve_sock(Backend::Uring, listener),
        ServerKind::SockEpoll => ringloop_echo::serve_sock(Backend::Epoll, listener),
        ServerKind::Tokio => tokio_echo::serve(listener),
        ServerKind::BareUring => bare_uring::serve(listener),
        ServerKind::BareEpoll => bare_epoll::serve(listener),
    }
}

/// A non-blocking listener on `127.0.0.1` (port chosen by the kernel)
/// with a [`BACKLOG`]-deep accept queue.
pub fn listen_local() -> io::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // Listening again only changes the backlog (std uses 128).
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn names_round_trip() {
        for k in ServerKind::ALL {
            assert_eq!(ServerKind::from_name(k.name()), Some(k));
            assert_eq!(ServerKind::from_name(k.short()), Some(k));
        }
        assert_eq!(ServerKind::from_name("nginx"), None);
    }

    /// Starts `kind` on a detached thread (it serves until the test
    /// process ends) and checks a few echoes on two connections.
    fn check_echo(kind: ServerKind) {
        if kind.backend() == Backend::Uring && crate::probe_backend(Backend::Uring).is_err() {
            eprintln!("skipping {}: io_uring unavailable here", kind.name());
            return;
        }
        let listener = listen_local().expect("listen");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let _ = serve(kind, listener);
        });
        for conn in 0..2u8 {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            for size in [1usize, 1000, 200_000] {
                let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ conn).collect();
                let writer = {
                    let mut w = s.try_clone().expect("clone");
                    let msg = msg.clone();
                    std::thread::spawn(move || w.write_all(&msg))
                };
                let mut got = vec![0u8; size];
                s.read_exact(&mut got).expect("echo");
                writer.join().expect("writer").expect("write");
                assert!(got == msg, "{}: wrong echo at {size} B", kind.name());
            }
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("server closes");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn every_server_echoes() {
        for k in ServerKind::ALL {
            check_echo(k);
        }
    }
}
