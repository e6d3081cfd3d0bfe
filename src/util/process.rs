//! Child processes that never outlive kiln: each runs in its own process
//! group, gets a signal when kiln dies (`PR_SET_PDEATHSIG`), and its whole
//! group is signalled when the handle that owns it is dropped.

/// Puts the command in a new process group and asks the kernel to send
/// `death_signal` to the child when kiln (the parent thread) dies, even by
/// SIGKILL. A child that starts after kiln already died exits at once.
pub fn supervise(cmd: &mut tokio::process::Command, death_signal: libc::c_int) {
    cmd.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                death_signal as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // the parent may have died before prctl took effect
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process of the group `pgid` (no-op for `pgid <= 0`).
pub fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group we created.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Signals a process group when dropped, unless [`GroupGuard::disarm`] was
/// called: the way a dropped future (Ctrl-C, a timeout) stops its children.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<i32>,
    signal: libc::c_int,
}

impl GroupGuard {
    /// Guards the group `pgid` (a child spawned with [`supervise`] leads a
    /// group whose id is its pid); `None` guards nothing.
    pub fn new(pgid: Option<u32>, signal: libc::c_int) -> Self {
        GroupGuard {
            pgid: pgid.map(|p| p as i32),
            signal,
        }
    }

    /// The child has been reaped: nothing left to signal.
    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, self.signal);
        }
    }
}
