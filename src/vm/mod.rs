//! Local virtual machines: the QEMU process (its own process group, killed
//! with kiln), its QMP control socket, its network (passt behind a frame
//! filter), the accelerator probe, `qemu-img`, and the
//! cloud-init NoCloud seed (a native ISO 9660 writer).

pub mod accel;
pub mod iso9660;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod seed;
pub mod snapshot;

/// Errors of the VM layer.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The QEMU binary.
        binary: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited when it should be running.
    #[error("QEMU exited unexpectedly ({status}); last serial console lines:\n{console}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of the serial console.
        console: String,
    },
    /// The QMP socket failed.
    #[error("QMP {what}: {message}")]
    Qmp {
        /// What was attempted.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The host cannot do what was asked.
    #[error("{0}")]
    Unusable(String),
    /// Waiting took too long.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// A file of the VM could not be handled.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A helper program (`qemu-system-x86_64 --version`…) could not run
    /// or failed.
    #[error(transparent)]
    Tool(#[from] crate::util::task::TaskError),
}
