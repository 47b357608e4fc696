//! `pmipctl policy`: the LMA's `pmip.v1.Policy` service.
//!
//! - `policy apply -f FILE` creates or replaces mobile node profiles. The file is YAML or JSON
//!   with the field names of the LMA configuration's `mobile_nodes` (`mn_id`,
//!   `link_layer_addresses`, `home_network_prefixes`, `allowed_mags`,
//!   `access_technology_type`, `local_routing`, `proxy_registration_enabled`,
//!   `mn_id_from_link_layer`), holding one
//!   profile, a list of them, or a
//!   mapping with a `mobile_nodes` list (a piece of an LMA configuration). What
//!   `policy get|list -o yaml` prints is read back too (each entry's `profile`; the LMA
//!   refuses changes to profiles whose source is its configuration file). Several YAML
//!   documents (`---`) are read one after the other. The file is checked whole before
//!   anything is sent, and the LMA applies it whole or not at all (`Policy.ApplyMobileNodes`):
//!   when one profile is refused, none is changed.
//! - `policy get|list|delete` read and remove profiles (`delete --ignore-not-found` for
//!   scripts).
//! - `policy mags list|add|remove` manage the MAGs allowed to register nodes.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pmip::config::MobileNodeProfile;
use proto::v1 as pb;
use proto::v1::policy_client::PolicyClient;
use serde::Serialize;
use serde_json::Value;

use super::Io;
use crate::CliError;
use crate::client::{ConnectArgs, Daemon};
use crate::input::read_all;
use crate::show::emit;
use crate::views::{self, MagView, ProfileEntryView};

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace mobile node profiles from a YAML or JSON file: all of them, or none
    /// when the LMA refuses one.
    #[command(
        after_help = "The file holds one profile, a list, or `mobile_nodes: [...]`:\n\n  \
        - mn_id: mn1@lab.example\n    \
          link_layer_addresses: [\"02:00:5e:10:00:01\"]\n    \
          home_network_prefixes: [\"2001:db8:100:1::/64\"]   # empty: from the LMA's pools\n    \
          allowed_mags: [\"2001:db8:1::10\"]                 # empty: any authorized MAG\n    \
          access_technology_type: 4\n    \
          local_routing: true\n    \
          proxy_registration_enabled: true                # false: the LMA refuses it (152)\n  \
        - mn_id_from_link_layer: lab.example              # MN-ID 02-00-5e-10-00-02@lab.example\n    \
          link_layer_addresses: [\"02:00:5e:10:00:02\"]\n\n\
        Examples:\n  \
        pmipctl policy apply -f nodes.yaml\n  \
        pmipctl policy get mn1@lab.example -o yaml > mn1.yaml   # edit it, then\n  \
        pmipctl policy apply -f mn1.yaml"
    )]
    Apply(ApplyArgs),
    /// Remove profiles. Existing bindings stay until they expire or are revoked.
    Delete(DeleteArgs),
    /// One profile.
    Get(GetArgs),
    /// Every profile, ordered by MN-ID (all pages).
    List,
    /// The MAGs allowed to send Proxy Binding Updates.
    Mags(MagsArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The file, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(value_name = "MN-ID", required = true)]
    pub mn_ids: Vec<String>,
    /// A profile that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(value_name = "MN-ID")]
    pub mn_id: String,
}

#[derive(Debug, Args)]
pub struct MagsArgs {
    #[command(subcommand)]
    pub command: MagsCommand,
}

#[derive(Debug, Subcommand)]
pub enum MagsCommand {
    /// Every authorized MAG, from the configuration file and the API.
    List,
    /// Authorize a MAG (or rename it).
    Add(AddMagArgs),
    /// Withdraw a MAG's authorization; its new PBUs are refused with status 154.
    Remove(RemoveMagArgs),
}

