//! The operator's pods run as containers, as a kubelet runs them.
//!
//! The image is built offline by `e2e/containers/build-image.sh` from the binaries `cargo test`
//! built. The objects the operator renders for a three-node domain ([`operator::domain::decide`],
//! the reconciler's own decision, and its PKI) run with `podman kube play` on emulated nodes:
//! each node is a network namespace, and this test is the scheduler and the kubelet. It places
//! the LMA on node 1 and, as the DaemonSet's node affinity allows, MAGs on nodes 2 and 3; it
//! writes the ConfigMap, Secret and volume files as a kubelet projects them, resolves the
//! downward API, runs the init containers to completion first, plays the pods in their node's
//! network namespace, and runs their gRPC probes against the node address. Then a mobile node
//! (a namespace running only SLAAC) attaches at node 2, `pmipctl` inside the LMA pod reads its
//! binding over TLS with the pod's client certificate, the node moves to node 3 with a TCP
//! connection open, and the LMA container is killed with SIGKILL and restarted.
//!
//! A second configuration puts the pods on secondary networks, as Multus would: podman's CNI
//! backend makes its networks with the plugins Multus calls (bridge, host-local), which stand
//! in for the NetworkAttachmentDefinitions. Two domains run on one emulated node, none of
//! their pods on the host network: each LMA on the transport network at its static address,
//! each MAG on it and on an access network of its own, the test writing the network-status
//! annotation Multus would (the MAGs read their proxy-CoA from it) and applying the pods'
//! `securityContext.sysctls` in their sandboxes. A mobile node hands over between the two
//! access networks of one domain's MAGs with a TCP connection open.
//!
//! podman is kinder than a kubelet (it grants a non-root container its added capabilities as
//! ambient ones, and has no Pod Security admission), so every rendered pod is also checked
//! against the kubelet's rules.
//!
//! Needs root, podman, runc and catatonit (`scripts/test-all.sh` installs them); uses its own
//! podman configuration (`e2e/containers/containers.conf`). Names carry the process id, so it
//! runs beside other tests; everything it made is removed, also when it fails.

use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use datapath::Netlink;
use datapath::netns::NetNs;
use datapath::sysctl::Sysctl;
use e2e::traffic::TcpFlow;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, HostAlias, HostPathVolumeSource, Pod, PodSpec, PodTemplateSpec,
    Secret, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use operator::crd::{IpsecModeSpec, MobilityDomain, SysctlSetter};
use operator::domain::{Desired, PodsView, decide};
use operator::render::{self, HEALTH_PORT, Image, Names};
use operator::{esp_keys, pki};
use serde_json::{Value, json};

const POOL: &str = "2001:db8:100::/48";
const CN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcc, 0, 0, 0, 0, 1);
const MN_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x77, 0x00, 0x01];
const MN_ID: &str = "phone-1@pods.example";
/// The MAG end of the mobile node's link: matches the domain's default `pmip*`.
const ACCESS_IF: &str = "pmipacc1";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An emulated node: a network namespace with one transport link.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    ns: NetNs,
    addr: Ipv6Addr,
    /// An IPv4 address listed before the IPv6 one in `status.hostIPs`, as on a dual-stack node.
    ipv4: String,
}

/// Everything the test made, removed on drop (also after a failure).
struct Cluster {
    id: String,
    dir: tempfile::TempDir,
    conf: PathBuf,
    image: String,
    namespaces: Vec<String>,
    pods: std::sync::Mutex<Vec<String>>,
    /// podman networks standing in for NetworkAttachmentDefinitions.
    networks: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pods = self.pods.lock().map(|p| p.clone()).unwrap_or_default();
        for p in pods.iter().rev() {
            let _ = self.podman(None, &["pod", "rm", "--force", "--time", "0", p]);
        }
        for n in &self.networks {
            let _ = self.podman(None, &["network", "rm", "--force", n]);
        }
        let _ = self.podman(None, &["rmi", "--force", &self.image]);
        for n in &self.namespaces {
            let _ = NetNs::delete(n);
        }
    }
}

impl Cluster {
    /// `podman ARGS` with the test's configuration, in `netns` when given (that is how a
    /// hostNetwork pod lands on an emulated node; `ip netns exec` would remount /sys).
    fn podman(&self, netns: Option<&NetNs>, args: &[&str]) -> std::io::Result<Output> {
        self.podman_stdin(netns, args, None)
    }

    fn podman_stdin(
        &self,
        netns: Option<&NetNs>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> std::io::Result<Output> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path().display()))
                    .arg("podman");
                c
            }
            None => Command::new("podman"),
        };
        cmd.args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            i.write_all(text.as_bytes())?;
        }
        child.wait_with_output()
    }

    /// `podman ARGS`, which must succeed; its standard output.
    fn ok(&self, netns: Option<&NetNs>, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .podman(netns, args)
            .with_context(|| format!("podman {}", args.join(" ")))?;
        ensure!(
            out.status.success(),
            "podman {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `podman pod rm --force` of pod `name`, again while podman reports the race of a
    /// container that stopped on its own while being killed ("container state improper:
    /// stopped", seen once in a CI run); done once the pod is gone.
    fn remove_pod(&self, name: &str) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..10 {
            match self.ok(None, &["pod", "rm", "--force", "--time", "0", name]) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            let exists = self.podman(None, &["pod", "exists", name])?;
            if exists.status.code() == Some(1) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("pod {name} not removed")))
    }

    fn track(&self, pod: &str) {
        self.pods.lock().unwrap().push(pod.to_owned());
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The last lines of every container this test started, for a failure's message.
    fn diagnose(&self) -> String {
        let names = self
            .ok(None, &["ps", "--all", "--format", "{{.Names}}"])
            .unwrap_or_default();
        names
            .lines()
            .filter(|n| n.starts_with(&self.id) && !n.ends_with("-infra"))
            .map(|n| format!("--- {n}:\n{}", log_tail(self, n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `r`'s value, or a panic with the error and the containers' logs.
    fn must<T>(&self, r: anyhow::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnose()))
    }
}

/// `nl.set_sysctl` with the key in the message.
fn sysctl(nl: &Netlink, key: &str, value: &str) -> anyhow::Result<()> {
    nl.set_sysctl(key, value)
        .with_context(|| format!("sysctl {key}={value}"))
}

/// The transport network: a router namespace with the nodes and a correspondent node on
/// their own /64s, the mobile nodes' pool routed to node 1 (the LMA).
async fn build_nodes(c: &mut Cluster) -> anyhow::Result<(Vec<Node>, NetNs)> {
    let net = NetNs::create(&format!("{}-net", c.id))?.keep();
    c.namespaces.push(net.name().to_owned());
    let rnl = Netlink::connect_in(&net)?;
    sysctl(&rnl, "net/ipv6/conf/all/forwarding", "1")?;
    sysctl(&rnl, "net/ipv6/conf/default/accept_dad", "0")?;
    rnl.set_link_up(1, true).await?;
    let mut nodes = Vec::new();
    let mut ends = Vec::new();
    for i in 1..=3u16 {
        let ns = NetNs::create(&format!("{}-node{i}", c.id))?.keep();
        c.namespaces.push(ns.name().to_owned());
        let addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf0 + i, 0, 0, 0, 0, 1);
        ends.push((ns.clone(), addr, 0xf0 + i));
        nodes.push(Node {
            name: format!("node{i}"),
            ns,
            addr,
            ipv4: format!("192.0.2.{i}"),
        });
    }
    let cn = NetNs::create(&format!("{}-cn", c.id))?.keep();
    c.namespaces.push(cn.name().to_owned());
    ends.push((cn.clone(), CN, 0xcc));
    for (k, (ns, addr, subnet)) in ends.iter().enumerate() {
        let side = format!("p{k}");
        rnl.add_veth(&side, "tr0", ns).await?;
        let si = rnl.link_index(&side).await?;
        let router = Ipv6Addr::new(0x2001, 0xdb8, *subnet, 0, 0, 0, 0, 2);
        rnl.add_address(si, router, 64).await?;
        rnl.set_link_up(si, true).await?;
        let nl = Netlink::connect_in(ns)?;
        nl.set_link_up(1, true).await?;
        // No duplicate address detection: every address here is unique by construction.
        sysctl(&nl, "net/ipv6/conf/all/accept_dad", "0")?;
        sysctl(&nl, "net/ipv6/conf/default/accept_dad", "0")?;
        sysctl(&nl, "net/ipv6/conf/tr0/accept_dad", "0")?;
        let ti = nl.link_index("tr0").await?;
        nl.add_address(ti, *addr, 64).await?;
        nl.set_link_up(ti, true).await?;
        nl.add_route("::/0".parse()?, Some(router), ti).await?;
    }
    let to_lma = rnl.link_index("p0").await?;
    rnl.add_route(POOL.parse()?, Some(nodes[0].addr), to_lma)
        .await?;
    Ok((nodes, cn))
}

/// The domain as a user writes it: the defaults, nothing else but a pool.
fn domain(k8s_ns: &str, sysctls: SysctlSetter) -> MobilityDomain {
    let mut md: MobilityDomain = serde_json::from_value(json!({
        "apiVersion": "pmip.io/v1alpha1", "kind": "MobilityDomain",
        "metadata": {"name": "lab", "namespace": k8s_ns, "uid": "2c8f0e1a-pods", "generation": 1},
        "spec": {"lma": {"prefixPools": [{"prefix": POOL, "prefixLength": 64}]}}
    }))
    .unwrap();
    md.spec.sysctls = sysctls;
    md
}

/// The pods the way `status.hostIPs` and `spec.nodeName` show them to the operator.
fn observed(placed: &[(&str, &Node)]) -> Vec<k8s_openapi::api::core::v1::Pod> {
    placed
        .iter()
        .map(|(component, node)| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("{component}-{}", node.name),
                             "labels": {"app.kubernetes.io/component": component, "pmip.io/domain": "lab"}},
                "spec": {"nodeName": node.name, "containers": []},
                "status": {"hostIP": node.ipv4, "hostIPs": [{"ip": node.ipv4}, {"ip": node.addr.to_string()}]}
            }))
            .unwrap()
        })
        .collect()
}

