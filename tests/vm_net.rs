//! The build VMs' networks without a guest: the test writes the frames a
//! hostile root guest could write (a TCP SYN to any address it likes).
//! `outbound`: the test plays QEMU on kiln's end of the socket pair; against
//! passt alone such a SYN reaches a service on the host's 127.0.0.1, through
//! kiln's frame filter no frame to the host does, while ARP, the SSH
//! forward, and passt's exit with kiln's network still work. `none` and
//! `host`: real QEMU (the probe VM) with kiln's user-network netdev, whose
//! card is replaced by a socket the test holds. Needs the `passt` package.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln::vm::accel;
use kiln::vm::net::{self, Forbidden, Network, Outbound};
use kiln::vm::qemu::{self, Accel, Nic};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6]; // passt takes any destination MAC
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A TCP SYN header whose checksum covers `pseudo_header` (the IP
/// version's pseudo header, the TCP length included).
fn tcp_syn(src_port: u16, dst_port: u16, pseudo_header: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src_port.to_be_bytes());
    tcp.extend_from_slice(&dst_port.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes()); // sequence
    tcp.extend_from_slice(&0u32.to_be_bytes()); // ack
    tcp.extend_from_slice(&[5 << 4, 0x02]); // header length, SYN
    tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let c = checksum(&[pseudo_header, &tcp].concat());
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    tcp
}

const TCP_LEN: u16 = 20;

/// An Ethernet frame with a TCP SYN from the guest's `src` to `dst:port`
/// (an IPv6 packet when either address is IPv6).
fn syn(src: IpAddr, dst: IpAddr, src_port: u16, port: u16) -> Vec<u8> {
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        let pseudo = [
            &s.octets()[..],
            &d.octets(),
            &[0, 6],
            &TCP_LEN.to_be_bytes(),
        ]
        .concat();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + TCP_LEN).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&s.octets());
        ip.extend_from_slice(&d.octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&tcp_syn(src_port, port, &pseudo));
        return ethernet(0x0800, &ip);
    }
    let to6 = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let (s, d) = (to6(src), to6(dst));
    let pseudo = [
        &s.octets()[..],
        &d.octets(),
        &u32::from(TCP_LEN).to_be_bytes(),
        &[0, 0, 0, 6],
    ]
    .concat();
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&TCP_LEN.to_be_bytes());
    ip.extend_from_slice(&[6, 64]);
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    ip.extend_from_slice(&tcp_syn(src_port, port, &pseudo));
    ethernet(0x86dd, &ip)
}

/// An ARP request from the guest for `target`.
fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&GUEST_MAC);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet(0x0806, &arp)
}

/// Sends `frame` the way QEMU's stream netdev does: length, then frame.
fn send(qemu_end: &mut UnixStream, frame: &[u8]) {
    qemu_end
        .write_all(&(frame.len() as u32).to_be_bytes())
        .unwrap();
    qemu_end.write_all(frame).unwrap();
}

/// Reads frames sent to the guest until one satisfies `wanted`.
fn receive_until(qemu_end: &mut UnixStream, what: &str, wanted: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    qemu_end
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    loop {
        assert!(Instant::now() < deadline, "no {what} reached the guest");
        let mut len = [0u8; 4];
        match qemu_end.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("the guest's socket failed: {e}"),
        }
        qemu_end.set_read_timeout(None).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        qemu_end.read_exact(&mut frame).unwrap();
        qemu_end
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if wanted(&frame) {
            return;
        }
    }
}

/// The default route's gateway, from /proc/net/route.
fn gateway() -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000"))
            .then(|| u32::from_str_radix(f.get(2)?, 16).ok())
            .flatten()
            .map(|g| Ipv4Addr::from(g.swap_bytes()))
    })
}

/// A listener on every address of the host (IPv4 and, if the host has it,
/// IPv6) at one port: whatever host address a SYN names, it lands here.
struct HostService {
    listeners: Vec<TcpListener>,
    port: u16,
}

impl HostService {
    fn new() -> HostService {
        let v4 = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let mut listeners = vec![v4];
        // v6-only, beside the IPv4 listener (fails where the host has no IPv6)
        if let Ok(v6) = bind_v6_only(port) {
            listeners.push(v6);
        }
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        HostService { listeners, port }
    }

    /// The peers that connected so far.
    fn connections(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for l in &self.listeners {
            while let Ok((_, peer)) = l.accept() {
                out.push(peer);
            }
        }
        out
    }
}

