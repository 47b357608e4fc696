//! `pmipctl mags`: every MAG the LMA knows, as `gobgp neighbor` shows BGP peers: its name,
//! whether and by what it is authorized, its heartbeat state (RFC 5847 §3.1) and since when,
//! its bindings and the Restart Counter of its last heartbeat response
//! (`pmip.v1.BindingCache.ListMagPeers`). `pmipctl mags MAG` shows one, by proxy-CoA or name.
//!
//! States: `UP` (bindings, answers heartbeats), `DOWN` (MISSING_HEARTBEATS_ALLOWED requests
//! unanswered), `IDLE` (no bindings: no heartbeats), `UNMONITORED` (bindings, heartbeats off).

use std::time::SystemTime;

use clap::Args;
use proto::v1 as pb;
use proto::v1::binding_cache_client::BindingCacheClient;
use serde::Serialize;

use super::Io;
use crate::CliError;
use crate::client::{ConnectArgs, Daemon};
use crate::show::{Table, age, emit, fields, or_dash, timestamp};
use crate::views::policy_source;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    pmipctl mags\n  \
    pmipctl mags -o wide\n  \
    pmipctl mags mag-b\n  \
    pmipctl mags 2001:db8:1::10 -o json")]
pub struct MagsArgs {
    /// Only this MAG, by proxy-CoA or name, shown a field per line.
    #[arg(value_name = "MAG")]
    pub which: Option<String>,
}

/// A MAG as the LMA sees it (`pmip.v1.MagPeer`).
#[derive(Debug, Clone, Serialize)]
pub struct MagPeerView {
    pub proxy_coa: String,
    pub name: Option<String>,
    /// `CONFIG` or `API`; `null` when it is no longer authorized.
    pub authorization: Option<String>,
    /// `UP`, `DOWN`, `IDLE` or `UNMONITORED`.
    pub state: String,
    pub since: Option<String>,
    pub bindings: u32,
    pub restart_counter: Option<u32>,
    pub restarts: u64,
    pub last_restart_at: Option<String>,
    #[serde(skip)]
    since_raw: Option<prost_types::Timestamp>,
    #[serde(skip)]
    last_restart_raw: Option<prost_types::Timestamp>,
}

fn peer_state(v: i32) -> String {
    match pb::MagPeerState::try_from(v) {
        Ok(s) => s
            .as_str_name()
            .trim_start_matches("MAG_PEER_STATE_")
            .to_owned(),
        Err(_) => v.to_string(),
    }
}

impl From<&pb::MagPeer> for MagPeerView {
    fn from(m: &pb::MagPeer) -> Self {
        MagPeerView {
            proxy_coa: m.proxy_coa.clone(),
            name: (!m.name.is_empty()).then(|| m.name.clone()),
            authorization: (m.authorization != pb::PolicySource::Unspecified as i32)
                .then(|| policy_source(m.authorization)),
            state: peer_state(m.state),
            since: timestamp(m.since.as_ref()),
            bindings: m.bindings,
            restart_counter: m.restart_counter,
            restarts: m.restarts,
            last_restart_at: timestamp(m.last_restart_at.as_ref()),
            since_raw: m.since,
            last_restart_raw: m.last_restart_at,
        }
    }
}

impl MagPeerView {
    fn authorization_text(&self) -> String {
        self.authorization.clone().unwrap_or_else(|| "no".into())
    }

    fn restart_counter_text(&self) -> String {
        self.restart_counter
            .map_or_else(|| "-".into(), |c| c.to_string())
    }

    /// One MAG, a field per line.
    pub fn text(&self, now: SystemTime) -> String {
        let since = match &self.since {
            Some(t) => format!("{t} ({} ago)", age(self.since_raw.as_ref(), now)),
            None => "-".into(),
        };
        let last_restart = match &self.last_restart_at {
            Some(t) => format!("{t} ({} ago)", age(self.last_restart_raw.as_ref(), now)),
            None => "-".into(),
        };
        fields(&[
            ("Proxy-CoA", self.proxy_coa.clone()),
            ("Name", or_dash(self.name.as_deref().unwrap_or_default())),
            ("Authorized", self.authorization_text()),
            ("State", self.state.clone()),
            ("Since", since),
            ("Bindings", self.bindings.to_string()),
            ("Restart counter", self.restart_counter_text()),
            ("Restarts seen", self.restarts.to_string()),
            ("Last restart", last_restart),
        ])
    }
}

