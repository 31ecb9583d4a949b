//! Opening datagram endpoints: `create_datagram_endpoint` (asyncio's
//! `base_events.create_datagram_endpoint`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::rc::{Rc, Weak};

use socket2::{SockAddr, Type};

use super::address::Address;
use super::connection::{family_of, new_socket, resolve};
use super::resolve::AddrInfoHints;
use super::sock::closed_error;
use crate::event_loop::{EventLoop, LoopInner};
use crate::protocol::DatagramProtocol;
use crate::transport::unclaimed::Unclaimed;
use crate::transport::DatagramTransport;

/// Options of [`EventLoop::create_datagram_endpoint`] (asyncio's keyword
/// arguments). Build with `Default` and the setters.
#[derive(Default)]
pub struct DatagramOptions {
    family: i32,
    proto: i32,
    flags: i32,
    reuse_port: bool,
    allow_broadcast: bool,
    sock: Option<OwnedFd>,
}

impl DatagramOptions {
    /// Only addresses of this family (`AF_INET`, `AF_INET6`, `AF_UNIX`;
    /// 0 = any). Required when neither address is given: the socket is
    /// then created unbound and unconnected.
    pub fn family(mut self, family: i32) -> Self {
        self.family = family;
        self
    }

    /// The protocol number passed to `getaddrinfo` and `socket`.
    pub fn proto(mut self, proto: i32) -> Self {
        self.proto = proto;
        self
    }

    /// `getaddrinfo` flags (`AI_*`).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Sets `SO_REUSEPORT` before binding, so several endpoints (of this
    /// user) can bind the same address and port.
    pub fn reuse_port(mut self, reuse_port: bool) -> Self {
        self.reuse_port = reuse_port;
        self
    }

    /// Sets `SO_BROADCAST`. With a remote address, the socket is then not
    /// connected (asyncio's rule): datagrams are sent to the remote
    /// address with `sendto`, and datagrams from anyone are received.
    pub fn allow_broadcast(mut self, allow_broadcast: bool) -> Self {
        self.allow_broadcast = allow_broadcast;
        self
    }

    /// Uses an existing `SOCK_DGRAM` socket (`sock=`), bound and connected
    /// or not; the addresses and every other option must then be unset.
    /// If it is connected, its peer is the endpoint's remote address.
    pub fn sock(mut self, sock: impl Into<OwnedFd>) -> Self {
        self.sock = Some(sock.into());
        self
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn upgrade(lp: &Weak<LoopInner>) -> io::Result<EventLoop> {
    lp.upgrade()
        .map(EventLoop::from_inner)
        .ok_or_else(closed_error)
}

/// One way to open the endpoint: `(family, proto)` and the addresses to
/// bind and connect to.
struct Candidate {
    family: i32,
    proto: i32,
    local: Option<SockAddr>,
    remote: Option<SockAddr>,
}

/// An IP address as asyncio's `_ipaddr_info` gives a literal: no
/// resolver call, `IPPROTO_UDP` for protocol 0.
fn literal(addr: SocketAddr, family: i32, proto: i32) -> io::Result<Vec<(i32, i32, SocketAddr)>> {
    let fam = family_of(&addr);
    if family != 0 && family != fam {
        return Err(invalid(format!(
            "address {addr} does not belong to the requested family {family}"
        )));
    }
    let proto = if proto == 0 { libc::IPPROTO_UDP } else { proto };
    Ok(vec![(fam, proto, addr)])
}

/// Resolves one IP address argument to `(family, proto, address)`s.
async fn resolve_ip(
    lp: &Weak<LoopInner>,
    addr: &Address,
    hints: AddrInfoHints,
) -> io::Result<Vec<(i32, i32, SocketAddr)>> {
    match addr {
        Address::Inet(sa) => literal(*sa, hints.family, hints.protocol),
        Address::Host(host, port) => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                if let Ok(v) = literal(SocketAddr::new(ip, *port), hints.family, hints.protocol) {
                    return Ok(v);
                }
            }
            let infos = resolve(&upgrade(lp)?, Some(host), Some(*port), hints).await?;
            Ok(infos
                .into_iter()
                .map(|i| (i.family, i.protocol, i.addr))
                .collect())
        }
        Address::Unix(_) => Err(invalid("a host and port is expected, not a Unix path")),
    }
}

