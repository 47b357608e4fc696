//! `pmipctl bindings` and `pmipctl stats`: the LMA's `pmip.v1.BindingCache` service.
//!
//! - `bindings list` reads every page; `-o json` prints a list of bindings (see
//!   [`BindingView`] for the keys: `mn_id`, `home_network_prefixes`, `proxy_coa`, `state`, ...).
//! - `bindings get KEY` finds one binding by MN-ID, by a home network prefix or an address
//!   inside one, or by an IPv4 home address (RFC 5844).
//! - `bindings watch` follows the changes (see [`watch`]).
//! - `bindings revoke MN-ID` sends a Binding Revocation Indication (RFC 5846) through the LMA;
//!   `bindings revoke --proxy-coa ADDRESS` one global BRI for every binding of that MAG.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use proto::v1 as pb;
use proto::v1::binding_cache_client::BindingCacheClient;
use proto::v1::binding_event::Event;
use proto::v1::get_binding_request::Key;
use tonic::Code;

use super::Io;
use crate::client::{Conn, ConnectArgs, Daemon};
use crate::show::emit;
use crate::views::{self, BindingView, EventView, LmaStatsView, RevokeView};
use crate::{CliError, OutputFormat};

#[derive(Debug, Args)]
pub struct BindingsArgs {
    #[command(subcommand)]
    pub command: BindingsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BindingsCommand {
    /// Every binding cache entry, ordered by MN-ID (all pages).
    #[command(after_help = "Examples:\n  \
        pmipctl bindings list\n  \
        pmipctl bindings list --proxy-coa 2001:db8:1::10 -o json")]
    List(ListArgs),
    /// One binding, by MN-ID, by a home network prefix or an address inside one, or by an
    /// IPv4 home address.
    #[command(after_help = "Examples:\n  \
        pmipctl bindings get mn1@lab.example\n  \
        pmipctl bindings get 2001:db8:100:1::/64\n  \
        pmipctl bindings get 2001:db8:100:1::42\n  \
        pmipctl bindings get 192.0.2.10")]
    Get(GetArgs),
    /// Follow the changes of the binding cache, one line per event, until Ctrl-C.
    ///
    /// The current state comes first (RESET, one ADDED per binding, SYNCED), then every change
    /// as it happens. When the connection breaks, pmipctl reconnects and resumes after the last
    /// event it printed; the LMA replays what was missed, or starts over with RESET when it
    /// cannot (after a restart).
    Watch(WatchArgs),
    /// Revoke a node's binding: the LMA sends a Binding Revocation Indication to its MAG
    /// (RFC 5846) and removes the entry. The profile stays.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only bindings served by the MAG with this proxy-CoA.
    #[arg(long, value_name = "ADDRESS")]
    pub proxy_coa: Option<Ipv6Addr>,
    /// Entries asked for per request (the LMA answers at most 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// An MN-ID (`mn1@lab.example`), a home network prefix (`2001:db8:100:1::/64`) or an
    /// address inside one, or an IPv4 home address (`192.0.2.10`).
    #[arg(value_name = "MN-ID|PREFIX|ADDRESS")]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only events of this mobile node.
    #[arg(long, value_name = "MN-ID")]
    pub mn_id: Option<String>,
    /// Only events of the binding with this IPv4 home address (RFC 5844).
    #[arg(long, value_name = "ADDRESS")]
    pub ipv4_home_address: Option<Ipv4Addr>,
}

/// Revocation Trigger values for one mobile node (RFC 5846 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Trigger {
    /// 0: Unspecified.
    Unspecified,
    /// 1: Administrative Reason.
    AdministrativeReason,
    /// 2: Inter-MAG Handover - same Access Type.
    InterMagHandoverSameAccessType,
    /// 3: Inter-MAG Handover - different Access Type.
    InterMagHandoverDifferentAccessType,
    /// 4: Inter-MAG Handover - Unknown.
    InterMagHandoverUnknown,
    /// 5: User-Initiated Session(s) Termination.
    UserInitiatedSessionTermination,
    /// 6: Access Network Session(s) Termination.
    AccessNetworkSessionTermination,
    /// 7: Possible Out-of-Sync BCE State.
    PossibleOutOfSyncBceState,
}

