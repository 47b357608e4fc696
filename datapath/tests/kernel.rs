//! Namespaces, backend selection, errors and speed, against the kernel (run as root).

mod common;

use common::*;
use datapath::netns::NetNs;
use datapath::{Change, Datapath, Error, Kernel, Mode, Settings, Termination, Tunnel};

/// The namespace file's inode: two handles to the same namespace have the same one.
fn ns_inode(path: &std::path::Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[tokio::test]
async fn named_namespaces_work_like_iproute2s() {
    let name = unique("ns");
    let ns = NetNs::create(&name).unwrap();
    assert!(ns.path().starts_with("/run/netns"));
    // Taken names are refused.
    let again = NetNs::create(&name).unwrap_err();
    assert!(
        matches!(again, Error::NetNs { op: "create", .. }),
        "{again}"
    );

    // A closure runs inside it, on a thread whose namespace is the named one.
    let inside = ns
        .run(|| ns_inode(std::path::Path::new("/proc/thread-self/ns/net")))
        .unwrap();
    assert_eq!(inside, ns_inode(ns.path()));
    assert_ne!(inside, ns_inode(std::path::Path::new("/proc/self/ns/net")));

    // A child process is in it too (and sees only its loopback).
    let out = ns
        .command("cat")
        .unwrap()
        .arg("/proc/net/dev")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("lo:"), "{text}");
    assert_eq!(text.lines().count(), 3, "header lines and lo only: {text}");

    // An rtnetlink handle made for it lists its links, not ours.
    let nl = datapath::Netlink::connect_in(&ns).unwrap();
    assert_eq!(nl.link_index("lo").await.unwrap(), 1);
    assert!(matches!(
        nl.link_index("nonexistent0").await,
        Err(Error::NoSuchLink(_))
    ));

    let path = ns.path().to_owned();
    ns.delete().unwrap();
    assert!(!path.exists());
    assert!(NetNs::delete(&name).is_err(), "deleting twice fails");

    // Dropping the guard deletes the namespace.
    let dropped = NetNs::create(&unique("drop")).unwrap();
    let path = dropped.path().to_owned();
    assert!(path.exists());
    drop(dropped);
    assert!(!path.exists());
}

#[tokio::test]
async fn veth_addresses_mtu_and_sysctls() {
    let x = Node::new("x").await;
    let y = Node::new("y").await;
    link(&x, "vx", &y, "vy", 1540).await;
    let vx = x.index("vx").await;
    assert_eq!(x.nl.link_mtu(vx).await.unwrap(), 1540);
    x.addr("vx", "2001:db8:7::1", 64).await;
    assert_eq!(
        x.nl.link_with_address(a("2001:db8:7::1")).await.unwrap(),
        vx
    );
    x.nl.set_sysctl("net/ipv6/conf/vx/hop_limit", "33").unwrap();
    let read =
        x.ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/vx/hop_limit"))
            .unwrap()
            .unwrap();
    assert_eq!(read.trim(), "33");
    let e =
        x.nl.set_sysctl("net/ipv6/conf/nosuch/hop_limit", "1")
            .unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");
    x.nl.delete_link(vx).await.unwrap();
    assert!(
        y.nl.link_index("vy").await.is_err(),
        "the peer went with it"
    );
}

