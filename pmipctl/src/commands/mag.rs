//! `pmipctl mag`: a MAG's `pmip.v1.Gateway` service (`--mag URL`).
//!
//! - `mag bul`: the binding update list (RFC 5213 §6.1), all pages.
//! - `mag attach LINK-LAYER --interface IF`: an access network reports an attachment; the MAG
//!   registers the node (RFC 5213 §6.9.1.1).
//! - `mag detach MN-ID|LINK-LAYER`: the node left; the MAG de-registers it.
//! - `mag handover MN-ID --to AP` (predictive, at the previous MAG) or `--from AP` (reactive,
//!   at the new MAG): a fast handover indication (RFC 5949).
//! - `mag stats`: the MAG's counters.

use std::time::SystemTime;

use clap::{ArgGroup, Args, Subcommand};
use pmip::types::LinkLayerAddress;
use proto::v1 as pb;
use proto::v1::gateway_client::GatewayClient;
use serde::Serialize;

use super::Io;
use crate::CliError;
use crate::client::{ConnectArgs, Daemon};
use crate::show::{emit, fields};
use crate::views::{self, BulEntryView, MagStatsView};

#[derive(Debug, Args)]
pub struct MagArgs {
    #[command(subcommand)]
    pub command: MagCommand,
}

#[derive(Debug, Subcommand)]
pub enum MagCommand {
    /// The binding update list, ordered by MN-ID (all pages).
    Bul,
    /// Report that a node attached to an access link; the MAG registers it.
    #[command(after_help = "Example:\n  \
        pmipctl --mag http://[2001:db8:1::10]:50051 mag attach 02:00:5e:10:00:01 \
        --interface wlan0 --wait")]
    Attach(AttachArgs),
    /// Report that a node left; the MAG de-registers it and removes its entry.
    Detach(DetachArgs),
    /// Fast handover indication (RFC 5949): `--to AP` at the previous MAG (predictive), or
    /// `--from AP` at the new MAG (reactive).
    #[command(group(ArgGroup::new("direction").required(true).args(["to", "from"])))]
    Handover(HandoverArgs),
    /// The MAG's counters and identity.
    Stats,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Link-layer address of the node (colon hex); a profile must name it.
    #[arg(value_name = "LINK-LAYER")]
    pub link_layer_address: LinkLayerAddress,
    /// Access interface it attached on.
    #[arg(long, short = 'i', value_name = "NAME")]
    pub interface: String,
    /// Access technology of the link (RFC 5213 §8.5): a number, or one of virtual, ppp,
    /// ethernet (802.3), wlan (802.11), wimax (802.16e), geran, utran, eutran.
    #[arg(long, value_name = "TYPE", value_parser = parse_access_technology)]
    pub access_technology: Option<u8>,
    /// Answer after the PBA instead of at once.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// The node: its MN-ID, or the link-layer address it attached with.
    #[arg(value_name = "MN-ID|LINK-LAYER")]
    pub node: String,
    /// Answer after the de-registration PBA.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    /// The node about to move.
    #[arg(value_name = "MN-ID")]
    pub mn_id: String,
    /// Predictive: the access point the node moves to (ask the previous MAG).
    #[arg(long, value_name = "ACCESS-POINT")]
    pub to: Option<String>,
    /// Reactive: the access point the node comes from (ask the new MAG).
    #[arg(long, value_name = "ACCESS-POINT")]
    pub from: Option<String>,
}

/// An Access Technology Type by number or by a short name.
pub fn parse_access_technology(s: &str) -> Result<u8, String> {
    use pmip::wire::AccessTechnologyType as A;
    if let Ok(n) = s.parse::<u8>() {
        if n == 0 {
            return Err("0 is reserved; leave the option out instead".into());
        }
        return Ok(n);
    }
    let t = match s.to_ascii_lowercase().as_str() {
        "virtual" => A::Virtual,
        "ppp" => A::Ppp,
        "ethernet" | "802.3" | "ieee-802-3" => A::Ieee8023,
        "wlan" | "wifi" | "802.11" | "ieee-802-11" => A::Ieee80211,
        "wimax" | "802.16e" | "ieee-802-16e" => A::Ieee80216e,
        "geran" | "3gpp-geran" => A::ThreeGppGeran,
        "utran" | "3gpp-utran" => A::ThreeGppUtran,
        "eutran" | "e-utran" | "lte" | "3gpp-eutran" => A::ThreeGppEutran,
        _ => return Err(format!("{s:?}: a number from 1 to 255 or a known name")),
    };
    Ok(t.value())
}