fn bind_v6_only(port: u16) -> std::io::Result<TcpListener> {
    // SAFETY: plain socket calls on a descriptor this function owns; on
    // success it moves into the TcpListener.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let listener = <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let mut addr: libc::sockaddr_in6 = std::mem::zeroed();
        addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        addr.sin6_port = port.to_be();
        let ok = libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::bind(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ) == 0
            && libc::listen(fd, 16) == 0;
        if ok {
            Ok(listener)
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// The host addresses a guest may not reach, as SYN destinations.
fn forbidden_destinations() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(127, 0, 0, 2).into(),
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv6Addr::LOCALHOST.into(),
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
    ];
    // with the gateway mapped (passt's default) it would be the host's 127.0.0.1
    out.extend(gateway().map(IpAddr::V4));
    for a in net::host_addresses().unwrap() {
        let link_local = matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !out.contains(&a) && !link_local {
            out.push(a);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_reach_the_host_through_outbound() {
    let service = HostService::new();
    let guest_ip: IpAddr = Ipv4Addr::new(192, 0, 2, 2).into();

    // the attack, against passt alone (with kiln's passt arguments)
    let (mut raw, passt_end) = UnixStream::pair().unwrap();
    let ssh_port = kiln::vm::qemu::free_port().unwrap();
    let fd = passt_end.as_raw_fd();
    let mut bare = {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(net::PASST);
        cmd.args(net::passt_arguments(fd, ssh_port))
            .stderr(Stdio::null());
        // SAFETY: fcntl only, between fork and exec
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd.spawn()
            .expect("passt is installed (scripts/setup-host.sh)")
    };
    drop(passt_end);
    send(
        &mut raw,
        &syn(guest_ip, Ipv4Addr::LOCALHOST.into(), 40000, service.port),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reached = service.connections();
    while reached.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        reached = service.connections();
    }
    assert!(
        !reached.is_empty(),
        "passt alone did not connect a guest's SYN to 127.0.0.1: the check below would prove nothing"
    );
    drop(raw);
    bare.kill().ok();
    bare.wait().unwrap();

    // the same, and every other way to the host, through kiln's filter
    let ssh_port = kiln::vm::qemu::free_port().unwrap();
    let mut outbound = Outbound::start(ssh_port, Forbidden::this_host().unwrap()).unwrap();
    let mut guest = outbound.take_qemu_end().unwrap();
    let passt_pid = outbound.passt_pid().unwrap();
    let destinations = forbidden_destinations();
    for (i, dst) in destinations.iter().enumerate() {
        let src = match dst {
            IpAddr::V4(_) => guest_ip,
            IpAddr::V6(_) => "fd00::2".parse().unwrap(),
        };
        send(&mut guest, &syn(src, *dst, 41000 + i as u16, service.port));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        service.connections(),
        Vec::<SocketAddr>::new(),
        "SYNs to {destinations:?} reached the host"
    );

    // frames still flow both ways: ARP is answered, the SSH forward comes in
    let gw = gateway().unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
    let IpAddr::V4(sender) = guest_ip else {
        unreachable!()
    };
    send(&mut guest, &arp_request(sender, gw));
    receive_until(&mut guest, "ARP reply", |f| {
        f.get(12..14) == Some(&[0x08, 0x06]) && f.get(20..22) == Some(&[0, 2])
    });
    let _client = TcpStream::connect(("127.0.0.1", ssh_port)).unwrap();
    receive_until(&mut guest, "SYN to the guest's port 22", |f| {
        f.get(12..14) == Some(&[0x08, 0x00])
            && f.get(14 + 20 + 2..14 + 20 + 4) == Some(&22u16.to_be_bytes())
    });

    // passt ends with kiln's network
    assert!(running(passt_pid));
    drop(guest);
    drop(outbound);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(passt_pid) {
        assert!(
            Instant::now() < deadline,
            "passt {passt_pid} outlived its network"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A DHCP discover from the guest (UDP checksum 0: none, as IPv4 allows).
fn dhcp_discover() -> Vec<u8> {
    let mut bootp = vec![1, 1, 6, 0, 0x4b, 0x49, 0x4c, 0x4e];
    bootp.resize(28, 0);
    bootp.extend_from_slice(&GUEST_MAC);
    bootp.resize(236, 0);
    bootp.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255]);
    let mut udp = Vec::new();
    udp.extend_from_slice(&68u16.to_be_bytes());
    udp.extend_from_slice(&67u16.to_be_bytes());
    udp.extend_from_slice(&((8 + bootp.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&bootp);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    ethernet(0x0800, &ip)
}

/// QEMU (the probe VM, so it runs without a guest OS) with the user-network
/// netdev kiln gives `network`; its card is replaced by a socket whose other
/// end is returned, joined to the netdev by a hub. Killed on drop.
struct UserNetwork {
    qemu: std::process::Child,
    guest: UnixStream,
    _dir: tempfile::TempDir,
}

impl UserNetwork {
    fn start(network: Network) -> UserNetwork {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = accel::probe_config(Accel::Tcg, dir.path()).unwrap();
        cfg.name = "net-test".into();
        cfg.exit_on_reboot = false;
        cfg.ssh_port = Some(qemu::free_port().unwrap());
        cfg.network = network;
        let mut args = qemu::arguments(&cfg, Nic::of(&cfg, None));
        let card = args
            .iter()
            .position(|a| a == "virtio-net-pci,netdev=net0")
            .expect("a virtio card on net0");
        args.drain(card - 1..=card);
        let (guest, qemu_end) = UnixStream::pair().unwrap();
        let fd = qemu_end.as_raw_fd();
        for a in [
            "-netdev".to_string(),
            format!("socket,id=test,fd={fd}"),
            "-netdev".into(),
            "hubport,id=p0,hubid=0,netdev=net0".into(),
            "-netdev".into(),
            "hubport,id=p1,hubid=0,netdev=test".into(),
        ] {
            args.push(a);
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: fcntl only, between fork and exec
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let qemu = cmd.spawn().unwrap();
        drop(qemu_end);
        UserNetwork {
            qemu,
            guest,
            _dir: dir,
        }
    }
}

impl Drop for UserNetwork {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// The host's first IPv4 address that is not a loopback one.
fn host_ipv4() -> Ipv4Addr {
    net::host_addresses()
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
            _ => None,
        })
        .expect("an IPv4 address besides the loopback")
}

#[test]
fn none_reaches_nothing_and_host_reaches_the_loopback() {
    let service = HostService::new();
    let guest_ip: IpAddr = Ipv4Addr::new(10, 0, 2, 15).into();
    let slirp_host: IpAddr = Ipv4Addr::new(10, 0, 2, 2).into();

    // none: DHCP answers, but neither the host (10.0.2.2 is its 127.0.0.1)
    // nor any other address (here the host's own, as the LAN would see it)
    let mut none = UserNetwork::start(Network::None);
    send(
        &mut none.guest,
        &syn(guest_ip, slirp_host, 40000, service.port),
    );
    send(
        &mut none.guest,
        &syn(guest_ip, host_ipv4().into(), 40001, service.port),
    );
    send(&mut none.guest, &dhcp_discover());
    receive_until(&mut none.guest, "DHCP offer", |f| {
        f.get(12..14) == Some(&[0x08, 0x00]) && f.get(34..38) == Some(&[0, 67, 0, 68])
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        service.connections(),
        Vec::<SocketAddr>::new(),
        "a guest of the `none` network reached the host"
    );
    drop(none);

    // host: 10.0.2.2 is the host's 127.0.0.1 (what `outbound` prevents)
    let mut host = UserNetwork::start(Network::Host);
    send(
        &mut host.guest,
        &syn(guest_ip, slirp_host, 40002, service.port),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reached = service.connections();
    while reached.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        reached = service.connections();
    }
    assert!(
        reached.iter().any(|p| p.ip().is_loopback()),
        "a guest of the `host` network did not reach the host's loopback: {reached:?}"
    );
}

/// Runs in two roles: the test re-runs this binary as a "kiln" that starts
/// an `outbound` network and waits; the test kills it with SIGKILL and
/// checks that passt ended with it. (As root, passt drops to `nobody`, which
/// clears its parent-death signal: it ends because its socket closes.)
#[test]
fn passt_dies_when_kiln_is_killed() {
    if let Ok(dir) = std::env::var("KILN_TEST_NET_HOLDER") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let port = qemu::free_port().unwrap();
            let mut outbound = Outbound::start(port, Forbidden::this_host().unwrap()).unwrap();
            let _guest = outbound.take_qemu_end().unwrap();
            let pid = outbound.passt_pid().unwrap();
            std::fs::write(
                std::path::Path::new(&dir).join("passt.pid"),
                pid.to_string(),
            )
            .unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "passt_dies_when_kiln_is_killed", "--nocapture"])
        .env("KILN_TEST_NET_HOLDER", dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("passt.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the holder never started passt");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let passt: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(running(passt));
    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(passt) {
        assert!(
            Instant::now() < deadline,
            "passt {passt} outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