#[derive(Debug, Args)]
pub struct AddMagArgs {
    /// Its proxy-CoA: the source address of its PBUs.
    #[arg(value_name = "PROXY-COA")]
    pub proxy_coa: Ipv6Addr,
    /// A name for people (shown with its bindings).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RemoveMagArgs {
    #[arg(value_name = "PROXY-COA")]
    pub proxy_coa: Ipv6Addr,
    /// A MAG that is not authorized through the API is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub async fn run(args: PolicyArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    match args.command {
        PolicyCommand::Apply(a) => apply(a, conn, io).await,
        PolicyCommand::Delete(a) => delete(a, conn, io).await,
        PolicyCommand::Get(a) => get(a, conn, io).await,
        PolicyCommand::List => list(conn, io).await,
        PolicyCommand::Mags(a) => match a.command {
            MagsCommand::List => mags_list(conn, io).await,
            MagsCommand::Add(a) => mags_add(a, conn, io).await,
            MagsCommand::Remove(a) => mags_remove(a, conn, io).await,
        },
    }
}

/// The profiles a document holds, each with where it was found (`[2]`, `mobile_nodes[0]`).
fn profiles_of(doc: Value, at: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    match doc {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let here = format!("{at}[{i}]");
                match item {
                    Value::Object(_) => out.push(unwrap_entry(here, item)),
                    _ => return Err(format!("{here}: a profile is a mapping")),
                }
            }
            Ok(())
        }
        Value::Object(mut m) if m.contains_key("mobile_nodes") && !m.contains_key("mn_id") => {
            let nodes = m.remove("mobile_nodes").unwrap_or(Value::Null);
            if !matches!(nodes, Value::Array(_)) {
                return Err(format!("{at}mobile_nodes: a list of profiles"));
            }
            profiles_of(nodes, &format!("{at}mobile_nodes"), out)
        }
        Value::Object(_) => {
            out.push(unwrap_entry(at.to_owned(), doc));
            Ok(())
        }
        _ => Err(format!(
            "{}: a profile, a list of profiles or `mobile_nodes: [...]`",
            if at.is_empty() { "the file" } else { at }
        )),
    }
}

/// An entry of `policy list` output stands for its `profile`.
fn unwrap_entry(at: String, v: Value) -> (String, Value) {
    match v {
        Value::Object(mut m) if m.contains_key("profile") && !m.contains_key("mn_id") => {
            let p = m.remove("profile").unwrap_or(Value::Null);
            (format!("{at}.profile"), p)
        }
        other => (at, other),
    }
}

/// Reads and checks every profile of `text` (YAML or JSON); nothing is sent yet.
pub fn parse_profiles(text: &str) -> Result<Vec<MobileNodeProfile>, String> {
    let trimmed = text.trim_start();
    let docs: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?
    };
    let mut found = Vec::new();
    let many = docs.len() > 1;
    for (d, doc) in docs.into_iter().enumerate() {
        let at = if many {
            format!("document {}: ", d + 1)
        } else {
            String::new()
        };
        profiles_of(doc, &at, &mut found)?;
    }
    if found.is_empty() {
        return Err("no profile in it".into());
    }
    let mut out: Vec<MobileNodeProfile> = Vec::with_capacity(found.len());
    for (at, v) in found {
        // serde names the profile's field for most mistakes, not for a bad link-layer address.
        let field = cnf::config::bad_link_layer_path(&v, &at);
        let p: MobileNodeProfile = serde_json::from_value(v).map_err(|e| match &field {
            Some(f) => format!("{}: {e}", f.trim_start_matches('.')),
            None => format!("{}: {e}", label(&at)),
        })?;
        p.validate(&at)
            .map_err(|e| e.to_string().trim_start_matches('.').to_owned())?;
        if out.iter().any(|q| q.mn_id == p.mn_id) {
            return Err(format!("{}: {} is given twice", label(&at), p.mn_id));
        }
        out.push(p);
    }
    Ok(out)
}

fn label(at: &str) -> &str {
    if at.is_empty() { "the profile" } else { at }
}

/// What `policy apply` did to one profile.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub mn_id: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
    pub revision: u64,
}

