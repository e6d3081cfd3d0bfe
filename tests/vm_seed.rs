//! The native ISO 9660 seed writer checked by independent readers:
//! `isoinfo` (genisoimage) and `xorriso` must see the label `cidata`, the
//! Rock Ridge names `user-data` and `meta-data`, and the exact contents.
//! `scripts/setup-host.sh` installs both tools.

use std::path::Path;
use std::process::Command;

use kiln::util::host_key::HostKeyPair;
use kiln::vm::seed::{self, SeedConfig};

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/setup-host.sh): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn config() -> SeedConfig {
    SeedConfig {
        instance_id: "i-kiln-seed-test".into(),
        hostname: "seed-test".into(),
        user: "kiln".into(),
        authorized_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyDummyDummyDummyDummyDummyDummyDummy kiln"
                .into(),
        host_key: HostKeyPair {
            private_openssh:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public_line: "ssh-ed25519 AAAAhost".into(),
        },
    }
}

fn write(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("seed.iso");
    seed::write_seed(&path, &config()).unwrap();
    path
}

#[test]
fn isoinfo_reads_label_names_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let iso = write(dir.path());
    let iso = iso.to_str().unwrap();
    let info = run("isoinfo", &["-d", "-i", iso]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Logical block size is: 2048"), "{info}");
    assert!(
        info.contains("Rock Ridge signatures version 1 found"),
        "{info}"
    );
    let size: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Volume size is: "))
        .expect("volume size line")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(size * 2048, std::fs::metadata(iso).unwrap().len());

    let mut names: Vec<String> = run("isoinfo", &["-f", "-R", "-i", iso])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, ["/meta-data", "/user-data"]);
    let plain = run("isoinfo", &["-f", "-i", iso]);
    assert!(plain.contains("/USER_DAT.;1"), "{plain}");

    let user = run("isoinfo", &["-R", "-i", iso, "-x", "/user-data"]);
    assert_eq!(user, seed::user_data(&config()));
    let meta = run("isoinfo", &["-R", "-i", iso, "-x", "/meta-data"]);
    assert_eq!(meta, seed::meta_data(&config()));
}

#[test]
fn xorriso_finds_the_rock_ridge_tree() {
    let dir = tempfile::tempdir().unwrap();
    let iso = write(dir.path());
    let out = Command::new("xorriso")
        .args([
            "-indev",
            iso.to_str().unwrap(),
            "-find",
            "/",
            "-exec",
            "lsdl",
        ])
        .output()
        .expect("cannot run xorriso (run scripts/setup-host.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Volume id    : 'cidata'"), "{stderr}");
    let blocks = std::fs::metadata(&iso).unwrap().len() / 2048;
    assert!(
        stderr.contains(&format!("Media summary: 1 session, {blocks} data blocks")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("FAILURE") && !stderr.contains("SORRY"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let user_len = seed::user_data(&config()).len();
    let line = stdout
        .lines()
        .find(|l| l.ends_with("'/user-data'"))
        .unwrap_or_else(|| panic!("no /user-data in {stdout}"));
    assert!(line.starts_with("-r--r--r--"), "{line}");
    assert!(line.contains(&format!(" {user_len} ")), "{line}");
    assert!(
        stdout.lines().any(|l| l.ends_with("'/meta-data'")),
        "{stdout}"
    );
}
