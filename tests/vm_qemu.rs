//! The QEMU process layer against real QEMU (TCG): the accelerator probe,
//! QMP control, and that QEMU never outlives kiln — not even a SIGKILL.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln::vm::accel::{self, AccelChoice, PROBE_MARKER};
use kiln::vm::net::Network;
use kiln::vm::qemu::{free_port, Accel, Vm, VmConfig};

const QEMU: &str = "qemu-system-x86_64";

fn probe_vm(dir: &Path) -> VmConfig {
    let mut cfg = accel::probe_config(Accel::Tcg, dir).unwrap();
    // its own name, so the probe test's search for leftover probe QEMUs does not see it
    cfg.name = "test".into();
    cfg.exit_on_reboot = false;
    cfg
}

fn alive(pid: i32) -> bool {
    // a zombie is not alive: it has no memory and runs nothing
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

async fn wait_for_marker(serial: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(serial)
        .unwrap_or_default()
        .contains(PROBE_MARKER)
    {
        assert!(
            Instant::now() < deadline,
            "the guest never printed the marker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn accelerator_probe_and_selection() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        accel::probe(QEMU, Accel::Tcg, dir.path(), Duration::from_secs(60))
            .await
            .unwrap()
            == accel::Probe::Booted,
        "TCG must boot the probe sector"
    );
    let started = Instant::now();
    let sel = accel::select(AccelChoice::Auto, QEMU, dir.path())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the KVM probe is bounded"
    );
    match sel.accel {
        Accel::Kvm => assert!(
            accel::probe(QEMU, Accel::Kvm, dir.path(), accel::KVM_PROBE_TIMEOUT)
                .await
                .unwrap()
                == accel::Probe::Booted
        ),
        Accel::Tcg => {
            assert!(sel.reason.contains("TCG"), "{}", sel.reason);
            assert!(
                accel::select(AccelChoice::Kvm, QEMU, dir.path())
                    .await
                    .is_err(),
                "--accel kvm must fail where KVM does not work"
            );
        }
    }
    assert_eq!(
        accel::select(AccelChoice::Tcg, QEMU, dir.path())
            .await
            .unwrap()
            .accel,
        Accel::Tcg
    );
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", "kiln-probe-"])
        .output()
        .unwrap();
    assert!(leftovers.stdout.is_empty(), "probe QEMUs must be gone");
}

#[tokio::test]
async fn qmp_controls_the_vm_and_kill_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = probe_vm(dir.path());
    let mut vm = Vm::start(QEMU, &cfg).await.unwrap();
    let pid = vm.pid();
    assert!(alive(pid));
    assert_eq!(vm.status().await.unwrap(), "running");
    wait_for_marker(&cfg.serial_log).await;
    assert!(vm.console_tail(5).contains(PROBE_MARKER));
    vm.qmp().execute("stop", None).await.unwrap();
    assert_eq!(vm.status().await.unwrap(), "paused");
    // the halted boot sector ignores the ACPI button: shutdown falls back to a kill
    assert!(!vm.shutdown(Duration::from_secs(2)).await);
    assert!(!alive(pid), "QEMU must be gone after shutdown");
    // dropping a running VM kills it too
    let vm = Vm::start(QEMU, &cfg).await.unwrap();
    let pid = vm.pid();
    drop(vm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!alive(pid), "dropping the Vm must kill QEMU");
}

/// Guest memory at `addr` (QMP pmemsave into a file).
async fn guest_memory(vm: &mut Vm, dir: &Path, addr: u64, size: u64) -> Vec<u8> {
    let file = dir.join(format!("mem-{addr:x}.bin"));
    vm.qmp()
        .execute(
            "pmemsave",
            Some(serde_json::json!({"val": addr, "size": size, "filename": file})),
        )
        .await
        .unwrap();
    std::fs::read(&file).unwrap()
}