// ----------------------------------------------------------------- the kubelet's rules

/// Capabilities Pod Security `baseline` allows to be added.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The Pod Security Standards level a pod needs: `restricted`, `baseline` or `privileged`.
fn pod_security_level(pod: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .collect();
    let host = pod.host_network == Some(true)
        || pod.host_pid == Some(true)
        || pod.host_ipc == Some(true)
        || pod.volumes.iter().flatten().any(|v| v.host_path.is_some());
    let privileged = containers.iter().any(|c| {
        let sc = c.security_context.as_ref();
        sc.and_then(|s| s.privileged) == Some(true)
            || sc
                .and_then(|s| s.capabilities.as_ref())
                .and_then(|caps| caps.add.as_ref())
                .is_some_and(|add| add.iter().any(|a| !BASELINE_CAPS.contains(&a.as_str())))
    });
    if host || privileged {
        return "privileged";
    }
    let restricted = pod
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        == Some(true)
        && containers.iter().all(|c| {
            let sc = c.security_context.as_ref();
            sc.and_then(|s| s.allow_privilege_escalation) == Some(false)
                && sc
                    .and_then(|s| s.capabilities.as_ref())
                    .and_then(|caps| caps.drop.as_ref())
                    .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        });
    if restricted { "restricted" } else { "baseline" }
}

/// What a kubelet with containerd or CRI-O does that podman does not: no ambient
/// capabilities (an added capability reaches a non-root process only through file
/// capabilities, which `allowPrivilegeEscalation: false` blocks), `/proc/sys` read-only unless
/// privileged, no `net.*` sysctls in `securityContext.sysctls` with hostNetwork, and the API
/// server's refusal of `allowPrivilegeEscalation: false` beside `privileged: true`. Each rule
/// a container breaks, by name.
fn kubelet_objections(pod: &PodSpec, needs_sysctls: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    let pod_user = pod.security_context.as_ref().and_then(|s| s.run_as_user);
    if pod.host_network == Some(true)
        && pod
            .security_context
            .as_ref()
            .and_then(|s| s.sysctls.as_ref())
            .is_some_and(|s| s.iter().any(|x| x.name.starts_with("net.")))
    {
        v.push("net.* sysctls in securityContext.sysctls with hostNetwork".into());
    }
    for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
        let sc = c.security_context.clone().unwrap_or_default();
        let user = sc.run_as_user.or(pod_user);
        let privileged = sc.privileged == Some(true);
        let adds = sc
            .capabilities
            .as_ref()
            .and_then(|x| x.add.clone())
            .unwrap_or_default();
        if !privileged && !adds.is_empty() && user != Some(0) {
            v.push(format!(
                "{}: adds {adds:?} but runs as {user:?}: without ambient capabilities a non-root process never has them",
                c.name
            ));
        }
        if privileged && sc.allow_privilege_escalation == Some(false) {
            v.push(format!(
                "{}: allowPrivilegeEscalation false beside privileged (the API refuses it)",
                c.name
            ));
        }
        if !privileged && needs_sysctls.contains(&c.name.as_str()) {
            v.push(format!(
                "{}: sets sysctls but /proc/sys is read-only in a container that is not privileged",
                c.name
            ));
        }
        let r = c.resources.clone().unwrap_or_default();
        if r.requests.is_none() || r.limits.is_none() {
            v.push(format!("{}: no requests or limits", c.name));
        }
    }
    v
}

/// The containers that write sysctls in a domain rendered with `how`.
fn sysctl_writers(how: SysctlSetter) -> &'static [&'static str] {
    match how {
        SysctlSetter::InitContainer => &[render::SYSCTL_INIT_CONTAINER],
        SysctlSetter::Privileged => &["lma", "mag"],
        SysctlSetter::Node => &[],
    }
}

#[test]
fn rendered_pods_pass_the_kubelets_rules() {
    let image = Image {
        reference: "localhost/pmip:dev".into(),
        pull_policy: "Never".into(),
    };
    let n = |name: &str, a: u16| Node {
        name: name.into(),
        ns: NetNs::named("unused"),
        addr: Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, 1),
        ipv4: "192.0.2.1".into(),
    };
    let (n1, n2) = (n("node1", 1), n("node2", 2));
    let view = operator::domain::pods_view(
        &domain("pmip", SysctlSetter::InitContainer),
        &observed(&[("lma", &n1), ("mag", &n2)]),
    );
    for how in [
        SysctlSetter::InitContainer,
        SysctlSetter::Privileged,
        SysctlSetter::Node,
    ] {
        for lab in [false, true] {
            let mut md = domain("pmip", how);
            md.spec.mags.lab = lab;
            let d = decide(&md, &view, &image, None, None).unwrap();
            for (what, tpl) in [
                ("LMA", &d.lma.spec.template),
                ("MAG", &d.mags.as_ref().unwrap().spec.template),
            ] {
                let pod = tpl.spec.as_ref().unwrap();
                let writers: Vec<&str> = if what == "MAG" && lab {
                    vec!["mag"]
                } else {
                    sysctl_writers(how).to_vec()
                };
                let o = kubelet_objections(pod, &writers);
                assert!(o.is_empty(), "{how:?} lab={lab} {what}: {o:?}");
                assert_eq!(
                    pod_security_level(pod),
                    render::POD_SECURITY_LEVEL,
                    "{how:?} {what}"
                );
            }
        }
    }
    // The rules catch what podman lets through.
    let md = domain("pmip", SysctlSetter::InitContainer);
    let d = decide(&md, &view, &image, None, None).unwrap();
    let mut pod = d.lma.spec.template.spec.clone().unwrap();
    pod.security_context.as_mut().unwrap().run_as_user = Some(65532);
    pod.containers[0]
        .security_context
        .as_mut()
        .unwrap()
        .run_as_user = None;
    let o = kubelet_objections(&pod, &[]);
    assert!(o.iter().any(|x| x.contains("ambient")), "{o:?}");
    let pod = d.lma.spec.template.spec.clone().unwrap();
    assert!(
        kubelet_objections(&pod, &["lma"])
            .iter()
            .any(|x| x.contains("read-only")),
        "the daemon alone cannot set its sysctls"
    );
}

// ----------------------------------------------------------------- the kubelet