pub async fn run(args: MagArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Mag).await?;
    let mut client = GatewayClient::new(c.channel.clone());
    let now = SystemTime::now();
    match args.command {
        MagCommand::Bul => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .call(client.list_binding_update_list(c.request(
                        pb::ListBindingUpdateListRequest {
                            page_size: 1000,
                            page_token: token.clone(),
                        },
                    )))
                    .await?;
                all.extend(page.entries);
                if page.next_page_token.is_empty() || page.next_page_token == token {
                    break;
                }
                token = page.next_page_token;
            }
            if io.output.is_text() && all.is_empty() {
                writeln!(io.stderr, "the binding update list is empty")?;
                return Ok(());
            }
            all.sort_by(|a, b| {
                (&a.mn_id, &a.access_interface).cmp(&(&b.mn_id, &b.access_interface))
            });
            let v: Vec<BulEntryView> = all.iter().map(BulEntryView::from).collect();
            let style = io.style();
            emit(io, &v, || {
                views::bul_table(&all, now, style.wide).render_as(style)
            })
        }
        MagCommand::Attach(a) => {
            let r = c
                .call(client.attach(c.request(pb::AttachRequest {
                    link_layer_address: a.link_layer_address.to_string(),
                    access_interface: a.interface,
                    access_technology_type: a.access_technology.map(i32::from),
                    wait: a.wait,
                })))
                .await?;
            entry(io, r.entry.as_ref(), now)
        }
        MagCommand::Detach(d) => {
            let node = match d.node.parse::<LinkLayerAddress>() {
                Ok(ll) => pb::detach_request::Node::LinkLayerAddress(ll.to_string()),
                Err(_) => pb::detach_request::Node::MnId(d.node),
            };
            let r = c
                .call(client.detach(c.request(pb::DetachRequest {
                    node: Some(node),
                    wait: d.wait,
                })))
                .await?;
            entry(io, r.entry.as_ref(), now)
        }
        MagCommand::Handover(h) => {
            let predictive = h.to.is_some();
            let r = c
                .call(
                    client.handover_indication(c.request(pb::HandoverIndicationRequest {
                        mn_id: h.mn_id.clone(),
                        new_access_point: h.to.clone().unwrap_or_default(),
                        previous_access_point: h.from.clone().unwrap_or_default(),
                    })),
                )
                .await?;
            let v = HandoverView {
                mn_id: h.mn_id,
                mode: if predictive { "predictive" } else { "reactive" },
                new_proxy_coa: (!r.new_proxy_coa.is_empty()).then_some(r.new_proxy_coa),
                hack_code: r.hack_code,
            };
            emit(io, &v, || v.text())
        }
        MagCommand::Stats => {
            let s = c
                .call(client.stats(c.request(pb::MagStatsRequest {})))
                .await?;
            let v = MagStatsView::from(&s);
            emit(io, &v, || v.text())
        }
    }
}

fn entry(
    io: &mut Io<'_>,
    e: Option<&pb::BindingUpdateListEntry>,
    now: SystemTime,
) -> Result<(), CliError> {
    let Some(e) = e else {
        return Err(CliError::Other(anyhow::anyhow!(
            "the MAG answered without the entry"
        )));
    };
    emit(io, &BulEntryView::from(e), || views::bul_entry_text(e, now))
}

/// The answer to `mag handover`.
#[derive(Debug, Clone, Serialize)]
pub struct HandoverView {
    pub mn_id: String,
    /// `predictive` or `reactive`.
    pub mode: &'static str,
    /// Predictive: the new MAG that acknowledged the Handover Initiate.
    pub new_proxy_coa: Option<String>,
    /// HAck code (RFC 5949 §6.1.2); 0 is accepted.
    pub hack_code: u32,
}

impl HandoverView {
    fn text(&self) -> String {
        let mut f = vec![
            ("MN-ID", self.mn_id.clone()),
            ("Mode", self.mode.to_owned()),
        ];
        if let Some(n) = &self.new_proxy_coa {
            f.push(("New MAG", n.clone()));
        }
        f.push(("HAck code", self.hack_code.to_string()));
        fields(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_technology_by_number_or_name() {
        assert_eq!(parse_access_technology("4"), Ok(4));
        assert_eq!(parse_access_technology("wlan"), Ok(4));
        assert_eq!(parse_access_technology("Ethernet"), Ok(3));
        assert_eq!(parse_access_technology("eutran"), Ok(8));
        assert!(parse_access_technology("0").is_err());
        assert!(parse_access_technology("carrier-pigeon").is_err());
    }
}
