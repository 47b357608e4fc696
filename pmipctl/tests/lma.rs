//! `pmipctl bindings`, `stats` and `policy` against a real LMA core serving its gRPC API on a
//! local port, run as the real binary.

mod daemons;

use std::time::Duration;

use daemons::*;
use pmip::wire::{BindingRevocation, BindingRevocationAck, BraStatus, HandoffIndicator, Message};
use pmip::wire::{Options, RevocationTrigger};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

fn json(o: &std::process::Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test]
async fn bindings_list_reads_every_page_as_a_table_json_and_yaml() {
    let mut lma = Lma::start().await;
    // Registered out of order: the listing is by MN-ID all the same.
    let mut prefixes = [all_zero(); 5];
    for n in [3, 1, 2] {
        prefixes[usize::from(n) - 1] = lma.attach(MAG1, n).await;
    }
    for n in [5, 4] {
        prefixes[usize::from(n) - 1] = lma.attach(MAG2, n).await;
    }
    let url = lma.url.clone();

    // Two per page: three requests.
    let list = json(
        &pmipctl(&[
            "bindings",
            "list",
            "--lma",
            &url,
            "--page-size",
            "2",
            "-o",
            "json",
        ])
        .await,
    );
    let list = list.as_array().expect("a list of bindings");
    assert_eq!(list.len(), 5);
    for (i, b) in list.iter().enumerate() {
        let n = i as u8 + 1;
        assert_eq!(b["mn_id"], nai(n));
        assert_eq!(
            b["home_network_prefixes"],
            serde_json::json!([prefixes[i].to_string()])
        );
        let mag = if n <= 3 { MAG1 } else { MAG2 };
        assert_eq!(b["proxy_coa"], mag.to_string());
        assert_eq!(b["state"], "ACTIVE");
        assert_eq!(b["access_technology_type"]["value"], 4);
        assert_eq!(b["access_technology_type"]["name"], "IEEE 802.11a/b/g");
        assert_eq!(b["mn_link_layer_id"], ll(n).to_string());
        assert_eq!(b["lifetime_granted_seconds"], 3600);
        assert!(b["registered_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(b["previous_proxy_coa"], Value::Null);
    }

    // The default page size gives the same.
    let all = json(&pmipctl(&["--lma", &url, "-o", "json", "bindings", "list"]).await);
    assert_eq!(all.as_array().unwrap().len(), 5);

    // YAML has the same content, times included: they do not move between two calls (only
    // the lifetime left does).
    tokio::time::sleep(Duration::from_millis(30)).await;
    let yaml = ok(&pmipctl(&["--lma", &url, "-o", "yaml", "bindings", "list"]).await);
    let from_yaml: Value = serde_saphyr::from_str(&yaml).unwrap();
    let timeless = |v: &Value| -> Vec<Value> {
        let mut v = v.as_array().unwrap().clone();
        for b in &mut v {
            let b = b.as_object_mut().unwrap();
            assert!(b.remove("lifetime_remaining_seconds").is_some());
        }
        v
    };
    assert_eq!(timeless(&from_yaml), timeless(&all));
    for _ in 0..5 {
        let again = json(&pmipctl(&["--lma", &url, "-o", "json", "bindings", "list"]).await);
        assert_eq!(timeless(&again), timeless(&all));
    }

    // Only MAG2's.
    let two = json(
        &pmipctl(&[
            "--lma",
            &url,
            "-o",
            "json",
            "bindings",
            "list",
            "--proxy-coa",
            &MAG2.to_string(),
        ])
        .await,
    );
    let ids: Vec<&str> = two
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["mn_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [nai(4), nai(5)]);

    // The table: a heading, one aligned row per binding.
    let table = ok(&pmipctl(&["--lma", &url, "bindings", "list", "--page-size", "3"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(
        lines[0].starts_with("MN-ID") && lines[0].contains("HOME NETWORK PREFIXES"),
        "{table}"
    );
    let state_col = lines[0].find("STATE").unwrap();
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&nai(i as u8 + 1)), "{table}");
        assert!(line.contains(&prefixes[i].to_string()), "{table}");
        assert_eq!(&line[state_col..state_col + 6], "ACTIVE", "{table}");
        // Lifetime remaining of granted.
        assert!(line.contains("/1h "), "{table}");
    }
    // The MAG column: the name the configuration gives MAG2, none for MAG1.
    let mag_col = lines[0].find(" MAG ").unwrap() + 1;
    for (i, line) in lines[1..].iter().enumerate() {
        let want = if i < 3 { "-    " } else { "mag-b" };
        assert_eq!(&line[mag_col..mag_col + 5], want, "{table}");
    }

    // Without the heading line; wide, with more columns.
    let bare = ok(&pmipctl(&["--lma", &url, "bindings", "list", "--no-headers"]).await);
    let bare: Vec<&str> = bare.lines().collect();
    assert_eq!(bare.len(), 5);
    assert!(bare[0].starts_with(&nai(1)), "{bare:?}");
    let wide = ok(&pmipctl(&["--lma", &url, "bindings", "list", "-o", "wide"]).await);
    let wide: Vec<&str> = wide.lines().collect();
    assert_eq!(wide.len(), 6);
    for heading in [
        "HANDOVERS",
        "ACCESS TECHNOLOGY",
        "LINK-LAYER ID",
        "REGISTERED",
        "REVISION",
    ] {
        assert!(wide[0].contains(heading), "{heading}: {}", wide[0]);
    }
    assert!(wide[1].contains(&ll(1).to_string()), "{}", wide[1]);
    assert!(wide[1].contains("IEEE 802.11a/b/g"), "{}", wide[1]);
    assert!(wide[0].len() > lines[0].len());
    lma.stop().await;
}

#[tokio::test]
async fn bindings_get_by_mn_id_prefix_or_address_and_errors() {
    let mut lma = Lma::start().await;
    let p = lma.attach(MAG1, 1).await;
    let url = lma.url.clone();

    let text = ok(&pmipctl(&["--lma", &url, "bindings", "get", &nai(1)]).await);
    for line in [
        format!("MN-ID:                  {}", nai(1)),
        format!("Home network prefixes:  {p}"),
        format!("Proxy-CoA:              {MAG1}"),
        "State:                  ACTIVE".to_owned(),
        "Access technology:      IEEE 802.11a/b/g".to_owned(),
        "Handoff indicator:      Attachment over a new interface".to_owned(),
        "Handovers:              0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("Lifetime:") && l.ends_with("remaining of 1h")),
        "{text}"
    );

    let by_prefix = json(
        &pmipctl(&[
            "--lma",
            &url,
            "-o",
            "json",
            "bindings",
            "get",
            &p.to_string(),
        ])
        .await,
    );
    assert_eq!(by_prefix["mn_id"], nai(1));
    let inside = std::net::Ipv6Addr::from(u128::from(p.addr()) | 0x42);
    let by_address = json(
        &pmipctl(&[
            "--lma",
            &url,
            "-o",
            "json",
            "bindings",
            "get",
            &inside.to_string(),
        ])
        .await,
    );
    assert_eq!(by_address["proxy_coa"], MAG1.to_string());

    // No binding: the server's code and message, exit code 1, nothing on standard output.
    let o = pmipctl(&["--lma", &url, "bindings", "get", &nai(3)]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("error: NOT_FOUND: {} has no binding\n", nai(3))
    );
    assert!(o.stdout.is_empty());
    let o = pmipctl(&["--lma", &url, "bindings", "get", "2001:db8::/129"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: home_network_prefix: "),
        "{}",
        stderr(&o)
    );
    lma.stop().await;
}

#[tokio::test]
async fn a_daemon_that_is_not_there_is_named() {
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = pmipctl(&["--lma", &url, "bindings", "list"]).await;
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!("error: cannot reach {url}: ")),
        "{e}"
    );
    assert!(e.contains("refused"), "{e}");
    // Without a scheme: plain http and the given port.
    let o = pmipctl(&["--lma", &format!("127.0.0.1:{port}"), "stats"]).await;
    assert!(stderr(&o).contains(&url), "{}", stderr(&o));
    // Bad flags are usage errors.
    let o = pmipctl(&["--lma", "ftp://x", "stats"]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = pmipctl(&["--timeout", "soon", "stats"]).await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test]
async fn stats_show_the_lma_counters() {
    let mut lma = Lma::start().await;
    lma.attach(MAG1, 1).await;
    lma.attach(MAG2, 2).await;
    let (status, _) = lma
        .pbu(
            MAG3,
            3,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(status.value(), 154);
    let s = json(&pmipctl(&["--lma", &lma.url, "stats", "-o", "json"]).await);
    assert_eq!(s["name"], "lma-test");
    assert_eq!(s["lma_address"], LMA.to_string());
    assert_eq!(s["bindings"], 2);
    assert_eq!(s["active_bindings"], 2);
    assert_eq!(s["pbus_received"], 3);
    assert_eq!(s["mobile_node_profiles"], 8);
    assert_eq!(
        s["pbas_by_status"],
        serde_json::json!([
            {"status": 0, "status_name": "PBU_ACCEPTED", "count": 2},
            {"status": 154, "status_name": "MAG_NOT_AUTHORIZED_FOR_PROXY_REG", "count": 1}
        ])
    );
    let text = ok(&pmipctl(&["--lma", &lma.url, "stats"]).await);
    assert!(
        text.contains(&format!("LMA:              lma-test ({LMA})")),
        "{text}"
    );
    assert!(text.contains("Bindings:         2 (2 active)"), "{text}");
    assert!(
        text.contains(
            "PBAs sent:        0 PBU_ACCEPTED: 2, 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG: 1"
        ),
        "{text}"
    );
    lma.stop().await;
}

#[tokio::test]
async fn revoke_sends_a_bri_and_reports_the_acknowledgement() {
    let mut lma = Lma::start().await;
    lma.attach(MAG2, 1).await;
    let url = lma.url.clone();
    let run = tokio::spawn(async move {
        pmipctl(&[
            "--lma",
            &url,
            "-o",
            "json",
            "bindings",
            "revoke",
            &nai(1),
            "--trigger",
            "user-initiated-session-termination",
        ])
        .await
    });
    // Play the MAG: acknowledge the BRI.
    let t = loop {
        let t = timeout(WAIT, lma.sent.recv()).await.unwrap().unwrap();
        if let Ok(Message::BindingRevocation(BindingRevocation::Indication(_))) =
            Message::parse_verified(&t.payload, &t.src, &t.dst)
        {
            break t;
        }
    };
    assert_eq!(t.dst, MAG2);
    let Ok(Message::BindingRevocation(BindingRevocation::Indication(bri))) =
        Message::parse_verified(&t.payload, &t.src, &t.dst)
    else {
        unreachable!()
    };
    assert_eq!(
        bri.trigger,
        RevocationTrigger::UserInitiatedSessionTermination
    );
    let m = Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
        status: BraStatus::Success,
        sequence: bri.sequence,
        flags: bri.flags,
        options: Options::EMPTY,
    }));
    let mut bra = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bra, &MAG2, &LMA).unwrap();
    lma.deliver(MAG2, bra).await;

    let out = json(&run.await.unwrap());
    assert_eq!(out["mn_id"], nai(1));
    assert_eq!(out["outcome"], "ACKNOWLEDGED");
    assert_eq!(out["bra_status"]["value"], 0);
    assert_eq!(out["binding"]["proxy_coa"], MAG2.to_string());

    // Gone; and a second revocation has nothing to revoke.
    let o = pmipctl(&["--lma", &lma.url, "bindings", "get", &nai(1)]).await;
    assert_eq!(o.status.code(), Some(1));
    let o = pmipctl(&["--lma", &lma.url, "bindings", "revoke", &nai(1)]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    lma.stop().await;
}

#[tokio::test]
async fn revoke_by_mag_sends_one_global_bri_and_reports_how_many_went() {
    let mut lma = Lma::start().await;
    lma.attach(MAG2, 1).await;
    lma.attach(MAG2, 2).await;
    let url = lma.url.clone();
    let mag = MAG2.to_string();
    let run = tokio::spawn(async move {
        pmipctl(&["--lma", &url, "bindings", "revoke", "--proxy-coa", &mag]).await
    });
    let t = loop {
        let t = timeout(WAIT, lma.sent.recv()).await.unwrap().unwrap();
        if let Ok(Message::BindingRevocation(BindingRevocation::Indication(_))) =
            Message::parse_verified(&t.payload, &t.src, &t.dst)
        {
            break t;
        }
    };
    let Ok(Message::BindingRevocation(BindingRevocation::Indication(bri))) =
        Message::parse_verified(&t.payload, &t.src, &t.dst)
    else {
        unreachable!()
    };
    assert_eq!(bri.trigger, RevocationTrigger::PerPeerPolicy);
    let m = Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
        status: BraStatus::Success,
        sequence: bri.sequence,
        flags: bri.flags,
        options: Options::EMPTY,
    }));
    let mut bra = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bra, &MAG2, &LMA).unwrap();
    lma.deliver(MAG2, bra).await;
    let o = run.await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with(&format!(
            "MAG {MAG2}: 2 binding(s) revoked: the MAG acknowledged"
        )),
        "{text}"
    );
    // A node and a MAG together are refused by the command line.
    let o = pmipctl(&[
        "--lma",
        &lma.url,
        "bindings",
        "revoke",
        &nai(1),
        "--proxy-coa",
        "::1",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    lma.stop().await;
}

const PROFILES: &str = "\
# Two nodes, as in the LMA configuration's mobile_nodes.
- mn_id: api1@lab.example
  link_layer_addresses: [\"02:00:5e:20:00:01\"]
  home_network_prefixes: [2001:db8:100:ff00::/64]
  allowed_mags: [2001:db8:1::10]
  access_technology_type: 4
  local_routing: true
- mn_id: api2@lab.example
";

#[tokio::test]
async fn policy_apply_list_get_and_delete_profiles() {
    let lma = Lma::start().await;
    let url = lma.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodes.yaml");
    std::fs::write(&file, PROFILES).unwrap();
    let f = file.to_str().unwrap();

    let out = ok(&pmipctl(&["--lma", &url, "policy", "apply", "-f", f]).await);
    assert_eq!(out, "api1@lab.example created\napi2@lab.example created\n");
    let out = ok(&pmipctl(&["--lma", &url, "policy", "apply", "-f", f]).await);
    assert_eq!(
        out,
        "api1@lab.example unchanged\napi2@lab.example unchanged\n"
    );
    // One changed, from standard input, as JSON.
    let o = pmipctl_in(
        &["--lma", &url, "policy", "apply", "-f", "-", "-o", "json"],
        br#"{"mn_id": "api2@lab.example", "local_routing": false, "proxy_registration_enabled": false}"#,
    )
    .await;
    let applied = json(&o);
    assert_eq!(applied[0]["mn_id"], "api2@lab.example");
    assert_eq!(applied[0]["action"], "configured");

    let list = json(&pmipctl(&["--lma", &url, "policy", "list", "-o", "json"]).await);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 10);
    let api1 = list
        .iter()
        .find(|e| e["profile"]["mn_id"] == "api1@lab.example")
        .unwrap();
    assert_eq!(api1["source"], "API");
    assert_eq!(
        api1["profile"],
        serde_json::json!({
            "mn_id": "api1@lab.example",
            "mn_id_from_link_layer": null,
            "link_layer_addresses": ["02:00:5e:20:00:01"],
            "home_network_prefixes": ["2001:db8:100:ff00::/64"],
            "allowed_mags": ["2001:db8:1::10"],
            "access_technology_type": 4,
            "local_routing": true,
            "ipv6": true,
            "ipv4": false,
            "ipv4_home_address": null,
            "proxy_registration_enabled": true
        })
    );
    let table = ok(&pmipctl(&["--lma", &url, "policy", "list"]).await);
    let row = table
        .lines()
        .find(|l| l.starts_with("api1@lab.example"))
        .unwrap();
    for cell in [
        "02:00:5e:20:00:01",
        "2001:db8:100:ff00::/64",
        "2001:db8:1::10",
        "IEEE 802.11a/b/g",
        "on",
        "enabled",
        "API",
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }
    let heading = table.lines().next().unwrap();
    let column = heading.find("PROXY REGISTRATION").expect(heading);
    assert_eq!(&row[column..column + 7], "enabled", "{table}");
    let api2 = table
        .lines()
        .find(|l| l.starts_with("api2@lab.example"))
        .unwrap();
    assert_eq!(&api2[column..column + 7], "refused", "{table}");
    let one = ok(&pmipctl(&["--lma", &url, "policy", "get", "api2@lab.example"]).await);
    assert!(one.contains("Proxy registration:     refused\n"), "{one}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&nai(1)) && l.ends_with("CONFIG")),
        "{table}"
    );

    // What `policy get -o yaml` prints can be applied again.
    let yaml = ok(&pmipctl(&[
        "--lma",
        &url,
        "policy",
        "get",
        "api1@lab.example",
        "-o",
        "yaml",
    ])
    .await);
    let o = pmipctl_in(
        &["--lma", &url, "policy", "apply", "-f", "-"],
        yaml.as_bytes(),
    )
    .await;
    assert_eq!(ok(&o), "api1@lab.example unchanged\n");

    // A mistake in the file: nothing is sent, exit code 2.
    std::fs::write(
        &file,
        "- mn_id: api3@lab.example\n- mn_id: api4@lab.example\n  home_network_prefixes: [2001:db8:100:1::1/64]\n",
    )
    .unwrap();
    let o = pmipctl(&["--lma", &url, "policy", "apply", "-f", f]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("[1].home_network_prefixes[0]: 2001:db8:100:1::1/64 has host bits set"),
        "{}",
        stderr(&o)
    );
    let o = pmipctl(&["--lma", &url, "policy", "get", "api3@lab.example"]).await;
    assert_eq!(o.status.code(), Some(1));

    // The LMA refuses one of three: none is applied (not the new one before it, not the
    // change to api2), and the error names the one refused.
    std::fs::write(
        &file,
        "- mn_id: api5@lab.example\n\
         - mn_id: api2@lab.example\n  local_routing: true\n\
         - mn_id: api6@lab.example\n  link_layer_addresses: [\"02:00:5e:20:00:01\"]\n",
    )
    .unwrap();
    let before = ok(&pmipctl(&["--lma", &url, "policy", "list", "-o", "json"]).await);
    let o = pmipctl(&["--lma", &url, "policy", "apply", "-f", f]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: ALREADY_EXISTS: profiles[2] (api6@lab.example): link-layer address \
         02:00:5e:20:00:01 already belongs to api1@lab.example; nothing was changed\n"
    );
    let after = ok(&pmipctl(&["--lma", &url, "policy", "list", "-o", "json"]).await);
    assert_eq!(after, before);
    let o = pmipctl(&["--lma", &url, "policy", "get", "api5@lab.example"]).await;
    assert_eq!(o.status.code(), Some(1));

    let out = ok(&pmipctl(&["--lma", &url, "policy", "delete", "api1@lab.example"]).await);
    assert_eq!(out, "api1@lab.example deleted\n");
    let o = pmipctl(&["--lma", &url, "policy", "get", "api1@lab.example"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: NOT_FOUND: no profile for api1@lab.example\n"
    );
    let o = pmipctl(&["--lma", &url, "policy", "delete", &nai(1)]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        stderr(&o)
    );

    // Deleting what is gone: an error, unless told to ignore it (other errors still count).
    let o = pmipctl(&["--lma", &url, "policy", "delete", "api1@lab.example"]).await;
    assert_eq!(o.status.code(), Some(1));
    let out = ok(&pmipctl(&[
        "--lma",
        &url,
        "policy",
        "delete",
        "api1@lab.example",
        "api2@lab.example",
        "--ignore-not-found",
    ])
    .await);
    assert_eq!(
        out,
        "api1@lab.example not found\napi2@lab.example deleted\n"
    );
    let j = json(
        &pmipctl(&[
            "--lma",
            &url,
            "-o",
            "json",
            "policy",
            "delete",
            "api2@lab.example",
            "--ignore-not-found",
        ])
        .await,
    );
    assert_eq!(
        j,
        serde_json::json!({"deleted": [], "not_found": ["api2@lab.example"]})
    );
    let o = pmipctl(&[
        "--lma",
        &url,
        "policy",
        "delete",
        &nai(1),
        "--ignore-not-found",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    lma.stop().await;
}

/// Issue 13 item 8: a profile whose MN-ID is derived from its link-layer address, applied
/// through the Policy API, is the LMA's under `02-00-5e-20-00-09@lab.example`; a bad realm
/// is refused naming the field, and nothing is applied.
#[tokio::test]
async fn policy_apply_derives_the_mn_id_from_the_link_layer_address() {
    let lma = Lma::start().await;
    let url = lma.url.clone();
    let o = pmipctl_in(
        &["--lma", &url, "policy", "apply", "-f", "-"],
        b"- mn_id_from_link_layer: lab.example\n  link_layer_addresses: [\"02:00:5e:20:00:09\"]\n",
    )
    .await;
    assert_eq!(ok(&o), "02-00-5e-20-00-09@lab.example created\n");
    let got = json(
        &pmipctl(&[
            "--lma",
            &url,
            "policy",
            "get",
            "02-00-5e-20-00-09@lab.example",
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(got["profile"]["mn_id_from_link_layer"], "lab.example");
    let o = pmipctl_in(
        &["--lma", &url, "policy", "apply", "-f", "-"],
        b"- mn_id_from_link_layer: 'lab example'\n  link_layer_addresses: [\"02:00:5e:20:00:0a\"]\n",
    )
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mn_id_from_link_layer"), "{err}");
}

#[tokio::test]
async fn policy_mags_add_list_and_remove() {
    let mut lma = Lma::start().await;
    let url = lma.url.clone();
    let mags = json(&pmipctl(&["--lma", &url, "policy", "mags", "list", "-o", "json"]).await);
    assert_eq!(
        mags,
        serde_json::json!([
            {"proxy_coa": MAG1.to_string(), "name": null, "source": "CONFIG"},
            {"proxy_coa": MAG2.to_string(), "name": "mag-b", "source": "CONFIG"},
        ])
    );
    let out = ok(&pmipctl(&[
        "--lma",
        &url,
        "policy",
        "mags",
        "add",
        &MAG3.to_string(),
        "--name",
        "mag-c",
    ])
    .await);
    assert_eq!(out, format!("{MAG3} (mag-c) authorized\n"));
    let table = ok(&pmipctl(&["--lma", &url, "policy", "mags", "list"]).await);
    assert_eq!(
        table,
        format!(
            "PROXY-COA       NAME   SOURCE\n\
             {MAG1}  -      CONFIG\n\
             {MAG2}  mag-b  CONFIG\n\
             {MAG3}  mag-c  API\n"
        )
    );
    // Now MAG3 may register nodes, and its bindings carry its name.
    lma.attach(MAG3, 1).await;
    let b = json(&pmipctl(&["--lma", &url, "-o", "json", "bindings", "get", &nai(1)]).await);
    assert_eq!(b["mag_name"], "mag-c");

    let out = ok(&pmipctl(&["--lma", &url, "policy", "mags", "remove", &MAG3.to_string()]).await);
    assert_eq!(out, format!("{MAG3} removed\n"));
    let o = pmipctl(&["--lma", &url, "policy", "mags", "remove", &MAG3.to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    let out = ok(&pmipctl(&[
        "--lma",
        &url,
        "policy",
        "mags",
        "remove",
        &MAG3.to_string(),
        "--ignore-not-found",
    ])
    .await);
    assert_eq!(out, format!("{MAG3} not found\n"));
    let o = pmipctl(&["--lma", &url, "policy", "mags", "remove", &MAG1.to_string()]).await;
    assert!(
        stderr(&o).starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        stderr(&o)
    );
    let o = pmipctl(&["--lma", &url, "policy", "mags", "add", "not-an-address"]).await;
    assert_eq!(o.status.code(), Some(2));
    lma.stop().await;
}

/// Reads the next line `pmipctl` writes, within a few seconds.
async fn line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> String {
    timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("pmipctl still writing")
}

fn sigint(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
}

#[tokio::test]
async fn watch_follows_live_events_and_resumes_after_the_lma_api_comes_back() {
    let mut lma = Lma::start().await;
    lma.attach(MAG1, 1).await;
    let mut child = command(&["--lma", &lma.url, "bindings", "watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let event = |l: String| -> Value {
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
    };

    // The current state, then live.
    let reset = event(line(&mut out).await);
    assert_eq!(
        (reset["type"].as_str(), reset["reason"].as_str()),
        (Some("RESET"), Some("NO_CURSOR"))
    );
    let e = event(line(&mut out).await);
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["binding"]["mn_id"], nai(1));
    let synced = event(line(&mut out).await);
    assert_eq!(synced["type"], "SYNCED");
    assert_eq!(synced["object_count"], 1);

    let p2 = lma.attach(MAG1, 2).await;
    let e = event(line(&mut out).await);
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["binding"]["mn_id"], nai(2));
    assert_eq!(e["binding"]["proxy_coa"], MAG1.to_string());
    let seen = e["revision"].as_u64().unwrap();

    // The API goes away; changes go on meanwhile.
    lma.stop_api().await;
    let note = line(&mut err).await;
    assert!(note.starts_with("watch: UNAVAILABLE: "), "{note}");
    assert!(note.ends_with("; reconnecting"), "{note}");
    let (status, _) = lma
        .pbu(MAG2, 2, p2, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    assert_eq!(status.value(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lma.start_api().await;

    // Resumed after what it printed: the missed handoff, no RESET, nothing twice.
    let e = event(line(&mut out).await);
    assert_eq!(e["type"], "UPDATED", "{e}");
    assert_eq!(e["reason"], "HANDOFF");
    assert_eq!(e["binding"]["proxy_coa"], MAG2.to_string());
    assert_eq!(e["binding"]["previous_proxy_coa"], MAG1.to_string());
    assert!(e["revision"].as_u64().unwrap() > seen);
    let s = event(line(&mut out).await);
    assert_eq!(s["type"], "SYNCED");
    assert_eq!(s["object_count"], 2);
    loop {
        let note = line(&mut err).await;
        if note.starts_with("watch: reconnected to ") {
            assert!(
                note.contains(&format!("resuming after revision 1.{seen}")),
                "{note}"
            );
            break;
        }
    }

    // Live again.
    lma.attach(MAG2, 3).await;
    let e = event(line(&mut out).await);
    assert_eq!(
        (e["type"].as_str(), e["binding"]["mn_id"].as_str()),
        (Some("ADDED"), Some(nai(3).as_str()))
    );

    // Ctrl-C ends it cleanly.
    sigint(&child);
    let status = timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    lma.stop().await;
}

#[tokio::test]
async fn watch_of_one_node_prints_one_line_per_event() {
    let mut lma = Lma::start().await;
    let p1 = lma.attach(MAG1, 1).await;
    let mut child = command(&["--lma", &lma.url, "bindings", "watch", "--mn-id", &nai(1)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        line(&mut out)
            .await
            .contains("  RESET     NO_CURSOR: the current state follows")
    );
    let l = line(&mut out).await;
    assert!(
        l.ends_with(&format!(
            "  ADDED     {}  {p1} at {MAG1}, ACTIVE, lifetime 1h",
            nai(1)
        )),
        "{l}"
    );
    assert!(
        line(&mut out)
            .await
            .contains("  SYNCED    1 binding; live from revision 1.")
    );
    // Another node's registration is not shown; this node's handoff is.
    lma.attach(MAG1, 2).await;
    lma.pbu(MAG2, 1, p1, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    let l = line(&mut out).await;
    assert!(
        l.ends_with(&format!(
            "  UPDATED   {}  HANDOFF: {p1} at {MAG2} (mag-b), ACTIVE, from {MAG1}",
            nai(1)
        )) || l.contains(&format!(
            "HANDOFF: {p1} at {MAG2} (mag-b), ACTIVE, from {MAG1} ("
        )),
        "{l}"
    );
    sigint(&child);
    let status = timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    lma.stop().await;
}

/// Answers every heartbeat request the LMA sends to `mag` (Restart Counter `rc`), and
/// nothing else, until the test ends.
fn answer_heartbeats(
    lma: &mut Lma,
    mag: std::net::Ipv6Addr,
    rc: u32,
) -> tokio::task::JoinHandle<()> {
    use pmip::wire::{Heartbeat, HeartbeatFlags, MobilityOption};
    let (_, empty) = tokio::sync::mpsc::unbounded_channel();
    let mut sent = std::mem::replace(&mut lma.sent, empty);
    let core = lma.core.clone();
    tokio::spawn(async move {
        while let Some(t) = sent.recv().await {
            let seq = match Message::parse_verified(&t.payload, &t.src, &t.dst) {
                Ok(Message::Heartbeat(h)) if t.dst == mag && !h.is_response() => h.sequence,
                _ => continue,
            };
            let opts = [MobilityOption::RestartCounter(rc)];
            let m = Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::R,
                sequence: seq,
                options: Options::List(&opts),
            });
            let mut bytes = vec![0u8; m.buffer_len()];
            m.emit_with_checksum(&mut bytes, &mag, &LMA).unwrap();
            let r = core
                .call(|reply| lma_cnf::core::Command::Receive {
                    src: mag,
                    dst: LMA,
                    bytes,
                    reply,
                })
                .await;
            if r.is_err() {
                return;
            }
        }
    })
}

#[tokio::test]
async fn mags_shows_each_mag_with_its_heartbeat_state_bindings_and_restarts() {
    use pmip::wire::{Heartbeat, HeartbeatFlags, MobilityOption};
    // Heartbeats every second, a MAG down after three unanswered requests.
    let mut lma = Lma::start_with_heartbeats(1, 3).await;
    let url = lma.url.clone();

    // Nothing registered yet: both authorized MAGs idle.
    let all = json(&pmipctl(&["--lma", &url, "mags", "-o", "json"]).await);
    let states: Vec<(&str, &str, u64)> = (all.as_array().unwrap().iter())
        .map(|m| {
            (
                m["proxy_coa"].as_str().unwrap(),
                m["state"].as_str().unwrap(),
                m["bindings"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("2001:db8:1::10", "IDLE", 0), ("2001:db8:2::10", "IDLE", 0)]
    );
    assert_eq!(all[1]["name"], "mag-b");
    assert_eq!(all[0]["name"], Value::Null);
    assert_eq!(all[0]["authorization"], "CONFIG");
    assert_eq!(all[0]["restart_counter"], Value::Null);

    // Two nodes at MAG1, which answers heartbeats; one at MAG2, which does not.
    lma.attach(MAG1, 1).await;
    lma.attach(MAG1, 2).await;
    lma.attach(MAG2, 3).await;
    let responder = answer_heartbeats(&mut lma, MAG1, 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = json(&pmipctl(&["--lma", &url, "mags", "-o", "json"]).await);
        if all[1]["state"] == "DOWN" && all[0]["restart_counter"] == 5 {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(all[0]["state"], "UP", "{all}");
    assert_eq!(all[0]["bindings"], 2);
    assert_eq!(all[1]["bindings"], 1);
    assert_eq!(all[1]["restart_counter"], Value::Null, "never answered");
    assert!(all[1]["since"].as_str().unwrap() > all[0]["since"].as_str().unwrap());

    // MAG1 announces a restart (an unsolicited response with a new counter, RFC 5847 §3.2).
    responder.abort();
    let opts = [MobilityOption::RestartCounter(6)];
    let m = Message::Heartbeat(Heartbeat {
        flags: HeartbeatFlags::R | HeartbeatFlags::U,
        sequence: 0,
        options: Options::List(&opts),
    });
    let mut bytes = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bytes, &MAG1, &LMA).unwrap();
    lma.deliver(MAG1, bytes).await;
    let one = json(&pmipctl(&["--lma", &url, "-o", "json", "mags", "2001:db8:1::10"]).await);
    assert_eq!(one["restart_counter"], 6);
    assert_eq!(one["restarts"], 1);
    assert!(one["last_restart_at"].as_str().unwrap().ends_with('Z'));

    // YAML says the same as JSON.
    let yaml = ok(&pmipctl(&["--lma", &url, "-o", "yaml", "mags", "mag-b"]).await);
    let from_yaml: Value = serde_saphyr::from_str(&yaml).unwrap();
    let b = json(&pmipctl(&["--lma", &url, "-o", "json", "mags", "mag-b"]).await);
    assert_eq!(from_yaml, b);
    assert_eq!(b["proxy_coa"], "2001:db8:2::10");

    // The table: aligned columns, a row per MAG; --no-headers drops the heading; wide adds
    // columns.
    let table = ok(&pmipctl(&["--lma", &url, "mags"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("PROXY-COA"), "{table}");
    let state = lines[0].find("STATE").unwrap();
    assert_eq!(&lines[2][state..state + 4], "DOWN", "{table}");
    let bindings = lines[0].find("BINDINGS").unwrap();
    assert_eq!(&lines[1][bindings..bindings + 1], "2", "{table}");
    assert!(lines[2].contains("mag-b"), "{table}");
    let bare = ok(&pmipctl(&["--lma", &url, "mags", "--no-headers"]).await);
    assert_eq!(bare.lines().count(), 2, "{bare}");
    assert!(bare.starts_with("2001:db8:1::10"), "{bare}");
    let wide = ok(&pmipctl(&["--lma", &url, "mags", "-o", "wide"]).await);
    let heading = wide.lines().next().unwrap();
    for h in ["AUTHORIZED", "RESTARTS", "LAST RESTART", "CHANGED AT"] {
        assert!(heading.contains(h), "{wide}");
    }
    let text = ok(&pmipctl(&["--lma", &url, "mags", "mag-b"]).await);
    assert!(text.contains("State:            DOWN\n"), "{text}");
    assert!(text.contains("Bindings:         1\n"), "{text}");

    // A MAG the LMA does not know.
    let o = pmipctl(&["--lma", &url, "mags", "2001:db8:9::10"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    lma.stop().await;
}
