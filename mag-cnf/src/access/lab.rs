//! Emulated mobile nodes for a lab: each is a network namespace `pmip-mn-<name>` holding one
//! end of a veth pair, named [`NODE_IFNAME`], configured like a phone's Wi-Fi or LTE link:
//! Router Advertisements accepted, SLAAC with EUI-64 interface identifiers (so its address
//! follows from its MAC), Router Solicitations at once, no forwarding. The other end is the
//! MAG's access link, in the daemon's namespace, under the name given (which must match the
//! MAG's `access_interfaces` to be noticed).
//!
//! A handover in the lab moves the MAG end to another MAG's namespace; [`detach`] deletes
//! the node's end, which takes the pair with it wherever the other end is.

use datapath::Netlink;
use datapath::netns::NetNs;
use pmip::types::LinkLayerAddress;

use super::{Error, Result};

/// Namespaces of lab nodes are named this and the node's name.
pub const NAMESPACE_PREFIX: &str = "pmip-mn-";
/// The node's end of its veth pair.
pub const NODE_IFNAME: &str = "eth0";
/// Longest node name: namespace names are file names, kept short for humans.
pub const MAX_NAME_LEN: usize = 48;

/// How an emulated node is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    /// Duplicate address detection on the node (`accept_dad`), on by default as on a phone.
    /// Off, its addresses are usable the moment they are configured.
    pub duplicate_address_detection: bool,
    /// The namespace of the MAG end; `None` for the calling thread's (the daemon's).
    pub mag_netns: Option<NetNs>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            duplicate_address_detection: true,
            mag_netns: None,
        }
    }
}

/// An emulated node that [`attach`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    pub name: String,
    pub netns: NetNs,
    pub link_layer: LinkLayerAddress,
    /// The MAG end: its name and index in the MAG's namespace.
    pub access_ifname: String,
    pub access_ifindex: u32,
}

/// The namespace of node `name`.
pub fn netns_of(name: &str) -> NetNs {
    NetNs::named(&format!("{NAMESPACE_PREFIX}{name}"))
}

/// Makes node `name` with MAC `mac`, linked to the MAG by a new access link named
/// `access_ifname` in the calling thread's namespace. Both ends are up when this returns.
pub async fn attach(name: &str, mac: LinkLayerAddress, access_ifname: &str) -> Result<LabNode> {
    attach_with(name, mac, access_ifname, &AttachOptions::default()).await
}

/// [`attach`] with options.
pub async fn attach_with(
    name: &str,
    mac: LinkLayerAddress,
    access_ifname: &str,
    options: &AttachOptions,
) -> Result<LabNode> {
    check_name(name)?;
    check_ifname(access_ifname)?;
    let node_mac: [u8; 6] = mac
        .as_bytes()
        .try_into()
        .map_err(|_| Error::NotEthernet(mac))?;
    if node_mac[0] & 1 != 0 || node_mac == [0; 6] {
        return Err(Error::Lab(format!(
            "{mac} is not a unicast MAC a node can have"
        )));
    }
    let ns = NetNs::create(netns_of(name).name())?;
    let mag_nl = match &options.mag_netns {
        Some(m) => Netlink::connect_in(m)?,
        None => Netlink::connect()?,
    };
    mag_nl.add_veth(access_ifname, NODE_IFNAME, &ns).await?;
    let configured = async {
        let node_nl = Netlink::connect_in(&ns)?;
        node_nl.set_link_up(1, true).await?;
        let node_if = node_nl.link_index(NODE_IFNAME).await?;
        node_nl.set_link_address(node_if, node_mac).await?;
        let conf = format!("net/ipv6/conf/{NODE_IFNAME}");
        let dad = if options.duplicate_address_detection {
            "1"
        } else {
            "0"
        };
        for (key, value) in [
            ("net/ipv6/conf/all/forwarding", "0"),
            (&format!("{conf}/forwarding"), "0"),
            (&format!("{conf}/accept_ra"), "1"),
            (&format!("{conf}/autoconf"), "1"),
            (&format!("{conf}/router_solicitation_delay"), "0"),
            // EUI-64 interface identifiers (RFC 4291 Appendix A).
            (&format!("{conf}/addr_gen_mode"), "0"),
            (&format!("{conf}/accept_dad"), dad),
        ] {
            node_nl.set_sysctl(key, value)?;
        }
        let access_ifindex = mag_nl.link_index(access_ifname).await?;
        // The node's end first: when the MAG's end comes up after it, the node's carrier
        // change reaches it while its queueing discipline is still inactive, which the
        // kernel handles at once (linkwatch_urgent_event). The other way round, a node whose
        // link has the same index as the MAG's may wait up to a second for its operational
        // state, and so for its IPv6 configuration and its first frames.
        node_nl.set_link_up(node_if, true).await?;
        mag_nl.set_link_up(access_ifindex, true).await?;
        Ok::<u32, Error>(access_ifindex)
    };
    match configured.await {
        Ok(access_ifindex) => Ok(LabNode {
            name: name.to_owned(),
            netns: ns.keep(),
            link_layer: mac,
            access_ifname: access_ifname.to_owned(),
            access_ifindex,
        }),
        Err(e) => {
            // Deleting the MAG end takes the node end with it; the namespace goes on drop.
            if let Ok(i) = mag_nl.link_index(access_ifname).await {
                let _ = mag_nl.delete_link(i).await;
            }
            Err(e)
        }
    }
}

/// Removes node `name`: its link (the veth pair, wherever the MAG end is now) and its
/// namespace.
pub async fn detach(name: &str) -> Result<()> {
    check_name(name)?;
    let ns = netns_of(name);
    if !ns.path().exists() {
        return Err(Error::Lab(format!("no node {name:?}")));
    }
    {
        let nl = Netlink::connect_in(&ns)?;
        if let Ok(i) = nl.link_index(NODE_IFNAME).await {
            nl.delete_link(i).await?;
        }
    }
    NetNs::delete(ns.name())?;
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Lab(format!(
            "node name {name:?}: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', \
             not starting with '.'"
        )))
    }
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ - 1), no '/', ':' or white space.
fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(Error::Lab(format!(
            "{name:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_made() {
        assert!(check_name("mn1").is_ok());
        assert!(check_name("mn-1_a.b").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_ifname("acc0").is_ok());
        assert!(check_ifname("acc-mn-12345678").is_ok());
        for bad in ["", "acc-mn-123456789", "a/b", "a:b", "a b", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
        assert_eq!(netns_of("mn1").name(), "pmip-mn-mn1");
    }

    #[tokio::test]
    async fn bad_input_makes_nothing() {
        let mac = LinkLayerAddress::mac([2, 0, 0, 0, 1, 1]);
        assert!(matches!(
            attach("a/b", mac, "acc0").await,
            Err(Error::Lab(_))
        ));
        assert!(matches!(attach("x", mac, "a b").await, Err(Error::Lab(_))));
        let long = LinkLayerAddress::new(&[2, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        assert!(matches!(
            attach("x", long, "acc0").await,
            Err(Error::NotEthernet(_))
        ));
        let group = LinkLayerAddress::mac([1, 0, 0x5e, 0, 0, 1]);
        assert!(matches!(
            attach("x", group, "acc0").await,
            Err(Error::Lab(_))
        ));
        assert!(!netns_of("x").path().exists());
        assert!(matches!(
            detach("surely-not-there-4711").await,
            Err(Error::Lab(_))
        ));
    }
}
