//! Sealing the build VM's disk before it becomes the image: EC2 Image
//! Builder's Linux cleanup (each section skipped when its `skip_cleanup_*`
//! marker exists in the working directory), then what kiln adds so every VM
//! made from the image is a new machine: an empty machine-id, no SSH host
//! keys, no build user or key, cloud-init reset, free space trimmed.
//!
//! The script is made here (pure) and run as root over SSH by the build.

/// Image Builder's cleanup sections: marker file name and what goes. Every
/// path starts with `$ROOT` (empty in a real run; a scratch folder in tests).
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "skip_cleanup_cloudinit_files",
        r#"rm -f "$ROOT"/etc/sudoers.d/90-cloud-init-users "$ROOT"/etc/locale.conf "$ROOT"/var/log/cloud-init.log "$ROOT"/var/log/cloud-init-output.log"#,
    ),
    (
        "skip_cleanup_instance_files",
        r#"rm -f "$ROOT"/etc/hostname "$ROOT"/etc/aliases.db "$ROOT"/var/lib/postfix/master.lock "$ROOT"/var/spool/postfix/pid/*.pid "$ROOT"/var/lib/dhcp/*.leases "$ROOT"/var/lib/dhclient/*.leases"#,
    ),
    (
        "skip_cleanup_ssh_files",
        r#"rm -f "$ROOT"/etc/ssh/ssh_host_*; find "$ROOT"/root "$ROOT"/home -xdev -name authorized_keys -type f -delete 2>/dev/null"#,
    ),
    (
        "skip_cleanup_instance_log_files",
        r#"rm -rf "$ROOT"/var/log/audit/* "$ROOT"/var/log/boot.log* "$ROOT"/var/log/dmesg* "$ROOT"/var/log/cron* "$ROOT"/var/log/btmp "$ROOT"/var/log/lastlog; [ -e "$ROOT"/var/log/wtmp ] && : > "$ROOT"/var/log/wtmp"#,
    ),
    ("skip_cleanup_toe_files", r#"rm -rf "$ROOT$WD"/TOE_*"#),
    (
        "skip_cleanup_ssm_log_files",
        r#"rm -rf "$ROOT"/var/log/amazon/ssm/*"#,
    ),
];

/// Single-quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Image Builder's cleanup alone, with paths under `$ROOT` (set it empty, or
/// to a scratch folder to try it). Prints `kiln-seal: …` per section.
pub fn cleanup_sections(working_dir: &str) -> String {
    let mut s = String::from("set -u\n: \"${ROOT:=}\"\n");
    s.push_str(&format!("WD={}\n", shell_quote(working_dir)));
    s.push_str("say() { echo \"kiln-seal: $*\"; }\n");
    for (marker, commands) in SECTIONS {
        s.push_str(&format!(
            "if [ -e \"$ROOT$WD/{marker}\" ]; then say 'skipped: {marker} is present'; else say 'cleanup: {section}'; {commands}; fi\n",
            section = marker.trim_start_matches("skip_cleanup_"),
        ));
    }
    s
}

/// The whole seal script for a build whose working directory is
/// `working_dir` and whose login user (removed with its home and sudoers
/// entry) is `user`: [`cleanup_sections`], then the new-machine identity
/// reset, and `fstrim` last so the overlay drops freed blocks (the disk is
/// attached with `discard=unmap`).
pub fn script(working_dir: &str, user: &str) -> String {
    let mut s = cleanup_sections(working_dir);
    s.push_str(&format!("KILN_USER={}\n", shell_quote(user)));
    s.push_str(concat!(
        "say 'identity: machine-id, host keys, cloud-init state'\n",
        // after a component's reboot, cloud-init's later boot stages may
        // still be running: let them finish, or they write new state after
        // it is cleaned
        "cloud-init status --wait >/dev/null 2>&1\n",
        ": > /etc/machine-id\n",
        "rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed /etc/ssh/ssh_host_*\n",
        "cloud-init clean --logs --seed >/dev/null 2>&1\n",
        "rm -rf /var/lib/cloud/* /var/log/cloud-init.log /var/log/cloud-init-output.log\n",
        "say \"build user: $KILN_USER\"\n",
        "rm -f /etc/sudoers.d/90-cloud-init-users\n",
        "userdel --force --remove \"$KILN_USER\" 2>/dev/null\n",
        "if grep -q \"^$KILN_USER:\" /etc/passwd; then echo \"kiln-seal: cannot remove $KILN_USER\" >&2; exit 1; fi\n",
        "say 'journal, apt cache, temporary files'\n",
        "journalctl --rotate >/dev/null 2>&1; journalctl --vacuum-time=1s >/dev/null 2>&1\n",
        "rm -rf /var/log/journal/*/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin\n",
        "find /tmp /var/tmp -mindepth 1 -delete 2>/dev/null\n",
        "say 'trim free space'\n",
        "sync\n",
        "fstrim -av 2>&1 | sed 's/^/kiln-seal: /'\n",
        "sync\n",
        "say done\n",
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    fn run_cleanup(root: &std::path::Path) -> std::process::Output {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(cleanup_sections("/work dir"))
            .env("ROOT", root)
            .output()
            .unwrap()
    }

    /// Runs Image Builder's cleanup against a scratch root: each section
    /// removes its files, and a marker skips exactly its own section.
    #[test]
    fn cleanup_removes_files_and_markers_skip_sections() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let files = [
            "etc/sudoers.d/90-cloud-init-users",
            "etc/hostname",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/sshd_config",
            "root/.ssh/authorized_keys",
            "home/admin/.ssh/authorized_keys",
            "var/log/cloud-init.log",
            "var/log/dmesg",
            "var/log/amazon/ssm/amazon-ssm-agent.log",
            "work dir/TOE_2026/detailedoutput.json",
            "work dir/keep.txt",
            "work dir/skip_cleanup_ssh_files",
        ];
        for f in files {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), "x").unwrap();
        }
        let out = run_cleanup(r);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("kiln-seal: skipped: skip_cleanup_ssh_files is present"),
            "{text}"
        );
        for gone in [
            "etc/sudoers.d/90-cloud-init-users",
            "etc/hostname",
            "var/log/cloud-init.log",
            "var/log/dmesg",
            "var/log/amazon/ssm/amazon-ssm-agent.log",
            "work dir/TOE_2026",
        ] {
            assert!(!r.join(gone).exists(), "{gone} should be removed");
        }
        for kept in [
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/sshd_config",
            "root/.ssh/authorized_keys",
            "home/admin/.ssh/authorized_keys",
            "work dir/keep.txt",
        ] {
            assert!(r.join(kept).exists(), "{kept} should be kept");
        }
        std::fs::remove_file(r.join("work dir/skip_cleanup_ssh_files")).unwrap();
        let out = run_cleanup(r);
        assert!(out.status.success());
        for gone in [
            "etc/ssh/ssh_host_ed25519_key",
            "root/.ssh/authorized_keys",
            "home/admin/.ssh/authorized_keys",
        ] {
            assert!(!r.join(gone).exists(), "{gone} should be removed");
        }
        assert!(r.join("etc/ssh/sshd_config").exists());
    }

    #[test]
    fn script_is_valid_bash() {
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(script("/tmp/it's", "kiln-build"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
