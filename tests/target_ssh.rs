//! The SSH target against one real guest: an overlay of the Debian 12
//! cloud-init base image (`tests/support/base_image.rs`: `KILN_TEST_BASE_IMAGE`,
//! else the Debian image kiln bootstraps once) booted under QEMU/TCG with a
//! seed written by kiln. One boot proves: cloud-init took our seed, the host
//! key is pinned, exec runs as root with streaming, exit codes, env, cwd and
//! safe quoting, a dropped exec kills its whole process group, every file
//! operation (with "not found" mapped), a 100 MiB round trip, reboot, that
//! keepalives notice a guest that stopped answering, and the network a build
//! VM gets by default (`outbound`): the Debian mirror answers, a service on
//! the host's 127.0.0.1 does not (not at 10.0.2.2, not at the gateway).
//! On any failure the serial console's tail is printed; QEMU never outlives
//! the test.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use kiln::target::ssh::keys::KeyPair;
use kiln::target::ssh::{SshConfig, SshError, SshTarget};
use kiln::target::{ExecRequest, FileKind, RebootOutcome, Stream, Target, TargetError};
use kiln::vm::net::Network;
use kiln::vm::qemu::{self, Accel, Drive, Firmware, Media, Vm, VmConfig};
use kiln::vm::seed::{self, SeedConfig};

const QEMU: &str = "qemu-system-x86_64";
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const WHOLE_TEST: Duration = Duration::from_secs(1800);
const BIG_FILE_MIB: usize = 100;

/// Prints the end of the serial console when the test panics.
struct ConsoleOnFailure(PathBuf);

impl Drop for ConsoleOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last serial console lines ----\n{}\n----",
                qemu::console_tail(&self.0, 60)
            );
        }
    }
}

fn free_port() -> u16 {
    qemu::free_port().expect("a free loopback port")
}

/// Whether process `pid` runs (exists and is not a zombie).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|st| !st.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn pgrep(pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

