//! The QEMU process: command line, start, control and stop. QEMU runs in its
//! own process group with a parent-death signal, so it never outlives kiln,
//! even when kiln is killed with SIGKILL.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::net::{self, Forbidden, Network, Outbound};
use super::qmp::Qmp;
use super::VmError;

/// A CPU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// The name QEMU uses.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Boot firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF: its code, and this VM's own copy of the variables store.
    Uefi {
        /// `OVMF_CODE*.fd`, read-only.
        code: PathBuf,
        /// A writable copy of `OVMF_VARS*.fd`.
        vars: PathBuf,
    },
}

/// How a drive is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// A virtio disk.
    Disk,
    /// An IDE CD-ROM (read-only).
    Cdrom,
}

/// A drive of the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drive {
    /// The image file.
    pub path: PathBuf,
    /// Its format (`qcow2`, `raw`).
    pub format: String,
    /// Disk or CD-ROM.
    pub media: Media,
}

/// A kernel booted directly, without firmware or boot loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectKernel {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub append: String,
}

/// Everything that defines one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// A name for logs and the process list.
    pub name: String,
    /// The accelerator.
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Firmware.
    pub firmware: Firmware,
    /// Drives, boot disk first.
    pub drives: Vec<Drive>,
    /// A localhost port forwarded to the guest's port 22, if any; without
    /// one the guest has no network card.
    pub ssh_port: Option<u16>,
    /// What the guest's network reaches (when it has a card).
    pub network: Network,
    /// Where the serial console is written.
    pub serial_log: PathBuf,
    /// The QMP socket path.
    pub qmp_socket: PathBuf,
    /// A directly booted kernel, if any.
    pub kernel: Option<DirectKernel>,
    /// Whether a guest reboot ends QEMU instead (`-no-reboot`).
    pub exit_on_reboot: bool,
    /// A state file (see [`super::snapshot`]) to start from instead of
    /// booting; the drives must hold the disks as they were saved.
    pub incoming: Option<PathBuf>,
}

/// A value inside a QEMU option string (`-drive`, `-chardev`, `-qmp`):
/// commas doubled, so a comma in a path cannot start another option.
pub fn opt_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// A path inside a QEMU option string: absolute (so no file name is taken
/// for a protocol such as `nbd:` or `json:`) and escaped ([`opt_value`]).
fn opt_path(path: &Path) -> String {
    opt_value(&crate::disk::img::tool_path(path).display().to_string())
}

/// The `-drive` options that open `path` as a plain host file (the `file`
/// protocol driver named explicitly, never guessed from the name) of
/// `format`.
pub fn drive_file(path: &Path, format: &str) -> String {
    format!(
        "file.driver=file,file.filename={},format={}",
        opt_path(path),
        opt_value(format)
    )
}

/// How the guest's network card is backed, once kiln prepared it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nic {
    /// No network card.
    Absent,
    /// QEMU user networking forwarding 127.0.0.1:`ssh_port` to the guest's
    /// port 22; `restrict` cuts everything else (no route out, no host).
    User {
        /// The forwarded host port.
        ssh_port: u16,
        /// `restrict=on`.
        restrict: bool,
    },
    /// A connected stream socket, inherited at `fd` (kiln's frame filter
    /// in front of passt).
    Stream {
        /// The socket's descriptor in QEMU.
        fd: RawFd,
    },
}

impl Nic {
    /// The card for `cfg`; `stream_fd` is the socket of an `outbound` network.
    pub fn of(cfg: &VmConfig, stream_fd: Option<RawFd>) -> Nic {
        match (cfg.ssh_port, cfg.network, stream_fd) {
            (None, _, _) => Nic::Absent,
            (Some(_), Network::Outbound, Some(fd)) => Nic::Stream { fd },
            (Some(ssh_port), network, _) => Nic::User {
                ssh_port,
                restrict: network != Network::Host,
            },
        }
    }

