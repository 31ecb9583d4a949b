//! `getaddrinfo` / `getnameinfo`, run on the executor as asyncio does
//! (the C resolver blocks).

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::net::SocketAddr;

use socket2::{SockAddr, SockAddrStorage};

use std::future::Future;

use super::sock::closed_error;
use crate::event_loop::EventLoop;

/// Hints for [`EventLoop::getaddrinfo`] (the `family`, `type`, `proto`
/// and `flags` arguments; 0 means any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrInfoHints {
    /// `AF_INET`, `AF_INET6` or 0.
    pub family: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or 0.
    pub socktype: i32,
    /// `IPPROTO_TCP`, `IPPROTO_UDP` or 0.
    pub protocol: i32,
    /// `AI_PASSIVE`, `AI_CANONNAME`, `AI_NUMERICHOST`, ...
    pub flags: i32,
}

/// One `getaddrinfo` result: `(family, type, proto, canonname, sockaddr)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// Address family.
    pub family: i32,
    /// Socket type.
    pub socktype: i32,
    /// Protocol.
    pub protocol: i32,
    /// Canonical name (first result, with `AI_CANONNAME`).
    pub canonname: Option<String>,
    /// The address.
    pub addr: SocketAddr,
}

/// A resolver error (`socket.gaierror`).
#[derive(Debug)]
struct GaiError {
    code: i32,
    message: String,
}

impl fmt::Display for GaiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[Errno {}] {}", self.code, self.message)
    }
}

impl std::error::Error for GaiError {}

fn gai_error(code: i32) -> io::Error {
    if code == libc::EAI_SYSTEM {
        return io::Error::last_os_error();
    }
    // SAFETY: gai_strerror returns a pointer to a static, NUL-terminated
    // string for any code.
    let message = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    let kind = match code {
        libc::EAI_NONAME | libc::EAI_NODATA => io::ErrorKind::NotFound,
        libc::EAI_AGAIN => io::ErrorKind::WouldBlock,
        libc::EAI_FAMILY | libc::EAI_SOCKTYPE | libc::EAI_SERVICE | libc::EAI_BADFLAGS => {
            io::ErrorKind::InvalidInput
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, GaiError { code, message })
}

fn cstring(s: &str, what: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// Blocking `getaddrinfo(3)`.
pub(crate) fn getaddrinfo_blocking(
    host: Option<&str>,
    port: Option<u16>,
    hints: AddrInfoHints,
) -> io::Result<Vec<AddrInfo>> {
    let host = host.map(|h| cstring(h, "host")).transpose()?;
    let service = port.map(|p| cstring(&p.to_string(), "port")).transpose()?;
    // SAFETY: an all-zero addrinfo is a valid "no hints" value.
    let mut c_hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    c_hints.ai_family = hints.family;
    c_hints.ai_socktype = hints.socktype;
    c_hints.ai_protocol = hints.protocol;
    c_hints.ai_flags = hints.flags;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: host/service are NUL-terminated or null, hints is valid,
    // and res receives a list we free below with freeaddrinfo.
    let rc = unsafe {
        libc::getaddrinfo(
            host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
            service.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            &c_hints,
            &mut res,
        )
    };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getaddrinfo returned, alive
        // until freeaddrinfo.
        let ai = unsafe { &*cur };
        let len = (ai.ai_addrlen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        if !ai.ai_addr.is_null() {
            let mut storage = SockAddrStorage::zeroed();
            // SAFETY: ai_addr points to `ai_addrlen` valid bytes; we copy at
            // most the storage size into our own zeroed storage.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ai.ai_addr.cast::<u8>(),
                    (&mut storage as *mut SockAddrStorage).cast::<u8>(),
                    len,
                );
            }
            // SAFETY: the storage now holds a socket address of `len` bytes.
            let addr = unsafe { SockAddr::new(storage, len as libc::socklen_t) };
            if let Some(addr) = addr.as_socket() {
                let canonname = (!ai.ai_canonname.is_null()).then(|| {
                    // SAFETY: a non-null ai_canonname is NUL-terminated.
                    unsafe { CStr::from_ptr(ai.ai_canonname) }
                        .to_string_lossy()
                        .into_owned()
                });
                out.push(AddrInfo {
                    family: ai.ai_family,
                    socktype: ai.ai_socktype,
                    protocol: ai.ai_protocol,
                    canonname,
                    addr,
                });
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Blocking `getnameinfo(3)`.
pub(crate) fn getnameinfo_blocking(addr: SocketAddr, flags: i32) -> io::Result<(String, String)> {
    let sa = SockAddr::from(addr);
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    // SAFETY: `sa` is a valid socket address of `sa.len()` bytes; host and
    // serv are writable buffers of the lengths passed.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast::<libc::sockaddr>(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let (h, s) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    Ok((
        h.to_string_lossy().into_owned(),
        s.to_string_lossy().into_owned(),
    ))
}

impl EventLoop {
    /// Resolves `host`/`port` on the executor (`loop.getaddrinfo`).
    /// Resolver failures are `io::Error`s (`NotFound` for an unknown
    /// name) whose message carries the resolver's text.
    ///
    /// # Example
    ///
    /// ```
    /// let lp = ringloop::EventLoop::new()?;
    /// let addrs = lp.run_until_complete(
    ///     lp.getaddrinfo(Some("127.0.0.1"), Some(80), Default::default()),
    /// )??;
    /// assert!(addrs.iter().any(|a| a.addr.port() == 80));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn getaddrinfo(
        &self,
        host: Option<&str>,
        port: Option<u16>,
        hints: AddrInfoHints,
    ) -> impl Future<Output = io::Result<Vec<AddrInfo>>> + 'static {
        let host = host.map(str::to_owned);
        let lp = self.downgrade();
        async move {
            let inner = lp.upgrade().ok_or_else(closed_error)?;
            let job = EventLoop::from_inner(inner).run_in_executor(None, move || {
                getaddrinfo_blocking(host.as_deref(), port, hints)
            })?;
            job.await?
        }
    }

    /// Looks up the host and service names of `addr` on the executor
    /// (`loop.getnameinfo`); `flags` are `NI_*` flags.
    pub fn getnameinfo(
        &self,
        addr: SocketAddr,
        flags: i32,
    ) -> impl Future<Output = io::Result<(String, String)>> + 'static {
        let lp = self.downgrade();
        async move {
            let inner = lp.upgrade().ok_or_else(closed_error)?;
            let job = EventLoop::from_inner(inner)
                .run_in_executor(None, move || getnameinfo_blocking(addr, flags))?;
            job.await?
        }
    }
}
