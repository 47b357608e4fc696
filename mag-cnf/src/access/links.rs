//! The access links as the kernel reports them, and which [`AccessEvent`]s each report and
//! each frame from a node make. Pure: the task in `monitor.rs` feeds it netlink messages and
//! frames.
//!
//! A link is *up* when its name matches the access patterns, it is an Ethernet link, it is
//! administratively up (IFF_UP), it has carrier (IFF_LOWER_UP), and it is not dormant
//! (IFF_DORMANT, or an operational state of dormant, testing or not-present: RFC 2863, e.g.
//! a Wi-Fi link not yet authenticated). A frame received from a node on a matching link also
//! proves it up: the kernel announces a carrier change only when its link watcher runs,
//! which for a physical NIC can be a second after frames flow.

use std::collections::{HashMap, HashSet};

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, State};
use pmip::types::LinkLayerAddress;

use super::AccessEvent;
use super::frame::Heard;
use super::pattern::InterfacePatterns;

/// What one RTM_NEWLINK says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkReport {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub ethernet: bool,
    pub admin_up: bool,
    pub carrier: bool,
    pub dormant: bool,
}

impl LinkReport {
    pub fn parse(m: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut mtu = 0;
        let mut mac = None;
        let mut oper_dormant = false;
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Mtu(v) => mtu = *v,
                LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::OperState(s) => {
                    oper_dormant = matches!(s, State::Dormant | State::Testing | State::NotPresent)
                }
                _ => {}
            }
        }
        let flags = m.header.flags;
        Some(Self {
            index: m.header.index,
            name: name?,
            mtu,
            mac,
            ethernet: m.header.link_layer_type == LinkLayerType::Ether,
            admin_up: flags.contains(LinkFlags::Up),
            carrier: flags.contains(LinkFlags::LowerUp),
            dormant: flags.contains(LinkFlags::Dormant) || oper_dormant,
        })
    }
}

#[derive(Debug)]
struct Link {
    report: LinkReport,
    /// Name and MTU of the last LinkUp sent, while the link is up.
    announced: Option<(String, u32)>,
    /// Nodes announced with NodeSeen since the link came up.
    nodes: HashSet<[u8; 6]>,
    /// Seen in the current full dump.
    in_dump: bool,
}

impl Link {
    fn is_up(&self) -> bool {
        let r = &self.report;
        r.admin_up && r.carrier && !r.dormant
    }
}

/// The matching links of one network namespace.
#[derive(Debug)]
pub(crate) struct LinkTable {
    patterns: InterfacePatterns,
    own_mac: [u8; 6],
    links: HashMap<u32, Link>,
}

/// What to make of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameVerdict {
    /// Reported (or not news).
    Taken,
    /// From the MAG itself.
    Own,
    /// Not on an access link, as far as the table knows.
    NotAccess,
    /// On an access link that is down: captured before it went down, read after.
    Stale,
}

impl LinkTable {
    pub fn new(patterns: InterfacePatterns, own_mac: [u8; 6]) -> Self {
        Self {
            patterns,
            own_mac,
            links: HashMap::new(),
        }
    }

    /// Whether link `index` is an access link (up or not).
    pub fn is_access(&self, index: u32) -> bool {
        self.links.contains_key(&index)
    }

    /// Whether link `index` is an access link that was reported up.
    pub fn is_announced(&self, index: u32) -> bool {
        self.links
            .get(&index)
            .is_some_and(|l| l.announced.is_some())
    }

    /// An RTM_NEWLINK (from a dump or an event).
    pub fn report(&mut self, r: LinkReport, out: &mut Vec<AccessEvent>) {
        if !(r.ethernet && self.patterns.matches(&r.name)) {
            if self.links.contains_key(&r.index) {
                // Renamed away from the patterns, or no longer Ethernet.
                self.remove(r.index, out);
            } else if self.patterns.matches(&r.name) {
                tracing::warn!(link = %r.name, "access link is not Ethernet: ignored");
            }
            return;
        }
        let index = r.index;
        let link = self.links.entry(index).or_insert_with(|| Link {
            report: r.clone(),
            announced: None,
            nodes: HashSet::new(),
            in_dump: true,
        });
        link.report = r;
        link.in_dump = true;
        Self::announce(index, link, out);
    }

    /// An RTM_DELLINK: deleted, or moved to another namespace.
    pub fn remove(&mut self, index: u32, out: &mut Vec<AccessEvent>) {
        if let Some(link) = self.links.remove(&index)
            && link.announced.is_some()
        {
            out.push(AccessEvent::LinkDown { ifindex: index });
        }
    }