    fn arguments(self) -> Vec<String> {
        let netdev = match self {
            Nic::Absent => return vec!["-nic".into(), "none".into()],
            Nic::User { ssh_port, restrict } => format!(
                "user,id=net0,{}hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                if restrict { "restrict=on," } else { "" }
            ),
            Nic::Stream { fd } => {
                format!("stream,id=net0,server=off,addr.type=fd,addr.str={fd}")
            }
        };
        ["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]
            .map(String::from)
            .to_vec()
    }
}

/// The QEMU command-line arguments for `cfg` with its network card `nic`.
pub fn arguments(cfg: &VmConfig, nic: Nic) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-name", &format!("kiln-{}", cfg.name)]);
    push(&["-machine", "q35", "-accel", cfg.accel.name()]);
    push(&[
        "-cpu",
        if cfg.accel == Accel::Kvm {
            "host"
        } else {
            "max"
        },
    ]);
    push(&[
        "-smp",
        &cfg.cpus.to_string(),
        "-m",
        &cfg.memory_mib.to_string(),
    ]);
    push(&["-nodefaults", "-display", "none"]);
    push(&[
        "-chardev",
        &format!("file,id=serial0,path={}", opt_path(&cfg.serial_log)),
        "-serial",
        "chardev:serial0",
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", opt_path(&cfg.qmp_socket)),
    ]);
    if let Firmware::Uefi { code, vars } = &cfg.firmware {
        push(&[
            "-drive",
            &format!("if=pflash,unit=0,readonly=on,{}", drive_file(code, "raw")),
        ]);
        push(&[
            "-drive",
            &format!("if=pflash,unit=1,{}", drive_file(vars, "raw")),
        ]);
    }
    for d in &cfg.drives {
        let file = drive_file(&d.path, &d.format);
        let spec = match d.media {
            Media::Disk => format!("{file},if=virtio,discard=unmap,detect-zeroes=unmap"),
            Media::Cdrom => format!("{file},media=cdrom,readonly=on"),
        };
        push(&["-drive", &spec]);
    }
    let card = nic.arguments();
    push(&card.iter().map(String::as_str).collect::<Vec<_>>());
    if let Some(k) = &cfg.kernel {
        push(&[
            "-kernel",
            &crate::disk::img::tool_path(&k.kernel).display().to_string(),
            "-append",
            &k.append,
        ]);
        if let Some(initrd) = &k.initrd {
            push(&[
                "-initrd",
                &crate::disk::img::tool_path(initrd).display().to_string(),
            ]);
        }
    }
    if cfg.exit_on_reboot {
        push(&["-no-reboot"]);
    }
    // a new generation id at every start: a restored Linux guest reseeds
    // its random pool (the device is also in every saved state, so a state
    // always finds it)
    push(&["-device", "vmgenid,guid=auto"]);
    if let Some(state) = &cfg.incoming {
        push(&["-incoming", &super::snapshot::restore_uri(state)]);
    }
    a
}