/// asyncio's pairing: addresses are grouped by `(family, proto)` in
/// resolver order; a group qualifies if it has every address asked for.
fn pair_up(
    local: Option<Vec<(i32, i32, SocketAddr)>>,
    remote: Option<Vec<(i32, i32, SocketAddr)>>,
) -> Vec<Candidate> {
    let want_local = local.is_some();
    let want_remote = remote.is_some();
    let mut groups: Vec<Candidate> = Vec::new();
    for (idx, infos) in [(0, local), (1, remote)] {
        for (family, proto, addr) in infos.into_iter().flatten() {
            let pos = match groups
                .iter()
                .position(|c| c.family == family && c.proto == proto)
            {
                Some(p) => p,
                None => {
                    groups.push(Candidate {
                        family,
                        proto,
                        local: None,
                        remote: None,
                    });
                    groups.len() - 1
                }
            };
            let slot = if idx == 0 {
                &mut groups[pos].local
            } else {
                &mut groups[pos].remote
            };
            // The resolver's first choice wins.
            if slot.is_none() {
                *slot = Some(SockAddr::from(addr));
            }
        }
    }
    groups.retain(|c| !(want_local && c.local.is_none() || want_remote && c.remote.is_none()));
    groups
}

/// asyncio removes a stale socket file before binding a Unix datagram
/// endpoint to its path (3.8+); other files are left alone.
fn remove_stale_socket(path: &Path) {
    if path.as_os_str().as_encoded_bytes().first() == Some(&0) {
        return;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::error!(target: "ringloop",
                    "Unable to check or remove stale UNIX socket {}: {e}", path.display());
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(target: "ringloop",
                "Unable to check or remove stale UNIX socket {}: {e}", path.display());
        }
    }
}

/// Opens, configures, binds and connects one candidate; the socket and
/// the remote address `sendto` defaults to.
fn open(
    c: &Candidate,
    reuse_port: bool,
    allow_broadcast: bool,
) -> io::Result<(OwnedFd, Option<SockAddr>)> {
    let sock = new_socket(c.family, Type::DGRAM, c.proto)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    if allow_broadcast {
        sock.set_broadcast(true)?;
    }
    if let Some(local) = &c.local {
        sock.bind(local)?;
    }
    if let Some(remote) = &c.remote {
        // A datagram connect only records the peer: it never blocks.
        if !allow_broadcast {
            sock.connect(remote)?;
        }
    }
    Ok((OwnedFd::from(sock), c.remote.clone()))
}

/// Makes the transport and waits until `connection_made` has run and
/// receiving has started (asyncio's waiter).
async fn attach<P: DatagramProtocol>(
    lp: &EventLoop,
    sock: OwnedFd,
    protocol: P,
    remote: Option<SockAddr>,
) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)> {
    let protocol = Rc::new(RefCell::new(protocol));
    let transport = DatagramTransport::start(lp, sock, protocol.clone(), remote)?;
    // Closed if this future is dropped before it hands the transport over.
    let transport = Unclaimed::new(transport, DatagramTransport::close);
    // connection_made and the first receive were scheduled before this
    // callback: when it runs, the protocol knows its transport.
    let waiter = lp.create_future::<()>();
    let w = waiter.clone();
    lp.call_soon(move || {
        let _ = w.set_result(());
    })?;
    waiter.await.map_err(io::Error::other)?;
    Ok((transport.claim(), protocol))
}

fn check_sock(sock: &OwnedFd, opts: &DatagramOptions, local: bool, remote: bool) -> io::Result<()> {
    let ty = socket2::SockRef::from(sock).r#type()?;
    if ty != Type::DGRAM {
        return Err(invalid(format!("A UDP Socket was expected, got {ty:?}")));
    }
    let mut problems = String::new();
    for (name, set) in [
        ("local_addr", local),
        ("remote_addr", remote),
        ("family", opts.family != 0),
        ("proto", opts.proto != 0),
        ("flags", opts.flags != 0),
        ("reuse_port", opts.reuse_port),
        ("allow_broadcast", opts.allow_broadcast),
    ] {
        if set {
            if !problems.is_empty() {
                problems.push_str(", ");
            }
            let _ = write!(problems, "{name}");
        }
    }
    if !problems.is_empty() {
        return Err(invalid(format!(
            "socket modifier keyword arguments can not be used when sock is specified. ({problems})"
        )));
    }
    Ok(())
}