async fn apply(args: ApplyArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let name = args.file.display().to_string();
    let raw = if name == "-" {
        read_all(io.stdin).context("cannot read standard input")?
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {name}"))?
    };
    let text = String::from_utf8(raw)
        .map_err(|_| CliError::Malformed(format!("{name}: not UTF-8 text")))?;
    let profiles =
        parse_profiles(&text).map_err(|e| CliError::Malformed(format!("{name}: {e}")))?;

    // One request: the LMA applies every profile or none.
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let r = c
        .call(
            client.apply_mobile_nodes(
                c.request(pb::ApplyMobileNodesRequest {
                    profiles: profiles
                        .iter()
                        .map(cnf::convert::profile_to_proto)
                        .collect(),
                }),
            ),
        )
        .await?;
    if r.results.len() != profiles.len() {
        return Err(CliError::Other(anyhow::anyhow!(
            "the LMA answered for {} of {} profiles",
            r.results.len(),
            profiles.len()
        )));
    }
    let done: Vec<Applied> = profiles
        .iter()
        .zip(&r.results)
        .map(|(p, r)| Applied {
            mn_id: p.mn_id.to_string(),
            action: match (r.created, r.changed) {
                (true, _) => "created",
                (false, true) => "configured",
                (false, false) => "unchanged",
            },
            revision: r.entry.as_ref().map_or(0, |e| e.revision),
        })
        .collect();
    emit(io, &done, || {
        done.iter()
            .map(|a| format!("{} {}\n", a.mn_id, a.action))
            .collect()
    })
}

async fn delete(args: DeleteArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let mut deleted = Vec::new();
    let mut not_found = Vec::new();
    let mut failed = 0usize;
    let mut last_error = None;
    for mn_id in &args.mn_ids {
        match c
            .call(
                client.delete_mobile_node(c.request(pb::DeleteMobileNodeRequest {
                    mn_id: mn_id.clone(),
                })),
            )
            .await
        {
            Ok(_) => {
                if io.output.is_text() {
                    writeln!(io.stdout, "{mn_id} deleted")?;
                }
                deleted.push(mn_id.clone());
            }
            Err(CliError::Grpc {
                code: tonic::Code::NotFound,
                ..
            }) if args.ignore_not_found => {
                if io.output.is_text() {
                    writeln!(io.stdout, "{mn_id} not found")?;
                }
                not_found.push(mn_id.clone());
            }
            Err(e) if args.mn_ids.len() == 1 => return Err(e),
            Err(e) => {
                writeln!(io.stderr, "error: {mn_id}: {e}")?;
                failed += 1;
                last_error = Some(e);
            }
        }
    }
    if !io.output.is_text() {
        emit(
            io,
            &serde_json::json!({ "deleted": deleted, "not_found": not_found }),
            String::new,
        )?;
    }
    match last_error {
        Some(_) => Err(CliError::Other(anyhow::anyhow!(
            "{failed} of {} profiles not deleted",
            args.mn_ids.len()
        ))),
        None => Ok(()),
    }
}

async fn get(args: GetArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let e = c
        .call(client.get_mobile_node(c.request(pb::GetMobileNodeRequest { mn_id: args.mn_id })))
        .await?;
    let v = ProfileEntryView::new(&e)?;
    emit(io, &v, || views::profile_text(&v))
}

async fn list(conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .call(
                client.list_mobile_nodes(c.request(pb::ListMobileNodesRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                })),
            )
            .await?;
        for e in &page.entries {
            all.push(ProfileEntryView::new(e)?);
        }
        if page.next_page_token.is_empty() || page.next_page_token == token {
            break;
        }
        token = page.next_page_token;
    }
    if io.output.is_text() && all.is_empty() {
        writeln!(io.stderr, "no profiles")?;
        return Ok(());
    }
    let style = io.style();
    emit(io, &all, || {
        views::profiles_table(&all, style.wide).render_as(style)
    })
}

async fn mags_list(conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let r = c
        .call(client.list_authorized_mags(c.request(pb::ListAuthorizedMagsRequest {})))
        .await?;
    let mags: Vec<MagView> = r.mags.iter().map(MagView::from).collect();
    if io.output.is_text() && mags.is_empty() {
        writeln!(io.stderr, "no authorized MAGs")?;
        return Ok(());
    }
    let style = io.style();
    emit(io, &mags, || views::mags_table(&mags).render_as(style))
}

async fn mags_add(args: AddMagArgs, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let m = c
        .call(
            client.add_authorized_mag(c.request(pb::AddAuthorizedMagRequest {
                mag: Some(pb::AuthorizedMag {
                    proxy_coa: args.proxy_coa.to_string(),
                    name: args.name.unwrap_or_default(),
                    source: pb::PolicySource::Api as i32,
                }),
            })),
        )
        .await?;
    let v = MagView::from(&m);
    emit(io, &v, || match &v.name {
        Some(n) => format!("{} ({n}) authorized\n", v.proxy_coa),
        None => format!("{} authorized\n", v.proxy_coa),
    })
}