/// Auto prefers seg6, else ip6tnl, else the userspace tunnel (tun), as the probes find the
/// kernel; the probes leave no route behind (and no ip6tnl probe link, where ip6tnl exists),
/// and opening makes no device.
#[tokio::test]
async fn auto_mode_picks_seg6_else_ip6tnl_else_tun_and_cleans_up_its_probes() {
    let n = Node::new("auto").await;
    let peer = Node::new("peer").await;
    link(&n, "t0", &peer, "t0", 1500).await;
    let has_seg6 = datapath::probe_seg6(&n.nl).await.unwrap();
    let has_ip6tnl = datapath::probe_ip6tnl(&n.nl).await.unwrap();
    let want = if has_seg6 {
        "seg6"
    } else if has_ip6tnl {
        "ip6tnl"
    } else {
        assert!(datapath::tun::probe(), "a packet socket opens");
        "tun"
    };
    let links_before = link_names(&n);
    let settings = Settings::resolve(&n.nl, Some("t0"), a("::1"), None)
        .await
        .unwrap();
    let dp = Datapath::open(Mode::Auto, n.nl.clone(), settings)
        .await
        .unwrap();
    assert_eq!(
        dp.backend_name(),
        want,
        "seg6 {has_seg6}, ip6tnl {has_ip6tnl}"
    );
    if !has_seg6 {
        note(&format!(
            "auto_mode_picks_seg6_else_ip6tnl_else_tun_and_cleans_up_its_probes: auto picked \
             {want}; {SEG6_NOT_RUN}"
        ));
    }
    assert_eq!(link_names(&n), links_before, "no link made");
    let routes =
        n.ns.run(|| std::fs::read_to_string("/proc/thread-self/net/ipv6_route"))
            .unwrap()
            .unwrap();
    assert!(
        !routes.contains("20010db8ffffffff0000000000007e57"),
        "the probe route is gone:\n{routes}"
    );
    let _ = datapath::probe_ip6tnl(&n.nl).await.unwrap();
    assert!(
        n.nl.link_index(&format!("pmprobe{}", std::process::id() % 100_000_000))
            .await
            .is_err()
    );
    let none = Datapath::open(Mode::None, n.nl.clone(), Settings::new(0, 1500))
        .await
        .unwrap();
    assert_eq!(none.backend_name(), "none");
}

/// The names of a namespace's links.
fn link_names(n: &Node) -> Vec<String> {
    n.ip_output("-o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// A refusal says what was done to what, and the kernel's errno: for seg6 where the kernel
/// has it, and for the userspace tunnel (tun).
#[tokio::test]
async fn errors_name_operation_object_and_errno() {
    let n = Node::new("err").await;
    if datapath::probe_seg6(&n.nl).await.unwrap() {
        seg6_errors(&n).await;
    } else {
        note(&format!(
            "errors_name_operation_object_and_errno: the seg6 part was not run: {SEG6_MISSING}"
        ));
    }
    tun_errors().await;

    // Bad settings are refused before anything is sent.
    for tunnel in [Tunnel::Seg6, Tunnel::Tun] {
        let e = Kernel::open(n.nl.clone(), Settings::new(1, 1300), tunnel)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("below the IPv6 minimum"), "{e}");
    }
}

async fn seg6_errors(n: &Node) {
    // Link 999 does not exist.
    let k = Kernel::open(n.nl.clone(), Settings::new(999, 1500), Tunnel::Seg6)
        .await
        .unwrap();
    let dp = Datapath::Kernel(k);
    let e = dp
        .add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{text}");
    assert!(
        text.starts_with(
            "add route 2001:db8:100::/64 encap seg6 mode encap.red segs 2001:db8::2 dev #999"
        ),
        "{text}"
    );
    assert!(text.contains("No such device (os error 19)"), "{text}");

    // In a batch, the others still go in and the error counts the failed ones.
    let lo_route = Change::SetLinkRoute {
        prefix: net("2001:db8:1::/64"),
        ifindex: 1,
        local_routing: false,
    };
    let e = dp
        .apply(&[
            Change::SetDownlink {
                prefix: net("2001:db8:2::/64"),
                peer: a("2001:db8::2"),
            },
            lo_route,
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Batch {
                failed: 1,
                total: 2,
                ..
            }
        ),
        "{e}"
    );
    let Datapath::Kernel(k) = &dp else { panic!() };
    assert!(
        k.read_back()
            .await
            .unwrap()
            .routes
            .contains_key(&net("2001:db8:1::/64"))
    );
}

async fn tun_errors() {
    let n = &Node::new("errtun").await;
    let peer = Node::new("errpeer").await;
    link(n, "t0", &peer, "t0", 1500).await;
    n.addr("t0", "2001:db8::1", 64).await;
    let t0 = n.index("t0").await;
    let k = Kernel::open(n.nl.clone(), Settings::new(t0, 1500), Tunnel::Tun)
        .await
        .unwrap();
    let dp = Datapath::Kernel(k);
    // Without a local tunnel end a device has no address to send from.
    let e = dp
        .add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tunnel: a tunnel link (ip6tnl, tun) needs a local address: prepare a termination \
         first"
    );
    assert_eq!(e.errno(), None);

    // In a batch, the others still go in and the error counts the failed ones.
    let e = dp
        .apply(&[
            Change::SetDownlink {
                prefix: net("2001:db8:2::/64"),
                peer: a("2001:db8::2"),
            },
            Change::SetLinkRoute {
                prefix: net("2001:db8:1::/64"),
                ifindex: 1,
                local_routing: false,
            },
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Batch {
                failed: 1,
                total: 2,
                ..
            }
        ),
        "{e}"
    );
    let Datapath::Kernel(k) = &dp else { panic!() };
    let back = k.read_back().await.unwrap();
    assert!(
        back.routes.contains_key(&net("2001:db8:1::/64")),
        "{back:?}"
    );
    assert!(
        !back.routes.contains_key(&net("2001:db8:2::/64")),
        "{back:?}"
    );

    // The pair is refused: its name is taken by a link that is not the tunnel's (no alias
    // of it).
    n.ip("link add pmip6t0 type veth peer name pmip6x");
    dp.prepare_termination(Termination {
        local: a("2001:db8::1"),
        ifindex: t0,
    })
    .await
    .unwrap();
    let e = dp
        .add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "make tun pair pmip6t0: File exists (os error 17)"
    );
    assert_eq!(e.errno(), Some(libc::EEXIST));
    // The other link is left alone; once it is gone the pair is made.
    let veth = n.ip_output("link show pmip6t0");
    assert!(veth.contains("pmip6t0@pmip6x"), "{veth}");
    n.ip("link del pmip6t0");
    dp.add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await
        .unwrap();
    let device = n.ip_output("-d link show pmip6t0");
    assert!(
        device.contains("pmip6t0@pmip6t0io")
            && device.contains("NOARP")
            && device.contains("veth")
            && device.contains("alias pmip-tun 2001:db8::1 2001:db8::2"),
        "{device}"
    );
    dp.cleanup().await.unwrap();
    assert!(
        !link_names(n).iter().any(|l| l.starts_with("pmip6t")),
        "{:?}",
        link_names(n)
    );
}