/// Writes a pod's volumes as a kubelet projects them (ConfigMap keys and Secret keys as
/// files with their modes, a directory per claim that outlives the pod, an empty directory)
/// and returns them as host paths for podman.
fn project_volumes(
    c: &Cluster,
    pod: &str,
    spec: &PodSpec,
    objects: &Desired,
    secrets: &[Secret],
    network_status: Option<&str>,
) -> anyhow::Result<Vec<Volume>> {
    let mut out = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let dir = c.path(&format!("pods/{pod}/volumes/{}", v.name));
        let host = if let Some(cm) = &v.config_map {
            ensure!(
                objects.config_map.metadata.name.as_deref() == Some(cm.name.as_str()),
                "ConfigMap {} not rendered",
                cm.name
            );
            write_keys(
                &dir,
                &objects.config_map,
                cm.items.as_deref(),
                cm.default_mode.unwrap_or(0o644),
            )?;
            dir
        } else if let Some(sv) = &v.secret {
            let name = sv.secret_name.clone().unwrap_or_default();
            let s = secrets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| anyhow!("Secret {name} not rendered"))?;
            std::fs::create_dir_all(&dir)?;
            for (k, b) in s.data.iter().flatten() {
                let f = dir.join(k);
                std::fs::write(&f, &b.0)?;
                std::fs::set_permissions(
                    &f,
                    std::fs::Permissions::from_mode(sv.default_mode.unwrap_or(0o644) as u32),
                )?;
            }
            dir
        } else if let Some(claim) = &v.persistent_volume_claim {
            ensure!(
                objects.pvc.metadata.name.as_deref() == Some(claim.claim_name.as_str()),
                "PersistentVolumeClaim {} not rendered",
                claim.claim_name
            );
            let pv = c.path(&format!("volumes/{}", claim.claim_name));
            std::fs::create_dir_all(&pv)?;
            pv
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir)?;
            dir
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else if let Some(d) = &v.downward_api {
            // The kubelet's downward API: here only the pod's network-status annotation,
            // which Multus writes (the test writes it, standing in for Multus).
            std::fs::create_dir_all(&dir)?;
            for item in d.items.iter().flatten() {
                let path = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                let want = format!(
                    "metadata.annotations['{}']",
                    render::NETWORK_STATUS_ANNOTATION
                );
                ensure!(
                    path == Some(want.as_str()),
                    "downward API {path:?} is not known here"
                );
                std::fs::write(dir.join(&item.path), network_status.unwrap_or(""))?;
            }
            dir
        } else {
            bail!("volume {}: a kind this kubelet does not project", v.name);
        };
        out.push(Volume {
            name: v.name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: host.display().to_string(),
                type_: v.host_path.as_ref().and_then(|h| h.type_.clone()),
            }),
            ..Volume::default()
        });
    }
    Ok(out)
}

fn write_keys(
    dir: &Path,
    cm: &ConfigMap,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    mode: i32,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = cm.data.clone().unwrap_or_default();
    let pairs: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in pairs {
        let text = data
            .get(&key)
            .ok_or_else(|| anyhow!("ConfigMap has no key {key}"))?;
        let f = dir.join(path);
        std::fs::write(&f, text)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode as u32))?;
    }
    Ok(())
}

/// The downward API: `status.hostIPs` as the comma-separated list a kubelet gives (IPv4
/// first), `spec.nodeName`, the pod's name and namespace.
fn resolve_env(
    env: &[EnvVar],
    node: &Node,
    pod: &str,
    k8s_ns: &str,
) -> anyhow::Result<Vec<EnvVar>> {
    env.iter()
        .map(|e| {
            let Some(f) = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) else {
                ensure!(
                    e.value_from.is_none(),
                    "env {}: only fieldRef is known here",
                    e.name
                );
                return Ok(e.clone());
            };
            let value = match f.field_path.as_str() {
                "status.hostIPs" => format!("{},{}", node.ipv4, node.addr),
                "status.hostIP" => node.ipv4.clone(),
                "spec.nodeName" => node.name.clone(),
                "metadata.name" => pod.to_owned(),
                "metadata.namespace" => k8s_ns.to_owned(),
                other => bail!("env {}: fieldRef {other} is not known here", e.name),
            };
            Ok(EnvVar {
                name: e.name.clone(),
                value: Some(value),
                value_from: None,
            })
        })
        .collect()
}

/// The volume of the pod's /etc/hosts, as the kubelet mounts it.
const ETC_HOSTS: &str = "k8s-etc-hosts";

/// A container as podman runs it for the kubelet: its environment resolved, its probes
/// removed (the test runs them, the kubelet's way), its ports left out (on the host network
/// they only document what the daemon listens on; podman 4.3 turns them into port mappings
/// and then refuses those beside the host network).
fn for_podman(c: &Container, node: &Node, pod: &str, k8s_ns: &str) -> anyhow::Result<Container> {
    let mut c = c.clone();
    c.ports = None;
    c.env = Some(resolve_env(
        c.env.as_deref().unwrap_or_default(),
        node,
        pod,
        k8s_ns,
    )?);
    c.liveness_probe = None;
    c.readiness_probe = None;
    c.startup_probe = None;
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: ETC_HOSTS.into(),
            mount_path: "/etc/hosts".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    Ok(c)
}

/// A kubelet on `node` running `tpl` as pod `name`: each init container to completion (its
/// output returned), then the containers, played in the node's network namespace.
fn run_pod(
    c: &Cluster,
    node: &Node,
    name: &str,
    tpl: &PodTemplateSpec,
    objects: &Desired,
    secrets: &[Secret],
    aliases: &[(Ipv6Addr, String)],
) -> anyhow::Result<Vec<String>> {
    let k8s_ns = "pmip-pods";
    let spec = tpl.spec.clone().ok_or_else(|| anyhow!("no pod spec"))?;
    let mut volumes = project_volumes(c, name, &spec, objects, secrets, None)?;
    // The kubelet writes each pod's /etc/hosts with its hostAliases and bind-mounts it into
    // every container. podman 4.3 ignores hostAliases beside hostNetwork, and cluster DNS is
    // not here: the aliases (the LMA's Service name) go into a file mounted the same way.
    let hosts = c.path(&format!("pods/{name}/etc-hosts"));
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    for (ip, host) in aliases {
        text.push_str(&format!("{ip}\t{host}\n"));
    }
    std::fs::create_dir_all(hosts.parent().unwrap())?;
    std::fs::write(&hosts, text)?;
    volumes.push(Volume {
        name: ETC_HOSTS.into(),
        host_path: Some(HostPathVolumeSource {
            path: hosts.display().to_string(),
            type_: Some("File".into()),
        }),
        ..Volume::default()
    });
    let base = PodSpec {
        host_network: Some(true),
        security_context: spec.security_context.clone(),
        volumes: Some(volumes),
        host_aliases: Some(
            aliases
                .iter()
                .map(|(ip, host)| HostAlias {
                    ip: ip.to_string(),
                    hostnames: Some(vec![host.clone()]),
                })
                .collect(),
        ),
        ..PodSpec::default()
    };
    let mut init_logs = Vec::new();
    for init in spec.init_containers.iter().flatten() {
        let pod_name = format!("{name}-init-{}", init.name);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                containers: vec![for_podman(init, node, name, k8s_ns)?],
                ..base.clone()
            }),
            ..Pod::default()
        };
        c.track(&pod_name);
        play(c, node, &pod_name, &pod)?;
        let ctr = format!("{pod_name}-{}", init.name);
        let code = c.ok(None, &["wait", &ctr])?;
        let logs = c.podman(None, &["logs", &ctr])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        ensure!(
            code.trim() == "0",
            "init container {} exited with {}: {text}",
            init.name,
            code.trim()
        );
        c.remove_pod(&pod_name)?;
        init_logs.push(text);
    }
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: tpl.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Always".into()),
            containers: spec
                .containers
                .iter()
                .map(|x| for_podman(x, node, name, k8s_ns))
                .collect::<anyhow::Result<_>>()?,
            ..base
        }),
        ..Pod::default()
    };
    c.track(name);
    play(c, node, name, &pod)?;
    Ok(init_logs)
}

fn play(c: &Cluster, node: &Node, name: &str, pod: &Pod) -> anyhow::Result<()> {
    let file = c.path(&format!("{name}.yaml"));
    std::fs::write(&file, serde_json::to_string_pretty(pod)?)?;
    c.ok(
        Some(&node.ns),
        &["kube", "play", "--quiet", file.to_str().unwrap()],
    )?;
    Ok(())
}

/// A gRPC health check of `service` at `addr`:`port`, from `ns` (a kubelet's gRPC probe).
async fn probe(ns: &NetNs, addr: Ipv6Addr, port: u16, service: String) -> bool {
    e2e::lab::in_ns(ns, move || async move {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://[{addr}]:{port}"))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .connect()
            .await?;
        let r = tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest { service })
            .await?;
        Ok(r.get_ref().status == tonic_health::ServingStatus::Serving as i32)
    })
    .await
    .unwrap_or(false)
}

/// Waits for the containers' readiness probes of `tpl` to pass on `node`.
async fn wait_ready(node: &Node, tpl: &PodTemplateSpec, timeout: Duration) -> anyhow::Result<()> {
    wait_ready_at(&node.ns, node.addr, &node.name, tpl, timeout).await
}

