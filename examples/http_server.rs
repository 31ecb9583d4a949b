//! A minimal HTTP/1.1 server on ringloop's protocols and transports:
//! `GET /` answers `Hello, World!`, any other path 404. Good enough for
//! `wrk`:
//!
//! ```text
//! cargo run --release --example http_server -- [--host HOST] [--port PORT] [--backend uring|epoll]
//! wrk -t1 -c100 -d10s http://127.0.0.1:PORT/
//! ```
//!
//! `--host` defaults to 127.0.0.1, `--port` to 0 (any free port); the first
//! line of stdout is `listening on HOST:PORT`. SIGINT or SIGTERM stops it
//! (exit status 0).
//!
//! What it implements of HTTP/1.1 (RFC 9112): persistent connections
//! (HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0
//! closes it unless `Connection: keep-alive`), pipelined requests (every
//! complete request in a read is answered, in order, in one write), request
//! heads split across reads, request bodies with `Content-Length` (read and
//! discarded), `HEAD`, and the error answers a client can act on: 400 for a
//! malformed request, 405 for methods other than GET and HEAD, 413/431 for
//! bodies or heads over the limits, 501 for `Transfer-Encoding`, 505 for
//! other HTTP versions. Every answer has an exact `Content-Length` and a
//! `Date`.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::cell::RefCell;
use std::error::Error;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use ringloop::net::ServerOptions;
use ringloop::{BaseProtocol, Protocol, Transport};
use serve::Conn;

const USAGE: &str = "usage: http_server [--host HOST] [--port PORT] [--backend uring|epoll]";

/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// The largest request body accepted (and discarded).
const MAX_BODY: usize = 1 << 20;

const HELLO: &[u8] = b"Hello, World!";

// ----- parsing ---------------------------------------------------------------

/// A complete request at the start of the buffer.
#[derive(Debug, PartialEq)]
struct Request<'a> {
    method: &'a [u8],
    /// The path, without the query.
    path: &'a [u8],
    /// Keep the connection open after answering.
    keep_alive: bool,
    /// HTTP/1.0 (answers then say `Connection: keep-alive` when kept).
    http10: bool,
    /// Bytes the request takes in the buffer: head and body.
    len: usize,
}

/// What the start of the buffer holds.
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    /// Not a whole request yet: read more.
    Partial,
    /// A request to answer.
    Complete(Request<'a>),
    /// An error to answer with this status, then close.
    Invalid(Status),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    HeadersTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::PayloadTooLarge => "413 Content Too Large",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large",
            Status::NotImplemented => "501 Not Implemented",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses the request at the start of `buf`.
fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(head_end) = find(&buf[..buf.len().min(MAX_HEAD + 4)], b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Parsed::Invalid(Status::HeadersTooLarge)
        } else {
            Parsed::Partial
        };
    };
    let head = &buf[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Invalid(Status::BadRequest);
    };
    if method.is_empty() || !target.starts_with(b"/") {
        return Parsed::Invalid(Status::BadRequest);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        v if v.starts_with(b"HTTP/") => return Parsed::Invalid(Status::VersionNotSupported),
        _ => return Parsed::Invalid(Status::BadRequest),
    };
    let mut keep_alive = !http10;
    let mut body: Option<usize> = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Invalid(Status::BadRequest);
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.ends_with(b" ") || name.ends_with(b"\t") {
            return Parsed::Invalid(Status::BadRequest);
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (n, body) {
                (None, _) => return Parsed::Invalid(Status::BadRequest),
                (Some(n), Some(m)) if n != m => return Parsed::Invalid(Status::BadRequest),
                (Some(n), _) => body = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked bodies are not read: the end of the request could
            // not be found.
            return Parsed::Invalid(Status::NotImplemented);
        }
    }
    let body = body.unwrap_or(0);
    if body > MAX_BODY {
        return Parsed::Invalid(Status::PayloadTooLarge);
    }
    let len = head_end + 4 + body;
    if buf.len() < len {
        return Parsed::Partial;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    Parsed::Complete(Request {
        method,
        path,
        keep_alive,
        http10,
        len,
    })
}

// ----- answering ---------------------------------------------------------------