#[tokio::test]
async fn a_saved_state_restores_instead_of_booting() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = probe_vm(dir.path());
    // a network card behind passt and kiln's frame filter (a build VM's
    // default): the restoring QEMU gets a new passt and the state loads
    cfg.ssh_port = Some(free_port().unwrap());
    cfg.network = Network::Outbound;
    let mut vm = Vm::start(QEMU, &cfg).await.unwrap();
    wait_for_marker(&cfg.serial_log).await;
    vm.pause().await.unwrap();
    let state = dir.path().join("state.zst");
    let saved = vm
        .save_state(&state, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(saved.file_bytes > 0 && saved.file_bytes == std::fs::metadata(&state).unwrap().len());
    // zero pages cost nothing: 64 MiB of mostly empty RAM is a small file
    assert!(saved.guest_ram_bytes >= 64 << 20, "{saved:?}");
    assert!(saved.file_bytes < 4 << 20, "{saved:?}");
    // the source is paused after the save and runs on when resumed (a cold
    // build saves its booted VM and goes on with it)
    assert_eq!(vm.status().await.unwrap(), "postmigrate");
    vm.resume().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), "running");
    vm.kill().await;

    // a new QEMU with the same machine loads it: the boot sector the BIOS
    // copied to 0x7c00 is in RAM although this QEMU never booted anything
    let mut restored_cfg = cfg.clone();
    restored_cfg.name = "test-restored".into();
    restored_cfg.serial_log = dir.path().join("restored.serial.log");
    restored_cfg.qmp_socket = dir.path().join("restored.qmp");
    restored_cfg.incoming = Some(state.clone());
    restored_cfg.ssh_port = Some(free_port().unwrap());
    let started = Instant::now();
    let mut vm = Vm::start(QEMU, &restored_cfg).await.unwrap();
    vm.wait_restored(Duration::from_secs(60)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(vm.status().await.unwrap(), "paused");
    let sector = guest_memory(&mut vm, dir.path(), 0x7c00, 512).await;
    assert_eq!(sector, accel::probe_boot_sector().to_vec());
    vm.resume().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), "running");
    assert_eq!(vm.network_failure(), None);
    assert!(
        !std::fs::read_to_string(&restored_cfg.serial_log)
            .unwrap_or_default()
            .contains(PROBE_MARKER),
        "the restored guest must not boot again"
    );
    eprintln!("saved {saved:?}; restored in {took:?}");
    vm.kill().await;

    // a damaged state file: QEMU refuses it and the error says so
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    restored_cfg.ssh_port = Some(free_port().unwrap());
    let mut vm = Vm::start(QEMU, &restored_cfg).await.unwrap();
    let err = vm
        .wait_restored(Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("while loading the saved state"), "{err}");
}

#[tokio::test]
async fn bad_configuration_reports_qemus_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = probe_vm(dir.path());
    cfg.drives[0].path = dir.path().join("missing.img");
    let err = match Vm::start(QEMU, &cfg).await {
        Ok(_) => panic!("a missing disk must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("QEMU exited unexpectedly") && err.contains("missing.img"),
        "{err}"
    );
}

/// Runs in two roles: the test itself re-runs this binary as a "kiln" that
/// starts a VM and waits; the test kills that process with SIGKILL and checks
/// that QEMU died with it (parent-death signal).
#[test]
fn qemu_dies_when_kiln_is_killed() {
    if let Ok(dir) = std::env::var("KILN_TEST_VM_HOLDER") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let cfg = probe_vm(Path::new(&dir));
            let vm = Vm::start(QEMU, &cfg).await.unwrap();
            std::fs::write(Path::new(&dir).join("qemu.pid"), vm.pid().to_string()).unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "qemu_dies_when_kiln_is_killed", "--nocapture"])
        .env("KILN_TEST_VM_HOLDER", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("qemu.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the holder never started its VM");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let qemu_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(qemu_pid));
    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(qemu_pid) {
        assert!(
            Instant::now() < deadline,
            "QEMU {qemu_pid} outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
