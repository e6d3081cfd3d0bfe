//! One VM of a build and the SSH session into it: a fresh identity (client
//! key, pinned host key, instance-id) in a NoCloud seed, QEMU started as a
//! supervised child, SSH awaited with the serial console's tail and
//! cloud-init's progress at hand if it never comes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layers::{
    Layer, LayerError, LayerWriter, CLIENT_KEY_FILE, DISK_FILE, HOST_KEY_FILE, SEED_FILE,
    STATE_FILE,
};
use crate::target::ssh::keys::KeyPair;
use crate::target::ssh::{SshConfig, SshError, SshTarget};
use crate::target::Target;
use crate::util::io::IoError;
use crate::vm::net::Network;
use crate::vm::qemu::{free_port, Accel, Drive, Firmware, Media, Vm, VmConfig};
use crate::vm::seed::{self, SeedConfig};
use crate::vm::snapshot::Saved;
use crate::vm::VmError;

/// The login user kiln creates in its VMs (removed by the seal).
pub const BUILD_USER: &str = "kiln-build";

/// The version of what kiln's seed sets up in a VM (user, keys, host
/// name): part of a saved VM's key, so a change makes old ones unused.
pub const SEED_FORMAT: u32 = 1;

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
        source: Box<SshError>,
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
    /// Setting the clock, the entropy or the key after a restore failed.
    #[error("preparing the restored {vm} VM failed (status {code:?}):\n{output}")]
    Restore {
        /// Which VM.
        vm: String,
        /// The script's exit code.
        code: Option<i32>,
        /// Its output.
        output: String,
    },
    /// A saved layer could not be written.
    #[error("saving the VM")]
    Layer(#[source] LayerError),
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
    pub log_dir: PathBuf,
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
    /// Its throwaway credentials and seed.
    pub identity: Identity,
    /// The boot timeout it was given (also for reconnecting).
    boot_timeout: Duration,
}

