//! A watchdog that outlives kiln: it kills a process group as soon as
//! kiln's end of its pipe closes, which the kernel does when kiln exits in
//! any way, SIGKILL included. A parent-death signal
//! ([`crate::util::process::supervise`]) reaches only kiln's direct child; the
//! processes that child started need someone left alive to stop them.

use std::process::Stdio;

/// The watchdog (POSIX sh): waits for end of file on its standard input,
/// then kills the group `$1`. Groups 0 and 1 are refused (`kill -- -1`
/// means every process).
const SCRIPT: &str = r#"case $1 in ''|*[!0-9]*) exit 2 ;; esac
[ "$1" -gt 1 ] || exit 2
while read -r _; do :; done
kill -s KILL -- "-$1" 2>/dev/null
exit 0"#;

/// Kills a process group when dropped, or when kiln dies.
#[derive(Debug)]
pub struct Reaper {
    /// The watchdog; dropping its standard input is the signal.
    child: tokio::process::Child,
}

impl Reaper {
    /// Starts a watchdog for process group `pgid`, in a group of its own
    /// (so a terminal's Ctrl-C that stops kiln does not stop it first).
    pub fn watch(pgid: u32) -> std::io::Result<Reaper> {
        let child = tokio::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "kiln-reaper", &pgid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Reaper { child })
    }
}

impl Drop for Reaper {
    /// Closes the pipe: the watchdog kills the group and exits (tokio
    /// reaps it in the background).
    fn drop(&mut self) {
        drop(self.child.stdin.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[tokio::test]
    async fn kills_the_group_when_dropped() {
        let mut group = tokio::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = group.id().unwrap();
        let reaper = Reaper::watch(pgid).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(alive(pgid as i32));
        drop(reaper);
        let status = tokio::time::timeout(Duration::from_secs(10), group.wait())
            .await
            .expect("the group was killed")
            .unwrap();
        assert!(status.code().is_none(), "killed by a signal");
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: kill(2) with signal 0 on the (now empty) group.
        while unsafe { libc::kill(-(pgid as i32), 0) } == 0 {
            assert!(Instant::now() < deadline, "a member of the group survived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