    /// A full dump starts: links it does not list are gone (their RTM_DELLINK was lost).
    pub fn begin_dump(&mut self) {
        for l in self.links.values_mut() {
            l.in_dump = false;
        }
    }

    pub fn end_dump(&mut self, out: &mut Vec<AccessEvent>) {
        let gone: Vec<u32> = self
            .links
            .iter()
            .filter(|(_, l)| !l.in_dump)
            .map(|(i, _)| *i)
            .collect();
        for i in gone {
            self.remove(i, out);
        }
    }

    /// A frame from a node on link `index`.
    pub fn heard(&mut self, index: u32, h: Heard, out: &mut Vec<AccessEvent>) -> FrameVerdict {
        let own = self.own_mac;
        let Some(link) = self.links.get_mut(&index) else {
            return FrameVerdict::NotAccess;
        };
        if h.source == own || Some(h.source) == link.report.mac {
            return FrameVerdict::Own;
        }
        if link.announced.is_none() {
            return FrameVerdict::Stale;
        }
        let link_layer = LinkLayerAddress::mac(h.source);
        if link.nodes.insert(h.source) {
            out.push(AccessEvent::NodeSeen {
                ifindex: index,
                link_layer,
            });
        }
        out.push(AccessEvent::NodeHeard {
            ifindex: index,
            link_layer,
            link_local: h.link_local,
        });
        if h.router_solicitation {
            out.push(AccessEvent::RouterSolicitation {
                ifindex: index,
                link_layer,
            });
        }
        FrameVerdict::Taken
    }

    /// LinkUp when the link came up or its name or MTU changed while up; LinkDown when it
    /// went down.
    fn announce(index: u32, link: &mut Link, out: &mut Vec<AccessEvent>) {
        if link.is_up() {
            let now = (link.report.name.clone(), link.report.mtu);
            if link.announced.as_ref() != Some(&now) {
                out.push(AccessEvent::LinkUp {
                    ifindex: index,
                    name: now.0.clone(),
                    mtu: now.1,
                });
                link.announced = Some(now);
            }
        } else if link.announced.take().is_some() {
            link.nodes.clear();
            out.push(AccessEvent::LinkDown { ifindex: index });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 1];
    const NODE: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
    const LINK_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 7];

    fn table() -> LinkTable {
        LinkTable::new(InterfacePatterns::new(&["acc*".to_owned()]), OWN)
    }

    fn report(index: u32, name: &str, up: bool, carrier: bool) -> LinkReport {
        LinkReport {
            index,
            name: name.to_owned(),
            mtu: 1500,
            mac: Some(LINK_MAC),
            ethernet: true,
            admin_up: up,
            carrier,
            dormant: false,
        }
    }

    fn heard(rs: bool) -> Heard {
        Heard {
            source: NODE,
            router_solicitation: rs,
            link_local: None,
        }
    }

    fn up(index: u32, name: &str) -> AccessEvent {
        AccessEvent::LinkUp {
            ifindex: index,
            name: name.to_owned(),
            mtu: 1500,
        }
    }