impl EventLoop {
    /// Opens a datagram endpoint (`loop.create_datagram_endpoint`) and
    /// attaches a protocol made by `factory`.
    ///
    /// - `local_addr`: the address to bind (a host name or IP literal and
    ///   a port, a [`SocketAddr`], or a Unix socket path);
    /// - `remote_addr`: the address to connect to; `sendto` then takes no
    ///   address (or only this one), and only datagrams from it arrive.
    ///
    /// Host names are resolved with [`getaddrinfo`](EventLoop::getaddrinfo)
    /// (`SOCK_DGRAM`, with `options`' family, proto and flags); the
    /// results are grouped by `(family, proto)` and the groups that have
    /// every requested address are tried in order until one binds and
    /// connects. If all fail, the first error is returned. Unix paths (or
    /// `family(AF_UNIX)`) make an `AF_UNIX` datagram endpoint, after
    /// removing a stale socket file at the local path. With neither
    /// address, `options.family` must be set.
    ///
    /// With [`DatagramOptions::sock`], that socket is used as is; the
    /// addresses and other options must be unset (`InvalidInput`), as
    /// must a socket that is not `SOCK_DGRAM`.
    ///
    /// Order, as in asyncio: the protocol's `connection_made` runs, then
    /// receiving starts, then the future resolves.
    ///
    /// # Example
    ///
    /// A UDP echo, both ends on this loop:
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use ringloop::{BaseProtocol, DatagramProtocol, DatagramTransport};
    /// use socket2::SockAddr;
    ///
    /// #[derive(Default)]
    /// struct Echo(Option<DatagramTransport>);
    /// impl BaseProtocol for Echo {
    ///     type Transport = DatagramTransport;
    ///     fn connection_made(&mut self, t: DatagramTransport) {
    ///         self.0 = Some(t);
    ///     }
    /// }
    /// impl DatagramProtocol for Echo {
    ///     fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
    ///         self.0.as_ref().unwrap().sendto(data, Some(addr)).unwrap();
    ///     }
    /// }
    ///
    /// #[derive(Default)]
    /// struct Client(Rc<RefCell<Vec<u8>>>);
    /// impl BaseProtocol for Client {
    ///     type Transport = DatagramTransport;
    /// }
    /// impl DatagramProtocol for Client {
    ///     fn datagram_received(&mut self, data: &[u8], _addr: SockAddr) {
    ///         self.0.borrow_mut().extend_from_slice(data);
    ///     }
    /// }
    ///
    /// let lp = ringloop::EventLoop::new()?;
    /// let (server, _) = lp.run_until_complete(lp.create_datagram_endpoint(
    ///     Echo::default,
    ///     Some(("127.0.0.1", 0).into()),
    ///     None,
    ///     Default::default(),
    /// ))??;
    /// let port = server.sockname().and_then(|a| a.as_socket()).unwrap().port();
    ///
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let g = got.clone();
    /// let (client, _) = lp.run_until_complete(lp.create_datagram_endpoint(
    ///     move || Client(g),
    ///     None,
    ///     Some(("127.0.0.1", port).into()),
    ///     Default::default(),
    /// ))??;
    /// client.sendto(b"ping", None)?;
    /// let l = lp.clone();
    /// let g = got.clone();
    /// lp.run_until_complete(async move {
    ///     while g.borrow().is_empty() {
    ///         l.sleep(std::time::Duration::from_millis(1))?.await;
    ///     }
    ///     Ok::<_, ringloop::Error>(())
    /// })??;
    /// assert_eq!(&got.borrow()[..], b"ping");
    /// client.close();
    /// server.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_datagram_endpoint<P, F>(
        &self,
        factory: F,
        local_addr: Option<Address>,
        remote_addr: Option<Address>,
        options: DatagramOptions,
    ) -> impl Future<Output = io::Result<(DatagramTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: DatagramProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        async move {
            let mut options = options;
            if let Some(sock) = options.sock.take() {
                check_sock(&sock, &options, local_addr.is_some(), remote_addr.is_some())?;
                let lp = upgrade(&lp)?;
                return attach(&lp, sock, factory(), None).await;
            }
            let DatagramOptions {
                family,
                proto,
                flags,
                reuse_port,
                allow_broadcast,
                sock: _,
            } = options;
            let is_unix = |a: &Option<Address>| matches!(a, Some(Address::Unix(_)));
            let candidates = if local_addr.is_none() && remote_addr.is_none() {
                if family == 0 {
                    return Err(invalid("unexpected address family"));
                }
                vec![Candidate {
                    family,
                    proto,
                    local: None,
                    remote: None,
                }]
            } else if family == libc::AF_UNIX || is_unix(&local_addr) || is_unix(&remote_addr) {
                if family != 0 && family != libc::AF_UNIX {
                    return Err(invalid("Unix socket paths need family AF_UNIX"));
                }
                let mut addrs = [None, None];
                for (slot, addr) in addrs.iter_mut().zip([&local_addr, &remote_addr]) {
                    match addr {
                        None => {}
                        Some(Address::Unix(path)) => *slot = Some(path.clone()),
                        Some(_) => return Err(invalid("a Unix socket path is expected")),
                    }
                }
                let [local, remote] = addrs;
                if let Some(path) = &local {
                    remove_stale_socket(path);
                }
                vec![Candidate {
                    family: libc::AF_UNIX,
                    proto,
                    local: local.map(SockAddr::unix).transpose()?,
                    remote: remote.map(SockAddr::unix).transpose()?,
                }]
            } else {
                let hints = AddrInfoHints {
                    family,
                    socktype: libc::SOCK_DGRAM,
                    protocol: proto,
                    flags,
                };
                let local = match &local_addr {
                    Some(a) => Some(resolve_ip(&lp, a, hints).await?),
                    None => None,
                };
                let remote = match &remote_addr {
                    Some(a) => Some(resolve_ip(&lp, a, hints).await?),
                    None => None,
                };
                let candidates = pair_up(local, remote);
                if candidates.is_empty() {
                    return Err(invalid("can not get address information"));
                }
                candidates
            };
            let mut first_error = None;
            for c in &candidates {
                match open(c, reuse_port, allow_broadcast) {
                    Ok((sock, remote)) => {
                        let lp = upgrade(&lp)?;
                        return attach(&lp, sock, factory(), remote).await;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(first_error.unwrap_or_else(|| invalid("can not get address information")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pairs_need_every_requested_address() {
        let local = vec![(libc::AF_INET, 17, v4("127.0.0.1:1"))];
        let remote = vec![
            (libc::AF_INET6, 17, "[::1]:2".parse().unwrap()),
            (libc::AF_INET, 17, v4("127.0.0.1:2")),
            (libc::AF_INET, 17, v4("127.0.0.2:2")),
        ];
        let c = pair_up(Some(local), Some(remote));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].family, libc::AF_INET);
        assert_eq!(
            c[0].remote.as_ref().and_then(SockAddr::as_socket),
            Some(v4("127.0.0.1:2"))
        );
        assert!(pair_up(
            Some(vec![(libc::AF_INET, 17, v4("127.0.0.1:1"))]),
            Some(vec![(libc::AF_INET6, 17, "[::1]:2".parse().unwrap())])
        )
        .is_empty());
    }

    #[test]
    fn literals_skip_the_resolver() {
        let v = literal(v4("127.0.0.1:5"), 0, 0).unwrap();
        assert_eq!(
            v,
            vec![(libc::AF_INET, libc::IPPROTO_UDP, v4("127.0.0.1:5"))]
        );
        assert!(literal(v4("127.0.0.1:5"), libc::AF_INET6, 0).is_err());
    }
}
