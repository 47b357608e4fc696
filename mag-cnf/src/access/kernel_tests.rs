//! The capture path against the kernel with frames made by hand (run as root): a MAG
//! namespace whose access link `acc0` is a veth to a namespace where IPv6 is off, so nothing
//! but the frames sent here by a raw socket crosses the link, and every count is exact.

use std::sync::Arc;
use std::time::Duration;

use datapath::Netlink;
use datapath::netns::{NetNs, OwnedNetNs};
use pmip::types::LinkLayerAddress;
use tokio::sync::mpsc::Receiver;

use super::frame::tests::{SLLAO, frame_from, rs};
use super::links::LinkTable;
use super::monitor::Monitor;
use super::pattern::InterfacePatterns;
use super::{Access, AccessEvent, Counters, open_sockets, sys};

const MAG_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const NODE: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OTHER_NODE: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

/// The next event. The bound is generous: on a loaded machine (a workspace test run beside
/// builds) the access task waited more than 2 s for a turn; a passing run takes milliseconds.
async fn next(events: &mut Receiver<AccessEvent>) -> AccessEvent {
    tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("an event within 15 s")
        .expect("the access task runs")
}

async fn silence(events: &mut Receiver<AccessEvent>) {
    if let Ok(e) = tokio::time::timeout(Duration::from_millis(150), events.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

/// Waits until the counters reach `frames_read` (the frames are in flight), then checks
/// that they stay there.
async fn settle(access: &Access, frames_read: u64) -> super::AccessStats {
    for _ in 0..200 {
        if access.stats().frames_read >= frames_read {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    access.stats()
}

/// A MAG namespace whose access link `acc0` is a veth, up, to `eth0` of a silent node's
/// namespace (no IPv6 on its link, no IPv4 address); `tag` tells the tests' namespaces apart.
struct Pair {
    mag: OwnedNetNs,
    node: OwnedNetNs,
    mag_nl: Netlink,
    node_nl: Netlink,
    acc0: u32,
    eth0: u32,
}

async fn silent_node_pair(tag: &str) -> Pair {
    let pid = std::process::id();
    let mag = NetNs::create(&format!("pmipacc-{pid}-{tag}-m")).expect("MAG namespace");
    let node = NetNs::create(&format!("pmipacc-{pid}-{tag}-n")).expect("node namespace");
    let mag_nl = Netlink::connect_in(&mag).unwrap();
    let node_nl = Netlink::connect_in(&node).unwrap();
    mag_nl.add_veth("acc0", "eth0", &node).await.unwrap();
    let acc0 = mag_nl.link_index("acc0").await.unwrap();
    let eth0 = node_nl.link_index("eth0").await.unwrap();
    node_nl
        .set_sysctl("net/ipv6/conf/eth0/disable_ipv6", "1")
        .unwrap();
    node_nl.set_link_up(eth0, true).await.unwrap();
    mag_nl.set_link_up(acc0, true).await.unwrap();
    Pair {
        mag,
        node,
        mag_nl,
        node_nl,
        acc0,
        eth0,
    }
}

#[tokio::test]
async fn the_filter_passes_node_messages_only_and_the_frame_names_the_node() {
    let Pair {
        mag,
        node,
        mag_nl: _mag_nl,
        node_nl: _node_nl,
        acc0,
        eth0,
    } = silent_node_pair("k").await;

    let (access, mut events) = Access::start_in(&mag, &["acc*".to_owned()], MAG_MAC)
        .await
        .unwrap();
    assert!(
        matches!(next(&mut events).await, AccessEvent::LinkUp { ifindex, .. } if ifindex == acc0)
    );
    let raw = node.run(sys::send_socket).unwrap().unwrap();
    let send = |f: &[u8]| sys::send_frame(&raw, eth0, f).expect("send a frame");
    let start = access.stats();
    assert_eq!(start.frames_read, 0, "{start:?}");

    // 100 UDP datagrams, plain and behind a Hop-by-Hop header, and Echo Requests: none
    // reaches user space.
    for i in 0..100 {
        let f = match i % 3 {
            0 => frame_from(NODE, "fe80::1:1", "ff02::1", false, 17, &[0; 16], 64),
            1 => frame_from(NODE, "fe80::1:1", "ff02::1", true, 17, &[0; 16], 64),
            _ => frame_from(
                NODE,
                "fe80::1:1",
                "ff02::1",
                false,
                58,
                &[128, 0, 0, 0, 0, 0, 0, 0],
                64,
            ),
        };
        send(&f);
    }
    // A Router Solicitation from `::`: no source link-layer address option, the MAC comes
    // from the frame.
    send(&frame_from(
        NODE,
        "::",
        "ff02::2",
        false,
        58,
        &[133, 0, 0, 0, 0, 0, 0, 0],
        255,
    ));
    let node_ll = LinkLayerAddress::mac(NODE);
    assert_eq!(
        next(&mut events).await,
        AccessEvent::NodeSeen {
            ifindex: acc0,
            link_layer: node_ll
        }
    );
    assert_eq!(
        next(&mut events).await,
        AccessEvent::NodeHeard {
            ifindex: acc0,
            link_layer: node_ll,
            link_local: None,
        }
    );
    assert_eq!(
        next(&mut events).await,
        AccessEvent::RouterSolicitation {
            ifindex: acc0,
            link_layer: node_ll
        }
    );
    let s = settle(&access, 1).await;
    assert_eq!(
        s.frames_read, 1,
        "only the solicitation passed the filter: {s:?}"
    );
    assert_eq!(s.frames_ignored, 0);

    // A solicitation that claims the MAG's own MAC, and one forwarded by a router (hop
    // limit 64): read; the second shows the node is still there (Neighbor Unreachability
    // Detection), and is no solicitation.
    send(&frame_from(
        MAG_MAC,
        "::",
        "ff02::2",
        false,
        58,
        &[133, 0, 0, 0, 0, 0, 0, 0],
        255,
    ));
    send(&frame_from(
        NODE,
        "::",
        "ff02::2",
        false,
        58,
        &[133, 0, 0, 0, 0, 0, 0, 0],
        64,
    ));
    assert_eq!(
        next(&mut events).await,
        AccessEvent::NodeHeard {
            ifindex: acc0,
            link_layer: node_ll,
            link_local: None,
        }
    );
    silence(&mut events).await;
    let s = settle(&access, 3).await;
    assert_eq!((s.frames_read, s.frames_ignored), (3, 1), "{s:?}");

    // An MLDv2 report behind a Hop-by-Hop header from another MAC: a node seen.
    let mut mld = vec![143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
    mld.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 2, 2, 2]);
    send(&frame_from(OTHER_NODE, "::", "ff02::16", true, 58, &mld, 1));
    assert_eq!(
        next(&mut events).await,
        AccessEvent::NodeSeen {
            ifindex: acc0,
            link_layer: LinkLayerAddress::mac(OTHER_NODE)
        }
    );
    let heard = AccessEvent::NodeHeard {
        ifindex: acc0,
        link_layer: LinkLayerAddress::mac(OTHER_NODE),
        link_local: None,
    };
    assert_eq!(next(&mut events).await, heard);
    // Seen once, heard every time.
    send(&frame_from(OTHER_NODE, "::", "ff02::16", true, 58, &mld, 1));
    assert_eq!(next(&mut events).await, heard);
    silence(&mut events).await;
    let s = settle(&access, 5).await;
    assert_eq!(s.frames_read, 5, "{s:?}");
}

/// A frame the node sent just before its link went down, read after the report of the link
/// going down (as on a busy machine when the node moves on to another MAG), is stale: it
/// brings neither the link nor the node back. A frame read before the report of the link
/// coming up finds the link up (the monitor asks the kernel).
#[tokio::test]
async fn a_frame_read_after_its_link_went_down_brings_nothing_back() {
    let Pair {
        mag,
        node,
        mag_nl: _mag_nl,
        node_nl,
        acc0,
        eth0,
    } = silent_node_pair("s").await;

    let s = mag.run(open_sockets).unwrap().unwrap();
    let table = LinkTable::new(InterfacePatterns::new(&["acc*".to_owned()]), MAG_MAC);
    let mut monitor = Monitor::new(
        sys::register(s.netlink).unwrap(),
        sys::register(s.capture).unwrap(),
        table,
        Arc::new(Counters::default()),
    );
    monitor.initial_dump().await.unwrap();
    let up = AccessEvent::LinkUp {
        ifindex: acc0,
        name: "acc0".into(),
        mtu: 1500,
    };
    assert_eq!(monitor.read_links().unwrap(), vec![up.clone()]);

    let raw = node.run(sys::send_socket).unwrap().unwrap();
    let solicitation = frame_from(NODE, "fe80::1:1", "ff02::2", false, 58, &rs(&SLLAO), 255);
    // Sent while the link is up; the link goes down, and its report is read before the frame.
    sys::send_frame(&raw, eth0, &solicitation).unwrap();
    node_nl.set_link_up(eth0, false).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..300 {
        events.extend(monitor.read_links().unwrap());
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(events, vec![AccessEvent::LinkDown { ifindex: acc0 }]);
    assert_eq!(
        monitor.read_frames().unwrap(),
        vec![],
        "a stale frame announced the link or the node"
    );

    // Up again: the node's frame is read before the report of the carrier (the kernel sends
    // it from a work item, up to a second later).
    node_nl.set_link_up(eth0, true).await.unwrap();
    sys::send_frame(&raw, eth0, &solicitation).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ll = LinkLayerAddress::mac(NODE);
    assert_eq!(
        monitor.read_frames().unwrap(),
        vec![
            up,
            AccessEvent::NodeSeen {
                ifindex: acc0,
                link_layer: ll
            },
            AccessEvent::NodeHeard {
                ifindex: acc0,
                link_layer: ll,
                link_local: Some("fe80::1:1".parse().unwrap()),
            },
            AccessEvent::RouterSolicitation {
                ifindex: acc0,
                link_layer: ll
            },
        ]
    );
    // The late report changes nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(monitor.read_links().unwrap(), vec![]);
}
