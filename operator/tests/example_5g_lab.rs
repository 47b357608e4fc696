//! `examples/5g-lab/`: its MobilityDomain and MobileNodes pass the CRDs' CEL rules, the
//! operator renders the domain into pods on secondary networks (no host network, the networks
//! annotation, the pods' own sysctls), and every object, the example's and the rendered ones,
//! validates for the Kubernetes versions pmip supports (`charts/pmip/ci/validate_manifests.py`,
//! with the chart tests' Python tools; `PMIP_PYTHON` picks the interpreter).

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::core::cel::validate_cel;
use operator::crd::{AuthorizedMagStatus, MobileNode, MobilityDomain};
use operator::domain::{PodsView, decide};
use operator::render::{Image, NETWORKS_ANNOTATION};
use serde_json::Value;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/5g-lab")
}

/// Every object of the example's YAML files, with the file it came from.
fn example_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(example_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in text.split("\n---\n") {
            let v: Value = serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

#[test]
fn the_5g_lab_example_renders_and_validates() {
    let objects = example_objects();
    let of_kind = |k: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|(_, v)| v["kind"] == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // kind.yaml is kind's own configuration, not a Kubernetes object.
    assert_eq!(of_kind("Cluster").len(), 1);
    assert_eq!(of_kind("NetworkAttachmentDefinition").len(), 3);
    let mut md: MobilityDomain = serde_json::from_value(of_kind("MobilityDomain")[0].clone())
        .expect("the MobilityDomain parses");
    validate_cel(&md).expect("the MobilityDomain passes the CRD's CEL rules");
    let nodes = of_kind("MobileNode");
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        let n: MobileNode = serde_json::from_value(n).unwrap();
        validate_cel(&n).expect("a MobileNode passes the CRD's CEL rules");
        assert_eq!(n.spec.domain, "core");
    }
    // Every network the domain names is one of the example's definitions.
    let nads: Vec<String> = of_kind("NetworkAttachmentDefinition")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for n in md.spec.lma.networks.iter().chain(&md.spec.mags.networks) {
        assert!(nads.contains(&n.name), "{} is not defined", n.name);
    }

    // What the operator applies once the LMA and two MAGs run (as the API server has them:
    // with a uid).
    md.metadata.uid = Some("uid-core".into());
    let view = PodsView {
        lma_address: Some("2001:db8:ff::1".parse().unwrap()),
        lma_node: Some("pmip-5g-worker".into()),
        mags: vec![
            AuthorizedMagStatus {
                node: "pmip-5g-worker".into(),
                proxy_coa: "2001:db8:ff::100".into(),
            },
            AuthorizedMagStatus {
                node: "pmip-5g-worker2".into(),
                proxy_coa: "2001:db8:ff::101".into(),
            },
        ],
        without_ipv6: Default::default(),
    };
    let image = Image {
        reference: "ghcr.io/pmip-io/pmip:0.1.0".into(),
        pull_policy: "IfNotPresent".into(),
    };
    let desired = decide(&md, &view, &image, None, None).expect("the domain renders");
    let mags = desired
        .mags
        .expect("the MAGs render once the LMA has an address");
    for pod in [
        desired.lma.spec.template.clone(),
        mags.spec.template.clone(),
    ] {
        let ann = pod.metadata.unwrap().annotations.unwrap();
        assert!(ann.contains_key(NETWORKS_ANNOTATION));
        let spec = pod.spec.unwrap();
        assert_ne!(spec.host_network, Some(true));
        assert!(spec.init_containers.is_none());
        assert!(spec.security_context.unwrap().sysctls.is_some());
    }
    let cm = desired.config_map.data.clone().unwrap();
    assert!(cm["mag.yaml"].contains("lma_address: 2001:db8:ff::1"));

    // Validate it all, example and rendering, for each Kubernetes version.
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered.yaml");
    let docs: Vec<String> = [
        serde_json::to_value(&desired.config_map).unwrap(),
        serde_json::to_value(&desired.pvc).unwrap(),
        serde_json::to_value(&desired.lma).unwrap(),
        serde_json::to_value(&desired.service).unwrap(),
        serde_json::to_value(&mags).unwrap(),
    ]
    .iter()
    .map(|v| serde_json::to_string_pretty(v).unwrap())
    .collect();
    std::fs::write(&rendered, docs.join("\n---\n")).unwrap();
    let mut files = vec![rendered];
    for f in [
        "namespace.yaml",
        "networks.yaml",
        "domain.yaml",
        "mobilenodes.yaml",
        "ue.yaml",
    ] {
        files.push(example_dir().join(f));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("PMIP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root.join("charts/pmip/ci/validate_manifests.py"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            assert!(stdout.contains("all manifests valid"), "{stdout}");
            for kind in [
                "Deployment",
                "DaemonSet",
                "NetworkAttachmentDefinition",
                "Pod",
            ] {
                assert!(stdout.contains(kind), "{kind} not validated: {stdout}");
            }
        }
        Some(2) => panic!(
            "the checks need Python tools that are missing:\n{stderr}\n\
             install them with `python3 -m pip install -r charts/pmip/ci-requirements.txt`"
        ),
        _ => panic!("the example does not validate:\n{stdout}\n{stderr}"),
    }
}