impl Trigger {
    fn proto(self) -> pb::RevocationTrigger {
        use pb::RevocationTrigger as T;
        match self {
            Trigger::Unspecified => T::Unspecified,
            Trigger::AdministrativeReason => T::AdministrativeReason,
            Trigger::InterMagHandoverSameAccessType => T::InterMagHandoverSameAccessType,
            Trigger::InterMagHandoverDifferentAccessType => T::InterMagHandoverDifferentAccessType,
            Trigger::InterMagHandoverUnknown => T::InterMagHandoverUnknown,
            Trigger::UserInitiatedSessionTermination => T::UserInitiatedSessionTermination,
            Trigger::AccessNetworkSessionTermination => T::AccessNetworkSessionTermination,
            Trigger::PossibleOutOfSyncBceState => T::PossibleOutOfSyncBceState,
        }
    }
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The node whose binding is revoked.
    #[arg(
        value_name = "MN-ID",
        required_unless_present = "proxy_coa",
        conflicts_with = "proxy_coa"
    )]
    pub mn_id: Option<String>,
    /// Instead of a node: every binding registered through the MAG with this proxy-CoA, with
    /// one global Binding Revocation Indication (RFC 5846 §8.1, Per-Peer Policy). (`--mag`
    /// is the MAG daemon's URL, for every command.)
    #[arg(long, value_name = "ADDRESS")]
    pub proxy_coa: Option<String>,
    /// Revocation Trigger carried in the BRI.
    #[arg(long, value_enum, default_value_t = Trigger::AdministrativeReason)]
    pub trigger: Trigger,
}

pub async fn run(args: BindingsArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    match args.command {
        BindingsCommand::List(a) => list(a, conn, io).await,
        BindingsCommand::Get(a) => get(a, conn, io).await,
        BindingsCommand::Watch(a) => watch(a, conn, io).await,
        BindingsCommand::Revoke(a) => revoke(a, conn, io).await,
    }
}

/// Whether a `bindings get` key is a prefix or an address rather than an MN-ID. The LMA
/// checks the prefix length; an NAI never parses as an IPv6 address.
fn looks_like_prefix(key: &str) -> bool {
    let addr = key.split_once('/').map_or(key, |(a, _)| a);
    addr.parse::<Ipv6Addr>().is_ok()
}

async fn list(args: ListArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = BindingCacheClient::new(c.channel.clone());
    let mut all: Vec<pb::Binding> = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .call(client.list(c.request(pb::ListBindingsRequest {
                page_size: args.page_size,
                page_token: token.clone(),
                proxy_coa: args.proxy_coa.map(|a| a.to_string()).unwrap_or_default(),
            })))
            .await?;
        all.extend(page.bindings);
        if page.next_page_token.is_empty() {
            break;
        }
        if page.next_page_token == token {
            return Err(CliError::Other(anyhow::anyhow!(
                "the LMA gave the same page token twice ({token:?}); the listing is incomplete"
            )));
        }
        token = page.next_page_token;
    }
    // Ordered by MN-ID, as the help says, whatever order the pages came in; a node's
    // bindings (one per interface) by prefix.
    all.sort_by(|a, b| {
        (&a.mn_id, &a.home_network_prefixes, &a.proxy_coa).cmp(&(
            &b.mn_id,
            &b.home_network_prefixes,
            &b.proxy_coa,
        ))
    });
    let now = SystemTime::now();
    let views: Vec<BindingView> = all.iter().map(BindingView::from).collect();
    if io.output.is_text() && all.is_empty() {
        writeln!(io.stderr, "no bindings")?;
        return Ok(());
    }
    let style = io.style();
    emit(io, &views, || {
        views::bindings_table(&all, now, style.wide).render_as(style)
    })
}

async fn get(args: GetArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let key = if args.key.trim().parse::<Ipv4Addr>().is_ok() {
        Key::Ipv4HomeAddress(args.key.trim().to_owned())
    } else if looks_like_prefix(&args.key) {
        Key::HomeNetworkPrefix(args.key.clone())
    } else {
        Key::MnId(args.key.clone())
    };
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = BindingCacheClient::new(c.channel.clone());
    let b = c
        .call(client.get(c.request(pb::GetBindingRequest { key: Some(key) })))
        .await?;
    let now = SystemTime::now();
    emit(io, &BindingView::from(&b), || views::binding_text(&b, now))
}