async fn mags_remove(
    args: RemoveMagArgs,
    conn: &ConnectArgs,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let c = conn.connect(Daemon::Lma).await?;
    let mut client = PolicyClient::new(c.channel.clone());
    let r = c
        .call(
            client.remove_authorized_mag(c.request(pb::RemoveAuthorizedMagRequest {
                proxy_coa: args.proxy_coa.to_string(),
            })),
        )
        .await;
    let address = args.proxy_coa.to_string();
    match r {
        Ok(_) => emit(io, &serde_json::json!({ "removed": address }), || {
            format!("{address} removed\n")
        }),
        Err(CliError::Grpc {
            code: tonic::Code::NotFound,
            ..
        }) if args.ignore_not_found => {
            emit(io, &serde_json::json!({ "not_found": address }), || {
                format!("{address} not found\n")
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_profile_a_list_or_a_piece_of_configuration() {
        let one = parse_profiles("mn_id: mn1@lab.example\nlocal_routing: true\n").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].mn_id.as_str(), "mn1@lab.example");
        assert_eq!(one[0].local_routing, Some(true));

        let list = parse_profiles(
            "- mn_id: a@x\n  link_layer_addresses: [\"02:00:00:00:00:01\"]\n\
             - mn_id: b@x\n  home_network_prefixes: [2001:db8:100:2::/64]\n  \
             allowed_mags: [2001:db8:1::10]\n  access_technology_type: 4\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].link_layer_addresses[0].to_string(),
            "02:00:00:00:00:01"
        );
        assert_eq!(
            list[1].home_network_prefixes[0].to_string(),
            "2001:db8:100:2::/64"
        );
        assert_eq!(list[1].access_technology_type, Some(4));

        let cfg = parse_profiles("mobile_nodes:\n  - mn_id: a@x\n  - mn_id: b@x\n").unwrap();
        assert_eq!(cfg.len(), 2);

        let json = parse_profiles(r#"[{"mn_id": "a@x"}, {"mn_id": "b@x"}]"#).unwrap();
        assert_eq!(json.len(), 2);

        let docs = parse_profiles("mn_id: a@x\n---\n- mn_id: b@x\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn list_output_reads_back() {
        let entry = serde_json::json!([{
            "profile": {"mn_id": "a@x", "link_layer_addresses": [], "home_network_prefixes": [],
                        "allowed_mags": [], "access_technology_type": null, "local_routing": null},
            "source": "API", "revision": 3, "updated_at": "2026-01-01T00:00:00.000Z"
        }]);
        let yaml = serde_saphyr::to_string(&entry).unwrap();
        let back = parse_profiles(&yaml).unwrap();
        assert_eq!(back[0].mn_id.as_str(), "a@x");
    }

    #[test]
    fn mistakes_name_the_profile_and_the_field() {
        let e = parse_profiles("- mn_id: a@x\n- mn_id: b@x\n  colour: blue\n").unwrap_err();
        assert!(e.starts_with("[1]: unknown field `colour`"), "{e}");
        let e = parse_profiles("- mn_id: a@x\n  home_network_prefixes: [2001:db8::1/64]\n")
            .unwrap_err();
        assert!(
            e.starts_with("[0].home_network_prefixes[0]: 2001:db8::1/64 has host bits"),
            "{e}"
        );
        let e = parse_profiles("- mn_id: a@x\n- mn_id: b@x\n  link_layer_addresses: [zz]\n")
            .unwrap_err();
        assert!(
            e.starts_with("[1].link_layer_addresses[0]: link-layer address \"zz\""),
            "{e}"
        );
        let e = parse_profiles("mn_id: a@x\nlink_layer_addresses: [\"02:00:00:00:00:01\", 7]\n")
            .unwrap_err();
        assert!(e.starts_with("link_layer_addresses[1]: "), "{e}");
        let e = parse_profiles("- mn_id: a@x\n- mn_id: a@x\n").unwrap_err();
        assert_eq!(e, "[1]: a@x is given twice");
        let e = parse_profiles("mn_id: \"no one@x\"\n").unwrap_err();
        assert!(e.starts_with("the profile: "), "{e}");
        assert!(parse_profiles("").is_err());
        assert!(parse_profiles("42").is_err());
        assert!(parse_profiles("{not json").is_err());
    }
}