async fn sh(t: &SshTarget, script: &str) -> String {
    let out = t.capture("sh", &args(&["-c", script])).await.unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic incompressible bytes (xorshift64).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Guest {
    vm: Vm,
    cfg: SshConfig,
    seed: SeedConfig,
    overlay: PathBuf,
    serial: PathBuf,
}

async fn boot(dir: &Path) -> Guest {
    let base = support::base_image::base_image();
    let base = base.to_str().expect("a UTF-8 base image path");
    let overlay = dir.join("overlay.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base])
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img create failed");

    let client = KeyPair::generate().unwrap();
    let host = KeyPair::generate().unwrap();
    let seed = SeedConfig {
        instance_id: format!("i-kiln-ssh-{}", uuid::Uuid::new_v4().simple()),
        hostname: "kiln-ssh-test".into(),
        user: "kiln".into(),
        authorized_key: client.public_line("kiln-test-client"),
        host_key: host.seed_host_key().unwrap(),
    };
    let seed_drive = seed::write_seed(&dir.join("seed.iso"), &seed).unwrap();
    let port = free_port();
    let serial = dir.join("serial.log");
    let vm_cfg = VmConfig {
        name: "ssh-test".into(),
        accel: Accel::Tcg,
        cpus: 2,
        memory_mib: 1024,
        firmware: Firmware::Bios,
        drives: vec![
            Drive {
                path: overlay.clone(),
                format: "qcow2".into(),
                media: Media::Disk,
            },
            seed_drive,
        ],
        ssh_port: Some(port),
        // what a build's VMs get when the recipe says nothing
        network: Network::default(),
        serial_log: serial.clone(),
        qmp_socket: dir.join("qmp.sock"),
        kernel: None,
        exit_on_reboot: false,
        incoming: None,
    };
    let vm = Vm::start(QEMU, &vm_cfg).await.unwrap();
    let mut cfg = SshConfig::localhost(port, "kiln", client, host.public_key().clone());
    cfg.reboot_timeout = BOOT_TIMEOUT;
    Guest {
        vm,
        cfg,
        seed,
        overlay,
        serial,
    }
}

async fn check_pinning_and_login(g: &Guest) {
    let mut wrong_host = g.cfg.clone();
    wrong_host.host_key = KeyPair::generate().unwrap().public_key().clone();
    let err = SshTarget::connect(wrong_host.clone())
        .await
        .err()
        .expect("a wrong pinned host key must be refused");
    let text = err.to_string();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{text}");
    assert!(!err.is_transient());
    assert!(text.contains("HOST KEY MISMATCH"), "{text}");
    let pinned = kiln::target::ssh::keys::fingerprint(&wrong_host.host_key);
    let real = kiln::target::ssh::keys::fingerprint(&g.cfg.host_key);
    assert!(text.contains(&pinned) && text.contains(&real), "{text}");
    // wait_for gives up at once on a mismatch
    let t0 = Instant::now();
    let err = SshTarget::wait_for(wrong_host, Instant::now() + Duration::from_secs(60), || {
        Ok(())
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));

    let mut wrong_client = g.cfg.clone();
    wrong_client.client_key = KeyPair::generate().unwrap();
    let err = SshTarget::connect(wrong_client).await.err().unwrap();
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err}");
}

async fn check_exec(t: &SshTarget) {
    assert_eq!(sh(t, "id -u").await, "0\n", "components run as root");
    assert_eq!(t.describe(), format!("kiln@{}", t.config().address()));

    // streaming, exit code, stderr
    let seen: Mutex<Vec<(Stream, Vec<u8>, Instant)>> = Mutex::new(Vec::new());
    let sink = |s: Stream, b: &[u8]| seen.lock().unwrap().push((s, b.to_vec(), Instant::now()));
    let script = args(&["-c", "echo out1; echo err1 >&2; sleep 2; echo out2; exit 7"]);
    let out = t
        .exec(ExecRequest {
            program: "sh",
            args: &script,
            env: &[],
            cwd: None,
            on_output: Some(&sink),
        })
        .await
        .unwrap();
    assert_eq!(out.code, Some(7));
    assert_eq!(out.stdout, b"out1\nout2\n");
    assert_eq!(out.stderr, b"err1\n");
    let seen = seen.into_inner().unwrap();
    let first = seen.iter().find(|c| c.0 == Stream::Stdout).unwrap();
    let last = seen.iter().rev().find(|c| c.0 == Stream::Stdout).unwrap();
    assert_eq!(first.1, b"out1\n", "chunks arrive as written: {seen:?}");
    assert!(
        last.2.duration_since(first.2) >= Duration::from_millis(1500),
        "output is streamed, not collected at the end"
    );
    assert!(seen
        .iter()
        .any(|c| c.0 == Stream::Stderr && c.1 == b"err1\n"));

    // env and cwd
    let env = vec![
        ("KILN_A".to_string(), "x y".to_string()),
        ("KILN_B".to_string(), "it's $HOME\nline".to_string()),
    ];
    let show = args(&["-c", r#"printf '%s|%s|%s' "$KILN_A" "$KILN_B" "$(pwd)""#]);
    let out = t
        .exec(ExecRequest {
            program: "sh",
            args: &show,
            env: &env,
            cwd: Some("/var/tmp"),
            on_output: None,
        })
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "x y|it's $HOME\nline|/var/tmp"
    );

    // nasty arguments reach the program byte for byte
    let nasty = args(&[
        "it's",
        "$HOME",
        "a b  c",
        "line1\nline2",
        "",
        "`id`",
        "\"",
        "\\",
        "*",
        "$(id)",
        "-n",
    ]);
    let mut printf_args = vec!["%s\\0".to_string()];
    printf_args.extend(nasty.iter().cloned());
    let out = t.capture("printf", &printf_args).await.unwrap();
    let back: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect();
    assert_eq!(back, nasty);

    // a background child that keeps the output open does not hold the
    // command: it ends after a short drain, and the child is killed
    let started = Instant::now();
    let out = t
        .capture("sh", &args(&["-c", "sleep 31 & echo left-behind"]))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, b"left-behind\n");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the background sleep held the command for {:?}",
        started.elapsed()
    );
    assert_eq!(sh(t, "pgrep -f 'sleep 3[1]' || true").await, "");

    // killed by a signal: no exit code
    let out = t
        .capture("sh", &args(&["-c", "kill -KILL $$"]))
        .await
        .unwrap();
    assert_eq!(out.code, None);

    // a missing program or working folder is a spawn error, as locally
    let err = t.capture("kiln-no-such-program", &[]).await.unwrap_err();
    assert!(
        matches!(&err, TargetError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    let err = t
        .exec(ExecRequest {
            program: "true",
            args: &[],
            env: &[],
            cwd: Some("/no/such/folder"),
            on_output: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/folder"), "{err}");
}

async fn check_drop_kills(t: &SshTarget) {
    let started = tokio::sync::Notify::new();
    let sink = |_: Stream, b: &[u8]| {
        if String::from_utf8_lossy(b).contains("started") {
            started.notify_one();
        }
    };
    // a process tree: the shell, a background sleep and a foreground sleep
    let script = args(&["-c", "sleep 4242 & echo started; sleep 4243; wait"]);
    let run = t.exec(ExecRequest {
        program: "sh",
        args: &script,
        env: &[],
        cwd: None,
        on_output: Some(&sink),
    });
    tokio::select! {
        r = run => panic!("the sleeping command ended: {:?}", r.map(|o| o.code)),
        _ = started.notified() => {}
    }
    // the exec future is dropped here; its group must die
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = sh(t, "pgrep -f 'sleep 424[23]' || true").await;
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped command still running: {left}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn check_files(t: &SshTarget) {
    let base = "/root/kiln-ssh-test";
    let p = |name: &str| format!("{base}/{name}");
    // root-only folder: SFTP runs as root too
    t.create_dir_all(&p("a/b")).await.unwrap();
    t.create_dir_all(&p("a/b")).await.unwrap();
    assert_eq!(
        t.stat(&p("a/b"), true).await.unwrap().unwrap().kind,
        FileKind::Dir
    );

    t.write(&p("f.txt"), b"hello", Some(0o640)).await.unwrap();
    let st = t.stat(&p("f.txt"), true).await.unwrap().unwrap();
    assert_eq!(
        (st.kind, st.size, st.mode, st.uid, st.gid),
        (FileKind::File, 5, 0o640, 0, 0)
    );
    t.write(&p("f.txt"), b"hello", Some(0o600)).await.unwrap();
    assert_eq!(
        t.stat(&p("f.txt"), true).await.unwrap().unwrap().mode,
        0o640,
        "mode applies on create only"
    );
    t.append(&p("f.txt"), b" world").await.unwrap();
    assert_eq!(t.read(&p("f.txt")).await.unwrap(), b"hello world");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    t.write(&p("bin"), &all_bytes, None).await.unwrap();
    assert_eq!(t.read(&p("bin")).await.unwrap(), all_bytes);
    assert_eq!(
        sh(t, &format!("sha256sum < {}", p("bin"))).await[..64],
        sha256_hex(&all_bytes)
    );

    t.chmod(&p("f.txt"), 0o751).await.unwrap();
    assert_eq!(
        t.stat(&p("f.txt"), false).await.unwrap().unwrap().mode,
        0o751
    );

    t.copy_file(&p("f.txt"), &p("g.txt")).await.unwrap();
    let g = t.stat(&p("g.txt"), true).await.unwrap().unwrap();
    assert_eq!((g.mode, g.size), (0o751, 11));

    // a guest's setuid file comes to this host as a private copy
    t.chmod(&p("g.txt"), 0o4755).await.unwrap();
    let host = tempfile::tempdir().unwrap();
    let copy = host.path().join("g.txt");
    t.download(&p("g.txt"), &copy).await.unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "host copy of a 4755 guest file");
    }
    t.chmod(&p("g.txt"), 0o751).await.unwrap();
    t.write(&p("h.txt"), b"old", None).await.unwrap();
    t.copy_file(&p("bin"), &p("h.txt")).await.unwrap();
    assert_eq!(
        t.read(&p("h.txt")).await.unwrap(),
        all_bytes,
        "copy overwrites"
    );

    t.rename(&p("g.txt"), &p("a/moved.txt")).await.unwrap();
    assert!(t.stat(&p("g.txt"), false).await.unwrap().is_none());
    t.rename(&p("a/moved.txt"), &p("h.txt")).await.unwrap();
    assert_eq!(
        t.read(&p("h.txt")).await.unwrap(),
        b"hello world",
        "rename replaces"
    );

    t.symlink("f.txt", &p("link")).await.unwrap();
    assert_eq!(t.read_link(&p("link")).await.unwrap(), "f.txt");
    assert_eq!(
        t.stat(&p("link"), false).await.unwrap().unwrap().kind,
        FileKind::Symlink
    );
    assert_eq!(
        t.stat(&p("link"), true).await.unwrap().unwrap().kind,
        FileKind::File
    );
    assert_eq!(t.read(&p("link")).await.unwrap(), b"hello world");

    let names: Vec<(String, FileKind)> = t
        .list_dir(base)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    let expected = [
        ("a", FileKind::Dir),
        ("bin", FileKind::File),
        ("f.txt", FileKind::File),
        ("h.txt", FileKind::File),
        ("link", FileKind::Symlink),
    ];
    assert_eq!(names, expected.map(|(n, k)| (n.to_string(), k)).to_vec());

    // owners by name, resolved in the guest
    t.chown(&p("f.txt"), "nobody", Some("nogroup"), false)
        .await
        .unwrap();
    let st = t.stat(&p("f.txt"), false).await.unwrap().unwrap();
    assert_eq!((st.uid, st.gid), (65534, 65534));
    let kiln_uid: u32 = sh(t, "id -u kiln").await.trim().parse().unwrap();
    t.chown(&p("a"), "kiln", None, true).await.unwrap();
    assert_eq!(
        t.stat(&p("a/b"), false).await.unwrap().unwrap().uid,
        kiln_uid
    );
    let err = t
        .chown(&p("f.txt"), "no-such-user-kiln", None, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-user-kiln"), "{err}");

    // deletions
    t.remove_file(&p("link")).await.unwrap();
    assert!(
        t.stat(&p("f.txt"), false).await.unwrap().is_some(),
        "the link's target stays"
    );
    t.remove_dir(&p("a/b"), false).await.unwrap();
    t.write(&p("a/x"), b"x", None).await.unwrap();
    assert!(
        t.remove_dir(&p("a"), false).await.is_err(),
        "a folder with content"
    );
    t.remove_dir(base, true).await.unwrap();
    assert!(t.stat(base, false).await.unwrap().is_none());

    // "not found" everywhere the engine relies on it
    let missing = "/root/kiln-no-such/thing";
    let local = tempfile::tempdir().unwrap();
    let results: Vec<(&str, Result<(), TargetError>)> = vec![
        ("read", t.read(missing).await.map(drop)),
        ("append", t.append(missing, b"x").await),
        ("list_dir", t.list_dir(missing).await.map(drop)),
        ("remove_file", t.remove_file(missing).await),
        ("remove_dir", t.remove_dir(missing, false).await),
        ("remove_dir -r", t.remove_dir(missing, true).await),
        ("rename", t.rename(missing, "/root/x").await),
        ("copy_file", t.copy_file(missing, "/root/x").await),
        ("read_link", t.read_link(missing).await.map(drop)),
        ("chmod", t.chmod(missing, 0o600).await),
        (
            "write into a missing folder",
            t.write(missing, b"x", None).await,
        ),
        (
            "download",
            t.download(missing, &local.path().join("x")).await,
        ),
    ];
    for (op, r) in results {
        let err = r.expect_err(op);
        assert!(err.is_not_found(), "{op}: {err} is not a not-found error");
    }
    assert!(t.stat(missing, true).await.unwrap().is_none());
    assert!(t.stat(missing, false).await.unwrap().is_none());
}

async fn check_big_round_trip(t: &SshTarget) {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(BIG_FILE_MIB << 20);
    let want = sha256_hex(&data);
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    drop(data);
    let remote = "/var/tmp/kiln-big.bin";

    let t0 = Instant::now();
    t.upload(&src, remote).await.unwrap();
    let up = t0.elapsed();
    let remote_sum = sh(t, &format!("sha256sum {remote}")).await;
    assert_eq!(&remote_sum[..64], want, "uploaded bytes differ");
    let back = dir.path().join("back.bin");
    let t0 = Instant::now();
    t.download(remote, &back).await.unwrap();
    let down = t0.elapsed();
    assert_eq!(
        sha256_hex(&std::fs::read(&back).unwrap()),
        want,
        "downloaded bytes differ"
    );
    let mib = BIG_FILE_MIB as f64;
    eprintln!(
        "{BIG_FILE_MIB} MiB upload: {:.1} s = {:.1} MiB/s; download: {:.1} s = {:.1} MiB/s",
        up.as_secs_f64(),
        mib / up.as_secs_f64(),
        down.as_secs_f64(),
        mib / down.as_secs_f64()
    );
    t.remove_file(remote).await.unwrap();
}

/// The default network: the guest fetches from the Debian mirror (DNS and
/// the route out work), but a service listening on the host's 127.0.0.1 is
/// out of its reach, at QEMU user networking's 10.0.2.2 and at the gateway.
async fn check_network(t: &SshTarget) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reached = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reached);
    let accepting = tokio::spawn(async move {
        while let Ok((_, peer)) = listener.accept().await {
            seen.lock().unwrap().push(peer);
        }
    });
    let gateway = sh(t, "ip -4 route show default | awk '{print $3; exit}'").await;
    let gateway = gateway.trim();
    assert!(!gateway.is_empty(), "the guest has no default route");
    for host in ["10.0.2.2", gateway] {
        let probe = format!("curl -sS --max-time 10 -o /dev/null http://{host}:{port}/");
        let out = t.capture("sh", &args(&["-c", &probe])).await.unwrap();
        assert_ne!(
            out.code,
            Some(0),
            "the guest reached the host's loopback at {host}:{port}"
        );
    }
    let fetch = "curl -fsS --max-time 120 -o /dev/null -w '%{http_code}' \
        http://deb.debian.org/debian/dists/bookworm/Release";
    assert_eq!(
        sh(t, fetch).await,
        "200",
        "the guest cannot fetch from the mirror"
    );
    accepting.abort();
    assert_eq!(
        *reached.lock().unwrap(),
        Vec::<std::net::SocketAddr>::new(),
        "connections reached the host's 127.0.0.1:{port} from the guest"
    );
}

async fn check_cloud_init(t: &SshTarget, seed: &SeedConfig) {
    let id = t.read("/var/lib/cloud/data/instance-id").await.unwrap();
    assert_eq!(String::from_utf8(id).unwrap().trim(), seed.instance_id);
    assert_eq!(sh(t, "hostname").await.trim(), seed.hostname);
}

async fn check_reboot(t: &SshTarget) {
    let before = sh(t, "cat /proc/sys/kernel/random/boot_id").await;
    let t0 = Instant::now();
    assert_eq!(t.reboot(0).await.unwrap(), RebootOutcome::Rebooted);
    eprintln!("reboot to SSH: {:.1} s", t0.elapsed().as_secs_f64());
    let after = sh(t, "cat /proc/sys/kernel/random/boot_id").await;
    assert_ne!(before, after, "the boot id must change");
    assert_eq!(sh(t, "id -u").await, "0\n");
}

/// A guest that stops answering (paused through QMP) ends the connection
/// through keepalives: a command fails instead of hanging.
async fn check_dead_guest_is_noticed(t: &SshTarget, vm: &mut Vm) {
    vm.qmp().execute("stop", None).await.unwrap();
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(180), t.capture("true", &[]))
        .await
        .expect("keepalives must end the connection to a dead guest");
    let err = r.expect_err("a paused guest cannot run anything");
    assert!(matches!(err, TargetError::Connection { .. }), "{err}");
    eprintln!(
        "dead guest noticed after {:.1} s: {err}",
        t0.elapsed().as_secs_f64()
    );
    vm.qmp().execute("cont", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_target_against_a_real_guest() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = boot(dir.path()).await;
    let _console = ConsoleOnFailure(g.serial.clone());
    let overlay = g.overlay.display().to_string();

    let body = async {
        let t0 = Instant::now();
        let vm = &mut g.vm;
        let target = SshTarget::wait_for(g.cfg.clone(), Instant::now() + BOOT_TIMEOUT, || match vm
            .exited()
        {
            Some(st) => Err(format!("QEMU exited ({st})")),
            None => Ok(()),
        })
        .await
        .unwrap_or_else(|e| panic!("the guest never answered over SSH: {e}"));
        eprintln!("boot to SSH: {:.1} s", t0.elapsed().as_secs_f64());
        let pid = g.vm.pid();
        let target = target.with_liveness(Arc::new(move || {
            if running(pid) {
                Ok(())
            } else {
                Err("QEMU exited".into())
            }
        }));

        check_cloud_init(&target, &g.seed).await;
        check_network(&target).await;
        // first, as a component's first step may: the old sshd refuses
        // logins while it shuts down; then everything else runs on the
        // connection the reboot made
        check_reboot(&target).await;
        check_pinning_and_login(&g).await;
        check_exec(&target).await;
        check_drop_kills(&target).await;
        check_files(&target).await;
        check_big_round_trip(&target).await;
        check_dead_guest_is_noticed(&target, &mut g.vm).await;
        target.close().await.unwrap();
    };
    if tokio::time::timeout(WHOLE_TEST, body).await.is_err() {
        panic!("the test took longer than {} s", WHOLE_TEST.as_secs());
    }
    assert!(
        g.vm.shutdown(Duration::from_secs(300)).await,
        "the guest did not power off on the ACPI button"
    );
    drop(g);
    assert_eq!(pgrep(&overlay), "", "a QEMU for {overlay} is still running");
}
