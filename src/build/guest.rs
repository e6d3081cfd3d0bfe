//! One VM of a build and the SSH session into it: a fresh identity (client
//! key, pinned host key, instance-id) in a NoCloud seed, QEMU started as a
//! supervised child, SSH awaited with the serial console's tail and
//! cloud-init's progress at hand if it never comes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::IoError;
use crate::target::ssh::keys::KeyPair;
use crate::target::ssh::{SshConfig, SshError, SshTarget};
use crate::target::Target;
use crate::vm::net::Network;
use crate::vm::qemu::{free_port, Accel, Drive, Firmware, Media, Vm, VmConfig};
use crate::vm::seed::{self, SeedConfig};
use crate::vm::VmError;

/// The login user kiln creates in its VMs (removed by the seal).
pub const BUILD_USER: &str = "kiln-build";

/// Errors of a guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A file of the guest could not be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The NoCloud seed could not be written.
    #[error("cannot write the cloud-init seed")]
    Seed(#[source] seed::SeedError),
    /// QEMU failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// SSH never came up.
    #[error("the {vm} VM was not reachable over SSH within {seconds} s ({last_error})\n{diagnosis}\n  last serial console lines:\n{console}")]
    BootTimeout {
        /// Which VM.
        vm: String,
        /// The limit.
        seconds: u64,
        /// The last connection error.
        last_error: String,
        /// What the serial console says about cloud-init and the boot.
        diagnosis: String,
        /// The end of the serial console.
        console: String,
    },
    /// QEMU (or the VM's network) stopped while we waited for SSH.
    #[error("the {vm} VM stopped before SSH came up ({status})\n{diagnosis}\n  last serial console lines:\n{console}")]
    Stopped {
        /// Which VM.
        vm: String,
        /// What stopped: QEMU's exit status, or why passt exited.
        status: String,
        /// What the serial console says.
        diagnosis: String,
        /// The end of the serial console.
        console: String,
    },
    /// SSH failed for another reason (host key mismatch, authentication).
    #[error("SSH to the {vm} VM: {source}")]
    Ssh {
        /// Which VM.
        vm: String,
        /// The cause.
        #[source]
        source: SshError,
    },
    /// cloud-init did not finish well.
    #[error("cloud-init on the {vm} VM ended `{status}`:\n{detail}")]
    CloudInit {
        /// Which VM.
        vm: String,
        /// Its status word.
        status: String,
        /// `cloud-init status --long` output.
        detail: String,
    },
    /// A command in the guest could not run.
    #[error("running `{command}` in the {vm} VM: {source}")]
    Command {
        /// Which VM.
        vm: String,
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: crate::target::TargetError,
    },
}

/// How to make a guest.
pub struct GuestSpec<'a> {
    /// `build` or `test`: names files and log lines.
    pub name: &'a str,
    /// The qcow2 disk (an overlay the guest may write).
    pub disk: &'a Path,
    /// The accelerator.
    pub accel: Accel,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// What the guest's network reaches.
    pub network: Network,
    /// Boot to SSH and cloud-init done.
    pub boot_timeout: Duration,
    /// Folder for keys and the seed (never published).
    pub vm_dir: &'a Path,
    /// Folder for the serial console log (published with the image).
    pub log_dir: &'a Path,
    /// Folder for the QMP socket.
    pub socket_dir: &'a Path,
    /// The QEMU binary.
    pub qemu: &'a str,
    /// A unique id for the instance-id and hostname.
    pub build_id: &'a str,
}

/// A running VM with an SSH session as root.
pub struct Guest {
    /// The VM (dropping it kills QEMU).
    pub vm: Vm,
    /// The session.
    pub target: SshTarget,
    /// The forwarded SSH port on 127.0.0.1.
    pub port: u16,
    /// The client's private key file.
    pub key_file: PathBuf,
    /// A known_hosts file pinning the guest's host key.
    pub known_hosts: PathBuf,
    /// Seconds from power-on to SSH.
    pub boot_to_ssh: f64,
    /// `cloud-init status` once it finished.
    pub cloud_init: String,
    /// The serial console log.
    pub serial_log: PathBuf,
    /// Which VM (`build`, `test`).
    pub name: String,
}

