//! The socket a [`crate::netlink::Netlink`] writes its changes on: requests serialized in
//! place, [`CHUNK`] to a datagram, and only the last of each asks for an acknowledgement.
//!
//! The kernel handles a datagram's requests in order inside the `sendmsg` that carries them,
//! and answers a failed request whether or not it asked for an acknowledgement. So once the
//! last request's answer has come, every request before it has been handled, and those the
//! kernel did not answer succeeded. An acknowledgement per request cost as much as the route
//! it acknowledged: an answer made, queued and woken for, then passed through the
//! `netlink-proto` connection's channels and request table; a million routes waited for a
//! million of them.
//!
//! ```text
//! struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }     (linux/netlink.h)
//! NLMSG_ERROR: struct nlmsgerr { int error; struct nlmsghdr msg; ... }  (error 0: the ack)
//! ```

use std::io;

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkSerializable};

use crate::dump::{self, NLMSG_HDR_LEN};
use crate::error::{Error, Result};
use crate::msg;
use crate::netlink::{Outcome, Request, Tolerate};

/// Requests per datagram. The answers of one (at most one per request, `NETLINK_CAP_ACK`
/// keeps them to 36 bytes) fit the receive buffer many times over.
pub(crate) const CHUNK: usize = 256;

/// What a request's answer means: `code` is the `NLMSG_ERROR`'s error (0, or no answer
/// before the last request's: success).
pub(crate) fn outcome(request: &Request, code: i32) -> Result<Outcome> {
    if code == 0 {
        return Ok(Outcome::Done);
    }
    let errno = code.saturating_abs();
    let tolerated = match request.tolerate {
        Tolerate::Nothing => false,
        Tolerate::Exists => errno == libc::EEXIST,
        Tolerate::Absent => matches!(
            errno,
            libc::ENOENT | libc::ESRCH | libc::ENODEV | libc::EADDRNOTAVAIL
        ),
    };
    if tolerated {
        Ok(Outcome::Unchanged)
    } else {
        let (op, object) = msg::describe(&request.msg);
        Err(Error::Kernel {
            op,
            object,
            source: io::Error::from_raw_os_error(errno),
        })
    }
}

/// Serializes `chunk` into `buf` (cleared first) with sequence numbers from `first_seq` on;
/// only the last asks for an acknowledgement.
pub(crate) fn serialize(chunk: &[Request], first_seq: u32, buf: &mut Vec<u8>) {
    buf.clear();
    for (i, r) in chunk.iter().enumerate() {
        let ack = if i + 1 == chunk.len() { NLM_F_ACK } else { 0 };
        let len = NLMSG_HDR_LEN + r.msg.buffer_len();
        let at = buf.len();
        buf.resize(at + len.next_multiple_of(4), 0);
        let m = &mut buf[at..at + len];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&r.msg.message_type().to_ne_bytes());
        m[6..8].copy_from_slice(&(NLM_F_REQUEST | ack | r.flags).to_ne_bytes());
        m[8..12].copy_from_slice(&first_seq.wrapping_add(i as u32).to_ne_bytes());
        r.msg.serialize(&mut m[NLMSG_HDR_LEN..]);
    }
}

/// Reads the answers of a datagram of `count` requests from `first_seq` on, out of the
/// datagrams `next` returns: the error code of each answered request, by its position, until
/// the last one's answer. Answers of other sequence numbers (a request whose exchange failed
/// half-way) are skipped.
pub(crate) fn answers(
    count: usize,
    first_seq: u32,
    mut next: impl FnMut() -> io::Result<Vec<u8>>,
) -> io::Result<Vec<(usize, i32)>> {
    let mut out = Vec::new();
    loop {
        let datagram = next()?;
        for m in dump::Messages::new(&datagram) {
            let m = m.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let at = m.seq.wrapping_sub(first_seq) as usize;
            if m.kind != dump::NLMSG_ERROR || at >= count {
                continue;
            }
            let code = m.error_code().unwrap_or(-libc::EPROTO);
            if code != 0 {
                out.push((at, code));
            }
            if at + 1 == count {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{KRoute, RouteKey, Via};
    use crate::netlink::Request;
    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};

    fn route(i: u16) -> Request {
        Request::replace_route(&KRoute {
            key: RouteKey::new(
                254,
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0), 64)
                    .unwrap(),
            ),
            protocol: 135,
            via: Via::Nexthop { id: 13502 },
            mtu: None,
        })
    }

    /// What `serialize` writes reads back, message by message, as `netlink-packet-route`
    /// reads it, with only the last asking for an acknowledgement.
    #[test]
    fn a_chunk_serializes_in_order_with_one_acknowledgement() {
        let chunk: Vec<Request> = (0..5).map(route).chain([Request::delete_link(7)]).collect();
        let mut buf = vec![1, 2, 3];
        serialize(&chunk, u32::MAX - 2, &mut buf);
        let read: Vec<_> = dump::Messages::new(&buf)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), chunk.len());
        for (i, (m, r)) in read.iter().zip(&chunk).enumerate() {
            assert_eq!(m.seq, (u32::MAX - 2).wrapping_add(i as u32));
            let last = i + 1 == chunk.len();
            assert_eq!(m.flags & NLM_F_ACK != 0, last, "{i}");
            assert_eq!(m.flags & !NLM_F_ACK, NLM_F_REQUEST | r.flags);
            let whole = &buf[m.offset..m.offset + NLMSG_HDR_LEN + m.payload.len()];
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole).unwrap();
            match parsed.payload {
                NetlinkPayload::InnerMessage(inner) => assert_eq!(inner, r.msg),
                other => panic!("{other:?}"),
            }
        }
    }

    fn error(seq: u32, code: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&dump::NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&[0; 16]);
        b
    }

    #[test]
    fn answers_are_the_errors_up_to_the_last_requests() {
        // An old exchange's answer, two errors, then the acknowledgement of the last, split
        // over two datagrams; what follows it is not read.
        let mut datagrams = vec![
            [error(3, -17), error(11, -2), error(12, 0)].concat(),
            [error(13, -22), error(14, 0)].concat(),
            error(99, 0),
        ]
        .into_iter();
        let got = answers(5, 10, || Ok(datagrams.next().unwrap())).unwrap();
        assert_eq!(got, [(1, -2), (3, -22)]);
        assert_eq!(datagrams.len(), 1);
        // The last request failed: its error is its answer.
        let mut one = vec![error(7, -1)].into_iter();
        assert_eq!(
            answers(1, 7, || Ok(one.next().unwrap())).unwrap(),
            [(0, -1)]
        );
        // A read that fails ends it.
        assert!(answers(2, 1, || Err(io::Error::from_raw_os_error(libc::ENOBUFS))).is_err());
    }

    #[test]
    fn outcomes_tolerate_what_the_request_allows() {
        let del = Request::delete_route(&KRoute {
            key: RouteKey::new(254, "2001:db8::/64".parse::<ipnet::Ipv6Net>().unwrap()),
            protocol: 135,
            via: Via::Dev { oif: 3 },
            mtu: None,
        });
        assert_eq!(outcome(&del, 0).unwrap(), Outcome::Done);
        assert_eq!(outcome(&del, -libc::ESRCH).unwrap(), Outcome::Unchanged);
        let e = outcome(&del, -libc::EPERM).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert_eq!(
            outcome(&route(1), -libc::EEXIST).unwrap_err().errno(),
            Some(libc::EEXIST)
        );
    }
}
