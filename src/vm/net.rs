//! What a guest's network reaches ([`Network`]) and how `outbound` is made:
//! passt (a user-mode network stack, Debian package `passt`) with its
//! gateway not mapped to the host, behind a frame filter in kiln.
//!
//! passt alone is not enough: it opens a host socket to whatever address a
//! guest's packet names, so a root guest that writes its own frames reaches
//! `127.0.0.1` (and `0.0.0.0`, which Linux connects to the host itself).
//! kiln therefore sits between QEMU and passt: QEMU and passt each get one
//! end of a socket pair (no socket file), and kiln copies frames between
//! them, dropping every frame from the guest whose destination is the host
//! (loopback, unspecified, any address of the host's interfaces) or the
//! link-local range where clouds serve instance metadata.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::VmError;
use crate::util::process::GroupGuard;

/// The passt binary (looked up in `PATH`).
pub const PASST: &str = "passt";

/// The largest frame QEMU may hand over (a 64 KiB packet and headers, with
/// room to spare); a longer length prefix ends the guest's network.
pub const MAX_FRAME: usize = 1 << 17;

/// How much of passt's error output is kept for an error message.
const LOG_TAIL: usize = 4096;

/// What a guest's network reaches. Every mode keeps kiln's own SSH forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// Nothing: QEMU user networking with `restrict=on` (DHCP from QEMU,
    /// no DNS, no route out); only kiln's SSH forward comes in.
    None,
    /// The internet and the LAN through passt, never the host itself
    /// (its loopback, its own addresses) nor cloud instance metadata.
    #[default]
    Outbound,
    /// Outbound plus the host: QEMU user networking, where 10.0.2.2 is the
    /// host's 127.0.0.1 (every build VM's network before this setting).
    Host,
}

impl Network {
    /// The name as written in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Outbound => "outbound",
            Network::Host => "host",
        }
    }
}

/// The destinations a guest's frames may not have: the host itself and the
/// cloud metadata service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forbidden {
    host: Vec<IpAddr>,
}

impl Forbidden {
    /// Forbids, beyond the fixed ranges, the addresses in `host` (the host's
    /// own addresses).
    pub fn new(host: impl IntoIterator<Item = IpAddr>) -> Self {
        Forbidden {
            host: host.into_iter().collect(),
        }
    }

    /// The fixed ranges and every address of this host's interfaces now.
    pub fn this_host() -> std::io::Result<Self> {
        host_addresses().map(Forbidden::new)
    }

