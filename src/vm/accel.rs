//! Choosing the accelerator. `/dev/kvm` existing is no proof that KVM works
//! (on some hosts a KVM guest hangs), so KVM is used only when a real boot of
//! a tiny guest succeeds within a few seconds; otherwise TCG, said loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use super::qemu::{Accel, Drive, Firmware, Media, Vm, VmConfig};
use super::VmError;

/// What the probe guest prints on its serial port.
pub const PROBE_MARKER: &str = "KILN-ACCEL-PROBE-OK";

/// How long a KVM probe may take before KVM is judged unusable.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A 512-byte x86 boot sector that prints [`PROBE_MARKER`] on COM1 and halts.
pub fn probe_boot_sector() -> [u8; 512] {
    #[rustfmt::skip]
    let code: [u8; 22] = [
        0x31, 0xC0,             // xor ax, ax
        0x8E, 0xD8,             // mov ds, ax
        0xFC,                   // cld
        0xBA, 0xF8, 0x03,       // mov dx, 0x3f8 (COM1)
        0xBE, 0x16, 0x7C,       // mov si, 0x7c16 (the message below)
        0xAC,                   // next: lodsb
        0x84, 0xC0,             // test al, al
        0x74, 0x03,             // jz done
        0xEE,                   // out dx, al
        0xEB, 0xF8,             // jmp next
        0xF4,                   // done: hlt
        0xEB, 0xFD,             // jmp done
    ];
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    let msg = format!("{PROBE_MARKER}\r\n");
    sector[code.len()..code.len() + msg.len()].copy_from_slice(msg.as_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Writes a 1 MiB raw disk whose boot sector is [`probe_boot_sector`]
/// (firmware does not boot a disk of a single sector on every machine type).
pub fn write_probe_disk(path: &Path) -> Result<(), VmError> {
    let io = |source| VmError::Io {
        what: "write",
        path: path.display().to_string(),
        source,
    };
    std::fs::write(path, probe_boot_sector()).map_err(io)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(1 << 20))
        .map_err(io)
}

/// A small VM (BIOS, 64 MiB, no network) that boots the probe disk, with its
/// files in `workdir`. It halts after printing and ignores the power button.
pub fn probe_config(accel: Accel, workdir: &Path) -> Result<VmConfig, VmError> {
    let disk = workdir.join(format!("probe-{}.img", accel.name()));
    write_probe_disk(&disk)?;
    Ok(VmConfig {
        name: format!("probe-{}", accel.name()),
        accel,
        cpus: 1,
        memory_mib: 64,
        firmware: Firmware::Bios,
        drives: vec![Drive {
            path: disk,
            format: "raw".into(),
            media: Media::Disk,
        }],
        ssh_port: None,
        network: super::net::Network::None,
        serial_log: workdir.join(format!("probe-{}.serial.log", accel.name())),
        qmp_socket: workdir.join(format!("probe-{}.qmp", accel.name())),
        kernel: None,
        exit_on_reboot: true,
    })
}

/// What a probe boot showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The probe guest printed its marker.
    Booted,
    /// It did not; why, for the user.
    Failed(String),
}

/// Boots the probe sector with `accel` in `workdir`; [`Probe::Booted`] when
/// it printed the marker within `timeout`. QEMU is always stopped before
/// returning.
pub async fn probe(
    qemu: &str,
    accel: Accel,
    workdir: &Path,
    timeout: Duration,
) -> Result<Probe, VmError> {
    let cfg = probe_config(accel, workdir)?;
    let serial_log = cfg.serial_log.clone();
    let mut vm = match Vm::start(qemu, &cfg).await {
        Ok(vm) => vm,
        // KVM unavailable (no device, no permission): QEMU exits at once
        Err(VmError::Exited { status, .. }) if accel == Accel::Kvm => {
            return Ok(Probe::Failed(format!(
                "QEMU could not start with KVM ({})",
                status.trim()
            )))
        }
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        if std::fs::read_to_string(&serial_log)
            .unwrap_or_default()
            .contains(PROBE_MARKER)
        {
            break Probe::Booted;
        }
        if let Some(status) = vm.exited() {
            break Probe::Failed(format!("the probe guest's QEMU exited ({status})"));
        }
        if Instant::now() > deadline {
            break Probe::Failed(format!(
                "a {} probe guest did not boot within {} s",
                accel.name(),
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    vm.kill().await;
    Ok(outcome)
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if a probe boot works, else TCG.
    Auto,
    /// KVM, or fail.
    Kvm,
    /// TCG (software emulation).
    Tcg,
}

/// The accelerator chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The accelerator.
    pub accel: Accel,
    /// Why it was chosen, for the user.
    pub reason: String,
}

/// Chooses the accelerator.
pub async fn select(choice: AccelChoice, qemu: &str, workdir: &Path) -> Result<Selected, VmError> {
    let kvm_ok = |reason: &str| Selected {
        accel: Accel::Kvm,
        reason: reason.to_string(),
    };
    match choice {
        AccelChoice::Tcg => Ok(Selected {
            accel: Accel::Tcg,
            reason: "TCG requested".into(),
        }),
        AccelChoice::Kvm | AccelChoice::Auto => {
            let probe = if Path::new("/dev/kvm").exists() {
                probe(qemu, Accel::Kvm, workdir, KVM_PROBE_TIMEOUT).await?
            } else {
                Probe::Failed("no /dev/kvm".into())
            };
            match (probe, choice) {
                (Probe::Booted, _) => Ok(kvm_ok("a KVM probe guest booted")),
                (Probe::Failed(why), AccelChoice::Kvm) => Err(VmError::Unusable(format!(
                    "KVM does not work on this host: {why}; use --accel tcg or auto"
                ))),
                (Probe::Failed(why), _) => Ok(Selected {
                    accel: Accel::Tcg,
                    reason: format!(
                        "KVM is not usable ({why}); using TCG: software emulation, much slower, default timeouts scaled"
                    ),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_layout() {
        let s = probe_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // the `mov si` operand points at the message
        let msg_at = u16::from_le_bytes([s[9], s[10]]) as usize - 0x7C00;
        assert!(s[msg_at..].starts_with(PROBE_MARKER.as_bytes()));
    }
}