/// Waits for the readiness probes of `tpl` to pass at the pod address `addr`, from `ns`.
async fn wait_ready_at(
    ns: &NetNs,
    addr: Ipv6Addr,
    what: &str,
    tpl: &PodTemplateSpec,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let spec = tpl.spec.as_ref().unwrap();
    for ctr in &spec.containers {
        let grpc = ctr
            .readiness_probe
            .as_ref()
            .and_then(|p| p.grpc.clone())
            .ok_or_else(|| anyhow!("{}: no gRPC readiness probe", ctr.name))?;
        ensure!(
            grpc.port == i32::from(HEALTH_PORT),
            "{}: probes the health port",
            ctr.name
        );
        loop {
            if probe(
                ns,
                addr,
                grpc.port as u16,
                grpc.service.clone().unwrap_or_default(),
            )
            .await
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{} on {what}: readiness probe failing after {timeout:?}",
                ctr.name,
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- the mobile node

/// The mobile node: a namespace that only does SLAAC on `eth0`, whose other end is
/// `ACCESS_IF` in `at`'s namespace.
async fn attach_mobile_node(c: &mut Cluster, at: &Node) -> anyhow::Result<NetNs> {
    let ns = NetNs::create(&format!("{}-mn", c.id))?.keep();
    c.namespaces.push(ns.name().to_owned());
    let nl = Netlink::connect_in(&ns)?;
    nl.set_link_up(1, true).await?;
    nl.add_veth("eth0", ACCESS_IF, &at.ns).await?;
    let e = nl.link_index("eth0").await?;
    nl.set_link_address(e, MN_MAC).await?;
    for (k, v) in [
        ("forwarding", "0"),
        ("accept_ra", "1"),
        ("autoconf", "1"),
        ("router_solicitation_delay", "0"),
        ("router_solicitation_interval", "1"),
        ("accept_dad", "0"),
        ("use_tempaddr", "0"),
        ("addr_gen_mode", "0"),
    ] {
        sysctl(&nl, &format!("net/ipv6/conf/eth0/{k}"), v)?;
    }
    nl.set_link_up(e, true).await?;
    let m = Netlink::connect_in(&at.ns)?;
    let a = m.link_index(ACCESS_IF).await?;
    m.set_link_up(a, true).await?;
    Ok(ns)
}

/// The mobile node's link moves from one node's MAG to another's, as when it changes
/// access points.
async fn hand_over(from: &Node, to: &Node) -> anyhow::Result<()> {
    let m = Netlink::connect_in(&from.ns)?;
    let a = m.link_index(ACCESS_IF).await?;
    m.move_link(a, &to.ns, None).await?;
    let m2 = Netlink::connect_in(&to.ns)?;
    let b = m2.link_index(ACCESS_IF).await?;
    m2.set_link_up(b, true).await?;
    Ok(())
}

/// The mobile node's usable address from the pool (not tentative).
fn node_address(ns: &NetNs) -> Option<Ipv6Addr> {
    let pool: ipnet::Ipv6Net = POOL.parse().ok()?;
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/if_inet6"))
        .ok()?
        .ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let bytes = hex_16(f.first()?)?;
        let flags = u32::from_str_radix(f.get(4)?, 16).ok()?;
        let a = Ipv6Addr::from(bytes);
        (pool.contains(&a) && flags & 0x40 == 0).then_some(a)
    })
}

fn hex_16(s: &str) -> Option<[u8; 16]> {
    let mut b = [0u8; 16];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(b)
}

async fn until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pmipctl ARGS` inside the LMA container on `node`, with the pod's environment: the LMA's
/// URL and the TLS files of the domain. `podman exec` runs in the node's network namespace:
/// a hostNetwork container has none of its own, so runc would otherwise leave the process in
/// the caller's.
fn pmipctl(
    c: &Cluster,
    node: &Node,
    ctr: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut a = vec!["exec"];
    if stdin.is_some() {
        a.push("-i");
    }
    a.extend([ctr, "pmipctl"]);
    a.extend(args);
    let out = c.podman_stdin(Some(&node.ns), &a, stdin)?;
    if !out.status.success() {
        bail!(
            "pmipctl {}: {}{}\n{ctr}'s last log lines:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log_tail(c, ctr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last lines a container logged, for a failure's message.
fn log_tail(c: &Cluster, ctr: &str) -> String {
    c.podman(None, &["logs", "--tail", "40", ctr])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_else(|e| format!("(podman logs: {e})"))
}

/// The mobile node's binding as `pmipctl bindings get -o json` in the LMA pod shows it.
fn binding(c: &Cluster, node: &Node, lma: &str) -> Option<Value> {
    let text = pmipctl(
        c,
        node,
        lma,
        &["bindings", "get", MN_ID, "-o", "json"],
        None,
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(if v.is_array() { v[0].clone() } else { v })
}

fn check_environment() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the pods test makes network namespaces and runs podman as root"
    );
    for tool in ["podman", "runc", "nsenter", "strip"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        ensure!(
            found,
            "{tool} is missing: scripts/test-all.sh installs podman, runc, catatonit and binutils"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_pods_run_as_a_kubelet_runs_them() {
    check_environment().unwrap();
    let started = Instant::now();
    let id = format!("pd{}", std::process::id());
    let mut c = Cluster {
        image: format!("localhost/pmip:pods-{}", std::process::id()),
        dir: tempfile::Builder::new()
            .prefix("pmip-pods-")
            .tempdir()
            .unwrap(),
        conf: workspace().join("e2e/containers/containers.conf"),
        id,
        namespaces: Vec::new(),
        pods: Default::default(),
        networks: Vec::new(),
    };

    // The image, from the binaries this `cargo test` built.
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let t = Instant::now();
    let mut args = vec!["--profile", "dev", "--tag", &c.image];
    let reuse = binaries_fresh(&target.join("debug"));
    if reuse {
        args.push("--no-build");
    }
    let out = Command::new(workspace().join("e2e/containers/build-image.sh"))
        .args(&args)
        .env("CARGO_TARGET_DIR", &target)
        .env("CONTAINERS_CONF", &c.conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-image.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let built = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let image_secs = t.elapsed().as_secs_f64();
    let size: u64 = c
        .ok(
            None,
            &["image", "inspect", "--format", "{{.Size}}", &c.image],
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ls = c
        .ok(
            None,
            &[
                "run",
                "--rm",
                "--entrypoint",
                "/usr/local/bin/pmip-operator",
                &c.image,
                "--version",
            ],
        )
        .unwrap();
    assert!(ls.starts_with("pmip-operator "), "{ls}");

    let (nodes, cn) = build_nodes(&mut c).await.unwrap();
    let image = Image {
        reference: c.image.clone(),
        pull_policy: "Never".into(),
    };

    // The domain's PKI and ESP master key, as the reconciler makes them. The signalling
    // between the LMA and the MAGs is in ESP, done by the daemons (this kernel has no ESP).
    let mut md = domain("pmip-pods", SysctlSetter::InitContainer);
    md.spec.ipsec.mode = IpsecModeSpec::Userspace;
    let master = esp_keys::new_master().unwrap();
    let now = jiff_now();
    let (ca, ca_key) = pki::new_ca("pmip-pods", "lab", now).unwrap();
    let (cert, key) =
        pki::new_leaf(&ca, &ca_key, &pki::subject_names("pmip-pods", "lab"), now).unwrap();
    let material = pki::Material {
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let mut secrets = vec![
        render::ca_secret(&md, &ca, &ca_key),
        render::tls_secret(&md, &ca, &cert, &key),
    ];
    // The LMA's Service, where cluster DNS would send the MAGs' policy client.
    let aliases = vec![(nodes[0].addr, render::lma_service_host("pmip-pods", "lab"))];
    let n = Names::of("lab");

    // Without its init container (spec.sysctls: Node on a node that lacks them), the LMA
    // container cannot set its sysctls and says which one: /proc/sys is read-only in it.
    {
        let bare = domain("pmip-pods", SysctlSetter::Node);
        let d = decide(&bare, &PodsView::default(), &image, Some(&material), None).unwrap();
        assert!(
            d.lma
                .spec
                .template
                .spec
                .as_ref()
                .unwrap()
                .init_containers
                .is_none()
        );
        let name = format!("{}-bare", c.id);
        run_pod(
            &c,
            &nodes[0],
            &name,
            &d.lma.spec.template,
            &d,
            &secrets,
            &aliases,
        )
        .unwrap();
        let ctr = format!("{name}-lma");
        let logs = until("the bare LMA to fail", Duration::from_secs(20), || {
            let state = c
                .ok(
                    None,
                    &[
                        "inspect",
                        "--format",
                        "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
                        &ctr,
                    ],
                )
                .ok()?;
            let logs = c.podman(None, &["logs", &ctr]).ok()?;
            let text = String::from_utf8_lossy(&logs.stderr).into_owned()
                + &String::from_utf8_lossy(&logs.stdout);
            (text.contains("sysctl net.ipv6.conf.all.forwarding=1") || state.contains("exited 1"))
                .then_some(text)
        })
        .await
        .unwrap();
        assert!(
            logs.contains("sysctl net.ipv6.conf.all.forwarding=1")
                && logs.contains("Read-only file system"),
            "the daemon names the sysctl it could not set: {logs}"
        );
        c.remove_pod(&name).unwrap();
        let nl = Netlink::connect_in(&nodes[0].ns).unwrap();
        assert_eq!(
            nl.read_sysctl(&Sysctl::new("net/ipv6/conf/all/forwarding"))
                .unwrap(),
            "0"
        );
    }

    // The LMA: the operator's objects before any pod runs, scheduled on node 1.
    let t0 = Instant::now();
    let first = decide(
        &md,
        &PodsView::default(),
        &image,
        Some(&material),
        Some(&master),
    )
    .unwrap();
    assert!(first.mags.is_none(), "MAGs wait for the LMA's address");
    // The SA Secret exists before any daemon that mounts it, with no SA yet.
    secrets.push(first.ipsec.clone().unwrap());
    let lma_pod = format!("{}-lma", c.id);
    let init_logs = run_pod(
        &c,
        &nodes[0],
        &lma_pod,
        &first.lma.spec.template,
        &first,
        &secrets,
        &aliases,
    )
    .unwrap();
    // Auto: seg6 (and its sysctls) where the kernel has it, else ip6tnl or the userspace
    // tunnel, which need forwarding only.
    let seg6 = datapath::probe_seg6(&Netlink::connect_in(&nodes[0].ns).unwrap())
        .await
        .unwrap();
    assert!(
        init_logs[0].contains("net.ipv6.conf.all.forwarding=1 (was 0)")
            && init_logs[0].contains("net.ipv6.conf.tr0.seg6_enabled=1 (was 0)") == seg6,
        "the init container set the sysctls (seg6: {seg6}): {init_logs:?}"
    );
    c.must(wait_ready(&nodes[0], &first.lma.spec.template, Duration::from_secs(60)).await);
    // The values found are recorded on the LMA's volume, for --cleanup.
    let ledger =
        std::fs::read_to_string(c.path(&format!("volumes/{}/sysctls-found", n.lma_state))).unwrap();
    assert!(
        ledger.contains("net/ipv6/conf/all/forwarding=0"),
        "{ledger}"
    );

    // The LMA has an address: the MAGs' DaemonSet, kept off node 1.
    let view = operator::domain::pods_view(&md, &observed(&[("lma", &nodes[0])]));
    assert_eq!(
        view.lma_address,
        Some(nodes[0].addr),
        "first global IPv6 of status.hostIPs"
    );
    let full = decide(&md, &view, &image, Some(&material), Some(&master)).unwrap();
    let ds = full.mags.clone().unwrap();
    let excluded = ds
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms[0]
        .match_fields
        .as_ref()
        .unwrap()[0]
        .values
        .clone()
        .unwrap();
    assert_eq!(excluded, vec!["node1".to_string()]);
    let mag_nodes: Vec<&Node> = nodes
        .iter()
        .filter(|n| !excluded.contains(&n.name))
        .collect();
    assert_eq!(mag_nodes.len(), 2);
    let cm_mag = full.config_map.data.as_ref().unwrap()["mag.yaml"].clone();
    assert!(
        cm_mag.contains(&format!("lma_address: {}", nodes[0].addr)),
        "{cm_mag}"
    );
    let mut mag_pods = Vec::new();
    for node in &mag_nodes {
        let name = format!("{}-mag-{}", c.id, node.name);
        let logs = run_pod(
            &c,
            node,
            &name,
            &ds.spec.template,
            &full,
            &secrets,
            &aliases,
        )
        .unwrap();
        assert!(
            logs[0].contains("net.ipv6.conf.all.forwarding=1"),
            "{logs:?}"
        );
        mag_pods.push(name);
    }
    for node in &mag_nodes {
        c.must(wait_ready(node, &ds.spec.template, Duration::from_secs(60)).await);
    }
    let ready_secs = t0.elapsed().as_secs_f64();

    // The operator sees the MAGs' pods: the SA Secret gains a pair between the LMA and each
    // MAG, which rolls no pod; the kubelet updates the Secret's files in every pod that
    // mounts it, and each daemon re-reads them.
    let mut placed = vec![("lma", &nodes[0])];
    placed.extend(mag_nodes.iter().map(|n| ("mag", *n)));
    let joined = decide(
        &md,
        &operator::domain::pods_view(&md, &observed(&placed)),
        &image,
        Some(&material),
        Some(&master),
    )
    .unwrap();
    assert_eq!(
        joined.mags.as_ref().unwrap().spec.template,
        ds.spec.template
    );
    assert_eq!(joined.lma.spec.template, first.lma.spec.template);
    let sa_secret = joined.ipsec.clone().unwrap();
    let sa_file = &sa_secret.data.as_ref().unwrap()[esp_keys::SA_FILE_FIELD].0;
    for pod in std::iter::once(&lma_pod).chain(&mag_pods) {
        let f = c.path(&format!(
            "pods/{pod}/volumes/ipsec/{}",
            esp_keys::SA_FILE_FIELD
        ));
        std::fs::write(&f, sa_file).unwrap();
    }
    secrets.retain(|s| s.metadata.name != sa_secret.metadata.name);
    secrets.push(sa_secret);
    let containers = std::iter::once(format!("{lma_pod}-lma"))
        .chain(mag_pods.iter().map(|p| format!("{p}-mag")));
    for ctr in containers {
        let log = c.must(
            until(
                "the daemon to re-read its SAs",
                Duration::from_secs(30),
                || {
                    let out = c.podman(None, &["logs", &ctr]).ok()?;
                    let text = String::from_utf8_lossy(&out.stderr).into_owned()
                        + &String::from_utf8_lossy(&out.stdout);
                    text.contains("security associations reloaded")
                        .then_some(text)
                },
            )
            .await,
        );
        assert!(
            log.contains("no security association for") && log.contains("ESP in the daemon"),
            "{ctr} started before its SAs existed, with ESP on: {log}"
        );
    }

    // What the operator does next, done with pmipctl in the LMA pod over TLS: authorize the
    // MAGs by their nodes' addresses, and give the mobile node a profile.
    let lma = format!("{lma_pod}-lma");
    for node in &mag_nodes {
        pmipctl(
            &c,
            &nodes[0],
            &lma,
            &[
                "policy",
                "mags",
                "add",
                &node.addr.to_string(),
                "--name",
                &node.name,
            ],
            None,
        )
        .unwrap();
    }
    let profile = format!("mn_id: {MN_ID}\nlink_layer_addresses: ['02:00:00:77:00:01']\n");
    pmipctl(
        &c,
        &nodes[0],
        &lma,
        &["policy", "apply", "-f", "-"],
        Some(&profile),
    )
    .unwrap();
    // The API requires a client certificate: a client that trusts the domain's CA but has no
    // certificate of its own is refused, the same client with the pod's certificate is served.
    let tls_dir = c.path(&format!("pods/{lma_pod}/volumes/{}", "tls"));
    let host_pmipctl = |with_cert: bool| {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", nodes[0].ns.path().display()))
            .arg(target.join("debug/pmipctl"))
            .args(["--lma", &format!("https://[::1]:{}", render::GRPC_PORT)])
            .arg("--ca")
            .arg(tls_dir.join("ca.crt"));
        if with_cert {
            cmd.arg("--cert")
                .arg(tls_dir.join("tls.crt"))
                .arg("--key")
                .arg(tls_dir.join("tls.key"));
        }
        cmd.args(["bindings", "list"])
            .env_remove("PMIP_CERT")
            .env_remove("PMIP_KEY")
            .output()
            .unwrap()
    };
    let with = host_pmipctl(true);
    assert!(
        with.status.success(),
        "with the client certificate: {}",
        String::from_utf8_lossy(&with.stderr)
    );
    let without = host_pmipctl(false);
    let refusal = String::from_utf8_lossy(&without.stderr).into_owned();
    assert!(
        !without.status.success() && !refusal.contains("Connection refused"),
        "the LMA's API must refuse a client without a certificate: {refusal}"
    );

    // Attach at node 2: SLAAC only.
    let t = Instant::now();
    let mn = attach_mobile_node(&mut c, mag_nodes[0]).await.unwrap();
    let addr = c.must(
        until(
            "the mobile node's SLAAC address",
            Duration::from_secs(30),
            || node_address(&mn),
        )
        .await,
    );
    let b = c.must(
        until("the binding at the LMA", Duration::from_secs(10), || {
            binding(&c, &nodes[0], &lma).filter(|b| b["state"] == "ACTIVE")
        })
        .await,
    );
    let attach_secs = t.elapsed().as_secs_f64();
    assert_eq!(b["proxy_coa"], mag_nodes[0].addr.to_string());
    let prefix: ipnet::Ipv6Net = b["home_network_prefixes"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(prefix.contains(&addr), "{addr} in {prefix}");

    // A TCP connection to the correspondent node, across the handover to node 3.
    let flow = TcpFlow::start(&mn, &cn, CN, 7171, 2_000_000).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    hand_over(mag_nodes[0], mag_nodes[1]).await.unwrap();
    let b2 = c.must(
        until("the binding at node 3", Duration::from_secs(20), || {
            binding(&c, &nodes[0], &lma).filter(|b| {
                b["proxy_coa"] == mag_nodes[1].addr.to_string() && b["state"] == "ACTIVE"
            })
        })
        .await,
    );
    let handover_secs = t.elapsed().as_secs_f64();
    assert_eq!(b2["home_network_prefixes"], b["home_network_prefixes"]);
    assert_eq!(
        node_address(&mn),
        Some(addr),
        "the address survived the handover"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The LMA container killed with SIGKILL and restarted: the binding comes back from its
    // volume, with the same prefix, at node 3.
    let started_before = started_at(&c, &lma);
    let t = Instant::now();
    c.ok(None, &["kill", "--signal", "KILL", &lma]).unwrap();
    // The kubelet restarts a container that stopped (restartPolicy Always); podman's restart
    // policy may already have.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if !c
        .ok(None, &["inspect", "--format", "{{.State.Running}}", &lma])
        .unwrap()
        .contains("true")
    {
        c.ok(Some(&nodes[0].ns), &["start", &lma]).unwrap();
    }
    c.must(wait_ready(&nodes[0], &first.lma.spec.template, Duration::from_secs(60)).await);
    let b3 = c.must(
        until(
            "the binding after the LMA restart",
            Duration::from_secs(20),
            || binding(&c, &nodes[0], &lma),
        )
        .await,
    );
    let restart_secs = t.elapsed().as_secs_f64();
    assert_ne!(
        started_at(&c, &lma),
        started_before,
        "the container restarted"
    );
    assert_eq!(b3["home_network_prefixes"], b["home_network_prefixes"]);
    assert_eq!(b3["proxy_coa"], mag_nodes[1].addr.to_string());
    assert_eq!(node_address(&mn), Some(addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = flow.finish();
    assert!(
        report.survived,
        "the TCP connection survived: {:?}",
        report.error
    );

    // Every rendered pod passes the kubelet's rules and needs the documented level.
    for tpl in [&first.lma.spec.template, &ds.spec.template] {
        let pod = tpl.spec.as_ref().unwrap();
        assert_eq!(
            kubelet_objections(pod, sysctl_writers(SysctlSetter::InitContainer)),
            Vec::<String>::new()
        );
        assert_eq!(pod_security_level(pod), render::POD_SECURITY_LEVEL);
    }

    println!(
        "[pods] image {built} ({:.1} MB, built in {image_secs:.1} s {}); \
         three nodes Ready in {ready_secs:.1} s; attach (SLAAC address and binding) {attach_secs:.2} s; \
         handover {handover_secs:.2} s; LMA SIGKILL to ready with the binding {restart_secs:.2} s; \
         TCP {} bytes, survived; whole test {:.1} s",
        size as f64 / 1e6,
        if reuse {
            "from the binaries cargo test built"
        } else {
            "with a cargo build of its programs"
        },
        report.bytes,
        started.elapsed().as_secs_f64()
    );
}

/// The crates the image's programs are built from.
const IMAGE_CRATES: [&str; 9] = [
    "pmip",
    "cnf",
    "datapath",
    "proto",
    "lma-cnf",
    "mag-cnf",
    "operator",
    "pmipctl",
    "Cargo.lock",
];

/// Whether the image's programs in `dir` were built after every source they come from, as
/// `cargo test --workspace` leaves them: the image is then made from them as they are, not by
/// a second `cargo build` (which, with other features unified, rebuilds most dependencies).
fn binaries_fresh(dir: &Path) -> bool {
    let newest = IMAGE_CRATES
        .iter()
        .filter_map(|c| {
            let p = workspace().join(c);
            if p.is_file() {
                std::fs::metadata(p).and_then(|m| m.modified()).ok()
            } else {
                e2e::lab::newest_mtime(&p)
            }
        })
        .max();
    ["pmip-lma", "pmip-mag", "pmip-operator", "pmipctl"]
        .iter()
        .all(|b| {
            std::fs::metadata(dir.join(b))
                .and_then(|m| m.modified())
                .is_ok_and(|t| newest.is_none_or(|n| t >= n))
        })
}

fn started_at(c: &Cluster, ctr: &str) -> String {
    c.ok(None, &["inspect", "--format", "{{.State.StartedAt}}", ctr])
        .unwrap_or_default()
}

fn jiff_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ----------------------------------------------------------------- on secondary networks

/// One attachment of a pod as this test's Multus makes it: the podman network (CNI bridge,
/// the plugin Multus calls) standing in for the NetworkAttachmentDefinition on the pod's node,
/// the definition's `namespace/name`, the interface, and the address its IPAM gives.
struct Attachment {
    network: String,
    definition: String,
    interface: String,
    ip6: Option<Ipv6Addr>,
}

/// The `k8s.v1.cni.cncf.io/network-status` annotation Multus writes for these attachments.
fn network_status(atts: &[Attachment]) -> String {
    let v: Vec<Value> = atts
        .iter()
        .map(|a| {
            json!({"name": a.definition, "interface": a.interface,
                   "ips": a.ip6.iter().map(|i| i.to_string()).collect::<Vec<_>>()})
        })
        .collect();
    serde_json::to_string(&v).unwrap()
}

/// A kubelet with Multus on `node` running `tpl`, which is not on the host network: the
/// attachments its networks annotation asks for (checked against `atts`), the pod's sandbox
/// first, its `securityContext.sysctls` applied in the sandbox's network namespace (as
/// containerd does; podman 4.3's `kube play` ignores them), then its containers.
#[allow(clippy::too_many_arguments)]
async fn run_net_pod(
    c: &Cluster,
    node: &Node,
    name: &str,
    tpl: &PodTemplateSpec,
    objects: &Desired,
    secrets: &[Secret],
    aliases: &[(Ipv6Addr, String)],
    atts: &[Attachment],
) -> anyhow::Result<()> {
    let spec = tpl.spec.clone().ok_or_else(|| anyhow!("no pod spec"))?;
    ensure!(
        spec.host_network != Some(true),
        "{name} is on the host network"
    );
    ensure!(spec.init_containers.is_none(), "{name} has init containers");
    let wanted: Vec<Value> = serde_json::from_str(
        tpl.metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(render::NETWORKS_ANNOTATION))
            .ok_or_else(|| anyhow!("{name}: no networks annotation"))?,
    )?;
    ensure!(wanted.len() == atts.len(), "{name}: asks for {wanted:?}");
    for (w, a) in wanted.iter().zip(atts) {
        ensure!(
            w["interface"] == a.interface.as_str()
                && a.definition
                    .ends_with(&format!("/{}", w["name"].as_str().unwrap_or("?"))),
            "{name}: asks for {w}, not {}",
            a.definition
        );
    }
    let status = network_status(atts);
    let mut volumes = project_volumes(c, name, &spec, objects, secrets, Some(&status))?;
    let hosts = c.path(&format!("pods/{name}/etc-hosts"));
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    for (ip, host) in aliases {
        text.push_str(&format!("{ip}\t{host}\n"));
    }
    std::fs::write(&hosts, text)?;
    volumes.push(Volume {
        name: ETC_HOSTS.into(),
        host_path: Some(HostPathVolumeSource {
            path: hosts.display().to_string(),
            type_: Some("File".into()),
        }),
        ..Volume::default()
    });
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: tpl.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Always".into()),
            security_context: spec.security_context.clone(),
            volumes: Some(volumes),
            containers: spec
                .containers
                .iter()
                .map(|x| for_podman(x, node, name, "pmip-pods"))
                .collect::<anyhow::Result<_>>()?,
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let file = c.path(&format!("{name}.yaml"));
    std::fs::write(&file, serde_json::to_string_pretty(&pod)?)?;
    let nets: Vec<String> = atts
        .iter()
        .map(|a| {
            let mut n = format!("{}:interface_name={}", a.network, a.interface);
            if let Some(ip) = a.ip6 {
                n.push_str(&format!(",ip6={ip}"));
            }
            n
        })
        .collect();
    let mut args = vec!["kube", "play", "--quiet", "--start=false"];
    for n in &nets {
        args.extend(["--network", n.as_str()]);
    }
    args.push(file.to_str().unwrap());
    c.track(name);
    c.ok(Some(&node.ns), &args)?;
    let infra = c.ok(
        None,
        &["pod", "inspect", name, "--format", "{{.InfraContainerID}}"],
    )?;
    c.ok(Some(&node.ns), &["start", infra.trim()])?;
    let pid = c.ok(
        None,
        &["inspect", infra.trim(), "--format", "{{.State.Pid}}"],
    )?;
    let sandbox = NetNs::from_path(format!("/proc/{}/ns/net", pid.trim()));
    let nl = Netlink::connect_in(&sandbox)?;
    for s in spec
        .security_context
        .as_ref()
        .and_then(|x| x.sysctls.as_ref())
        .into_iter()
        .flatten()
    {
        sysctl(&nl, &s.name.replace('.', "/"), &s.value)?;
    }
    c.ok(Some(&node.ns), &["pod", "start", name])?;
    Ok(())
}

/// A pod as the API server shows it to the operator once Multus attached it.
fn observed_attached(component: &str, node: &str, domain: &str, atts: &[Attachment]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{component}-{node}"),
                     "labels": {"app.kubernetes.io/component": component, "pmip.io/domain": domain},
                     "annotations": {render::NETWORK_STATUS_ANNOTATION: network_status(atts)}},
        "spec": {"nodeName": node, "containers": []},
        "status": {"hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}]}
    }))
    .unwrap()
}

/// A domain on secondary networks: the LMA at a static address on the transport network,
/// the MAGs on it and on an access network each.
fn net_domain(name: &str, pool: &str, lma: Ipv6Addr) -> MobilityDomain {
    serde_json::from_value(json!({
        "apiVersion": "pmip.io/v1alpha1", "kind": "MobilityDomain",
        "metadata": {"name": name, "namespace": "pmip-pods", "uid": format!("uid-{name}"), "generation": 1},
        "spec": {
            "lma": {"prefixPools": [{"prefix": pool, "prefixLength": 64}],
                    "networks": [{"name": "transport", "interface": "transport", "role": "Transport",
                                  "ips": [format!("{lma}/64")]}]},
            "mags": {"networks": [{"name": "transport", "interface": "transport", "role": "Transport"},
                                  {"name": "radio", "interface": "access0", "role": "Access"}]}
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_secondary_networks_two_domains_on_one_node() {
    check_environment().unwrap();
    let started = Instant::now();
    let pid = std::process::id();
    let dir = tempfile::Builder::new()
        .prefix("pmip-pods-net-")
        .tempdir()
        .unwrap();
    // podman's CNI backend: its networks are made by the plugins Multus calls.
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        std::fs::read_to_string(workspace().join("e2e/containers/containers.conf")).unwrap()
            + "[network]\nnetwork_backend = \"cni\"\n",
    )
    .unwrap();
    let mut c = Cluster {
        image: format!("localhost/pmip:pods-net-{pid}"),
        dir,
        conf,
        id: format!("pn{pid}"),
        namespaces: Vec::new(),
        pods: Default::default(),
        networks: Vec::new(),
    };
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let mut args = vec!["--profile", "dev", "--tag", &c.image];
    if binaries_fresh(&target.join("debug")) {
        args.push("--no-build");
    }
    let out = Command::new(workspace().join("e2e/containers/build-image.sh"))
        .args(&args)
        .env("CARGO_TARGET_DIR", &target)
        .env("CONTAINERS_CONF", &c.conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-image.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let image = Image {
        reference: c.image.clone(),
        pull_policy: "Never".into(),
    };

    // One emulated node, and a correspondent node behind it.
    let t0 = Instant::now();
    let node_ns = NetNs::create(&format!("{}-node", c.id)).unwrap().keep();
    c.namespaces.push(node_ns.name().to_owned());
    let cn = NetNs::create(&format!("{}-cn", c.id)).unwrap().keep();
    c.namespaces.push(cn.name().to_owned());
    let nnl = Netlink::connect_in(&node_ns).unwrap();
    nnl.set_link_up(1, true).await.unwrap();
    sysctl(&nnl, "net/ipv6/conf/all/forwarding", "1").unwrap();
    sysctl(&nnl, "net/ipv6/conf/default/accept_dad", "0").unwrap();
    nnl.add_veth("cn0", "eth0", &cn).await.unwrap();
    let ci = nnl.link_index("cn0").await.unwrap();
    let gw_cn = Ipv6Addr::new(0x2001, 0xdb8, 0xcc, 0, 0, 0, 0, 2);
    nnl.add_address(ci, gw_cn, 64).await.unwrap();
    nnl.set_link_up(ci, true).await.unwrap();
    let cnl = Netlink::connect_in(&cn).unwrap();
    cnl.set_link_up(1, true).await.unwrap();
    sysctl(&cnl, "net/ipv6/conf/all/accept_dad", "0").unwrap();
    sysctl(&cnl, "net/ipv6/conf/eth0/accept_dad", "0").unwrap();
    let ce = cnl.link_index("eth0").await.unwrap();
    cnl.add_address(ce, CN, 64).await.unwrap();
    cnl.set_link_up(ce, true).await.unwrap();
    cnl.add_route("::/0".parse().unwrap(), Some(gw_cn), ce)
        .await
        .unwrap();

    // The networks: one transport network, an access network per MAG (node-local bridges).
    let sub = 0xe000 + (pid % 0x1000) as u16;
    let tr_addr = |host: u16| Ipv6Addr::new(0x2001, 0xdb8, sub, 0, 0, 0, 0, host);
    let net = |n: &str| format!("{}-{n}", c.id);
    let mut create = vec![(
        net("tr"),
        vec![
            "--ipv6".to_string(),
            "--subnet".into(),
            format!("2001:db8:{sub:x}::/64"),
        ],
    )];
    for a in ["acc1", "acc2", "acc3"] {
        create.push((
            net(a),
            vec!["--internal".into(), "--ipam-driver".into(), "none".into()],
        ));
    }
    for (n, opts) in &create {
        let mut a = vec!["network", "create"];
        a.extend(opts.iter().map(String::as_str));
        a.push(n);
        c.ok(Some(&node_ns), &a).unwrap();
        c.networks.push(n.clone());
    }
    let node = |name: &str| Node {
        name: name.into(),
        ns: node_ns.clone(),
        addr: tr_addr(1),
        ipv4: "192.0.2.1".into(),
    };
    let (node1, node2) = (node("node1"), node("node2"));
    let transport = |ip: Ipv6Addr| Attachment {
        network: net("tr"),
        definition: "pmip-pods/transport".into(),
        interface: "transport".into(),
        ip6: Some(ip),
    };
    let radio = |acc: &str| Attachment {
        network: net(acc),
        definition: "pmip-pods/radio".into(),
        interface: "access0".into(),
        ip6: None,
    };

    // Two domains, each an LMA and its MAGs, every pod on node1 but domain 1's second MAG (its
    // DaemonSet's pod on node2, which shares node1's network namespace here).
    let now = jiff_now();
    let lab_pool = POOL;
    let other_pool = "2001:db8:200::/48";
    let mut lmas = Vec::new();
    for (dname, pool, lma_ip, mags) in [
        (
            "lab",
            lab_pool,
            tr_addr(0x11),
            vec![
                (&node1, tr_addr(0x12), "acc1"),
                (&node2, tr_addr(0x13), "acc2"),
            ],
        ),
        (
            "other",
            other_pool,
            tr_addr(0x21),
            vec![(&node1, tr_addr(0x22), "acc3")],
        ),
    ] {
        let md = net_domain(dname, pool, lma_ip);
        let (ca, ca_key) = pki::new_ca("pmip-pods", dname, now).unwrap();
        let (cert, key) =
            pki::new_leaf(&ca, &ca_key, &pki::subject_names("pmip-pods", dname), now).unwrap();
        let material = pki::Material {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        let secrets = vec![
            render::ca_secret(&md, &ca, &ca_key),
            render::tls_secret(&md, &ca, &cert, &key),
        ];
        let aliases = vec![(lma_ip, render::lma_service_host("pmip-pods", dname))];
        let first = decide(&md, &PodsView::default(), &image, Some(&material), None).unwrap();
        let lma_pod = format!("{}-{dname}-lma", c.id);
        let lma_atts = [transport(lma_ip)];
        c.must(
            run_net_pod(
                &c,
                &node1,
                &lma_pod,
                &first.lma.spec.template,
                &first,
                &secrets,
                &aliases,
                &lma_atts,
            )
            .await,
        );
        c.must(
            wait_ready_at(
                &node_ns,
                lma_ip,
                &lma_pod,
                &first.lma.spec.template,
                Duration::from_secs(60),
            )
            .await,
        );
        // The operator reads the LMA's address (its static one) and renders the MAGs, which
        // may share the LMA's node.
        let mut seen = vec![observed_attached("lma", "node1", dname, &lma_atts)];
        let view = operator::domain::pods_view(&md, &seen);
        assert_eq!(view.lma_address, Some(lma_ip));
        let full = decide(&md, &view, &image, Some(&material), None).unwrap();
        let ds = full.mags.clone().unwrap();
        let mag_spec = ds.spec.template.spec.as_ref().unwrap();
        assert!(
            mag_spec
                .affinity
                .as_ref()
                .is_none_or(|a| a.node_affinity.is_none())
        );
        let cm_mag = &full.config_map.data.as_ref().unwrap()["mag.yaml"];
        assert!(
            cm_mag.contains(&format!("lma_address: {lma_ip}")),
            "{cm_mag}"
        );
        for (n, ip, acc) in &mags {
            let name = format!("{}-{dname}-mag-{acc}", c.id);
            let atts = [transport(*ip), radio(acc)];
            c.must(
                run_net_pod(
                    &c,
                    n,
                    &name,
                    &ds.spec.template,
                    &full,
                    &secrets,
                    &aliases,
                    &atts,
                )
                .await,
            );
            seen.push(observed_attached("mag", &n.name, dname, &atts));
        }
        for (_, ip, acc) in &mags {
            c.must(
                wait_ready_at(
                    &node_ns,
                    *ip,
                    acc,
                    &ds.spec.template,
                    Duration::from_secs(60),
                )
                .await,
            );
        }
        // The proxy-CoAs the operator authorizes: from the MAG pods' network-status.
        let view = operator::domain::pods_view(&md, &seen);
        let coas: Vec<String> = view.mags.iter().map(|m| m.proxy_coa.clone()).collect();
        let want: Vec<String> = mags.iter().map(|(_, ip, _)| ip.to_string()).collect();
        assert_eq!(coas, want);
        let lma = format!("{lma_pod}-lma");
        for m in &view.mags {
            pmipctl(
                &c,
                &node1,
                &lma,
                &["policy", "mags", "add", &m.proxy_coa, "--name", &m.node],
                None,
            )
            .unwrap();
        }
        // Every rendered pod passes the kubelet's rules: off the host network its net.*
        // sysctls are allowed (with --allowed-unsafe-sysctls), and no container writes one.
        for tpl in [&first.lma.spec.template, &ds.spec.template] {
            let pod = tpl.spec.as_ref().unwrap();
            assert_eq!(kubelet_objections(pod, &[]), Vec::<String>::new());
            assert_eq!(pod_security_level(pod), render::POD_SECURITY_LEVEL);
        }
        lmas.push((
            lma,
            lma_ip,
            mags.iter()
                .map(|(_, ip, acc)| (*ip, net(acc)))
                .collect::<Vec<_>>(),
        ));
    }
    let ready_secs = t0.elapsed().as_secs_f64();

    // Domain lab's mobile node on MAG 1's access network, its home traffic through LMA 1.
    let (lma, lma_ip, mags) = &lmas[0];
    nnl_route(&node_ns, lab_pool, *lma_ip);
    let profile = format!("mn_id: {MN_ID}\nlink_layer_addresses: ['02:00:00:77:00:01']\n");
    pmipctl(
        &c,
        &node1,
        lma,
        &["policy", "apply", "-f", "-"],
        Some(&profile),
    )
    .unwrap();
    let bridge = |network: &str| {
        c.ok(
            None,
            &[
                "network",
                "inspect",
                network,
                "--format",
                "{{.NetworkInterface}}",
            ],
        )
        .unwrap()
        .trim()
        .to_owned()
    };
    let (br1, br2) = (bridge(&mags[0].1), bridge(&mags[1].1));
    let t = Instant::now();
    let mn = NetNs::create(&format!("{}-mn", c.id)).unwrap().keep();
    c.namespaces.push(mn.name().to_owned());
    let port = format!("{}m", c.id);
    {
        let nl = Netlink::connect_in(&mn).unwrap();
        nl.set_link_up(1, true).await.unwrap();
        nl.add_veth("eth0", &port, &node_ns).await.unwrap();
        let e = nl.link_index("eth0").await.unwrap();
        nl.set_link_address(e, MN_MAC).await.unwrap();
        for (k, v) in [
            ("forwarding", "0"),
            ("accept_ra", "1"),
            ("autoconf", "1"),
            ("router_solicitation_delay", "0"),
            ("router_solicitation_interval", "1"),
            ("accept_dad", "0"),
            ("use_tempaddr", "0"),
            ("addr_gen_mode", "0"),
        ] {
            sysctl(&nl, &format!("net/ipv6/conf/eth0/{k}"), v).unwrap();
        }
        nl.set_link_up(e, true).await.unwrap();
    }
    let plug = |br: &str| {
        for args in [
            vec!["link", "set", port.as_str(), "down"],
            vec!["link", "set", port.as_str(), "master", br],
            vec!["link", "set", port.as_str(), "up"],
        ] {
            let out = Command::new("ip")
                .arg("-n")
                .arg(node_ns.name())
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
    };
    plug(&br1);
    let addr = c.must(
        until(
            "the mobile node's SLAAC address",
            Duration::from_secs(30),
            || node_address(&mn),
        )
        .await,
    );
    let b = c.must(
        until("the binding at the LMA", Duration::from_secs(10), || {
            binding(&c, &node1, lma).filter(|b| b["state"] == "ACTIVE")
        })
        .await,
    );
    let attach_secs = t.elapsed().as_secs_f64();
    assert_eq!(b["proxy_coa"], mags[0].0.to_string());

    // TCP to the correspondent node across the handover to MAG 2's access network.
    let flow = TcpFlow::start(&mn, &cn, CN, 7172, 2_000_000).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    plug(&br2);
    let b2 = c.must(
        until("the binding at MAG 2", Duration::from_secs(20), || {
            binding(&c, &node1, lma)
                .filter(|b| b["proxy_coa"] == mags[1].0.to_string() && b["state"] == "ACTIVE")
        })
        .await,
    );
    let handover_secs = t.elapsed().as_secs_f64();
    assert_eq!(b2["home_network_prefixes"], b["home_network_prefixes"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(node_address(&mn), Some(addr), "the address survived");
    let report = flow.finish();
    assert!(report.survived, "TCP survived: {:?}", report.error);
    // The other domain's LMA never heard of the node: domains stay apart on one node.
    let other = pmipctl(
        &c,
        &node1,
        &lmas[1].0,
        &["bindings", "list", "-o", "json"],
        None,
    )
    .unwrap();
    assert!(!other.contains(MN_ID), "{other}");

    println!(
        "[pods on secondary networks] two domains (2 LMAs, 3 MAGs, no host network) Ready in \
         {ready_secs:.1} s; attach {attach_secs:.2} s; handover between the access networks \
         {handover_secs:.2} s; TCP {} bytes, survived; whole test {:.1} s",
        report.bytes,
        started.elapsed().as_secs_f64()
    );
}

/// On the node: the domain's pool routed to its LMA's transport address (as the lab's router
/// routes the mobile nodes' prefixes to their anchor).
fn nnl_route(ns: &NetNs, pool: &str, via: Ipv6Addr) {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-6", "route", "replace", pool, "via"])
        .arg(via.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "route {pool} via {via}: {out:?}");
}