/// A free TCP port on 127.0.0.1 (for [`VmConfig::ssh_port`] and other
/// loopback peers). The port is free when asked; a peer must bind it soon.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running QEMU (and passt, for an `outbound` network). Dropping it kills
/// QEMU and passt.
pub struct Vm {
    child: tokio::process::Child,
    pid: i32,
    qmp: Qmp,
    serial_log: PathBuf,
    net: Option<Outbound>,
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> VmError {
    VmError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The last `n` lines of a serial console log.
/// Only the last [`CONSOLE_TAIL_BYTES`] of the log are read: the guest
/// decides how much it prints.
pub fn console_tail(serial_log: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(serial_log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(CONSOLE_TAIL_BYTES);
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.take(CONSOLE_TAIL_BYTES).read_to_end(&mut bytes);
        }
        if from > 0 {
            // the first line read is probably cut: drop it
            let cut = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
            bytes.drain(..cut);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The most bytes [`console_tail`] reads from the end of a serial log.
pub const CONSOLE_TAIL_BYTES: u64 = 64 << 10;

impl Vm {
    /// Starts QEMU (after passt, for an `outbound` network with an SSH
    /// port) and connects to its QMP socket.
    pub async fn start(binary: &str, cfg: &VmConfig) -> Result<Vm, VmError> {
        let _ = std::fs::remove_file(&cfg.qmp_socket);
        let mut net = match (cfg.ssh_port, cfg.network) {
            (Some(port), Network::Outbound) => {
                let forbidden = Forbidden::this_host().map_err(|source| VmError::Io {
                    what: "list the addresses of",
                    path: "this host's network interfaces".into(),
                    source,
                })?;
                Some(Outbound::start(port, forbidden)?)
            }
            _ => None,
        };
        let stream_fd = net.as_ref().and_then(Outbound::qemu_fd);
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(arguments(cfg, Nic::of(cfg, stream_fd)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        crate::util::process::supervise(&mut cmd, libc::SIGKILL);
        if let Some(fd) = stream_fd {
            net::inherit_fd(&mut cmd, fd);
        }
        let mut child = cmd.spawn().map_err(|source| VmError::Spawn {
            binary: binary.to_string(),
            source,
        })?;
        if let Some(n) = &mut net {
            n.attached();
        }
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let qmp = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| io_err("wait for", Path::new(binary), e))?
            {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut stderr).await;
                }
                return Err(VmError::Exited {
                    status: format!("{status}: {}", stderr.trim()),
                    console: console_tail(&cfg.serial_log, 20),
                });
            }
            if cfg.qmp_socket.exists() {
                match Qmp::connect(&cfg.qmp_socket).await {
                    Ok(q) => break q,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    what: "QEMU's QMP socket".into(),
                    seconds: 30,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Vm {
            child,
            pid,
            qmp,
            serial_log: cfg.serial_log.clone(),
            net,
        })
    }

    /// Why the guest's network is gone while QEMU runs (passt exited), if it is.
    pub fn network_failure(&mut self) -> Option<String> {
        self.net.as_mut().and_then(Outbound::failure)
    }

    /// passt's process id, for an `outbound` network.
    pub fn passt_pid(&self) -> Option<u32> {
        self.net.as_ref().and_then(Outbound::passt_pid)
    }

    /// QEMU's process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The guest's run state (`running`, `paused`, `shutdown`, …).
    pub async fn status(&mut self) -> Result<String, VmError> {
        let r = self.qmp.execute("query-status", None).await?;
        Ok(r.get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string())
    }

    /// Presses the ACPI power button.
    pub async fn powerdown(&mut self) -> Result<(), VmError> {
        self.qmp.execute("system_powerdown", None).await.map(|_| ())
    }

    /// Hard-resets the guest.
    pub async fn reset(&mut self) -> Result<(), VmError> {
        self.qmp.execute("system_reset", None).await.map(|_| ())
    }

    /// The QMP session, for other commands.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// Waits for QEMU to exit.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(r) => r.map_err(|e| io_err("wait for", Path::new("qemu"), e)),
            Err(_) => Err(VmError::Timeout {
                what: "QEMU to exit".into(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Whether QEMU has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the guest to power off, waits up to `grace`, then kills QEMU.
    /// Returns true when the guest shut down by itself.
    pub async fn shutdown(&mut self, grace: Duration) -> bool {
        if self.exited().is_some() {
            return true;
        }
        if self.powerdown().await.is_ok() && self.wait(grace).await.is_ok() {
            return true;
        }
        self.kill().await;
        false
    }

    /// Kills QEMU's whole process group and reaps it.
    pub async fn kill(&mut self) {
        crate::util::process::signal_group(self.pid, libc::SIGKILL);
        let _ = self.child.wait().await;
    }

    /// The last `n` lines of the serial console.
    pub fn console_tail(&self, n: usize) -> String {
        console_tail(&self.serial_log, n)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            crate::util::process::signal_group(self.pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            name: "t".into(),
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Bios,
            drives: vec![
                Drive {
                    path: "/d/disk.qcow2".into(),
                    format: "qcow2".into(),
                    media: Media::Disk,
                },
                Drive {
                    path: "/d/seed.iso".into(),
                    format: "raw".into(),
                    media: Media::Cdrom,
                },
            ],
            ssh_port: Some(2222),
            network: Network::Host,
            serial_log: "/d/serial.log".into(),
            qmp_socket: "/d/qmp.sock".into(),
            kernel: None,
            exit_on_reboot: false,
            incoming: None,
        }
    }

    #[test]
    fn command_line() {
        let cfg = config();
        let a = arguments(&cfg, Nic::of(&cfg, None)).join(" ");
        assert!(a.contains("-accel tcg -cpu max -smp 2 -m 1024"), "{a}");
        assert!(
            a.contains(
                "-drive file.driver=file,file.filename=/d/disk.qcow2,format=qcow2,if=virtio,discard=unmap"
            ),
            "{a}"
        );
        assert!(
            a.contains(
                "-drive file.driver=file,file.filename=/d/seed.iso,format=raw,media=cdrom,readonly=on"
            ),
            "{a}"
        );
        assert!(
            a.contains("-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0"),
            "{a}"
        );
        assert!(
            a.contains("-qmp unix:/d/qmp.sock,server=on,wait=off"),
            "{a}"
        );
        assert!(!a.contains("pflash") && !a.contains("-no-reboot"), "{a}");
    }

    #[test]
    fn network_cards() {
        let mut cfg = config();
        let card = |cfg: &VmConfig, fd| Nic::of(cfg, fd).arguments().join(" ");
        cfg.network = Network::None;
        assert_eq!(
            card(&cfg, None),
            "-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0"
        );
        cfg.network = Network::Host;
        assert_eq!(
            card(&cfg, None),
            "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0"
        );
        cfg.network = Network::Outbound;
        assert_eq!(
            card(&cfg, Some(9)),
            "-netdev stream,id=net0,server=off,addr.type=fd,addr.str=9 -device virtio-net-pci,netdev=net0"
        );
        assert_eq!(
            Nic::of(&cfg, None),
            Nic::User {
                ssh_port: 2222,
                restrict: true
            },
            "an outbound card without its socket falls back to no route out"
        );
        cfg.ssh_port = None;
        for network in [Network::None, Network::Outbound, Network::Host] {
            cfg.network = network;
            assert_eq!(card(&cfg, Some(9)), "-nic none");
        }
    }

    #[test]
    fn a_restored_vm_has_the_card_it_was_saved_with() {
        // a saved state loads only into the same devices: restoring adds
        // `-incoming` and changes nothing else, the network card included
        for network in [Network::None, Network::Outbound, Network::Host] {
            let mut cfg = config();
            cfg.network = network;
            let booted = arguments(&cfg, Nic::of(&cfg, Some(9)));
            cfg.incoming = Some("/c/state.zst".into());
            let mut restored = arguments(&cfg, Nic::of(&cfg, Some(9)));
            let at = restored.iter().position(|a| a == "-incoming").unwrap();
            restored.drain(at..at + 2);
            assert_eq!(restored, booted, "{network:?}");
        }
    }

    #[test]
    fn console_tail_reads_only_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        // a guest that printed 16 GiB (sparse here): the end only is read
        let f = std::fs::File::create(&log).unwrap();
        f.set_len(16 << 30).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"\nlogin: \nlast line", 16 << 30).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(console_tail(&log, 2), "login: \nlast line");
        assert!(started.elapsed() < Duration::from_secs(2));
        // one line longer than the window: what is left of it is dropped
        assert_eq!(console_tail(&log, 5), "login: \nlast line");
        assert_eq!(console_tail(&dir.path().join("none"), 3), "");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(console_tail(&log, 2), "b\nc");
    }

    #[test]
    fn paths_are_files_and_commas_are_doubled() {
        let cfg = VmConfig {
            name: "t".into(),
            accel: Accel::Tcg,
            cpus: 1,
            memory_mib: 256,
            firmware: Firmware::Uefi {
                code: "/f/CODE,x.fd".into(),
                vars: "/f/VARS.fd".into(),
            },
            drives: vec![Drive {
                path: "nbd:127.0.0.1:1,if=none".into(),
                format: "raw".into(),
                media: Media::Disk,
            }],
            ssh_port: None,
            network: Network::None,
            serial_log: "/d/a,b/serial.log".into(),
            qmp_socket: "/d/a,b/qmp.sock".into(),
            kernel: None,
            exit_on_reboot: true,
            incoming: Some("/c/a,b/state.zst".into()),
        };
        let args = arguments(&cfg, Nic::of(&cfg, None));
        let drive = args
            .iter()
            .find(|a| a.contains("if=virtio"))
            .expect("the disk");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            drive,
            &format!(
                "file.driver=file,file.filename={}/nbd:127.0.0.1:1,,if=none,format=raw,if=virtio,discard=unmap,detect-zeroes=unmap",
                cwd.display().to_string().replace(',', ",,")
            )
        );
        let a = args.join(" ");
        assert!(
            a.contains("if=pflash,unit=0,readonly=on,file.driver=file,file.filename=/f/CODE,,x.fd,format=raw"),
            "{a}"
        );
        assert!(a.contains("path=/d/a,,b/serial.log"), "{a}");
        assert!(a.contains("-qmp unix:/d/a,,b/qmp.sock,server=on"), "{a}");
    }
}
