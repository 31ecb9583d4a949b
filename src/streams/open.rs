//! The high-level entry points: `open_connection`, `start_server` and
//! their Unix variants (asyncio's module-level functions).

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use super::protocol::{erase_cb, FlowState, StreamReaderProtocol};
use super::reader::StreamReader;
use super::writer::{ConnGuard, StreamWriter};
use crate::event_loop::EventLoop;
use crate::net::{ConnectOptions, Server, ServerOptions};
use crate::transport::Transport;

/// asyncio's `ValueError('Limit cannot be <= 0')`, as a value.
fn check_limit(limit: usize) -> io::Result<()> {
    if limit == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Limit cannot be <= 0",
        ));
    }
    Ok(())
}

/// The reader/writer pair of a new connection, sharing one guard.
fn pair(
    transport: Transport,
    flow: Rc<FlowState>,
    reader: StreamReader,
) -> (StreamReader, StreamWriter) {
    let guard = ConnGuard::new(transport.clone());
    let reader = StreamReader {
        inner: reader.inner,
        _guard: Some(guard.clone()),
    };
    let writer = StreamWriter::with_guard(transport, flow, reader.clone(), guard);
    (reader, writer)
}

/// Opens a TCP connection and returns its reader and writer
/// (`asyncio.open_connection(host, port, limit=limit, **kwds)`).
///
/// `host`, `port` and `options` are those of
/// [`EventLoop::create_connection`]; `limit` is the reader's limit
/// (use [`DEFAULT_LIMIT`](super::DEFAULT_LIMIT) for asyncio's default;
/// 0 is `InvalidInput`). When the last clone of both the reader and the
/// writer is dropped, the connection is closed (after flushing).
///
/// # Example
///
/// ```
/// use ringloop::streams::{open_connection, DEFAULT_LIMIT};
/// use std::io::{Read, Write};
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let port = listener.local_addr()?.port();
/// let peer = std::thread::spawn(move || {
///     let (mut s, _) = listener.accept().unwrap();
///     s.write_all(b"220 ready\r\n").unwrap();
///     let mut got = Vec::new();
///     s.read_to_end(&mut got).unwrap();
///     got
/// });
/// let lp = ringloop::EventLoop::new()?;
/// let l = lp.clone();
/// let greeting = lp.run_until_complete(async move {
///     let (reader, writer) =
///         open_connection(&l, Some("127.0.0.1"), Some(port), DEFAULT_LIMIT, Default::default())
///             .await?;
///     let greeting = reader.readuntil(b"\r\n").await?;
///     writer.write(b"QUIT\r\n")?;
///     writer.close();
///     writer.wait_closed().await?;
///     Ok::<_, Box<dyn std::error::Error>>(greeting)
/// })??;
/// assert_eq!(&greeting[..], b"220 ready\r\n");
/// assert_eq!(peer.join().unwrap(), b"QUIT\r\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_connection(
    lp: &EventLoop,
    host: Option<&str>,
    port: Option<u16>,
    limit: usize,
    options: ConnectOptions,
) -> impl Future<Output = io::Result<(StreamReader, StreamWriter)>> + 'static {
    let checked = check_limit(limit);
    let reader = StreamReader::with_limit(limit.max(1));
    let protocol = StreamReaderProtocol::new(reader.clone());
    let flow = protocol.flow();
    let connect = lp.create_connection(move || protocol, host, port, options);
    async move {
        checked?;
        let (transport, _protocol) = connect.await?;
        Ok(pair(transport, flow, reader))
    }
}

/// Opens a Unix stream connection to `path` (or uses the connected
/// socket `sock`) and returns its reader and writer
/// (`asyncio.open_unix_connection(path, limit=limit, sock=sock)`).
/// See [`open_connection`] and
/// [`EventLoop::create_unix_connection`].
pub fn open_unix_connection(
    lp: &EventLoop,
    path: Option<&Path>,
    limit: usize,
    sock: Option<OwnedFd>,
) -> impl Future<Output = io::Result<(StreamReader, StreamWriter)>> + 'static {
    let checked = check_limit(limit);
    let reader = StreamReader::with_limit(limit.max(1));
    let protocol = StreamReaderProtocol::new(reader.clone());
    let flow = protocol.flow();
    let connect = lp.create_unix_connection(move || protocol, path, sock);
    async move {
        checked?;
        let (transport, _protocol) = connect.await?;
        Ok(pair(transport, flow, reader))
    }
}

/// Starts a TCP server; each accepted connection gets a reader and a
/// writer, and `client_connected_cb(reader, writer)`'s future runs as a
/// new task (`asyncio.start_server(client_connected_cb, host, port,
/// limit=limit, **kwds)`).
///
/// `hosts`, `port` and `options` are those of
/// [`EventLoop::create_server`]; `limit` is each reader's limit (0 is
/// `InvalidInput`). The connection is closed when the task has dropped
/// the last clone of its reader and writer (or earlier with
/// [`StreamWriter::close`]). A panic in the task is reported to the
/// loop's exception handler ("Task exception was never retrieved"), as
/// an unhandled exception in asyncio's callback task is.
///
/// See [`StreamWriter`] for an example.
pub fn start_server<F, Fut>(
    lp: &EventLoop,
    client_connected_cb: F,
    hosts: &[&str],
    port: Option<u16>,
    limit: usize,
    options: ServerOptions,
) -> impl Future<Output = io::Result<Server>> + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let checked = check_limit(limit);
    let cb = erase_cb(client_connected_cb);
    let limit = limit.max(1);
    let create = lp.create_server(
        move || StreamReaderProtocol::with_shared_cb(StreamReader::with_limit(limit), cb.clone()),
        hosts,
        port,
        options,
    );
    async move {
        checked?;
        create.await
    }
}

/// Starts a Unix stream server at `path` (or on `options`' socket); see
/// [`start_server`] and [`EventLoop::create_unix_server`]
/// (`asyncio.start_unix_server(client_connected_cb, path,
/// limit=limit, **kwds)`).
pub fn start_unix_server<F, Fut>(
    lp: &EventLoop,
    client_connected_cb: F,
    path: Option<&Path>,
    limit: usize,
    options: ServerOptions,
) -> impl Future<Output = io::Result<Server>> + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let checked = check_limit(limit);
    let cb = erase_cb(client_connected_cb);
    let limit = limit.max(1);
    let create = lp.create_unix_server(
        move || StreamReaderProtocol::with_shared_cb(StreamReader::with_limit(limit), cb.clone()),
        path,
        options,
    );
    async move {
        checked?;
        create.await
    }
}
