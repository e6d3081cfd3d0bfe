//! What a bootstrap needs from the host, checked before anything starts: the
//! tools (named with the Debian packages that provide them) and, unless
//! kiln runs as root, user namespaces with a subordinate id range.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The tools the builder script runs, with the Debian package of each.
pub const TOOLS: &[(&str, &str)] = &[
    ("bash", "bash"),
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("mke2fs", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
    ("python3", "python3"),
];

/// The tools needed only without root (user namespaces with id maps).
pub const ROOTLESS_TOOLS: &[(&str, &str)] = &[("newuidmap", "uidmap"), ("newgidmap", "uidmap")];

/// Folders added to `PATH` when missing: the tools above live in sbin.
const SBIN: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The kernel switch Debian uses for unprivileged user namespaces.
const USERNS_SWITCH: &str = "/proc/sys/kernel/unprivileged_userns_clone";

/// What the host lacks.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Tools are missing.
    #[error(
        "the bootstrap needs {tools} on this host; install the Debian packages: \
         apt-get install {packages} (or run scripts/setup-host.sh)",
        tools = .tools.join(", "),
        packages = .packages.join(" ")
    )]
    MissingTools {
        /// The missing tools.
        tools: Vec<String>,
        /// The packages that provide them.
        packages: Vec<String>,
    },
    /// No subordinate id range for the user.
    #[error(
        "kiln runs as `{user}` (not root): a rootless bootstrap needs a range for `{user}` \
         in {file}; add one with: usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 {user}"
    )]
    NoSubids {
        /// The user name.
        user: String,
        /// `/etc/subuid` or `/etc/subgid`.
        file: String,
    },
    /// Unprivileged user namespaces are switched off.
    #[error(
        "unprivileged user namespaces are disabled ({USERNS_SWITCH} is 0); enable them with \
         `sysctl -w kernel.unprivileged_userns_clone=1`, or run kiln as root"
    )]
    UsernsDisabled,
    /// The user has no name.
    #[error("uid {0} has no user name (needed to find its /etc/subuid entry)")]
    NoUserName(u32),
}

/// `PATH` with the sbin folders appended when missing (a normal user's
/// `PATH` often lacks them, but sfdisk and mkfs.vfat live there).
pub fn search_path(path: Option<&OsStr>) -> OsString {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for s in SBIN {
        if !dirs.iter().any(|d| d == Path::new(s)) {
            dirs.push(PathBuf::from(s));
        }
    }
    std::env::join_paths(dirs).expect("the folders came from a PATH or are plain")
}

/// Whether an executable `name` is in one of `path`'s folders.
fn on_path(name: &str, path: &OsStr) -> bool {
    std::env::split_paths(path).any(|d| {
        std::fs::metadata(d.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The tools of `wanted` that `found` does not find, and their packages
/// (each package once).
fn missing(wanted: &[(&str, &str)], found: impl Fn(&str) -> bool) -> Option<PreflightError> {
    let absent: Vec<&(&str, &str)> = wanted.iter().filter(|(t, _)| !found(t)).collect();
    if absent.is_empty() {
        return None;
    }
    let mut packages: Vec<String> = Vec::new();
    for (_, p) in &absent {
        if !packages.iter().any(|q| q == p) {
            packages.push(p.to_string());
        }
    }
    Some(PreflightError::MissingTools {
        tools: absent.iter().map(|(t, _)| t.to_string()).collect(),
        packages,
    })
}

/// Whether a `/etc/subuid` or `/etc/subgid` text gives `user` a range (by
/// name: mmdebstrap looks entries up by name).
pub fn has_subid_range(text: &str, user: &str) -> bool {
    text.lines().any(|line| {
        let mut f = line.trim().split(':');
        f.next() == Some(user)
            && f.nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    })
}

/// The name of user `uid`, from the system's user database.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only into them.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) != 0
            || result.is_null()
        {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Checks the host for a bootstrap with `path` as the script's `PATH`.
pub fn check(path: &OsStr) -> Result<(), PreflightError> {
    let found = |t: &str| on_path(t, path);
    if let Some(e) = missing(TOOLS, found) {
        return Err(e);
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return Ok(());
    }
    if let Some(e) = missing(ROOTLESS_TOOLS, found) {
        return Err(e);
    }
    if std::fs::read_to_string(USERNS_SWITCH).is_ok_and(|v| v.trim() == "0") {
        return Err(PreflightError::UsernsDisabled);
    }
    let user = user_name(uid).ok_or(PreflightError::NoUserName(uid))?;
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !has_subid_range(&text, &user) {
            return Err(PreflightError::NoSubids {
                user,
                file: file.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbin_is_added_once() {
        let p = search_path(Some(OsStr::new("/usr/bin:/usr/sbin")));
        assert_eq!(
            p,
            OsString::from("/usr/bin:/usr/sbin:/usr/local/sbin:/sbin")
        );
        assert_eq!(
            search_path(None),
            OsString::from("/usr/local/sbin:/usr/sbin:/sbin")
        );
    }

    #[test]
    fn missing_tools_name_their_packages() {
        assert!(missing(TOOLS, |_| true).is_none());
        let e = missing(TOOLS, |t| !matches!(t, "mmd" | "mcopy" | "sfdisk")).unwrap();
        let text = e.to_string();
        assert!(text.contains("sfdisk, mmd, mcopy"), "{text}");
        assert!(text.contains("apt-get install fdisk mtools ("), "{text}");
    }

    #[test]
    fn real_tools_are_found_on_this_host() {
        let path = search_path(std::env::var_os("PATH").as_deref());
        assert!(on_path("sh", &path));
        assert!(!on_path("kiln-no-such-tool", &path));
        // a file that is not executable is no tool
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool"), "").unwrap();
        assert!(!on_path("tool", dir.path().as_os_str()));
    }

    #[test]
    fn subordinate_ids() {
        let text = "kbuild:100000:65536\nother:165536:65536\nempty:200000:0\n";
        assert!(has_subid_range(text, "kbuild"));
        assert!(has_subid_range(text, "other"));
        assert!(!has_subid_range(text, "empty"));
        assert!(!has_subid_range(text, "kbuil"));
        assert!(!has_subid_range("", "kbuild"));
        let e = PreflightError::NoSubids {
            user: "ann".into(),
            file: "/etc/subuid".into(),
        };
        assert!(e.to_string().contains("usermod --add-subuids"), "{e}");
    }

    #[test]
    fn the_current_user_has_a_name() {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert!(user_name(uid).is_some_and(|n| !n.is_empty()));
    }
}
