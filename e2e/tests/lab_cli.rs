//! `pmip-lab` as an operator uses it: `up`, `status`, `handover`, `down` and `up` again, run
//! as the real binary. `down` removes only what the lab made, `handover` checks that the
//! node really moved, `status` shows the daemons' processes and health. Needs root.

use std::path::Path;
use std::process::{Command, Output};

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmip-lab"))
        .args(args)
        .env_remove("PMIP_LAB_DAEMONS")
        .output()
        .expect("run pmip-lab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "pmip-lab failed ({:?}):\n{}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn namespace_exists(n: &str) -> bool {
    Path::new("/run/netns").join(n).exists()
}

/// Removes the lab and the decoy namespace whatever happens to the test.
struct Cleanup {
    name: String,
    decoy: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = lab(&["down", "--name", &self.name]);
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.decoy])
            .output();
    }
}

/// The row of `role` in `status` output, split into columns (empty NOTES left out).
fn row<'a>(status: &'a str, role: &str) -> Vec<&'a str> {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(role))
        .unwrap_or_else(|| panic!("no {role} row in\n{status}"))
        .split_whitespace()
        .collect()
}

#[test]
fn down_removes_only_what_the_lab_made_and_a_handover_that_did_not_happen_fails() {
    let name = format!("lc{}", std::process::id() % 100_000);
    let decoy = format!("{name}-decoy");
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_owned();
    // A namespace with the lab's prefix that the lab does not make.
    let o = Command::new("ip")
        .args(["netns", "add", &decoy])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let _cleanup = Cleanup {
        name: name.clone(),
        decoy: decoy.clone(),
    };

    let up = || {
        ok(&lab(&[
            "up", "--name", &name, "--mags", "2", "--nodes", "1", "--dir", &dir_s,
        ]))
    };
    let first = up();
    assert!(first.contains("ROLE"), "{first}");
    let pmipctl = |args: &[&str]| {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{name}-lma")])
            .arg(env!("CARGO_BIN_EXE_pmip-lab"))
            .arg("__pmipctl")
            .args(args)
            .output()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&ok(&o)).unwrap()
    };
    // The LMA's Restart Counter changes only with a new store (RFC 5847 §3.2).
    let restart_counter = pmipctl(&["stats", "-o", "json"])["restart_counter"].clone();

    // status: aligned columns, each daemon's process id and health.
    let status = ok(&lab(&["status", "--name", &name]));
    let lines: Vec<&str> = status.lines().collect();
    let heading = lines
        .iter()
        .find(|l| l.starts_with("ROLE"))
        .unwrap_or_else(|| panic!("{status}"));
    let pid_col = heading.find("PID").unwrap();
    let health_col = heading.find("HEALTH").unwrap();
    for role in ["LMA", "MAG1", "MAG2"] {
        let line = lines.iter().find(|l| l.starts_with(role)).unwrap();
        assert!(
            line[pid_col..].starts_with(|c: char| c.is_ascii_digit()),
            "{status}"
        );
        assert!(line[health_col..].starts_with("serving"), "{status}");
    }
    assert_eq!(row(&status, "MN1").last(), Some(&"MAG1"), "{status}");

    // A handover to the node's own MAG is refused.
    let o = lab(&["handover", "--name", &name, "--node", "1", "--to", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("at MAG1 already"),
        "{}",
        text(&o.stderr)
    );

    // A real one.
    let out = ok(&lab(&[
        "handover", "--name", &name, "--node", "1", "--to", "2",
    ]));
    assert!(out.contains("now at MAG2"), "{out}");

    // With MAG1's daemon gone, a move back to MAG1 moves the link but registers nothing:
    // the command says so and fails.
    let mag1_pid: i32 = row(&status, "MAG1")[3].parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mag1_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = ok(&lab(&["status", "--name", &name]));
    assert_eq!(row(&status, "MAG1")[4], "exited", "{status}");
    let o = lab(&["handover", "--name", &name, "--node", "1", "--to", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("was not handed over to MAG1"), "{err}");
    // MAG2 de-registered the node when its link left: the binding is at MAG2 still, or gone.
    assert!(
        err.contains("(MAG2), not at MAG1") || err.contains("the LMA has no binding of mn1"),
        "{err}"
    );

    // Attaching there again registers nothing either: attach fails too.
    let o = lab(&["attach", "--name", &name, "--node", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("node 1 did not attach at MAG1"),
        "{}",
        text(&o.stderr)
    );

    // down: the lab's namespaces go, the decoy stays.
    let out = ok(&lab(&["down", "--name", &name]));
    assert!(out.contains("removed"), "{out}");
    assert!(namespace_exists(&decoy));
    for n in ["net", "lma", "cn", "mag1", "mag2", "mn1", "air"] {
        assert!(!namespace_exists(&format!("{name}-{n}")), "{name}-{n} left");
    }
    // Nothing recorded any more: a second down removes nothing and names what it leaves.
    let o = lab(&["down", "--name", &name]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&decoy) && err.contains("left alone"), "{err}");
    assert!(namespace_exists(&decoy));

    // up after down starts clean: a new LMA store (so a new Restart Counter), the node at
    // MAG1 with no handover behind it.
    up();
    let stats = pmipctl(&["stats", "-o", "json"]);
    assert_ne!(stats["restart_counter"], restart_counter, "{stats}");
    assert_eq!(stats["handovers"], 0, "{stats}");
    let bindings = pmipctl(&["bindings", "list", "-o", "json"]);
    assert_eq!(bindings[0]["proxy_coa"], "2001:db8:ff01::1", "{bindings}");
    assert_eq!(bindings[0]["handover_count"], 0, "{bindings}");
    // A detach and an attach that work.
    ok(&lab(&["detach", "--name", &name, "--node", "1"]));
    let out = ok(&lab(&["attach", "--name", &name, "--node", "1"]));
    assert!(
        out.starts_with("node 1 attached at MAG1: 2001:db8:100:"),
        "{out}"
    );
    ok(&lab(&["down", "--name", &name]));
    assert!(namespace_exists(&decoy));
}