    #[test]
    fn a_link_is_up_with_admin_state_and_carrier() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", false, false), &mut out);
        t.report(report(5, "acc0", true, false), &mut out);
        assert_eq!(out, vec![]);
        t.report(report(5, "acc0", true, true), &mut out);
        assert_eq!(out, vec![up(5, "acc0")]);
        // The same again is no news.
        t.report(report(5, "acc0", true, true), &mut out);
        assert_eq!(out.len(), 1);
        t.report(report(5, "acc0", true, false), &mut out);
        assert_eq!(out[1], AccessEvent::LinkDown { ifindex: 5 });
        let mut dormant = report(5, "acc0", true, true);
        dormant.dormant = true;
        t.report(dormant, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn other_links_are_ignored() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(2, "eth0", true, true), &mut out);
        let mut tun = report(3, "acc-tun", true, true);
        tun.ethernet = false;
        t.report(tun, &mut out);
        assert_eq!(out, vec![]);
        assert!(!t.is_access(2));
        assert_eq!(t.heard(2, heard(true), &mut out), FrameVerdict::NotAccess);
        assert_eq!(out, vec![]);
    }

    #[test]
    fn mtu_change_announces_again_and_rename_away_goes_down() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", true, true), &mut out);
        let mut r = report(5, "acc0", true, true);
        r.mtu = 1400;
        t.report(r, &mut out);
        assert_eq!(
            out[1],
            AccessEvent::LinkUp {
                ifindex: 5,
                name: "acc0".into(),
                mtu: 1400
            }
        );
        t.report(report(5, "uplink", true, true), &mut out);
        assert_eq!(out[2], AccessEvent::LinkDown { ifindex: 5 });
        assert!(!t.is_access(5));
    }

    #[test]
    fn nodes_are_seen_once_per_link_until_it_goes_down() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", true, true), &mut out);
        out.clear();
        let ll = LinkLayerAddress::mac(NODE);
        assert_eq!(t.heard(5, heard(false), &mut out), FrameVerdict::Taken);
        assert_eq!(t.heard(5, heard(true), &mut out), FrameVerdict::Taken);
        assert_eq!(t.heard(5, heard(true), &mut out), FrameVerdict::Taken);
        let rs = AccessEvent::RouterSolicitation {
            ifindex: 5,
            link_layer: ll,
        };
        let seen = AccessEvent::NodeSeen {
            ifindex: 5,
            link_layer: ll,
        };
        // Every frame is heard (for Neighbor Unreachability Detection), the node seen once.
        let again = AccessEvent::NodeHeard {
            ifindex: 5,
            link_layer: ll,
            link_local: None,
        };
        assert_eq!(
            out,
            vec![
                seen.clone(),
                again.clone(),
                again.clone(),
                rs.clone(),
                again.clone(),
                rs.clone()
            ]
        );
        out.clear();
        t.report(report(5, "acc0", true, false), &mut out);
        t.report(report(5, "acc0", true, true), &mut out);
        t.heard(5, heard(true), &mut out);
        assert_eq!(
            out,
            vec![
                AccessEvent::LinkDown { ifindex: 5 },
                up(5, "acc0"),
                seen,
                again,
                rs
            ]
        );
    }

    #[test]
    fn the_mags_own_frames_are_ignored() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", true, true), &mut out);
        out.clear();
        for source in [OWN, LINK_MAC] {
            let h = Heard {
                source,
                router_solicitation: true,
                link_local: None,
            };
            assert_eq!(t.heard(5, h, &mut out), FrameVerdict::Own);
        }
        assert_eq!(out, vec![]);
    }

    /// Only the link's reports say whether it is up (the monitor asks for a fresh one before
    /// a frame from a link that is not up): a frame from a link reported down was captured
    /// before it went down, and announces neither the link nor the node.
    #[test]
    fn a_frame_from_a_link_reported_down_is_stale() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", true, true), &mut out);
        t.report(report(5, "acc0", true, false), &mut out);
        out.clear();
        assert_eq!(t.heard(5, heard(false), &mut out), FrameVerdict::Stale);
        assert_eq!(t.heard(5, heard(true), &mut out), FrameVerdict::Stale);
        assert_eq!(out, vec![]);
        // Back up: the node is new on the link again.
        t.report(report(5, "acc0", true, true), &mut out);
        assert_eq!(t.heard(5, heard(false), &mut out), FrameVerdict::Taken);
        assert_eq!(
            out,
            vec![
                up(5, "acc0"),
                AccessEvent::NodeSeen {
                    ifindex: 5,
                    link_layer: LinkLayerAddress::mac(NODE)
                },
                AccessEvent::NodeHeard {
                    ifindex: 5,
                    link_layer: LinkLayerAddress::mac(NODE),
                    link_local: None,
                }
            ]
        );
    }

    #[test]
    fn deleted_moved_or_missing_from_a_dump_goes_down() {
        let mut t = table();
        let mut out = vec![];
        t.report(report(5, "acc0", true, true), &mut out);
        t.report(report(6, "acc1", true, true), &mut out);
        t.report(report(7, "acc2", true, false), &mut out);
        out.clear();
        t.remove(5, &mut out);
        t.remove(5, &mut out);
        t.remove(7, &mut out);
        assert_eq!(out, vec![AccessEvent::LinkDown { ifindex: 5 }]);
        out.clear();
        t.begin_dump();
        t.report(report(8, "acc3", true, true), &mut out);
        t.end_dump(&mut out);
        assert_eq!(
            out,
            vec![up(8, "acc3"), AccessEvent::LinkDown { ifindex: 6 }]
        );
        assert!(t.is_access(8) && !t.is_access(6));
    }
}