/// The `mags` table; `wide` adds the authorization, the restarts seen and the times.
pub fn table(ms: &[MagPeerView], wide: bool, now: SystemTime) -> Table {
    let mut headings = vec![
        "PROXY-COA",
        "NAME",
        "STATE",
        "SINCE",
        "BINDINGS",
        "RESTART COUNTER",
    ];
    if wide {
        headings.extend(["AUTHORIZED", "RESTARTS", "LAST RESTART", "CHANGED AT"]);
    }
    let mut t = Table::new(&headings);
    for m in ms {
        let mut row = vec![
            m.proxy_coa.clone(),
            or_dash(m.name.as_deref().unwrap_or_default()),
            m.state.clone(),
            age(m.since_raw.as_ref(), now),
            m.bindings.to_string(),
            m.restart_counter_text(),
        ];
        if wide {
            row.push(m.authorization_text());
            row.push(m.restarts.to_string());
            row.push(match m.last_restart_raw {
                Some(_) => format!("{} ago", age(m.last_restart_raw.as_ref(), now)),
                None => "-".into(),
            });
            row.push(m.since.clone().unwrap_or_else(|| "-".into()));
        }
        t.row(row);
    }
    t
}

pub async fn run(args: MagsArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = BindingCacheClient::new(c.channel.clone());
    let r = c
        .call(client.list_mag_peers(c.request(pb::ListMagPeersRequest {})))
        .await?;
    let all: Vec<MagPeerView> = r.mags.iter().map(MagPeerView::from).collect();
    let now = SystemTime::now();
    if let Some(want) = args.which {
        let found = all
            .iter()
            .find(|m| m.proxy_coa == want || m.name.as_deref() == Some(want.as_str()))
            .or_else(|| {
                // `2001:db8:1:0::10` names the same MAG as `2001:db8:1::10`.
                let a: std::net::Ipv6Addr = want.parse().ok()?;
                all.iter().find(|m| m.proxy_coa.parse().ok() == Some(a))
            });
        let Some(m) = found else {
            return Err(CliError::Grpc {
                code: tonic::Code::NotFound,
                message: format!(
                    "the LMA knows no MAG {want} (neither a proxy-CoA nor a name of \
                     `pmipctl mags`)"
                ),
            });
        };
        return emit(io, m, || m.text(now));
    }
    if io.output.is_text() && all.is_empty() {
        writeln!(io.stderr, "no MAGs: none authorized, none with bindings")?;
        return Ok(());
    }
    let style = io.style();
    emit(io, &all, || table(&all, style.wide, now).render_as(style))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn peer(coa: &str, name: &str, state: pb::MagPeerState, since: i64) -> pb::MagPeer {
        pb::MagPeer {
            proxy_coa: coa.into(),
            name: name.into(),
            authorization: pb::PolicySource::Config as i32,
            state: state as i32,
            since: Some(prost_types::Timestamp {
                seconds: since,
                nanos: 0,
            }),
            bindings: 2,
            restart_counter: Some(7),
            restarts: 1,
            last_restart_at: None,
        }
    }

    #[test]
    fn a_table_row_per_mag_with_its_state_and_age() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        let ms = [
            MagPeerView::from(&peer(
                "2001:db8:1::10",
                "mag-a",
                pb::MagPeerState::Up,
                1_800_000_000,
            )),
            MagPeerView::from(&pb::MagPeer {
                authorization: 0,
                restart_counter: None,
                ..peer("2001:db8:2::10", "", pb::MagPeerState::Down, 1_800_000_090)
            }),
        ];
        let t = table(&ms, false, now).render();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "PROXY-COA       NAME   STATE  SINCE  BINDINGS  RESTART COUNTER"
        );
        assert_eq!(lines[1], "2001:db8:1::10  mag-a  UP     1m40s  2         7");
        assert_eq!(lines[2], "2001:db8:2::10  -      DOWN   10s    2         -");
        let wide = table(&ms, true, now).render();
        assert!(
            wide.lines().next().unwrap().ends_with("CHANGED AT"),
            "{wide}"
        );
        assert!(wide.contains("  no  "), "not authorized any more: {wide}");
        assert!(
            wide.contains(&crate::show::rfc3339(1_800_000_000, 0, 3)),
            "{wide}"
        );

        let json = serde_json::to_value(&ms[1]).unwrap();
        assert_eq!(json["state"], "DOWN");
        assert_eq!(json["authorization"], serde_json::Value::Null);
        assert_eq!(json["name"], serde_json::Value::Null);
        assert_eq!(json["restart_counter"], serde_json::Value::Null);
        assert_eq!(json["bindings"], 2);
        assert!(json.get("since_raw").is_none());

        let one = ms[0].text(now);
        assert!(one.contains("State:            UP"), "{one}");
        assert!(one.contains("(1m40s ago)"), "{one}");
    }
}