/// What the serial console tells about a boot that never reached SSH.
pub fn diagnose_console(serial: &str) -> String {
    let cloud_init: Vec<&str> = serial
        .lines()
        .filter(|l| l.contains("Cloud-init v.") || l.contains("cloud-init["))
        .collect();
    let kernel = serial.contains("Linux version");
    let login = serial.lines().any(|l| l.contains(" login:"));
    let mut out = Vec::new();
    out.push(if serial.trim().is_empty() {
        "  the serial console is empty: the firmware or boot loader printed nothing (is the disk bootable with BIOS?)".to_string()
    } else if !kernel {
        "  no kernel started (no `Linux version` line): the boot loader did not load a kernel".to_string()
    } else {
        "  the kernel started".to_string()
    });
    match cloud_init.last() {
        Some(l) => out.push(format!("  cloud-init, last line: {}", l.trim())),
        None if kernel => out.push(
            "  cloud-init printed nothing: it may be missing or disabled, or the boot is still early".into(),
        ),
        None => {}
    }
    if login {
        out.push("  a login prompt appeared: the system is up, so SSH itself is the problem (sshd, host keys, or the seed's user)".into());
    }
    out.join("\n")
}

impl Guest {
    /// Boots a guest and waits for SSH and cloud-init.
    pub async fn boot(spec: GuestSpec<'_>) -> Result<Guest, GuestError> {
        let name = spec.name;
        let ssh_err = |source| GuestError::Ssh {
            vm: name.to_string(),
            source,
        };
        let client_key = KeyPair::generate().map_err(ssh_err)?;
        let host_key = KeyPair::generate().map_err(ssh_err)?;
        let key_file = spec.vm_dir.join(format!("{name}-id_ed25519"));
        client_key.write_private(&key_file).map_err(ssh_err)?;
        let port = free_port().map_err(IoError::at(
            "cannot find a free port on",
            Path::new("127.0.0.1"),
        ))?;
        let known_hosts = spec.vm_dir.join(format!("{name}-known_hosts"));
        std::fs::write(
            &known_hosts,
            format!("{}\n", host_key.known_hosts_line(port)),
        )
        .map_err(IoError::at("cannot write", &known_hosts))?;
        let seed_cfg = SeedConfig {
            instance_id: format!("kiln-{name}-{}", spec.build_id),
            hostname: format!("kiln-{name}"),
            user: BUILD_USER.to_string(),
            authorized_key: client_key.public_line("kiln"),
            host_key: host_key.seed_host_key().map_err(ssh_err)?,
        };
        let seed_path = spec.vm_dir.join(format!("{name}-seed.iso"));
        let seed_drive = seed::write_seed(&seed_path, &seed_cfg).map_err(GuestError::Seed)?;
        let serial_log = spec.log_dir.join(format!("{name}-serial.log"));
        let cfg = VmConfig {
            name: format!("{name}-{}", spec.build_id),
            accel: spec.accel,
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
            firmware: Firmware::Bios,
            drives: vec![
                Drive {
                    path: spec.disk.to_path_buf(),
                    format: "qcow2".into(),
                    media: Media::Disk,
                },
                seed_drive,
            ],
            ssh_port: Some(port),
            network: spec.network,
            serial_log: serial_log.clone(),
            qmp_socket: spec.socket_dir.join(format!("{name}.qmp")),
            kernel: None,
            exit_on_reboot: false,
        };
        let started = Instant::now();
        let mut vm = Vm::start(spec.qemu, &cfg).await?;
        let ssh = SshConfig {
            host: "127.0.0.1".into(),
            port,
            user: BUILD_USER.into(),
            client_key,
            host_key: host_key.public_key().clone(),
            connect_timeout: Duration::from_secs(20),
            reboot_timeout: spec.boot_timeout,
        };
        let deadline = started + spec.boot_timeout;
        let mut exit_status = None;
        let waited = SshTarget::wait_for(ssh, deadline, || {
            let stopped = match vm.exited() {
                Some(status) => format!("QEMU exited ({status})"),
                None => match vm.network_failure() {
                    Some(why) => format!("its network ended: {why}"),
                    None => return Ok(()),
                },
            };
            exit_status = Some(stopped.clone());
            Err(stopped)
        })
        .await;
        let target = match waited {
            Ok(t) => t,
            Err(e) => {
                let serial = std::fs::read_to_string(&serial_log).unwrap_or_default();
                let diagnosis = diagnose_console(&serial);
                let console = indent(&crate::vm::qemu::console_tail(&serial_log, 30));
                return Err(match (exit_status, e) {
                    (Some(status), _) => GuestError::Stopped {
                        vm: name.into(),
                        status,
                        diagnosis,
                        console,
                    },
                    (None, e @ SshError::Timeout { .. }) => GuestError::BootTimeout {
                        vm: name.into(),
                        seconds: spec.boot_timeout.as_secs(),
                        last_error: e.to_string(),
                        diagnosis,
                        console,
                    },
                    (None, source) => GuestError::Ssh {
                        vm: name.into(),
                        source,
                    },
                });
            }
        };
        let boot_to_ssh = started.elapsed().as_secs_f64();
        let mut guest = Guest {
            vm,
            target,
            port,
            key_file,
            known_hosts,
            boot_to_ssh,
            cloud_init: String::new(),
            serial_log,
            name: name.to_string(),
        };
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
        guest.cloud_init = guest.wait_cloud_init(left).await?;
        Ok(guest)
    }