/// The `Date` header's value for now, recomputed once per second.
fn http_date() -> String {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, format_http_date(now));
        }
        c.1.clone()
    })
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate) for Unix
/// time `secs`.
fn format_http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm, 0000-03-01 epoch).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Appends one response to `out`.
fn respond(out: &mut Vec<u8>, status: Status, body: &[u8], head_only: bool, conn: Option<&str>) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {}\r\nServer: ringloop\r\nDate: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        status.line(),
        http_date(),
        body.len()
    );
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if let Some(c) = conn {
        let _ = write!(out, "Connection: {c}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Answers every complete request at the start of `buf`; returns the bytes
/// consumed and whether the connection must close after the answers.
fn answer_all(buf: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut used = 0;
    loop {
        match parse(&buf[used..]) {
            Parsed::Partial => return (used, false),
            Parsed::Invalid(status) => {
                let line = status.line();
                respond(out, status, line.as_bytes(), false, Some("close"));
                return (buf.len(), true);
            }
            Parsed::Complete(req) => {
                used += req.len;
                let head_only = req.method == b"HEAD";
                let (status, body) = match (req.method, req.path) {
                    (b"GET" | b"HEAD", b"/") => (Status::Ok, HELLO),
                    (b"GET" | b"HEAD", _) => (Status::NotFound, &b"Not Found"[..]),
                    _ => (Status::MethodNotAllowed, &b"Method Not Allowed"[..]),
                };
                let conn = match (req.keep_alive, req.http10) {
                    (false, _) => Some("close"),
                    (true, true) => Some("keep-alive"),
                    (true, false) => None,
                };
                respond(out, status, body, head_only, conn);
                if !req.keep_alive {
                    return (buf.len(), true);
                }
            }
        }
    }
}

// ----- the protocol ------------------------------------------------------------

/// One HTTP connection.
#[derive(Default)]
struct Http {
    conn: Conn,
    /// Received bytes not yet answered (a partial request).
    buf: Vec<u8>,
    /// Responses of one read, written at once.
    out: Vec<u8>,
    /// An answer said `Connection: close`: ignore what follows.
    done: bool,
}

impl BaseProtocol for Http {
    type Transport = Transport;

    fn connection_made(&mut self, transport: Transport) {
        self.conn.made(transport);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.conn.lost(error);
    }

    // A client that pipelines without reading its answers is not read
    // from until it catches up.
    fn pause_writing(&mut self) {
        self.conn.pause();
    }

    fn resume_writing(&mut self) {
        self.conn.resume();
    }
}

impl Protocol for Http {
    fn data_received(&mut self, data: &[u8]) {
        let Some(t) = self.conn.transport() else {
            return;
        };
        if self.done {
            return;
        }
        // Parse straight from `data` when nothing is pending (the usual
        // case); copy only a partial request's bytes.
        let close = if self.buf.is_empty() {
            let (used, close) = answer_all(data, &mut self.out);
            self.buf.extend_from_slice(&data[used..]);
            close
        } else {
            self.buf.extend_from_slice(data);
            let (used, close) = answer_all(&self.buf, &mut self.out);
            self.buf.drain(..used);
            close
        };
        if !self.out.is_empty() {
            if let Err(e) = t.write(&self.out) {
                eprintln!("write: {e}");
            }
            self.out.clear();
        }
        if close {
            self.done = true;
            self.buf = Vec::new();
            // Flushes the answers, then closes.
            t.close();
        }
    }

    /// The client finished sending: answer what is complete (done above)
    /// and close.
    fn eof_received(&mut self) -> bool {
        false
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let cli = cli::parse(USAGE, &[], &[]);
    if let Some(extra) = cli.positional.first() {
        cli.fail(&format!("unexpected argument {extra:?}"));
    }
    let lp = cli.build_loop()?;
    let create = lp.create_server(
        Http::default,
        &[cli.host.as_str()],
        Some(cli.port),
        ServerOptions::default(),
    );
    let server = lp.run_until_complete(create)??;
    serve::serve_until_signal(&lp, &server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Request<'_> {
        match parse(buf) {
            Parsed::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn answers(input: &[u8]) -> (String, bool) {
        let mut out = Vec::new();
        let (used, close) = answer_all(input, &mut out);
        assert!(close || used <= input.len());
        (String::from_utf8(out).unwrap(), close)
    }

    #[test]
    fn a_get_of_the_root_says_hello_with_its_exact_length() {
        let (out, close) = answers(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!close);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("\r\nContent-Length: 13\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nHello, World!"), "{out}");
        assert!(!out.contains("Connection:"), "{out}");
    }

    #[test]
    fn a_head_split_at_every_byte_is_partial_until_complete() {
        let req = b"GET /?a=b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Parsed::Partial, "cut at {cut}");
        }
        let r = complete(req);
        assert_eq!((r.path, r.len, r.keep_alive), (&b"/"[..], req.len(), true));
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_and_a_partial_one_waits() {
        let input =
            b"GET / HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HT";
        let mut out = Vec::new();
        let (used, close) = answer_all(input, &mut out);
        assert!(!close);
        assert_eq!(&input[used..], b"GET / HT", "the partial request is kept");
        let out = String::from_utf8(out).unwrap();
        let statuses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
        assert_eq!(statuses, ["200", "404", "200"], "{out}");
        // HEAD: the length of the body it would get, and no body.
        assert!(out.ends_with("Content-Length: 13\r\n\r\n"), "{out}");
    }

    #[test]
    fn connection_close_and_http10_close_after_the_answer() {
        let (out, close) =
            answers(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(close);
        assert_eq!(
            out.matches("HTTP/1.1 200").count(),
            1,
            "nothing after close"
        );
        assert!(out.contains("Connection: close\r\n"));
        let (out, close) = answers(b"GET / HTTP/1.0\r\n\r\n");
        assert!(close && out.contains("Connection: close\r\n"));
        let (out, close) = answers(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!close && out.contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn a_body_is_skipped_so_the_next_request_is_found() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        assert_eq!(parse(&input[..40]), Parsed::Partial, "body incomplete");
        let (out, close) = answers(input);
        assert!(!close);
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        assert!(out.contains("Allow: GET, HEAD\r\n"));
        assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
    }

    #[test]
    fn malformed_and_unsupported_requests_get_an_error_and_close() {
        for (input, status) in [
            (&b"GARBAGE\r\n\r\n"[..], "400"),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
            ),
            (b"GET / HTTP/2.0\r\n\r\n", "505"),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "501",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                "413",
            ),
        ] {
            let (out, close) = answers(input);
            assert!(close, "{status}");
            assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
            let body = out.split("\r\n\r\n").nth(1).unwrap();
            assert!(
                out.contains(&format!("Content-Length: {}\r\n", body.len())),
                "{out}"
            );
        }
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse(&huge), Parsed::Invalid(Status::HeadersTooLarge));
    }

    #[test]
    fn the_date_is_rfc_9110s_fixdate() {
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }
}