async fn revoke(args: RevokeArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = BindingCacheClient::new(c.channel.clone());
    let r = c
        .call(client.revoke(c.request(pb::RevokeRequest {
            mn_id: args.mn_id.clone().unwrap_or_default(),
            trigger: args.trigger.proto() as i32,
            proxy_coa: args.proxy_coa.clone().unwrap_or_default(),
        })))
        .await?;
    let v = match &args.proxy_coa {
        Some(mag) => RevokeView::of_mag(mag, &r),
        None => RevokeView::new(args.mn_id.as_deref().unwrap_or_default(), &r),
    };
    emit(io, &v, || v.text())
}

pub async fn stats(conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = BindingCacheClient::new(c.channel.clone());
    let s = c
        .call(client.stats(c.request(pb::LmaStatsRequest {})))
        .await?;
    let v = LmaStatsView::from(&s);
    emit(io, &v, || v.text())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = term => {},
        () = int => {},
    }
}

/// Errors after which another try cannot do better.
fn is_final(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
    )
}

/// What the watch remembers across connections (the rules of `BindingCache.Watch` in
/// `binding_cache.proto`).
#[derive(Debug, Default)]
struct Follower {
    /// The last (epoch, revision) applied: from SYNCED and the live events after it.
    cursor: Option<pb::WatchCursor>,
    /// Between RESET and SYNCED: snapshot events, which do not move the cursor.
    in_snapshot: bool,
}

impl Follower {
    /// Whether `e` is shown; moves the cursor.
    fn accept(&mut self, e: &pb::BindingEvent) -> bool {
        match &e.event {
            Some(Event::Reset(_)) => {
                self.in_snapshot = true;
                true
            }
            Some(Event::Synced(_)) => {
                self.in_snapshot = false;
                self.cursor = Some(pb::WatchCursor {
                    epoch: e.epoch,
                    revision: e.revision,
                });
                true
            }
            _ if self.in_snapshot => true,
            _ => {
                if let Some(c) = &self.cursor
                    && c.epoch == e.epoch
                    && e.revision <= c.revision
                {
                    // Already applied: a replay overlapping what this client saw.
                    return false;
                }
                self.cursor = Some(pb::WatchCursor {
                    epoch: e.epoch,
                    revision: e.revision,
                });
                true
            }
        }
    }

    /// A stream broke: a snapshot it was in the middle of does not count.
    fn broken(&mut self) {
        self.in_snapshot = false;
    }
}

