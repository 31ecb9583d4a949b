//! Linux process plumbing for the benchmarks: pinning a thread to a CPU,
//! reading how much CPU time a thread or process used and how much memory
//! a process holds, descriptor limits, and a few socket and timer knobs.
//!
//! Two independent CPU-time sources are offered, so each can check the
//! other:
//!
//! - [`proc_thread_ticks`]: `utime + stime` of a thread from
//!   `/proc/self/task/<tid>/stat`, in clock ticks ([`clock_ticks_per_sec`],
//!   100 on Linux, so 10 ms granularity: measure over seconds, not
//!   milliseconds);
//! - [`ThreadClock`]: the thread's CPU-time clock (`pthread_getcpuclockid`
//!   + `clock_gettime`), in nanoseconds.
//!
//! For a whole process: [`proc_process_ticks`] (`/proc/<pid>/stat`, clock
//! ticks) and, from inside it, [`rusage_cpu`] (`getrusage`, microseconds).

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

/// The kernel thread id of the calling thread (`gettid`).
pub fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// The CPUs the calling thread may run on (`sched_getaffinity`), in
/// ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: `set` is a properly sized, zeroed cpu_set_t; the kernel
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised, then filled by the kernel.
    let set = unsafe { set.assume_init() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads the set, `cpu` is below its capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Restricts the calling thread to `cpu` (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond a cpu_set_t ({max} CPUs)"),
        ));
    }
    // SAFETY: cpu_set_t is plain data and all zeroes is the empty set;
    // CPU_SET sets one bit within it (`cpu < max` was checked above).
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the CPU
/// times in `/proc/.../stat`.
pub fn clock_ticks_per_sec() -> io::Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| io::Error::other(format!("sysconf(_SC_CLK_TCK) returned {ticks}")))
}

/// `utime + stime` (fields 14 and 15) from the text of a
/// `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` file, in clock
/// ticks. The command name (field 2) is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted after the *last*
/// `)`. `None` if the text is not in that format.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the command name: field 3 (state) is the first one.
    let mut fields = after_comm.split_ascii_whitespace();
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) of thread `tid` of this process so far, in
/// clock ticks, from `/proc/self/task/<tid>/stat`.
pub fn proc_thread_ticks(tid: libc::pid_t) -> io::Result<u64> {
    let path = format!("/proc/self/task/{tid}/stat");
    let text = std::fs::read_to_string(&path)?;
    parse_stat_cpu_ticks(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format: {text:?}"),
        )
    })
}

/// A thread's CPU-time clock, readable from any thread of the process
/// while the thread lives.
#[derive(Clone, Copy, Debug)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The CPU-time clock of the calling thread.
    pub fn current() -> ThreadClock {
        ThreadClock(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// The CPU-time clock of the thread `thread` (from
    /// `std::os::unix::thread::JoinHandleExt::as_pthread_t`). Read it
    /// only while that thread has not been joined.
    pub fn of(thread: libc::pthread_t) -> io::Result<ThreadClock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: `thread` names a live thread of this process (the
        // caller holds its unjoined JoinHandle); `id` is a valid out
        // pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut id) };
        if rc == 0 {
            Ok(ThreadClock(id))
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    /// CPU time the thread used so far.
    pub fn now(self) -> io::Result<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out pointer.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
        Ok(Duration::new(secs, nanos))
    }
}

/// Number of entries in a `/proc/self` directory (`fd` for open
/// descriptors, `task` for threads); used to check that a benchmark run
/// leaked neither.
pub fn count_proc_entries(dir: &str) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/self/{dir}"))?.count())
}

/// Raises the soft limit on open descriptors (`RLIMIT_NOFILE`) to the
/// hard limit, and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// CPU time (user + system) of the whole process `pid` so far, in clock
/// ticks, from `/proc/<pid>/stat` (all its threads, living and exited).
pub fn proc_process_ticks(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)?;
    parse_stat_cpu_ticks(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format: {text:?}"),
        )
    })
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Resident set size of process `pid` (`VmRSS` of `/proc/<pid>/status`),
/// in bytes.
pub fn proc_rss_bytes(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)?;
    parse_status_rss(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: no VmRSS line in kB"),
        )
    })
}

/// `utime + stime` from `getrusage(who)`, in microseconds resolution:
/// `RUSAGE_SELF` (the whole process, exited threads included) or
/// `RUSAGE_THREAD` (the calling thread).
pub fn rusage_cpu(who: libc::c_int) -> io::Result<Duration> {
    let mut ru = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, properly sized out pointer.
    if unsafe { libc::getrusage(who, ru.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised, then filled by the kernel.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Asks the kernel to send `SIGKILL` to this process when the thread
/// that created it exits (`PR_SET_PDEATHSIG`), so a server process never
/// outlives the benchmark that started it. Returns an error if the parent
/// already died (the process was re-parented before the call).
pub fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions.
    let now = unsafe { libc::getppid() };
    if u32::try_from(now).ok() != Some(parent) {
        return Err(io::Error::other(format!(
            "the parent process {parent} is gone (parent is now {now})"
        )));
    }
    Ok(())
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`), so timed
/// waits wake close to their deadline (the default slack is 50 µs).
pub fn set_timer_slack(nanos: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes a number; no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos as libc::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock `timerfd` and
/// `std::time::Instant` use).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Sets an integer socket option (`setsockopt`).
pub fn set_sock_opt(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int whose size is passed; a bad fd
    // is reported as EBADF.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Turns Nagle's algorithm off on a TCP socket (`TCP_NODELAY`).
pub fn set_nodelay(fd: std::os::fd::RawFd) -> io::Result<()> {
    set_sock_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        // Fields 14 and 15 are 7 and 3.
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(10));
        let plain = "42 (server) R 1 42 42 0 -1 0 0 0 0 0 250 17 0 0 20 0 3 0 9 1 2";
        assert_eq!(parse_stat_cpu_ticks(plain), Some(267));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_thread_cpu_time_is_readable() {
        let tid = current_tid();
        let ticks = proc_thread_ticks(tid).expect("own stat file");
        // Burn a little CPU; the tick count cannot go backwards.
        let clock = ThreadClock::current();
        let before = clock.now().expect("thread clock");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(clock.now().expect("thread clock") > before);
        assert!(proc_thread_ticks(tid).expect("own stat file") >= ticks);
        assert!(clock_ticks_per_sec().expect("CLK_TCK") > 0);
    }

    #[test]
    fn another_threads_clock() {
        use std::os::unix::thread::JoinHandleExt;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let clock = ThreadClock::of(t.as_pthread_t()).expect("cpu clock of a live thread");
        assert!(clock.now().is_ok());
        drop(tx);
        t.join().expect("thread ends");
    }

    #[test]
    fn affinity_is_readable() {
        let cpus = allowed_cpus().expect("sched_getaffinity");
        assert!(!cpus.is_empty());
    }

    #[test]
    fn parses_rss_and_reads_own() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("VmRSS: 12"), None);
        let me = std::process::id();
        assert!(proc_rss_bytes(me).expect("own status") > 0);
        let _ = proc_process_ticks(me).expect("own stat");
        assert!(rusage_cpu(libc::RUSAGE_SELF).is_ok());
        assert!(raise_nofile_limit().expect("rlimit") >= 1);
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a);
    }
}
