//! Choosing the accelerator. `/dev/kvm` existing is no proof that KVM works
//! (on some hosts a KVM guest hangs), so KVM is used only when a real boot of
//! a tiny guest succeeds within a few seconds (including a spin in the
//! unpaged protected mode BIOS boot loaders run in); otherwise TCG, said
//! loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use super::qemu::{Accel, Drive, Firmware, Media, Vm, VmConfig};
use super::VmError;

/// What the probe guest prints on its serial port.
pub const PROBE_MARKER: &str = "KILN-ACCEL-PROBE-OK";

/// How long a KVM probe may take before KVM is judged unusable.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the probe's code puts its data (offsets in the sector; BIOS loads
/// the sector at 0x7C00, so the code addresses them as 0x7Cxx).
const PROBE_GDT_AT: usize = 0x50;
const PROBE_GDTR_AT: usize = 0x68;
const PROBE_MESSAGE_AT: usize = 0x6E;

/// How many iterations of a two-instruction loop the probe runs in 32-bit
/// protected mode without paging (a few milliseconds on working KVM).
pub const PROBE_LOOP_ITERATIONS: u32 = 0x0100_0000;

/// A 512-byte x86 boot sector that enters 32-bit protected mode without
/// paging (where BIOS boot loaders such as GRUB run), spins
/// [`PROBE_LOOP_ITERATIONS`] times, prints [`PROBE_MARKER`] on COM1 and
/// halts.
///
/// The loop is the point: some nested hosts (measured on a Firecracker
/// guest) run real-mode boot code under KVM but emulate unpaged protected
/// mode one instruction at a time. There the loop takes ~20 s instead of
/// milliseconds, GRUB needs more than ten minutes to load a kernel, and a
/// probe that only printed from real mode judged KVM usable.
pub fn probe_boot_sector() -> [u8; 512] {
    #[rustfmt::skip]
    let code: [u8; 0x4D] = [
        0xFA,                               // cli
        0x31, 0xC0,                         // xor ax, ax
        0x8E, 0xD8,                         // mov ds, ax
        0x8E, 0xD0,                         // mov ss, ax
        0xBC, 0x00, 0x7C,                   // mov sp, 0x7c00
        0x66, 0x0F, 0x01, 0x16, 0x68, 0x7C, // lgdt [0x7c68] (the GDTR below)
        0x0F, 0x20, 0xC0,                   // mov eax, cr0
        0x66, 0x83, 0xC8, 0x01,             // or eax, 1 (PE; paging stays off)
        0x0F, 0x22, 0xC0,                   // mov cr0, eax
        0x66, 0xEA, 0x22, 0x7C, 0x00, 0x00, 0x08, 0x00, // jmp dword 0x08:0x7c22
        // 32-bit protected mode from here
        0x66, 0xB8, 0x10, 0x00,             // mov ax, 0x10 (flat data)
        0x8E, 0xD8,                         // mov ds, ax
        0x8E, 0xD0,                         // mov ss, ax
        0xB9, 0x00, 0x00, 0x00, 0x01,       // mov ecx, PROBE_LOOP_ITERATIONS
        0xBF, 0x00, 0x00, 0x02, 0x00,       // mov edi, 0x20000 (unused)
        0x01, 0xC8,                         // spin: add eax, ecx
        0x49,                               // dec ecx
        0x75, 0xFB,                         // jnz spin
        0xBE, 0x6E, 0x7C, 0x00, 0x00,       // mov esi, 0x7c6e (the message)
        0x66, 0xBA, 0xF8, 0x03,             // mov dx, 0x3f8 (COM1)
        0xAC,                               // next: lodsb
        0x84, 0xC0,                         // test al, al
        0x74, 0x03,                         // jz done
        0xEE,                               // out dx, al
        0xEB, 0xF8,                         // jmp next
        0xF4,                               // done: hlt
        0xEB, 0xFD,                         // jmp done
    ];
    // the descriptors come with their accessed bit set: else the CPU sets
    // it when a segment is loaded and the sector in RAM is no longer this
    #[rustfmt::skip]
    let gdt: [u8; 24] = [
        0, 0, 0, 0, 0, 0, 0, 0,                         // null
        0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9B, 0xCF, 0x00, // 0x08: flat 32-bit code
        0xFF, 0xFF, 0x00, 0x00, 0x00, 0x93, 0xCF, 0x00, // 0x10: flat data
    ];
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[PROBE_GDT_AT..PROBE_GDT_AT + gdt.len()].copy_from_slice(&gdt);
    let gdt_base = 0x7C00 + PROBE_GDT_AT as u32;
    sector[PROBE_GDTR_AT..PROBE_GDTR_AT + 2].copy_from_slice(&(gdt.len() as u16 - 1).to_le_bytes());
    sector[PROBE_GDTR_AT + 2..PROBE_GDTR_AT + 6].copy_from_slice(&gdt_base.to_le_bytes());
    let msg = format!("{PROBE_MARKER}\r\n");
    sector[PROBE_MESSAGE_AT..PROBE_MESSAGE_AT + msg.len()].copy_from_slice(msg.as_bytes());
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
        incoming: None,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        let at = |i: usize| u16::from_le_bytes([s[i], s[i + 1]]) as usize - 0x7C00;
        // lgdt, the far jump into protected mode and `mov esi` point at
        // the GDTR, the 32-bit code and the message
        assert_eq!(at(14), PROBE_GDTR_AT);
        assert_eq!(at(28), 0x22);
        assert_eq!(&s[0x22..0x24], &[0x66, 0xB8]);
        assert_eq!(at(58), PROBE_MESSAGE_AT);
        assert!(s[PROBE_MESSAGE_AT..].starts_with(PROBE_MARKER.as_bytes()));
        assert_eq!(at(PROBE_GDTR_AT + 2), PROBE_GDT_AT);
        assert_eq!(
            u32::from_le_bytes(s[43..47].try_into().unwrap()),
            PROBE_LOOP_ITERATIONS
        );
    }
}
