//! Nexthop objects (Linux 5.3 and later, `ip nexthop`): the backends with a link per peer
//! (ip6tnl, tun) give each peer's link one, and every route into that link names it by id
//! (`RTA_NH_ID`) instead of carrying a nexthop of its own. A route with a nexthop of its own
//! makes the kernel set one up per route (per-CPU route caches and all), which was about
//! two fifths of the kernel's time adding a route; a route naming a shared object does not.
//! Pure code: the messages and what a dump says; [`crate::netlink`] sends and reads them.
//!
//! ```text
//! struct nhmsg { u8 nh_family, nh_scope, nh_protocol, resvd; u32 nh_flags; }  (linux/nexthop.h)
//! NHA_ID u32, NHA_GROUP, NHA_BLACKHOLE flag, NHA_OIF u32, NHA_GATEWAY, NHA_ENCAP_TYPE,
//! NHA_ENCAP, NHA_FDB flag
//! ```
//!
//! The kernel removes a nexthop object with its device, and every route that names it. It
//! also flushes the objects of a device that loses its carrier, which the userspace tunnel's
//! veth pairs do only when someone sets one of their ends down (a reconcile makes such a pair
//! again) and ip6tnl links never do: that is why the seg6 routes, on the transport link, keep
//! nexthops of their own.

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST};

use crate::dump::{AF_INET6, Attributes, NLMSG_HDR_LEN, u32_value};

/// `RTM_NEWNEXTHOP`: a nexthop of a dump, or the request to make one.
pub(crate) const RTM_NEWNEXTHOP: u16 = 104;
/// `RTM_DELNEXTHOP`
pub(crate) const RTM_DELNEXTHOP: u16 = 105;
/// `RTM_GETNEXTHOP`
pub(crate) const RTM_GETNEXTHOP: u16 = 106;

const NHMSG_LEN: usize = 8;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHA_ENCAP_TYPE: u16 = 7;
const NHA_ENCAP: u16 = 8;
const NHA_FDB: u16 = 11;

/// A nexthop object as a dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KNexthop {
    pub id: u32,
    pub protocol: u8,
    /// Whether it is of the IPv6 family (which IPv4 routes may name too; IPv6 routes may
    /// name only those).
    pub ipv6: bool,
    /// The device of a nexthop that is only a device (no gateway, group, encapsulation,
    /// blackhole or bridge entry); `None` for any other.
    pub dev: Option<u32>,
}

impl KNexthop {
    /// Whether it is the object a route into link `oif` of this owner names.
    pub(crate) fn is(&self, protocol: u8, oif: u32) -> bool {
        self.protocol == protocol && self.ipv6 && self.dev == Some(oif)
    }
}

/// A nexthop object to make (or replace) or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NexthopChange {
    /// The IPv6 nexthop `id` into device `oif`, of owner `protocol`.
    Set {
        id: u32,
        oif: u32,
        protocol: u8,
    },
    Delete {
        id: u32,
    },
}

/// Reads one `RTM_NEWNEXTHOP` body (`nhmsg` and attributes); `None` when it does not add up
/// or has no id.
pub(crate) fn parse_nexthop(body: &[u8]) -> Option<KNexthop> {
    let header = body.get(..NHMSG_LEN)?;
    let (family, protocol) = (header[0], header[2]);
    let mut id = None;
    let mut oif = None;
    let mut plain = true;
    let mut attrs = Attributes::new(body.get(NHMSG_LEN..)?);
    for (t, v) in attrs.by_ref() {
        match t {
            NHA_ID => id = Some(u32_value(v)?),
            NHA_OIF => oif = Some(u32_value(v)?),
            NHA_GROUP | NHA_BLACKHOLE | NHA_GATEWAY | NHA_ENCAP_TYPE | NHA_ENCAP | NHA_FDB => {
                plain = false
            }
            _ => {}
        }
    }
    if attrs.broken {
        return None;
    }
    Some(KNexthop {
        id: id.filter(|&id| id != 0)?,
        protocol,
        ipv6: family == AF_INET6,
        dev: oif.filter(|_| plain),
    })
}