/// Run here, the ip6tnl backend fails cleanly where the kernel lacks ip6_tunnel, naming the
/// link it tried to make; where the kernel has it, the link is made and the route uses it.
#[tokio::test]
async fn ip6tnl_backend_makes_a_link_per_peer_or_says_why_not() {
    let n = Node::new("ip6tnl").await;
    let peer = Node::new("peer").await;
    link(&n, "t0", &peer, "t0", 1500).await;
    n.addr("t0", "2001:db8::1", 64).await;
    let settings = Settings::resolve(&n.nl, Some("t0"), a("2001:db8::1"), None)
        .await
        .unwrap();
    let t0 = settings.transport_ifindex;
    let has_ip6tnl = datapath::probe_ip6tnl(&n.nl).await.unwrap();
    let dp = Datapath::open(Mode::Ip6tnl, n.nl.clone(), settings)
        .await
        .unwrap();
    // Without a local tunnel end there is no address to make the link with.
    let e = dp
        .add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("prepare a termination first"), "{e}");
    dp.prepare_termination(Termination {
        local: a("2001:db8::1"),
        ifindex: t0,
    })
    .await
    .unwrap();
    let added = dp
        .add_downlink(net("2001:db8:100::/64"), a("2001:db8::2"))
        .await;
    if has_ip6tnl {
        added.unwrap();
        let index = n.nl.link_index("pmip6t0").await.unwrap();
        assert_eq!(n.nl.link_mtu(index).await.unwrap(), 1460);
        dp.cleanup().await.unwrap();
        assert!(n.nl.link_index("pmip6t0").await.is_err());
    } else {
        let e = added.unwrap_err();
        assert!(e.to_string().starts_with("add link pmip6t0: "), "{e}");
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
    }
}

