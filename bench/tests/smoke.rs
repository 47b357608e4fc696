//! The benchmarks run end to end at tiny sizes and their figures are present and sane: every
//! node registered, rates and latencies positive, every binding recovered after `kill -9`,
//! every handover completed. Not timed: the targets are not checked here. Needs root (the
//! test suite runs as root); skipped otherwise.

use std::process::Command;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn bench(args: &[&str]) -> serde_json::Value {
    // One name per run (its namespaces are named after it): the tests of this file run at
    // the same time.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{:03}{}", std::process::id() % 1000, run % 10);
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-bench"))
        .args(args)
        .args(["--json", "--name", &name])
        .output()
        .expect("pmip-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 3: figures measured, a target missed (sizes this small say nothing of targets).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "pmip-bench {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `scale` at a tiny size (4 MAGs, a window of 64, 100 refreshes), with `extra` arguments.
fn small_scale(nodes: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "scale",
        "--nodes",
        nodes,
        "--mags",
        "4",
        "--window",
        "64",
        "--refresh-sample",
        "100",
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn signalling_registers_every_node_and_measures_every_path() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let r = bench(&[
        "signalling",
        "--nodes",
        "200",
        "--mags",
        "4",
        "--window",
        "64",
        "--refresh-rounds",
        "1",
        "--unloaded",
        "20",
    ]);
    let fig = &r["figures"];
    assert_eq!(fig["all_registered"], true, "{fig:#}");
    assert!(f(&fig["echo_ceiling_pbu_s"]) > 0.0);
    assert!(f(&fig["control_plane_pbu_s"]) > 0.0);
    assert!(f(&fig["routes_new_bindings_s"]) > 0.0);
    // The kernel's routes: seg6 where the kernel has it, else ip6tnl, else the userspace
    // tunnel.
    let kernel = fig["routes_datapath"].as_str().unwrap();
    assert!(["seg6", "ip6tnl", "tun"].contains(&kernel), "{fig:#}");
    for run in fig["runs"].as_array().unwrap() {
        for p in run["phases"].as_array().unwrap() {
            assert_eq!(p["unanswered"], 0, "{p:#}");
            let l = &p["latency_ms"];
            assert!(f(&l["p50"]) > 0.0 && f(&l["p99"]) >= f(&l["p50"]), "{p:#}");
        }
    }
    // A route per binding in the LMA's namespace.
    let routed = &fig["runs"][2];
    assert_eq!(routed["path"], kernel);
    assert!(routed["routes"].as_u64().unwrap() >= 200, "{routed:#}");
    // ESP: every PBU sealed by the generator's MAGs opened at the LMA, every PBA back.
    let esp = &fig["runs"][3];
    assert_eq!(esp["path"], "none+esp");
    assert!(f(&fig["esp_pbu_s"]) > 0.0);
    assert!(f(&fig["esp_share_of_clear"]) > 0.0);
    // Issue 18: new registrations against the echo, and with routes against without.
    assert!(f(&fig["new_registrations_share_of_ceiling"]) > 0.0);
    assert!(f(&fig["routes_share_of_control_plane_register"]) > 0.0);
    let verdicts = r["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 5);
    for v in verdicts {
        assert!(
            v["met"].is_boolean(),
            "every signalling target is judged: {v:#}"
        );
    }
}

/// `scale --ipv4`: dual-stack bindings (RFC 5844), every one with its IPv4 home address and
/// its two routes, refreshed with the address assigned, all back after `kill -9`.
#[test]
fn scale_with_dual_stack_nodes_recovers_them_with_both_routes() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let r = small_scale("200", &["--ipv4"]);
    assert_eq!(r["setup"]["ipv4"], true);
    for run in r["figures"]["runs"].as_array().unwrap() {
        assert_eq!(run["ipv4"], true);
        assert_eq!(run["bindings"], 200, "{run:#}");
        assert_eq!(run["register"]["accepted"], 200, "{run:#}");
        assert_eq!(run["refresh"]["accepted"], 100, "{run:#}");
        assert_eq!(run["recovered_bindings"], 200, "{run:#}");
        if let Some(routes) = run["routes_after_restart"].as_u64() {
            assert_eq!(
                routes, 400,
                "a prefix and an IPv4 home address each: {run:#}"
            );
        }
    }
}

#[test]
fn scale_recovers_every_binding_after_kill_9() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let r = small_scale("300", &[]);
    let runs = r["figures"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["bindings"], 300, "{run:#}");
        assert_eq!(run["recovered_bindings"], 300, "{run:#}");
        assert!(run["restart_to_all_bindings_s"].is_number(), "{run:#}");
        // Issue 18: PBUs answered after the restart, and the datapath reconciled.
        assert!(run["restart_to_pba_s"].is_number(), "{run:#}");
        assert!(run["restart_to_in_kernel_s"].is_number(), "{run:#}");
        assert!(f(&run["rss_bytes"]) > 0.0);
        assert!(f(&run["register"]["rate"]) > 0.0);
        assert_eq!(run["refresh"]["answered"], 100, "{run:#}");
    }
    // The per-binding targets are set at 1,000,000: at 300 nodes they are printed and not
    // judged; the share of the two registration rates is judged at any size.
    let verdicts = r["verdicts"].as_array().unwrap();
    let named = |s: &str| {
        verdicts
            .iter()
            .filter(|v| v["target"].as_str().unwrap().contains(s))
            .collect::<Vec<_>>()
    };
    let memory = named("300 B resident memory per binding");
    assert_eq!(memory.len(), 2, "{verdicts:#?}");
    assert!(memory.iter().all(|v| v["met"].is_null()), "{memory:#?}");
    let kernel = runs[0]["datapath"].as_str().unwrap();
    let share = named(&format!("with {kernel} routes"));
    assert_eq!(share.len(), 1, "{verdicts:#?}");
    assert!(share[0]["met"].is_boolean(), "{share:#?}");
    assert!(named("10,000,000").is_empty(), "{verdicts:#?}");
}

#[test]
fn handovers_complete_in_every_mode() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let r = bench(&["handover", "--handovers", "4", "--settle-ms", "100"]);
    let runs = r["figures"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        assert_eq!(run["incomplete"], 0, "{run:#}");
        assert_eq!(run["l3_ms"]["count"], 4, "{run:#}");
        assert!(f(&run["l3_ms"]["p50"]) > 0.0, "{run:#}");
        assert_eq!(run["gap_ms"]["count"], 4, "{run:#}");
    }
}

#[test]
fn datapath_measures_tunnel_and_plain_both_ways_for_ipv6_and_ipv4() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let builtin = bench(&["datapath", "--seconds", "1", "--rounds", "1", "--builtin"]);
    assert_eq!(builtin["figures"]["tool"], "builtin");
    let mut runs = vec![builtin];
    if pmip_bench::datapath::iperf3_installed() {
        let r = bench(&["datapath", "--seconds", "1", "--rounds", "1"]);
        assert_eq!(r["figures"]["tool"], "iperf3");
        runs.push(r);
    } else {
        eprintln!("iperf3 is not installed: only the built-in sender was run");
    }
    for r in runs {
        // IPv6 and IPv4 (the node's RFC 5844 home address), each both ways.
        let dirs = r["figures"]["directions"].as_array().unwrap();
        assert_eq!(dirs.len(), 4, "{r:#}");
        assert_eq!(dirs[2]["family"], "ipv4", "{r:#}");
        for d in dirs {
            assert!(f(&d["tunnel_median"]) > 0.0, "{d:#}");
            assert!(f(&d["plain_median"]) > 0.0, "{d:#}");
            assert!(f(&d["ratio"]) > 0.0, "{d:#}");
        }
    }
}
