//! SIGPIPE: writing to a pipe whose reader is gone raises it, and its
//! default action kills the process.
//!
//! Sockets avoid it per call with `MSG_NOSIGNAL`; `write(2)`/`writev(2)`
//! (and io_uring's WRITE/WRITEV, which run them in the submitting task)
//! have no such flag. So before a write pipe transport writes, the
//! process's SIGPIPE disposition is set to "ignore" if it is still the
//! default: the write then fails with `EPIPE`, which the transport turns
//! into `connection_lost(Some(BrokenPipe))`. A handler or an "ignore"
//! the program installed itself is left alone. Rust programs ignore
//! SIGPIPE from `main` already (unless built otherwise), so this matters
//! for ringloop inside C hosts or `-Zon-broken-pipe` builds.
//!
//! An ignored signal stays ignored across `execve`: code that spawns
//! children must reset SIGPIPE to the default in the child (as
//! `std::process::Command` does).

/// Ignores SIGPIPE process-wide unless a disposition other than the
/// default is installed.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: sigaction with a null new action only reads the current
    // disposition into `old`, plain data.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } != 0 {
        return;
    }
    if old.sa_sigaction == libc::SIG_DFL {
        // SAFETY: installing SIG_IGN runs no code in signal context.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }
}
