//! The SSH host key kiln generates for a guest, in the text forms
//! cloud-init takes: shared by the seed writer (vm) and the SSH client
//! (target), which pins it.

/// An ed25519 SSH host key for a guest: the seed hands it to cloud-init,
/// the SSH client pins it. Debug never shows the private key.
#[derive(Clone)]
pub struct HostKeyPair {
    /// The private key in OpenSSH PEM form (a secret).
    pub private_openssh: String,
    /// The public key as an OpenSSH line (`ssh-ed25519 AAAA… comment`).
    pub public_line: String,
}

impl std::fmt::Debug for HostKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKeyPair")
            .field("private_openssh", &"<redacted>")
            .field("public_line", &self.public_line)
            .finish()
    }
}