fn message(
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    protocol: u8,
    attrs: &[(u16, u32)],
) -> Vec<u8> {
    let len = NLMSG_HDR_LEN + NHMSG_LEN + attrs.len() * 8;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[family, 0, protocol, 0]);
    b.extend_from_slice(&0u32.to_ne_bytes());
    for &(t, v) in attrs {
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

/// Makes (or replaces) the IPv6 nexthop object `id`: device `oif`, owner `protocol`.
pub(crate) fn set_request(seq: u32, id: u32, oif: u32, protocol: u8) -> Vec<u8> {
    message(
        RTM_NEWNEXTHOP,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        AF_INET6,
        protocol,
        &[(NHA_ID, id), (NHA_OIF, oif)],
    )
}

/// Removes the nexthop object `id` (and the routes that name it).
pub(crate) fn delete_request(seq: u32, id: u32) -> Vec<u8> {
    message(
        RTM_DELNEXTHOP,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        0,
        0,
        &[(NHA_ID, id)],
    )
}

/// Asks for every nexthop object of the namespace.
pub(crate) fn dump_request(seq: u32) -> Vec<u8> {
    message(RTM_GETNEXTHOP, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, 0, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::Messages;
    use proptest::prelude::*;

    fn body(m: &[u8]) -> &[u8] {
        &m[NLMSG_HDR_LEN..]
    }

    #[test]
    fn a_set_request_reads_back_as_the_nexthop_it_makes() {
        let m = set_request(7, 13502, 42, 135);
        let read: Vec<_> = Messages::new(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].kind, RTM_NEWNEXTHOP);
        assert_eq!(read[0].seq, 7);
        assert_eq!(
            read[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        let nh = parse_nexthop(body(&m)).unwrap();
        assert_eq!(
            nh,
            KNexthop {
                id: 13502,
                protocol: 135,
                ipv6: true,
                dev: Some(42)
            }
        );
        assert!(nh.is(135, 42));
        assert!(!nh.is(135, 43) && !nh.is(136, 42));
    }

    #[test]
    fn delete_and_dump_requests() {
        let d = delete_request(3, 99);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELNEXTHOP);
        assert_eq!(parse_nexthop(body(&d)).map(|n| n.id), Some(99));
        let q = dump_request(4);
        assert_eq!(q.len(), NLMSG_HDR_LEN + NHMSG_LEN);
        assert_eq!(u16::from_ne_bytes([q[4], q[5]]), RTM_GETNEXTHOP);
        assert_eq!(u16::from_ne_bytes([q[6], q[7]]) & NLM_F_DUMP, NLM_F_DUMP);
    }

    #[test]
    fn anything_but_a_plain_device_has_no_device() {
        let mut m = set_request(1, 5, 6, 135);
        // A gateway after the device: not ours to route into.
        m.extend_from_slice(&20u16.to_ne_bytes());
        m.extend_from_slice(&NHA_GATEWAY.to_ne_bytes());
        m.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let nh = parse_nexthop(body(&m)).unwrap();
        assert_eq!(nh.dev, None);
        assert!(!nh.is(135, 6));
        // An IPv4 nexthop of the device: IPv6 routes cannot name it.
        let mut v4 = set_request(1, 5, 6, 135);
        v4[NLMSG_HDR_LEN] = 2;
        assert!(!parse_nexthop(body(&v4)).unwrap().is(135, 6));
        // No id, a short header, an attribute longer than the message.
        assert_eq!(parse_nexthop(body(&dump_request(1))), None);
        assert_eq!(parse_nexthop(&[10, 0, 135]), None);
        let mut long = set_request(1, 5, 6, 135);
        let at = NLMSG_HDR_LEN + NHMSG_LEN;
        long[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(parse_nexthop(body(&long)), None);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_nexthop(&bytes);
        }

        #[test]
        fn set_requests_round_trip(id in 1u32.., oif in any::<u32>(), protocol in any::<u8>()) {
            let m = set_request(1, id, oif, protocol);
            prop_assert_eq!(
                parse_nexthop(body(&m)),
                Some(KNexthop { id, protocol, ipv6: true, dev: Some(oif) })
            );
        }
    }
}