/// The sysctls tunnels need are written only when they differ, the values found are
/// recorded in the ledger file, a second run finds them set, and `restore` puts the found
/// values back and removes the file: for tun, and for seg6 where the kernel has its sysctls
/// (they exist without seg6 lightweight tunnels).
#[tokio::test]
async fn sysctls_are_set_once_recorded_and_restored() {
    sysctls_round_trip(Tunnel::Tun).await;
    let seg6 = std::path::Path::new("/proc/sys/net/ipv6/conf/all/seg6_enabled");
    if seg6.exists() {
        sysctls_round_trip(Tunnel::Seg6).await;
    } else {
        note(
            "sysctls_are_set_once_recorded_and_restored: the seg6 part was not run: this \
              kernel has no seg6 sysctls",
        );
    }
}

async fn sysctls_round_trip(tunnel: Tunnel) {
    use datapath::sysctl::{self, Ensured, Sysctl};
    let n = Node::new("sysctl").await;
    let peer = Node::new("peer").await;
    link(&n, "t0", &peer, "t0", 1500).await;
    n.addr("t0", "2001:db8::1", 64).await;
    let fwd = Sysctl::new("net/ipv6/conf/all/forwarding");
    let seg6_t0 = Sysctl::new("net/ipv6/conf/t0/seg6_enabled");
    assert_eq!(n.nl.read_sysctl(&fwd).unwrap(), "0");
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("sysctls");
    let mut settings = Settings::resolve(&n.nl, Some("t0"), a("2001:db8::1"), None)
        .await
        .unwrap();
    settings.sysctl_ledger = Some(ledger.clone());
    let dp = Datapath::open(mode(tunnel), n.nl.clone(), settings.clone())
        .await
        .unwrap();
    let done = dp.ensure_sysctls().await.unwrap();
    let first = done.clone();
    let names: Vec<String> = done.iter().map(|(k, _, _)| k.to_string()).collect();
    // seg6 needs its input turned on, for the ingress link too; the userspace tunnel's
    // ingress pair takes what the daemon sends into it whatever the sysctls say.
    let want: &[&str] = match tunnel {
        Tunnel::Seg6 => &[
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.all.seg6_enabled",
            "net.ipv6.conf.t0.seg6_enabled",
            "net.ipv4.ip_forward",
        ],
        _ => &["net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"],
    };
    assert_eq!(names, want);
    // IPv4 settings come from the host's (devconf_inherit_init_net): only the IPv6 ones are
    // known to start at 0.
    assert!(done.iter().all(|(_, v, _)| v == "1"), "{done:?}");
    assert!(
        done[..want.len() - 1].iter().all(|(_, _, e)| *e
            == Ensured::Changed {
                previous: "0".into()
            }),
        "{done:?}"
    );
    if tunnel == Tunnel::Seg6 {
        assert_eq!(n.nl.read_sysctl(&seg6_t0).unwrap(), "1");
    }
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(text.contains("net/ipv6/conf/all/forwarding=0\n"), "{text}");

    // A restarted daemon (a new backend on the same ledger) finds them set and keeps the
    // values recorded first.
    let again = Datapath::open(mode(tunnel), n.nl.clone(), settings)
        .await
        .unwrap();
    let done = again.ensure_sysctls().await.unwrap();
    assert!(
        done.iter().all(|(_, _, e)| *e == Ensured::AlreadySet),
        "{done:?}"
    );
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), text);

    let restored = sysctl::restore(&n.nl, &ledger).unwrap();
    let changed = first
        .iter()
        .filter(|(_, _, e)| matches!(e, Ensured::Changed { .. }))
        .count();
    assert_eq!(restored.len(), changed, "{restored:?}");
    assert_eq!(n.nl.read_sysctl(&fwd).unwrap(), "0");
    if tunnel == Tunnel::Seg6 {
        assert_eq!(n.nl.read_sysctl(&seg6_t0).unwrap(), "0");
    }
    assert!(!ledger.exists());
    assert!(sysctl::restore(&n.nl, &ledger).unwrap().is_empty());
}