    /// Whether a guest may send to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        !match ip {
            IpAddr::V4(v4) => self.forbids_v4(v4),
            IpAddr::V6(v6) => self.forbids_v6(v6),
        }
    }

    fn forbids_v4(&self, ip: Ipv4Addr) -> bool {
        // 0.0.0.0/8 ("this network": Linux connects 0.0.0.0 to the host),
        // 127.0.0.0/8, and 169.254.0.0/16 (169.254.169.254 is the metadata
        // service of EC2, GCE and Azure)
        ip.octets()[0] == 0
            || ip.is_loopback()
            || ip.is_link_local()
            || self.host.contains(&IpAddr::V4(ip))
    }

    fn forbids_v6(&self, ip: Ipv6Addr) -> bool {
        const EC2_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
        let seg = ip.segments();
        // ::/96 holds ::, ::1 and the IPv4-compatible addresses;
        // ::ffff:0:0/96 the IPv4-mapped ones, which reach IPv4 sockets
        let v4_compatible = seg[..6] == [0; 6];
        ip.is_loopback()
            || ip.is_unspecified()
            || v4_compatible
            || ip.to_ipv4_mapped().is_some_and(|v4| self.forbids_v4(v4))
            || ip == EC2_METADATA
            || self.host.contains(&IpAddr::V6(ip))
    }

    /// Whether the Ethernet frame a guest sent may go to passt: ARP, and
    /// IPv4 and IPv6 packets to an allowed destination. Anything else
    /// (VLAN tags, other protocols, truncated headers) is dropped.
    pub fn allows_frame(&self, frame: &[u8]) -> bool {
        const ETH: usize = 14;
        let Some(ethertype) = frame.get(12..ETH) else {
            return false;
        };
        match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
            0x0806 => true,
            0x0800 => match frame.get(ETH..ETH + 20) {
                Some(ip) if ip[0] >> 4 == 4 => {
                    let dst: [u8; 4] = ip[16..20].try_into().expect("4 bytes");
                    self.allows(IpAddr::V4(dst.into()))
                }
                _ => false,
            },
            0x86dd => match frame.get(ETH..ETH + 40) {
                Some(ip) if ip[0] >> 4 == 6 => {
                    let dst: [u8; 16] = ip[24..40].try_into().expect("16 bytes");
                    self.allows(IpAddr::V6(dst.into()))
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// Every address of this host's network interfaces.
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family tells its
            // real type; each cast below matches the family checked.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
            match family {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// passt's arguments: in the foreground, quiet, serving the connected
/// socket `fd` and exiting when it closes, the gateway not mapped to the
/// host, and 127.0.0.1:`ssh_port` forwarded to the guest's port 22.
pub fn passt_arguments(fd: RawFd, ssh_port: u16) -> Vec<String> {
    [
        "--foreground",
        "--quiet",
        "--one-off",
        "--fd",
        &fd.to_string(),
        "--no-map-gw",
        "--tcp-ports",
        &format!("127.0.0.1/{ssh_port}:22"),
        "--udp-ports",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

/// Lets the child inherit `fd` (open without close-on-exec, at the same
/// number) across `exec`.
pub(crate) fn inherit_fd(cmd: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: only fcntl, which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The end of passt's error output, kept bounded.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    fn push(&self, bytes: &[u8]) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.extend_from_slice(bytes);
        let excess = t.len().saturating_sub(LOG_TAIL);
        t.drain(..excess);
    }

    /// The lines kept, without passt's complaints about a missing syslog.
    fn text(&self) -> String {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&t)
            .lines()
            .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A running `outbound` network: passt, and kiln's frame filter between it
/// and QEMU. Dropping it kills passt's process group and stops the filter.
pub struct Outbound {
    passt: tokio::process::Child,
    _group: GroupGuard,
    relay: tokio::task::JoinHandle<()>,
    qemu_end: Option<StdUnixStream>,
    log: Tail,
}

impl Outbound {
    /// Starts passt (a supervised child: own process group, killed when kiln
    /// dies) forwarding 127.0.0.1:`ssh_port` to the guest's SSH, and the
    /// filter that keeps frames to `forbidden` from it. QEMU gets the socket
    /// [`Outbound::qemu_fd`].
    pub fn start(ssh_port: u16, forbidden: Forbidden) -> Result<Outbound, VmError> {
        let pair = |what| {
            StdUnixStream::pair().map_err(|source| VmError::Io {
                what,
                path: "a socket pair".into(),
                source,
            })
        };
        let (qemu_end, guest_side) = pair("create")?;
        let (passt_end, passt_side) = pair("create")?;
        let mut cmd = tokio::process::Command::new(PASST);
        cmd.args(passt_arguments(passt_end.as_raw_fd(), ssh_port))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        crate::util::process::supervise(&mut cmd, libc::SIGKILL);
        inherit_fd(&mut cmd, passt_end.as_raw_fd());
        let mut passt = cmd.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => VmError::Unusable(
                "the `outbound` network needs passt, which is not installed: install the Debian package `passt` (scripts/setup-host.sh), or choose `build.network: host` or `none`".into(),
            ),
            _ => VmError::Spawn {
                binary: PASST.into(),
                source,
            },
        })?;
        drop(passt_end);
        let group = GroupGuard::new(passt.id(), libc::SIGKILL);
        let log = Tail::default();
        if let Some(mut stderr) = passt.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                    log.push(&buf[..n]);
                }
            });
        }
        let tokio_stream = |s: StdUnixStream| {
            s.set_nonblocking(true)
                .and_then(|()| UnixStream::from_std(s))
                .map_err(|source| VmError::Io {
                    what: "use",
                    path: "a socket pair".into(),
                    source,
                })
        };
        let relay = tokio::spawn(relay(
            tokio_stream(guest_side)?,
            tokio_stream(passt_side)?,
            forbidden,
        ));
        Ok(Outbound {
            passt,
            _group: group,
            relay,
            qemu_end: Some(qemu_end),
            log,
        })
    }

    /// The socket QEMU's `-netdev stream` uses (until [`Outbound::attached`]).
    pub fn qemu_fd(&self) -> Option<RawFd> {
        self.qemu_end.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Takes QEMU's end of the socket pair, e.g. for a test that plays QEMU.
    pub fn take_qemu_end(&mut self) -> Option<StdUnixStream> {
        self.qemu_end.take()
    }

    /// QEMU has started with its end: kiln's copy is closed, so the network
    /// ends when QEMU does.
    pub fn attached(&mut self) {
        self.qemu_end = None;
    }

    /// Why passt is gone, if it is: its exit status and last messages.
    pub fn failure(&mut self) -> Option<String> {
        let status = self.passt.try_wait().ok().flatten()?;
        Some(format!("passt exited ({status}): {}", self.log.text()))
    }

    /// passt's process id (also its process group id).
    pub fn passt_pid(&self) -> Option<u32> {
        self.passt.id()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Copies frames between the guest (QEMU's stream: a 4-byte big-endian
/// length, then the frame) and passt (the same framing), dropping the
/// guest's frames that `forbidden` refuses. Ends when either side closes or
/// the guest sends a length over [`MAX_FRAME`].
async fn relay(guest: UnixStream, passt: UnixStream, forbidden: Forbidden) {
    let (mut from_guest, mut to_guest) = guest.into_split();
    let (mut from_passt, mut to_passt) = passt.into_split();
    let up = async {
        let mut buf = Vec::with_capacity(4 + 2048);
        loop {
            let mut len = [0u8; 4];
            if from_guest.read_exact(&mut len).await.is_err() {
                break;
            }
            let n = u32::from_be_bytes(len) as usize;
            if n > MAX_FRAME {
                break;
            }
            buf.clear();
            buf.extend_from_slice(&len);
            buf.resize(4 + n, 0);
            if from_guest.read_exact(&mut buf[4..]).await.is_err() {
                break;
            }
            if forbidden.allows_frame(&buf[4..]) && to_passt.write_all(&buf).await.is_err() {
                break;
            }
        }
    };
    let down = tokio::io::copy(&mut from_passt, &mut to_guest);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_frame(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        f
    }

    fn ipv6_frame(dst: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[14 + 24..14 + 40].copy_from_slice(&dst.octets());
        f
    }

    fn host() -> Forbidden {
        Forbidden::new(["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()])
    }

    #[test]
    fn the_host_and_metadata_are_refused() {
        let f = host();
        for dst in [
            [127, 0, 0, 1],
            [127, 1, 2, 3],
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [192, 0, 2, 2],
            [169, 254, 169, 254],
        ] {
            assert!(!f.allows_frame(&ipv4_frame(dst)), "{dst:?}");
        }
        for dst in [
            "::1",
            "::",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:0.0.0.0",
            "::ffff:192.0.2.2",
            "::ffff:169.254.169.254",
            "2001:db8::2",
            "fd00:ec2::254",
        ] {
            let ip: Ipv6Addr = dst.parse().unwrap();
            assert!(!f.allows_frame(&ipv6_frame(ip)), "{dst}");
        }
    }

    #[test]
    fn the_internet_the_lan_and_dhcp_pass() {
        let f = host();
        for dst in [
            [151, 101, 2, 132],
            [192, 0, 2, 1],
            [192, 0, 2, 3],
            [10, 0, 2, 2],
            [255, 255, 255, 255],
            [224, 0, 0, 251],
        ] {
            assert!(f.allows_frame(&ipv4_frame(dst)), "{dst:?}");
        }
        for dst in [
            "2a04:4e42::644",
            "ff02::1:2",
            "fe80::1",
            "::ffff:151.101.2.132",
        ] {
            let ip: Ipv6Addr = dst.parse().unwrap();
            assert!(f.allows_frame(&ipv6_frame(ip)), "{dst}");
        }
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(f.allows_frame(&arp));
    }

    #[test]
    fn odd_frames_are_dropped() {
        let f = host();
        assert!(!f.allows_frame(&[]));
        assert!(!f.allows_frame(&[0u8; 13]));
        // truncated headers
        assert!(!f.allows_frame(&ipv4_frame([1, 1, 1, 1])[..14 + 19]));
        assert!(!f.allows_frame(&ipv6_frame(Ipv6Addr::LOCALHOST)[..14 + 39]));
        // an IPv4 ethertype with an IPv6 header, and the reverse
        let mut v = ipv4_frame([1, 1, 1, 1]);
        v[14] = 0x60;
        assert!(!f.allows_frame(&v));
        let mut v = ipv6_frame("2a04:4e42::644".parse().unwrap());
        v[14] = 0x45;
        assert!(!f.allows_frame(&v));
        // a VLAN tag hiding an IPv4 packet to the loopback
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        tagged.extend_from_slice(&ipv4_frame([127, 0, 0, 1])[12..]);
        assert!(!f.allows_frame(&tagged));
    }

    #[test]
    fn this_host_forbids_its_own_addresses() {
        let f = Forbidden::this_host().unwrap();
        let own = host_addresses().unwrap();
        assert!(own.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{own:?}");
        for ip in own {
            assert!(!f.allows(ip), "{ip}");
        }
    }

    #[test]
    fn passt_command_line() {
        let a = passt_arguments(7, 2222).join(" ");
        assert_eq!(
            a,
            "--foreground --quiet --one-off --fd 7 --no-map-gw --tcp-ports 127.0.0.1/2222:22 --udp-ports none"
        );
    }

    #[test]
    fn outbound_is_the_default() {
        assert_eq!(Network::default(), Network::Outbound);
    }
}
