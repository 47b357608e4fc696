//! `pmipctl mag` against a real MAG core serving its Gateway service on a local port. What the
//! MAG sends is handed to a real LMA core, so `pmipctl mag attach` shows up in
//! `pmipctl bindings list`.

mod daemons;

use std::time::Duration;

use daemons::*;
use serde_json::Value;
use tokio::time::timeout;

fn json(o: &std::process::Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test]
async fn attach_bul_detach_and_stats() {
    let mut mag = Mag::start().await;
    let lma = Lma::start().await;
    let m = mag.url.clone();

    let o = pmipctl(&["--mag", &m, "mag", "bul"]).await;
    assert_eq!(ok(&o), "");
    assert_eq!(stderr(&o), "the binding update list is empty\n");

    // The access network reports node 1 on acc0: the MAG sends a PBU.
    let out = ok(&pmipctl(&[
        "--mag",
        &m,
        "mag",
        "attach",
        &ll(1).to_string(),
        "--interface",
        ACCESS,
        "--access-technology",
        "wlan",
    ])
    .await);
    assert!(
        out.contains(&format!("MN-ID:                  {}\n", nai(1))),
        "{out}"
    );
    assert!(
        out.contains("State:                  REGISTERING\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Access interface:       {ACCESS}\n")),
        "{out}"
    );
    let pbu = timeout(WAIT, mag.sent.recv()).await.unwrap().unwrap();
    assert_eq!((pbu.src, pbu.dst), (MAG1, LMA));

    // Carried to the LMA, it makes a binding at this MAG's proxy-CoA.
    lma.deliver(pbu.src, pbu.payload).await;
    let bindings = json(&pmipctl(&["--lma", &lma.url, "-o", "json", "bindings", "list"]).await);
    assert_eq!(bindings[0]["mn_id"], nai(1));
    assert_eq!(bindings[0]["proxy_coa"], MAG1.to_string());
    assert_eq!(bindings[0]["access_technology_type"]["value"], 4);

    let bul = json(&pmipctl(&["--mag", &m, "mag", "bul", "-o", "json"]).await);
    let bul = bul.as_array().unwrap();
    assert_eq!(bul.len(), 1);
    assert_eq!(bul[0]["mn_id"], nai(1));
    assert_eq!(bul[0]["mn_link_layer_id"], ll(1).to_string());
    assert_eq!(bul[0]["access_interface"], ACCESS);
    assert_eq!(bul[0]["lma_address"], LMA.to_string());
    assert_eq!(bul[0]["state"], "REGISTERING");
    assert_eq!(bul[0]["last_pba_status"], Value::Null);
    let table = ok(&pmipctl(&["--mag", &m, "mag", "bul"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("MN-ID") && lines[0].contains("LINK-LAYER"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&nai(1)) && lines[1].contains("REGISTERING"),
        "{table}"
    );

    let s = json(&pmipctl(&["--mag", &m, "mag", "stats", "-o", "json"]).await);
    assert_eq!(s["name"], "mag-test");
    assert_eq!(s["proxy_coa"], MAG1.to_string());
    assert_eq!(s["bul_entries"], 1);
    assert!(s["pbus_sent"].as_u64().unwrap() >= 1);
    assert_eq!(s["mobile_node_profiles"], 4);
    let text = ok(&pmipctl(&["--mag", &m, "mag", "stats"]).await);
    assert!(
        text.contains(&format!("MAG:                  mag-test ({MAG1})\n")),
        "{text}"
    );

    // Errors of the MAG: an unknown link-layer address, an interface it does not have.
    let o = pmipctl(&[
        "--mag",
        &m,
        "mag",
        "attach",
        "02:00:00:00:99:99",
        "-i",
        ACCESS,
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: NOT_FOUND: no profile has link-layer address 02:00:00:00:99:99\n"
    );
    let o = pmipctl(&[
        "--mag",
        &m,
        "mag",
        "attach",
        &ll(2).to_string(),
        "-i",
        "eth9",
    ])
    .await;
    assert!(
        stderr(&o).starts_with("error: FAILED_PRECONDITION: eth9 is not an access interface"),
        "{}",
        stderr(&o)
    );
    let o = pmipctl(&["--mag", &m, "mag", "attach", "zz", "-i", ACCESS]).await;
    assert_eq!(o.status.code(), Some(2));

    // Detach by MN-ID: the entry as it was, and a de-registration PBU.
    let e = json(&pmipctl(&["--mag", &m, "-o", "json", "mag", "detach", &nai(1)]).await);
    assert_eq!(e["mn_id"], nai(1));
    let dereg = loop {
        let t = timeout(WAIT, mag.sent.recv()).await.unwrap().unwrap();
        if let Ok(pmip::wire::Message::BindingUpdate(bu)) =
            pmip::wire::Message::parse_verified(&t.payload, &t.src, &t.dst)
            && bu.lifetime.as_secs() == 0
        {
            break t;
        }
    };
    assert_eq!(dereg.dst, LMA);
    // By link-layer address, a node that is not there.
    let o = pmipctl(&["--mag", &m, "mag", "detach", &ll(3).to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );

    mag.stop().await;
    lma.stop().await;
}

#[tokio::test]
async fn handover_indications_reach_the_mag() {
    let mag = Mag::start().await;
    let m = mag.url.clone();
    // Reactive at the new MAG: the node comes from access point ap-2.
    let out = json(
        &pmipctl(&[
            "--mag",
            &m,
            "-o",
            "json",
            "mag",
            "handover",
            &nai(1),
            "--from",
            "ap-2",
        ])
        .await,
    );
    assert_eq!(out["mode"], "reactive");
    assert_eq!(out["hack_code"], 0);
    // An access point missing from the domain's map.
    let o = pmipctl(&["--mag", &m, "mag", "handover", &nai(1), "--from", "ap-9"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: previous_access_point: \"ap-9\""),
        "{}",
        stderr(&o)
    );
    // Predictive needs a registered node at a predictive MAG.
    let o = pmipctl(&["--mag", &m, "mag", "handover", &nai(1), "--to", "ap-2"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    // Exactly one direction.
    let o = pmipctl(&["--mag", &m, "mag", "handover", &nai(1)]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = pmipctl(&[
        "--mag",
        &m,
        "mag",
        "handover",
        &nai(1),
        "--to",
        "a",
        "--from",
        "b",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    mag.stop().await;
}

#[tokio::test]
async fn a_deadline_that_passes_is_deadline_exceeded() {
    // A server that accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let url = format!("http://{addr}");
    let started = std::time::Instant::now();
    let o = pmipctl(&["--mag", &url, "--timeout", "1s", "mag", "stats"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("error: DEADLINE_EXCEEDED: no answer from {url} within 1s\n")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

/// The Gateway's pages of the binding update list: a node with two interfaces has two
/// entries under one MN-ID, and paging one entry at a time shows every entry once, in order
/// of MN-ID and link-layer address; a token the MAG did not issue, and an access technology
/// type that is not one octet, are INVALID_ARGUMENT.
#[tokio::test]
async fn pages_of_the_binding_update_list_show_every_entry_once() {
    use proto::v1 as pb;
    let mag = Mag::start().await;
    let mut c = pb::gateway_client::GatewayClient::connect(mag.url.clone())
        .await
        .unwrap();
    for n in [5, 1, 4] {
        c.attach(pb::AttachRequest {
            link_layer_address: ll(n).to_string(),
            access_interface: ACCESS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_binding_update_list(pb::ListBindingUpdateListRequest {
                page_size: 1,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.total_size, 3);
        assert!(r.entries.len() <= 1);
        seen.extend((r.entries.iter()).map(|e| (e.mn_id.clone(), e.mn_link_layer_id.clone())));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let want: Vec<(String, String)> = [(1, 1), (4, 4), (4, 5)]
        .iter()
        .map(|&(n, l)| (nai(n), ll(l).to_string()))
        .collect();
    assert_eq!(seen, want);
    for token in ["garbage", "mn1@example.org zz"] {
        let e = c
            .list_binding_update_list(pb::ListBindingUpdateListRequest {
                page_size: 1,
                page_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{token}");
    }
    let e = c
        .attach(pb::AttachRequest {
            link_layer_address: ll(2).to_string(),
            access_interface: ACCESS.into(),
            access_technology_type: Some(259),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("access_technology_type: 259"),
        "{}",
        e.message()
    );
    mag.stop().await;
}