    /// Runs a shell command as root and returns its exit code and stdout.
    pub async fn shell(&self, command: &str) -> Result<(Option<i32>, String), GuestError> {
        let out = self
            .target
            .capture("sh", &["-c".to_string(), command.to_string()])
            .await
            .map_err(|source| GuestError::Command {
                vm: self.name.clone(),
                command: command.to_string(),
                source,
            })?;
        Ok((out.code, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Waits for cloud-init to finish; `done` is the only good end.
    pub async fn wait_cloud_init(&self, limit: Duration) -> Result<String, GuestError> {
        let waited = tokio::time::timeout(
            limit,
            self.shell("cloud-init status --wait >/dev/null 2>&1; cloud-init status --long"),
        )
        .await;
        let (_, text) = match waited {
            Ok(r) => r?,
            Err(_) => {
                return Err(GuestError::CloudInit {
                    vm: self.name.clone(),
                    status: "still running".into(),
                    detail: format!("not done after {} s", limit.as_secs()),
                })
            }
        };
        let status = text
            .lines()
            .find_map(|l| l.strip_prefix("status:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        if status != "done" {
            return Err(GuestError::CloudInit {
                vm: self.name.clone(),
                status,
                detail: indent(text.trim()),
            });
        }
        Ok(status)
    }

    /// The command a person can use to get in (for `--on-error abort`),
    /// with the host key pinned.
    pub fn ssh_command(&self) -> String {
        self.target
            .config()
            .ssh_command(&self.key_file, &self.known_hosts)
            .unwrap_or_else(|e| format!("(no ssh command: {e})"))
    }

    /// Asks the guest to power off and waits for QEMU to exit; kills it and
    /// returns an error after `grace`.
    pub async fn power_off(mut self, grace: Duration) -> Result<(), GuestError> {
        drop(self.target);
        self.vm.powerdown().await?;
        match self.vm.wait(grace).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.vm.kill().await;
                Err(GuestError::Vm(e))
            }
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_console_points_at_the_boot_loader() {
        assert!(diagnose_console("").contains("printed nothing"));
        assert!(diagnose_console("SeaBIOS\nBooting from Hard Disk\n").contains("no kernel started"));
    }

    #[test]
    fn cloud_init_progress_is_read_from_the_console() {
        let serial = "[    0.000000] Linux version 6.1.0\n[   40.1] cloud-init[312]: Cloud-init v. 22.4.2 running 'init' at ...\nkiln-build login: ";
        let d = diagnose_console(serial);
        assert!(d.contains("the kernel started"), "{d}");
        assert!(d.contains("running 'init'"), "{d}");
        assert!(d.contains("login prompt"), "{d}");
    }
}
