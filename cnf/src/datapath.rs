//! From the daemons' configuration and the state machines' [`DataplaneCommand`]s to the
//! `dataplane` crate.

use std::net::Ipv6Addr;

use dataplane::{Change, Dataplane, Mode, Netlink, Settings, Termination};
use pmip::config::{DatapathConfig, DatapathMode};
use pmip::output::DataplaneCommand;

/// Opens the datapath the configuration asks for, on the transport link of `local`.
pub async fn open(cfg: &DatapathConfig, local: Ipv6Addr) -> dataplane::Result<Dataplane> {
    let mode = match cfg.mode {
        DatapathMode::Auto => Mode::Auto,
        DatapathMode::Seg6 => Mode::Seg6,
        DatapathMode::Ip6tnl => Mode::Ip6tnl,
        DatapathMode::None => Mode::None,
    };
    let nl = Netlink::connect()?;
    let mut s = if mode == Mode::None {
        Settings::new(0, cfg.link_mtu.unwrap_or(1500))
    } else {
        Settings::resolve(&nl, cfg.transport_interface.as_deref(), local, cfg.link_mtu).await?
    };
    s.route_protocol = cfg.route_protocol;
    s.table_base = cfg.table_base;
    Dataplane::open(mode, nl, s).await
}

/// The change a command stands for; `None` for the buffer commands of fast handovers, which
/// the MAG daemon's buffer carries out.
pub fn change(c: &DataplaneCommand) -> Option<Change> {
    Some(match *c {
        DataplaneCommand::SetDownlink { prefix, proxy_coa } => Change::AddDownlink {
            prefix,
            peer: proxy_coa,
        },
        // De-registered sessions lose their route: traffic to them is not delivered.
        DataplaneCommand::DropDownlink { prefix } | DataplaneCommand::RemoveDownlink { prefix } => {
            Change::RemoveDownlink { prefix }
        }
        DataplaneCommand::SetUplink { prefix, peer } => Change::AddUplink { prefix, peer },
        DataplaneCommand::RemoveUplink { prefix } => Change::RemoveUplink { prefix },
        DataplaneCommand::SetAccessRoute {
            prefix,
            link,
            local_routing,
        } => Change::AddLocalRoute {
            prefix,
            ifindex: link.0,
            local_routing,
        },
        DataplaneCommand::RemoveAccessRoute { prefix, link } => Change::RemoveLocalRoute {
            prefix,
            ifindex: link.0,
        },
        DataplaneCommand::ForwardDownlink { prefix, peer } => Change::AddDownlink { prefix, peer },
        DataplaneCommand::RemoveForward { prefix } => Change::RemoveDownlink { prefix },
        DataplaneCommand::Buffer { .. }
        | DataplaneCommand::FlushBuffer { .. }
        | DataplaneCommand::ForwardBuffer { .. }
        | DataplaneCommand::DiscardBuffer { .. } => return None,
    })
}

/// Where tunnels to `local` (the LMA address or the proxy-CoA) end: on the transport link.
pub fn termination(dp: &Dataplane, local: Ipv6Addr) -> Termination {
    Termination {
        local,
        ifindex: dp.settings().transport_ifindex,
    }
}