/// As in a container that is not privileged: with `/proc/sys` mounted read-only, a sysctl
/// that has its value already is fine (nothing is written), and one that does not fails
/// with an error that names it and says where else it can be set.
#[test]
fn read_only_proc_sys_needs_only_what_is_missing() {
    use datapath::sysctl::{Ensured, Sysctl};
    let result = std::thread::spawn(|| {
        // This thread gets its own mount namespace, where /proc/sys is read-only; the
        // network namespace (and so the sysctls seen) stays the host's, which is not changed.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        use nix::mount::{MsFlags, mount};
        mount::<str, str, str, str>(None, "/", None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
            .unwrap();
        mount::<str, str, str, str>(Some("/proc/sys"), "/proc/sys", None, MsFlags::MS_BIND, None)
            .unwrap();
        mount::<str, str, str, str>(
            None,
            "/proc/sys",
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let nl = datapath::Netlink::connect().unwrap();
            let key = Sysctl::new("net/ipv6/conf/all/hop_limit");
            let now = nl.read_sysctl(&key).unwrap();
            let same = nl.ensure_sysctl(&key, &now).unwrap();
            let other = if now == "63" { "62" } else { "63" };
            let refused = nl.ensure_sysctl(&key, other).unwrap_err();
            (same, refused.to_string(), refused.errno())
        })
    })
    .join()
    .unwrap();
    assert_eq!(result.0, Ensured::AlreadySet);
    assert!(
        result.1.starts_with("sysctl net.ipv6.conf.all.hop_limit=6"),
        "{}",
        result.1
    );
    assert!(
        result.1.contains("privileged init container"),
        "{}",
        result.1
    );
    assert_eq!(result.2, Some(libc::EROFS));
}

/// A route through a gateway nobody answers for, preferred to the prefix's own route, holds
/// what the kernel forwards to the prefix; a permanent neighbor entry for the gateway
/// releases it in order; without the route the prefix's own route serves again. What the MAG
/// uses so that nothing overtakes a packet its fast-handover buffer still holds.
#[tokio::test]
async fn a_route_through_an_unresolved_gateway_holds_packets_until_the_neighbor_is_set() {
    let x = Node::new("holdx").await;
    let y = Node::new("holdy").await;
    link(&x, "vx", &y, "vy", 1500).await;
    x.nl.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        .unwrap();
    let (vx, vy) = (x.index("vx").await, y.index("vy").await);
    let node_mac = [0x02, 0, 0, 0x77, 0, 0x05];
    y.nl.set_link_address(vy, node_mac).await.unwrap();
    x.addr("lo", "2001:db8:78::1", 128).await;
    y.addr("vy", "2001:db8:77::5", 64).await;
    x.route("2001:db8:77::/64", None, "vx").await;
    let prefix = net("2001:db8:77::/64");
    let gw = a("fe80::ffff:200:77:5");
    x.nl.replace_route_via(prefix, gw, vx, 900, 4)
        .await
        .unwrap();

    let tx = x.udp("2001:db8:78::1", 0);
    let rx = y.udp("2001:db8:77::5", 9999);
    let to = rx.local_addr().unwrap();
    let send = |n: u8| {
        tx.send_to(&[n], to).unwrap();
    };
    for n in 0..3 {
        send(n);
    }
    assert!(
        receive(&rx).is_none(),
        "held while the gateway is unresolved"
    );

    x.nl.set_neighbor(vx, gw, node_mac).await.unwrap();
    send(3);
    x.nl.delete_route_at(prefix, vx, 900, 4).await.unwrap();
    x.nl.delete_neighbor(vx, gw).await.unwrap();
    // Both are gone; deleting again is no error.
    x.nl.delete_route_at(prefix, vx, 900, 4).await.unwrap();
    x.nl.delete_neighbor(vx, gw).await.unwrap();
    send(4);
    let mut got = Vec::new();
    while let Some(r) = receive(&rx) {
        got.push(r.payload[0]);
    }
    assert_eq!(
        got,
        [0, 1, 2, 3, 4],
        "released in order, then the prefix's own route"
    );
}
