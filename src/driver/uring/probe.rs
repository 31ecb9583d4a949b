//! Ring setup and the feature probe.
//!
//! Setup tries the best flag set first and degrades one step at a time:
//! `SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG` (6.1+), then
//! `COOP_TASKRUN|TASKRUN_FLAG` (5.19+), then no flags. The opcode probe
//! then records which operations the kernel has; the chosen set is logged
//! once per process with `tracing`.

use std::io;
use std::sync::Once;

use io_uring::{opcode, IoUring, Probe};

/// What the running kernel offers, as found when the loop's ring was set
/// up ([`EventLoop::kernel_features`](crate::EventLoop::kernel_features)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelFeatures {
    /// The ring's setup flags, as accepted by the kernel.
    pub setup_flags: &'static str,
    /// `IORING_FEAT_EXT_ARG`: the wait timeout rides on `io_uring_enter`.
    pub ext_arg: bool,
    /// `IORING_FEAT_NODROP`: completions are never dropped on overflow.
    pub nodrop: bool,
    /// `IORING_OP_SPLICE`: zero-copy `sock_sendfile`.
    pub splice: bool,
    /// `IORING_OP_SEND_ZC`.
    pub send_zc: bool,
    /// `IORING_OP_WAITID`.
    pub waitid: bool,
    /// `IORING_OP_RECV` and `IORING_OP_SEND`.
    pub recv_send: bool,
    /// `IORING_OP_ACCEPT` and `IORING_OP_CONNECT`.
    pub accept_connect: bool,
    /// `IORING_OP_READ` and `IORING_OP_WRITE`.
    pub read_write: bool,
    /// `IORING_OP_ASYNC_CANCEL`.
    pub async_cancel: bool,
}

pub(crate) type Features = KernelFeatures;

static LOGGED: Once = Once::new();

fn try_build(entries: u32, level: u8) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(entries.saturating_mul(2).max(16));
    match level {
        0 => {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        }
        1 => {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        _ => {}
    }
    b.build(entries)
}

/// Creates a ring of `entries` submission entries with the best setup
/// flags the kernel accepts, and probes its features.
pub(crate) fn setup(entries: u32) -> io::Result<(IoUring, Features)> {
    let mut last_err = None;
    let mut built = None;
    for level in 0..3u8 {
        match try_build(entries, level) {
            Ok(ring) => {
                built = Some((ring, level));
                break;
            }
            // EINVAL: a flag this kernel does not know; try fewer flags.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(explain_setup_error(e)),
        }
    }
    let Some((ring, level)) = built else {
        return Err(explain_setup_error(
            last_err.unwrap_or_else(|| io::Error::other("io_uring_setup failed")),
        ));
    };
    let params = ring.params();
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring opcode probe failed: {e}")))?;
    let has = |code| probe.is_supported(code);
    let features = Features {
        setup_flags: match level {
            0 => "SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG",
            1 => "COOP_TASKRUN|TASKRUN_FLAG",
            _ => "none",
        },
        ext_arg: params.is_feature_ext_arg(),
        nodrop: params.is_feature_nodrop(),
        splice: has(opcode::Splice::CODE),
        send_zc: has(opcode::SendZc::CODE),
        waitid: has(opcode::WaitId::CODE),
        recv_send: has(opcode::Recv::CODE) && has(opcode::Send::CODE),
        accept_connect: has(opcode::Accept::CODE) && has(opcode::Connect::CODE),
        read_write: has(opcode::Read::CODE) && has(opcode::Write::CODE),
        async_cancel: has(opcode::AsyncCancel::CODE),
    };
    if let Some(missing) = features.missing_required() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks what ringloop needs: {missing}"),
        ));
    }
    LOGGED.call_once(|| {
        tracing::info!(
            setup = features.setup_flags,
            ext_arg = features.ext_arg,
            nodrop = features.nodrop,
            splice = features.splice,
            send_zc = features.send_zc,
            waitid = features.waitid,
            "ringloop: io_uring backend ready"
        );
    });
    Ok((ring, features))
}

impl Features {
    /// The first missing feature the loop cannot run without.
    pub(crate) fn missing_required(&self) -> Option<&'static str> {
        [
            (self.ext_arg, "IORING_FEAT_EXT_ARG (kernel 5.11+)"),
            (self.nodrop, "IORING_FEAT_NODROP (kernel 5.5+)"),
            (self.recv_send, "IORING_OP_RECV/SEND"),
            (self.accept_connect, "IORING_OP_ACCEPT/CONNECT"),
            (self.read_write, "IORING_OP_READ/WRITE"),
            (self.async_cancel, "IORING_OP_ASYNC_CANCEL"),
        ]
        .into_iter()
        .find(|(ok, _)| !ok)
        .map(|(_, name)| name)
    }
}

/// Names the usual causes of a failed `io_uring_setup`.
fn explain_setup_error(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EPERM) => {
            "io_uring_setup: EPERM (blocked by seccomp, or kernel.io_uring_disabled=2)"
        }
        Some(libc::ENOSYS) => "io_uring_setup: ENOSYS (kernel built without io_uring)",
        Some(libc::ENOMEM) => "io_uring_setup: ENOMEM (RLIMIT_MEMLOCK too low for the ring)",
        _ => "io_uring_setup failed",
    };
    io::Error::new(e.kind(), format!("{why}: {e}"))
}