fn print_event(io: &mut Io<'_>, e: &pb::BindingEvent) -> Result<(), CliError> {
    match io.output {
        OutputFormat::Table | OutputFormat::Wide => {
            writeln!(io.stdout, "{}", views::event_line(e))?
        }
        OutputFormat::Json => {
            let line = serde_json::to_string(&EventView::from(e))
                .map_err(|err| CliError::Other(err.into()))?;
            writeln!(io.stdout, "{line}")?;
        }
        OutputFormat::Yaml => {
            let doc = serde_saphyr::to_string(&EventView::from(e))
                .map_err(|err| CliError::Other(anyhow::anyhow!("cannot write YAML: {err}")))?;
            write!(io.stdout, "---\n{doc}")?;
        }
    }
    io.stdout.flush()?;
    Ok(())
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// `bindings watch`: prints events until Ctrl-C; reconnects and resumes when the stream
/// breaks. The first connection must succeed: a wrong URL is reported at once.
async fn watch(args: WatchArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let stop = interrupted();
    tokio::pin!(stop);
    let mut follower = Follower::default();
    let mut first = true;
    let mut delay = FIRST_RETRY;
    // What went wrong last, said once per outage.
    let mut outage: Option<String> = None;
    loop {
        let attempt = async {
            let c: Conn = conn.connect(Daemon::Lma).await?;
            let mut client = BindingCacheClient::new(c.channel.clone());
            let request = pb::WatchBindingsRequest {
                resume_from: follower.cursor,
                mn_id: args.mn_id.clone().unwrap_or_default(),
                ipv4_home_address: args
                    .ipv4_home_address
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            };
            // The deadline is for the answer to start, not for the stream.
            match tokio::time::timeout(c.timeout, client.watch(request)).await {
                Ok(Ok(r)) => Ok((c, r.into_inner())),
                Ok(Err(s)) if s.code() == Code::Unimplemented => Err(c.unimplemented(&s).await),
                Ok(Err(s)) => Err(c.status(&s)),
                Err(_) => Err(CliError::Grpc {
                    code: Code::DeadlineExceeded,
                    message: format!("no answer from {}", c.url),
                }),
            }
        };
        let started = tokio::select! {
            () = &mut stop => return Ok(()),
            r = attempt => r,
        };
        let (c, mut stream) = match started {
            Ok(s) => s,
            Err(e) if first => return Err(e),
            Err(e @ CliError::Grpc { code, .. }) if is_final(code) => return Err(e),
            Err(e) => {
                let text = e.to_string();
                if outage.as_deref() != Some(text.as_str()) {
                    writeln!(io.stderr, "watch: {text}; retrying")?;
                    outage = Some(text);
                }
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(delay) => {},
                }
                delay = (delay * 2).min(LAST_RETRY);
                continue;
            }
        };
        if !first {
            let after = follower
                .cursor
                .map(|c| format!("after revision {}.{}", c.epoch, c.revision))
                .unwrap_or_else(|| "from the start".into());
            writeln!(
                io.stderr,
                "watch: reconnected to {}, resuming {after}",
                c.url
            )?;
        }
        first = false;
        delay = FIRST_RETRY;
        loop {
            let next = tokio::select! {
                () = &mut stop => return Ok(()),
                m = stream.message() => m,
            };
            match next {
                Ok(Some(e)) => {
                    if follower.accept(&e) {
                        print_event(io, &e)?;
                    }
                }
                Ok(None) => {
                    follower.broken();
                    let text = format!("the stream from {} ended", c.url);
                    writeln!(io.stderr, "watch: {text}; reconnecting")?;
                    outage = Some(text);
                    break;
                }
                Err(s) => {
                    if is_final(s.code()) {
                        return Err(c.status(&s));
                    }
                    follower.broken();
                    let text = c.status(&s).to_string();
                    writeln!(io.stderr, "watch: {text}; reconnecting")?;
                    outage = Some(text);
                    break;
                }
            }
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(delay) => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(epoch: u64, revision: u64, event: Event) -> pb::BindingEvent {
        pb::BindingEvent {
            epoch,
            revision,
            time: None,
            event: Some(event),
        }
    }

    fn added(mn: &str) -> Event {
        Event::Added(pb::Binding {
            mn_id: mn.into(),
            ..Default::default()
        })
    }

    #[test]
    fn the_cursor_moves_from_synced_on_and_replays_are_not_shown_twice() {
        let mut f = Follower::default();
        assert!(f.accept(&ev(1, 5, Event::Reset(pb::Reset::default()))));
        // Snapshot entries carry the snapshot's revision and do not move the cursor.
        assert!(f.accept(&ev(1, 5, added("a"))));
        assert_eq!(f.cursor, None);
        assert!(f.accept(&ev(1, 5, Event::Synced(pb::Synced::default()))));
        assert_eq!(f.cursor.map(|c| (c.epoch, c.revision)), Some((1, 5)));
        assert!(f.accept(&ev(1, 6, added("b"))));
        assert_eq!(f.cursor.map(|c| c.revision), Some(6));
        // A resumed stream that repeats revision 6 does not print it again.
        assert!(!f.accept(&ev(1, 6, added("b"))));
        assert!(f.accept(&ev(1, 7, added("c"))));
        // A stream broken during a snapshot resumes from the cursor it had before.
        assert!(f.accept(&ev(2, 1, Event::Reset(pb::Reset::default()))));
        f.broken();
        assert_eq!(f.cursor.map(|c| (c.epoch, c.revision)), Some((1, 7)));
        // Another epoch's revisions are not compared with this one's.
        assert!(f.accept(&ev(2, 1, added("d"))));
    }

    #[test]
    fn keys_are_told_apart() {
        assert!(looks_like_prefix("2001:db8:100:1::/64"));
        assert!(looks_like_prefix("2001:db8:100:1::42"));
        assert!(!looks_like_prefix("mn1@lab.example"));
        assert!(!looks_like_prefix("mn1"));
        assert!(!looks_like_prefix("192.0.2.10"));
    }
}