/// The throwaway credentials of one VM: the key its build user accepts,
/// its SSH host key (pinned), and the NoCloud seed that carried them.
#[derive(Debug)]
pub struct Identity {
    /// The client key the build user accepts.
    pub client: KeyPair,
    /// The guest's SSH host key.
    pub host: KeyPair,
    /// The seed image.
    pub seed: PathBuf,
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
        let ssh_err = ssh_error(name);
        let identity = Identity {
            client: KeyPair::generate().map_err(ssh_err)?,
            host: KeyPair::generate().map_err(ssh_err)?,
            seed: spec.vm_dir.join(format!("{name}-seed.iso")),
        };
        let seed_cfg = SeedConfig {
            instance_id: format!("kiln-{name}-{}", spec.build_id),
            hostname: format!("kiln-{name}"),
            user: BUILD_USER.to_string(),
            authorized_key: identity.client.public_line("kiln"),
            host_key: identity.host.seed_host_key().map_err(ssh_err)?,
        };
        seed::write_seed(&identity.seed, &seed_cfg).map_err(GuestError::Seed)?;
        let started = Instant::now();
        let mut guest = Guest::start(&spec, identity, None, started).await?;
        let deadline = started + spec.boot_timeout;
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
        guest.cloud_init = guest.wait_cloud_init(left).await?;
        Ok(guest)
    }

    /// Starts a guest from a saved layer instead of booting: `spec.disk`
    /// must be a new overlay on the layer's disk. Once the state is loaded,
    /// and before anything else runs, the guest's clock is set from the
    /// host's, its random pool gets fresh host entropy (on top of the
    /// vmgenid reseed), and the build user's key is replaced by a new one:
    /// the layer's key no longer opens this guest.
    pub async fn restore(spec: GuestSpec<'_>, layer: &Layer) -> Result<Guest, GuestError> {
        let name = spec.name;
        let ssh_err = ssh_error(name);
        let read_key = |file: &str| -> Result<KeyPair, GuestError> {
            let path = layer.file(file);
            let pem = std::fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
            KeyPair::from_openssh(&pem).map_err(ssh_err)
        };
        let identity = Identity {
            client: read_key(CLIENT_KEY_FILE)?,
            host: read_key(HOST_KEY_FILE)?,
            seed: layer.file(SEED_FILE),
        };
        let started = Instant::now();
        let mut guest =
            Guest::start(&spec, identity, Some(&layer.file(STATE_FILE)), started).await?;
        let fresh = KeyPair::generate().map_err(ssh_err)?;
        let entropy: [u8; 64] = rand::random();
        let octal: String = entropy.iter().map(|b| format!("\\{b:03o}")).collect();
        let epoch = chrono::Utc::now().timestamp();
        let user = BUILD_USER;
        let keys = format!("/home/{user}/.ssh/authorized_keys");
        let script = format!(
            "date -u -s @{epoch} >/dev/null && printf '{octal}' >/dev/urandom && \\
             printf '%s\\n' '{line}' >{keys}.new && chown {user}: {keys}.new && \\
             chmod 600 {keys}.new && mv {keys}.new {keys}",
            line = fresh.public_line("kiln"),
        );
        match guest.shell(&script).await? {
            (Some(0), _) => {}
            (code, out) => {
                return Err(GuestError::Restore {
                    vm: name.into(),
                    code,
                    output: indent(out.trim()),
                })
            }
        }
        // from now on only this build's key opens the guest
        guest.target.close().await.ok();
        guest.identity.client = fresh;
        guest.connect_again().await?;
        guest.cloud_init = "done (restored)".into();
        guest.boot_to_ssh = started.elapsed().as_secs_f64();
        Ok(guest)
    }

    /// Starts QEMU (from `incoming` when given) and waits for SSH with the
    /// identity's keys.
    async fn start(
        spec: &GuestSpec<'_>,
        identity: Identity,
        incoming: Option<&Path>,
        started: Instant,
    ) -> Result<Guest, GuestError> {
        let name = spec.name;
        let key_file = spec.vm_dir.join(format!("{name}-id_ed25519"));
        let port = free_port().map_err(IoError::at(
            "cannot find a free port on",
            Path::new("127.0.0.1"),
        ))?;
        let known_hosts = spec.vm_dir.join(format!("{name}-known_hosts"));
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
                seed::seed_drive(identity.seed.clone()),
            ],
            ssh_port: Some(port),
            network: spec.network,
            serial_log: serial_log.clone(),
            qmp_socket: spec.socket_dir.join(format!("{name}.qmp")),
            kernel: None,
            exit_on_reboot: false,
            incoming: incoming.map(Path::to_path_buf),
        };
        let mut vm = Vm::start(spec.qemu, &cfg).await?;
        if incoming.is_some() {
            vm.wait_restored(spec.boot_timeout).await?;
            vm.resume().await?;
        }
        let mut guest = Guest {
            target: Guest::connect(
                name,
                &mut vm,
                &identity,
                port,
                started + spec.boot_timeout,
                spec.boot_timeout,
                &serial_log,
            )
            .await?,
            vm,
            port,
            key_file,
            known_hosts,
            boot_to_ssh: started.elapsed().as_secs_f64(),
            cloud_init: String::new(),
            serial_log,
            name: name.to_string(),
            identity,
            boot_timeout: spec.boot_timeout,
        };
        guest.write_access_files()?;
        Ok(guest)
    }

    /// Writes the private key and the pinned known_hosts line a person
    /// needs to get in (`--on-error abort`).
    fn write_access_files(&mut self) -> Result<(), GuestError> {
        self.identity
            .client
            .write_private(&self.key_file)
            .map_err(ssh_error(&self.name))?;
        std::fs::write(
            &self.known_hosts,
            format!("{}\n", self.identity.host.known_hosts_line(self.port)),
        )
        .map_err(IoError::at("cannot write", &self.known_hosts))?;
        Ok(())
    }

    /// Connects to the guest on `port` with `identity`, waiting until
    /// `deadline`; a QEMU that exits ends the wait with the console's story.
    async fn connect(
        name: &str,
        vm: &mut Vm,
        identity: &Identity,
        port: u16,
        deadline: Instant,
        boot_timeout: Duration,
        serial_log: &Path,
    ) -> Result<SshTarget, GuestError> {
        let ssh = SshConfig {
            host: "127.0.0.1".into(),
            port,
            user: BUILD_USER.into(),
            client_key: identity.client.clone(),
            host_key: identity.host.public_key().clone(),
            connect_timeout: Duration::from_secs(20),
            reboot_timeout: boot_timeout,
        };
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
        waited.map_err(|e| {
            let serial = std::fs::read_to_string(serial_log).unwrap_or_default();
            let diagnosis = diagnose_console(&serial);
            let console = indent(&crate::vm::qemu::console_tail(serial_log, 30));
            match (exit_status, e) {
                (Some(status), _) => GuestError::Stopped {
                    vm: name.into(),
                    status,
                    diagnosis,
                    console,
                },
                (None, e @ SshError::Timeout { .. }) => GuestError::BootTimeout {
                    vm: name.into(),
                    seconds: boot_timeout.as_secs(),
                    last_error: e.to_string(),
                    diagnosis,
                    console,
                },
                (None, source) => GuestError::Ssh {
                    vm: name.into(),
                    source: Box::new(source),
                },
            }
        })
    }

    /// Opens a new SSH session with the current identity (after a save or
    /// a key change) and rewrites the access files.
    async fn connect_again(&mut self) -> Result<(), GuestError> {
        let deadline = Instant::now() + self.boot_timeout;
        self.target = Guest::connect(
            &self.name,
            &mut self.vm,
            &self.identity,
            self.port,
            deadline,
            self.boot_timeout,
            &self.serial_log,
        )
        .await?;
        self.write_access_files()
    }

    /// Saves this running guest into `layer`: the guest drops its page
    /// cache, the SSH session closes, the VM pauses (QEMU flushes the
    /// disk), a copy of `overlay` (the frozen disk) and the VM's state go
    /// into the layer with the seed and keys, and the VM runs on with a
    /// new SSH session. The layer is not committed here.
    ///
    /// The outer error means the guest is lost (it did not run on); the
    /// inner one that only the layer could not be written.
    pub async fn save(
        &mut self,
        overlay: &Path,
        layer: &LayerWriter,
        timeout: Duration,
    ) -> Result<Result<Saved, GuestError>, GuestError> {
        // the page cache is most of a booted guest's memory, and worth nothing
        self.shell("sync; echo 3 > /proc/sys/vm/drop_caches")
            .await?;
        self.target.close().await.ok();
        self.vm.pause().await?;
        let saved = self.freeze_into(overlay, layer, timeout).await;
        // the build goes on whether or not the layer could be written
        self.vm.resume().await?;
        self.connect_again().await?;
        Ok(saved)
    }

    async fn freeze_into(
        &mut self,
        overlay: &Path,
        layer: &LayerWriter,
        timeout: Duration,
    ) -> Result<Saved, GuestError> {
        let copy = |from: &Path, to: PathBuf| -> Result<(), GuestError> {
            std::fs::copy(from, &to).map_err(IoError::at("copy into the layer", &to))?;
            Ok(())
        };
        copy(overlay, layer.file(DISK_FILE))?;
        copy(&self.identity.seed, layer.file(SEED_FILE))?;
        let pem = |k: &KeyPair| k.openssh_private().map_err(ssh_error(&self.name));
        layer
            .write_private(CLIENT_KEY_FILE, pem(&self.identity.client)?.as_bytes())
            .map_err(GuestError::Layer)?;
        layer
            .write_private(HOST_KEY_FILE, pem(&self.identity.host)?.as_bytes())
            .map_err(GuestError::Layer)?;
        Ok(self.vm.save_state(&layer.file(STATE_FILE), timeout).await?)
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

/// A `map_err` adapter naming the VM.
fn ssh_error(vm: &str) -> impl Fn(SshError) -> GuestError + Copy + '_ {
    move |source| GuestError::Ssh {
        vm: vm.to_string(),
        source: Box::new(source),
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
