//! A PMIPv6 domain in network namespaces: one LMA, N MAGs, M mobile nodes and a correspondent
//! node, wired through a routed transport network, with the real daemons running inside.
//!
//! ```text
//!                     +-----------------------------+
//!   CN --tr0----------|  <lab>-net (router)         |----tr0-- LMA (2001:db8:ffff::1)
//!  2001:db8:cc::1     |  routes 2001:db8:100::/48   |----tr0-- MAG1 (2001:db8:ff01::1)
//!                     |  to the LMA                 |----tr0-- MAG2 (2001:db8:ff02::1)
//!                     +-----------------------------+
//!                      <lab>-air: one bridge per node, the "radio"
//!   MN1 eth0 ===== n1 -+- b1 -+- m1x1 ===== acc1 MAG1   (up: MN1's radio is at MAG1)
//!                      |      +- m1x2 ===== acc1 MAG2   (down)
//! ```
//!
//! The radio ([`Radio::Carrier`], the default) costs microseconds: every node keeps one link
//! to each MAG (`acc<n>` in each MAG, a veth whose other end is a port of the node's bridge in
//! `<lab>-air`), and the node's own `eth0` is a veth to the same bridge. A handover takes the
//! old MAG's port and the node's port down and brings the new MAG's port and the node's port
//! up, in one netlink exchange: the old MAG sees its access link lose its carrier (the node
//! left), the new MAG sees its access link get its carrier and the node's first frames (it
//! attached), and the node sees its link go down and up, as when it roams between access
//! points. [`Radio::VethMove`] is the lab's first stand-in, kept to compare: the node has one
//! veth whose MAG end moves into the other MAG's namespace, which costs the kernel 10-30 ms.
//!
//! Every name starts with the lab's name, so several labs (and tests) run side by side, and
//! `pmip-lab down` finds what a crashed lab left. Topology, addresses and sysctls are set with
//! netlink and `/proc/sys`; nothing here runs `ip` or `ping`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use datapath::Netlink;
use datapath::netns::NetNs;
use ipnet::Ipv6Net;
use pmip::config::{
    ConfiguredMag, DatapathMode, EspAlgorithm, FastHandoverMode, IpsecConfig, IpsecMode,
    KeyMaterial, LmaConfig, MagConfig, MobileNodeProfile, SecurityAssociationConfig,
};
use pmip::types::{LinkLayerAddress, Nai};

/// The pool the LMA allocates home network prefixes from.
pub const POOL: &str = "2001:db8:100::/48";
/// The LMA address.
pub const LMA_ADDRESS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The correspondent node's address.
pub const CN_ADDRESS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcc, 0, 0, 0, 0, 1);
/// With [`Spec::ipv4`]: the pool the LMA assigns IPv4 home addresses from (RFC 5844), its
/// default router being the first address.
pub const POOL4: &str = "10.64.0.0/24";
/// With [`Spec::ipv4`]: the correspondent node's IPv4 address. IPv4 runs beside the IPv6
/// transport only between the LMA, the router and the correspondent (each a /30), since the
/// tunnels carry the nodes' IPv4 inside IPv6.
pub const CN_ADDRESS4: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 1);

/// A MAG's proxy-CoA.
pub fn mag_address(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xff01 + i as u16, 0, 0, 0, 0, 1)
}

/// A node's link-layer address.
pub fn node_mac(n: usize) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x10, (n >> 8) as u8, n as u8]
}

/// A node's MN-ID.
pub fn node_id(n: usize) -> String {
    format!("mn{n}@lab.example")
}

/// The lab's stand-in for the radio between a node and its MAG (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Radio {
    /// A link from the node to every MAG through a bridge; a move is carrier down at the old
    /// MAG and up at the new one (microseconds).
    #[default]
    Carrier,
    /// One veth whose MAG end moves between the MAGs' namespaces (10-30 ms).
    VethMove,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Prefix of every namespace name (at most 8 characters).
    pub name: String,
    pub mags: usize,
    pub nodes: usize,
    pub fast_handover: FastHandoverMode,
    pub local_routing: bool,
    pub datapath: DatapathMode,
    /// MTU of the transport links: 40 more than the access links, so that full-size packets
    /// fit in the tunnel (KERNEL-DATAPATH.md, MTU).
    pub transport_mtu: u32,
    pub access_mtu: u32,
    pub heartbeat_interval_s: u32,
    /// Where configurations, state and logs go; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// MAGs (0-based) left out of the LMA's authorized list.
    pub unauthorized_mags: Vec<usize>,
    /// Nodes (0-based) the LMA has no profile for; their MAG still knows them, so it asks and
    /// the LMA refuses.
    pub lma_unknown_nodes: Vec<usize>,
    /// Nodes (0-based) nobody has a profile for.
    pub unknown_nodes: Vec<usize>,
    /// The MAGs' PBU timers.
    pub mag_timers: pmip::config::MagTimers,
    /// ESP for the signalling: every daemon gets an SA pair with each peer (the LMA with
    /// every MAG, every MAG with every other one), with keys made for this lab.
    pub ipsec: IpsecMode,
    pub esp_algorithm: EspAlgorithm,
    /// IPv4 home addresses (RFC 5844): the LMA has the pool [`POOL4`], every profile has
    /// IPv4 on, and the correspondent is reachable at [`CN_ADDRESS4`] too.
    pub ipv4: bool,
    /// With [`Spec::ipv4`]: nodes (0-based) whose profiles have IPv6 off (RFC 5844
    /// IPv4-only nodes: the LMA assigns them no home network prefix).
    pub ipv4_only_nodes: Vec<usize>,
    /// The domain's link-local mode (RFC 5213 §6.8); `None`: the default (fixed `fe80::1`).
    pub link_local: Option<pmip::config::LinkLocalMode>,
    /// The MAGs' Neighbor Unreachability Detection (RFC 5213 §6.13); `None`: the default.
    pub neighbor_unreachability: Option<pmip::config::NeighborUnreachabilityConfig>,
    /// The stand-in for the radio.
    pub radio: Radio,
}

impl Spec {
    pub fn new(name: &str, mags: usize, nodes: usize) -> Self {
        Spec {
            name: name.to_owned(),
            mags,
            nodes,
            fast_handover: FastHandoverMode::Off,
            local_routing: false,
            datapath: DatapathMode::Auto,
            transport_mtu: 1540,
            access_mtu: 1500,
            heartbeat_interval_s: 5,
            dir: None,
            unauthorized_mags: Vec::new(),
            lma_unknown_nodes: Vec::new(),
            unknown_nodes: Vec::new(),
            mag_timers: Default::default(),
            ipsec: IpsecMode::Off,
            esp_algorithm: EspAlgorithm::Aes128Gcm,
            ipv4: false,
            ipv4_only_nodes: Vec::new(),
            link_local: None,
            neighbor_unreachability: None,
            radio: Radio::default(),
        }
    }
}

/// One direction of an ESP SA of the lab: what a tool needs to decrypt it, or to forge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSa {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub spi: u32,
    pub algorithm: EspAlgorithm,
    pub key: Vec<u8>,
}

/// The signalling address of party `p`: 0 the LMA, `i + 1` MAG `i`.
fn party_address(p: usize) -> Ipv6Addr {
    if p == 0 {
        LMA_ADDRESS
    } else {
        mag_address(p - 1)
    }
}

/// How to start the daemons.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub lma: Vec<PathBuf>,
    pub mag: Vec<PathBuf>,
    pub pmipctl: Vec<PathBuf>,
}

impl Binaries {
    /// `pmip-lma` and `pmip-mag` next to `lab_exe` (how `cargo build` leaves them), else
    /// `lab_exe` itself running the same daemon code (`pmip-lab __lma` / `__mag`).
    pub fn locate(lab_exe: &Path) -> Binaries {
        let dirs: Vec<PathBuf> = lab_exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(Path::to_path_buf)
            .collect();
        let find = |name: &str, sub: &str| -> Vec<PathBuf> {
            for d in &dirs {
                let p = d.join(name);
                if p.is_file() {
                    return vec![p];
                }
            }
            vec![lab_exe.to_path_buf(), PathBuf::from(sub)]
        };
        Binaries {
            lma: find("pmip-lma", "__lma"),
            mag: find("pmip-mag", "__mag"),
            pmipctl: find("pmipctl", "__pmipctl"),
        }
    }

    /// Runs the daemon that `argv[1]` names (`__lma` or `__mag`) with the rest of `argv`:
    /// how an executable that embeds the daemons' code answers for them (see
    /// [`Binaries::embedded`]). `None`, and `argv` untouched, when it names no daemon.
    pub fn run_embedded(argv: &mut Vec<std::ffi::OsString>) -> Option<std::process::ExitCode> {
        let main_from: fn(Vec<std::ffi::OsString>) -> std::process::ExitCode =
            match argv.get(1).and_then(|a| a.to_str()) {
                Some("__lma") => |a| lma_cnf::cli::main_from(a),
                Some("__mag") => |a| mag_cnf::cli::main_from(a),
                _ => return None,
            };
        argv.remove(1);
        Some(main_from(std::mem::take(argv)))
    }

    /// The lab's own copy of the daemons' code: `lab_exe __lma`, `lab_exe __mag`,
    /// `lab_exe __pmipctl`. Always the same build as the lab.
    pub fn embedded(lab_exe: &Path) -> Binaries {
        let run = |sub: &str| vec![lab_exe.to_path_buf(), PathBuf::from(sub)];
        Binaries {
            lma: run("__lma"),
            mag: run("__mag"),
            pmipctl: run("__pmipctl"),
        }
    }

    /// `pmip-lma`, `pmip-mag` and `pmipctl` from `dir` (an installation); an error naming
    /// what is missing.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Binaries> {
        let get = |name: &str| -> anyhow::Result<Vec<PathBuf>> {
            let p = dir.join(name);
            if !p.is_file() {
                bail!(
                    "{} not found (PMIP_LAB_DAEMONS={})",
                    p.display(),
                    dir.display()
                );
            }
            Ok(vec![p])
        };
        Ok(Binaries {
            lma: get("pmip-lma")?,
            mag: get("pmip-mag")?,
            pmipctl: get("pmipctl")?,
        })
    }

    /// For tests run from the source tree: the separately built binaries next to `lab_exe`
    /// when each is newer than every source file of the crates it is built from, else the
    /// lab's own copy of their code (a stale binary left by an earlier build never runs).
    pub fn fresh(lab_exe: &Path, workspace: &Path) -> Binaries {
        let newest = [
            "pmip", "cnf", "datapath", "proto", "lma-cnf", "mag-cnf", "pmipctl",
        ]
        .iter()
        .filter_map(|c| newest_mtime(&workspace.join(c)))
        .max();
        let located = Binaries::locate(lab_exe);
        let embedded = Binaries::embedded(lab_exe);
        let pick = |found: Vec<PathBuf>, fallback: Vec<PathBuf>| -> Vec<PathBuf> {
            let fresh = found.len() == 1
                && std::fs::metadata(&found[0])
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| newest.is_none_or(|n| t >= n));
            if fresh { found } else { fallback }
        };
        Binaries {
            lma: pick(located.lma, embedded.lma),
            mag: pick(located.mag, embedded.mag),
            pmipctl: pick(located.pmipctl, embedded.pmipctl),
        }
    }

    /// True when the daemons are the installed binaries, not the lab running their code.
    pub fn standalone(&self) -> bool {
        self.lma.len() == 1 && self.mag.len() == 1
    }
}

/// The newest modification time of the files under `dir` (its `src`, `proto` and
/// `Cargo.toml`).
pub fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    fn walk(p: &Path, best: &mut Option<std::time::SystemTime>) {
        let Ok(m) = std::fs::metadata(p) else {
            return;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), best);
                }
            }
        } else if let Ok(t) = m.modified() {
            *best = Some(best.map_or(t, |b| b.max(t)));
        }
    }
    let mut best = None;
    for sub in ["src", "pmip", "Cargo.toml", "build.rs"] {
        walk(&dir.join(sub), &mut best);
    }
    best
}

/// A mobile node of the lab.
#[derive(Debug, Clone)]
pub struct Node {
    pub index: usize,
    pub mn_id: String,
    pub mac: [u8; 6],
    pub ns: NetNs,
    /// The MAG it is attached to, if any.
    pub at: Option<usize>,
    /// Name of its access link at the MAG (the same in every MAG).
    pub access_if: String,
}

/// A running lab. Dropping it stops the daemons and removes every namespace.
#[derive(Debug)]
pub struct Lab {
    pub spec: Spec,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub net: NetNs,
    pub lma_ns: NetNs,
    pub cn: NetNs,
    pub mag_ns: Vec<NetNs>,
    pub nodes: Vec<Node>,
    /// The nodes' bridges ([`Radio::Carrier`]).
    pub air: NetNs,
    binaries: Binaries,
    lma: Option<Child>,
    mags: Vec<Option<Child>>,
    /// Process ids of the daemons: of `lma` and `mags`, or as recorded by `pmip-lab up`.
    lma_pid: Option<u32>,
    mag_pids: Vec<Option<u32>>,
    /// The namespaces this lab made (what `pmip-lab down` removes).
    namespaces: Vec<String>,
    keep: bool,
    /// Netlink connections by namespace: opening one takes a thread and a runtime, too slow
    /// to do in the middle of a handover.
    netlink: std::sync::Mutex<BTreeMap<String, Netlink>>,
    /// gRPC channels by namespace, for the same reason.
    channels: std::sync::Mutex<BTreeMap<String, tonic::transport::Channel>>,
}

/// Namespace names of a lab: the router, the LMA, the CN, the MAGs, the nodes, the air.
pub fn namespace_names(name: &str, mags: usize, nodes: usize) -> Vec<String> {
    let mut v = vec![
        format!("{name}-net"),
        format!("{name}-lma"),
        format!("{name}-cn"),
    ];
    v.extend((0..mags).map(|i| format!("{name}-mag{}", i + 1)));
    v.extend((0..nodes).map(|n| format!("{name}-mn{}", n + 1)));
    v.push(format!("{name}-air"));
    v
}

/// The ifindex of node `node`'s bridge port in the air to its own `eth0` (`slot` 0) or to MAG
/// `slot`: far above what the kernel hands out in a namespace of a few hundred links, so a
/// port never has its peer's index (see [`Netlink::add_veth_at`]).
/// Field `field` of link `link`'s line in `ns`'s `/proc/net/dev` (after the name: receive
/// bytes, packets, errs, drop, fifo, frame, compressed, multicast; then transmit bytes,
/// packets, errs, drop, ...).
fn net_dev_counter(ns: &NetNs, link: &str, field: usize) -> anyhow::Result<u64> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
    let want = format!("{link}:");
    let line = text
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(&want))
        .ok_or_else(|| anyhow!("no link {link} in {}", ns.name()))?;
    line[want.len()..]
        .split_whitespace()
        .nth(field)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("unreadable /proc/net/dev line: {line}"))
}

fn air_index(node: usize, slot: usize) -> u32 {
    1_000_000 + (node as u32) * 1024 + slot as u32
}

/// Every namespace whose name starts with `prefix-` (what `pmip-lab down` removes).
pub fn existing_namespaces(prefix: &str) -> Vec<String> {
    let want = format!("{prefix}-");
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&want))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Stops the processes running in the namespaces and removes them.
pub fn remove_namespaces(names: &[String]) {
    for n in names {
        let ns = NetNs::named(n);
        kill_processes_in(&ns);
        let _ = NetNs::delete(n);
    }
}

/// Kills every process whose network namespace is `ns` (left by a crashed lab).
fn kill_processes_in(ns: &NetNs) {
    let Ok(target) = std::fs::metadata(ns.path()) else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            && m.ino() == target.ino()
            && m.dev() == target.dev()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn sysctl(nl: &Netlink, key: &str, value: &str) -> anyhow::Result<()> {
    nl.set_sysctl(key, value)
        .with_context(|| format!("sysctl {key}={value}"))
}

impl Lab {
    /// Builds the lab and starts the daemons. Needs root.
    pub async fn up(spec: Spec, binaries: Binaries) -> anyhow::Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the lab builds network namespaces and needs root (run it with sudo)");
        }
        if spec.name.is_empty() || spec.name.len() > 8 {
            bail!("lab name {:?}: 1 to 8 characters", spec.name);
        }
        if spec.mags == 0 || spec.mags > 200 {
            bail!("--mags: 1 to 200");
        }
        // Only the names this lab would make count: other namespaces with the same prefix
        // are not the lab's business.
        let names = namespace_names(&spec.name, spec.mags, spec.nodes);
        let leftovers: Vec<String> = existing_namespaces(&spec.name)
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        if !leftovers.is_empty() {
            bail!(
                "namespaces of a lab named {:?} exist already ({}); run `pmip-lab down --name {}` first",
                spec.name,
                leftovers.join(", "),
                spec.name
            );
        }
        let (tmp, dir) = match &spec.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("pmip-lab-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut lab = Lab {
            net: NetNs::named(&names[0]),
            lma_ns: NetNs::named(&names[1]),
            cn: NetNs::named(&names[2]),
            mag_ns: (0..spec.mags)
                .map(|i| NetNs::named(&names[3 + i]))
                .collect(),
            air: NetNs::named(&names[3 + spec.mags + spec.nodes]),
            nodes: Vec::new(),
            binaries,
            lma: None,
            mags: (0..spec.mags).map(|_| None).collect(),
            lma_pid: None,
            mag_pids: vec![None; spec.mags],
            namespaces: Vec::new(),
            keep: false,
            netlink: Default::default(),
            channels: Default::default(),
            dir,
            _tmp: tmp,
            spec,
        };
        for n in &names {
            NetNs::create(n)
                .with_context(|| format!("namespace {n}"))?
                .keep();
            lab.namespaces.push(n.clone());
        }
        // Recorded at once, so that `pmip-lab down` finds what a lab that died half-way made.
        lab.save_state()?;
        // A lab starts clean: nothing of an earlier lab's daemons' state in the same folder.
        lab.remove_daemon_state()?;
        lab.wire().await?;
        lab.warm_up()?;
        lab.write_configs()?;
        lab.start_lma()?;
        lab.wait_ready(&lab.lma_ns.clone(), "LMA").await?;
        for i in 0..lab.spec.mags {
            lab.start_mag(i)?;
        }
        for i in 0..lab.spec.mags {
            let ns = lab.mag_ns[i].clone();
            lab.wait_ready(&ns, &format!("MAG{}", i + 1)).await?;
        }
        for ns in lab
            .mag_ns
            .iter()
            .chain(lab.nodes.iter().map(|n| &n.ns))
            .chain(std::iter::once(&lab.air))
        {
            lab.nl(ns)?;
        }
        for ns in lab.mag_ns.clone() {
            lab.channel(&ns).await?;
        }
        Ok(lab)
    }

    /// Leaves the namespaces and daemons running when the lab is dropped (`pmip-lab up`).
    pub fn keep_running(&mut self) {
        self.keep = true;
    }

    /// The transport network, the correspondent node and the mobile nodes' links.
    async fn wire(&mut self) -> anyhow::Result<()> {
        let mtu = self.spec.transport_mtu;
        // No duplicate address detection anywhere: every address of the lab is unique by
        // construction, and DAD of the links' own link-local addresses would hold the first
        // neighbor discovery (and so the first packet) for a second or two.
        for n in &self.namespaces {
            let nl = Netlink::connect_in(&NetNs::named(n))?;
            sysctl(&nl, "net/ipv6/conf/default/accept_dad", "0")?;
            sysctl(&nl, "net/ipv6/conf/all/accept_dad", "0")?;
        }
        let net = Netlink::connect_in(&self.net)?;
        sysctl(&net, "net/ipv6/conf/all/forwarding", "1")?;
        let lo = net.link_index("lo").await?;
        net.set_link_up(lo, true).await?;
        // Transport links: one per LMA, MAG and CN, each a /64 with the router at ::2.
        let mut ends: Vec<(NetNs, Ipv6Addr, u16)> = vec![
            (self.lma_ns.clone(), LMA_ADDRESS, 0xffff),
            (self.cn.clone(), CN_ADDRESS, 0x00cc),
        ];
        for i in 0..self.spec.mags {
            ends.push((self.mag_ns[i].clone(), mag_address(i), 0xff01 + i as u16));
        }
        for (k, (ns, addr, subnet)) in ends.iter().enumerate() {
            let side = format!("p{k}");
            net.add_veth(&side, "tr0", ns).await?;
            let si = net.link_index(&side).await?;
            net.set_link_mtu(si, mtu).await?;
            let router = Ipv6Addr::new(0x2001, 0xdb8, *subnet, 0, 0, 0, 0, 2);
            net.add_address(si, router, 64).await?;
            net.set_link_up(si, true).await?;
            let nl = Netlink::connect_in(ns)?;
            let lo = nl.link_index("lo").await?;
            nl.set_link_up(lo, true).await?;
            sysctl(&nl, "net/ipv6/conf/all/forwarding", "1")?;
            sysctl(&nl, "net/ipv6/conf/all/accept_dad", "0")?;
            let ti = nl.link_index("tr0").await?;
            sysctl(&nl, "net/ipv6/conf/tr0/accept_dad", "0")?;
            nl.set_link_mtu(ti, mtu).await?;
            nl.add_address(ti, *addr, 64).await?;
            nl.set_link_up(ti, true).await?;
            nl.add_route("::/0".parse()?, Some(router), ti).await?;
        }
        // The mobile nodes' prefixes live behind the LMA.
        let to_lma = net.link_index("p0").await?;
        net.add_route(
            POOL.parse()?,
            Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
            to_lma,
        )
        .await?;
        if self.spec.ipv4 {
            // The LMA (p0, 10.255.0.0/30) and the CN (p1, 10.255.1.0/30) with the router at
            // .2; the nodes' IPv4 home addresses live behind the LMA.
            sysctl(&net, "net/ipv4/ip_forward", "1")?;
            for (k, ns) in [self.lma_ns.clone(), self.cn.clone()].iter().enumerate() {
                let (me, router) = (
                    Ipv4Addr::new(10, 255, k as u8, 1),
                    Ipv4Addr::new(10, 255, k as u8, 2),
                );
                let si = net.link_index(&format!("p{k}")).await?;
                net.add_address4(si, router, 30).await?;
                let nl = Netlink::connect_in(ns)?;
                let ti = nl.link_index("tr0").await?;
                nl.add_address4(ti, me, 30).await?;
                nl.add_route4("0.0.0.0/0".parse()?, Some(router), ti)
                    .await?;
            }
            let to_lma = net.link_index("p0").await?;
            net.add_route4(POOL4.parse()?, Some(Ipv4Addr::new(10, 255, 0, 1)), to_lma)
                .await?;
        }
        for n in 0..self.spec.nodes {
            let node = Node {
                index: n + 1,
                mn_id: node_id(n + 1),
                mac: node_mac(n + 1),
                ns: NetNs::named(&format!("{}-mn{}", self.spec.name, n + 1)),
                at: None,
                access_if: format!("acc{}", n + 1),
            };
            self.nodes.push(node);
        }
        if self.spec.radio == Radio::Carrier {
            // The air carries frames between ports and makes none of its own.
            let air = Netlink::connect_in(&self.air)?;
            sysctl(&air, "net/ipv6/conf/all/disable_ipv6", "1")?;
            sysctl(&air, "net/ipv6/conf/default/disable_ipv6", "1")?;
        }
        for n in 0..self.spec.nodes {
            match self.spec.radio {
                Radio::Carrier => self.create_radio_links(n, n % self.spec.mags).await?,
                Radio::VethMove => self.create_node_link(n, n % self.spec.mags).await?,
            }
        }
        Ok(())
    }

    /// Resolves every transport neighbor before the daemons start, so that no signalling
    /// waits for neighbor discovery: every transport end pings every other, all at once.
    fn warm_up(&self) -> anyhow::Result<()> {
        let mut ends: Vec<(NetNs, Ipv6Addr)> = vec![
            (self.lma_ns.clone(), LMA_ADDRESS),
            (self.cn.clone(), CN_ADDRESS),
        ];
        ends.extend((0..self.spec.mags).map(|i| (self.mag_ns[i].clone(), mag_address(i))));
        let failures: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = ends
                .iter()
                .flat_map(|(from, a)| {
                    ends.iter()
                        .filter(move |(_, b)| b != a)
                        .map(move |(_, b)| (from, *b))
                })
                .map(|(from, to)| {
                    s.spawn(move || {
                        match crate::traffic::ping(from, to, 64, 1, Duration::from_secs(5)) {
                            Ok(1) => None,
                            _ => Some(format!("{} cannot reach {to}", from.name())),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        if !failures.is_empty() {
            bail!("transport network: {}", failures.join("; "));
        }
        Ok(())
    }

    /// A node's links ([`Radio::Carrier`]): its bridge `b<n>` in the air, its `eth0` (a veth to
    /// the bridge's port `n<n>`), and `acc<n>` in every MAG (a veth to the port `m<n>x<k>`).
    /// The MAGs' ends are up, as an access point's link to its MAG is; the air's ports stay
    /// down until the node attaches, at MAG `mag`.
    async fn create_radio_links(&mut self, n: usize, mag: usize) -> anyhow::Result<()> {
        let node = self.nodes[n].clone();
        let mtu = self.spec.access_mtu;
        let air = self.nl(&self.air)?;
        let bridge = format!("b{}", node.index);
        air.add_bridge(&bridge).await?;
        let b = air.link_index(&bridge).await?;
        air.add_veth_at(
            &format!("n{}", node.index),
            air_index(node.index, 0),
            "eth0",
            &node.ns,
        )
        .await?;
        let mut ports = vec![air_index(node.index, 0)];
        for (k, mag_ns) in self.mag_ns.iter().enumerate() {
            air.add_veth_at(
                &format!("m{}x{}", node.index, k + 1),
                air_index(node.index, k + 1),
                &node.access_if,
                mag_ns,
            )
            .await?;
            ports.push(air_index(node.index, k + 1));
            let m = self.nl(mag_ns)?;
            let a = m.link_index(&node.access_if).await?;
            m.set_link_mtu(a, mtu).await?;
            m.set_link_up(a, true).await?;
        }
        for p in ports {
            air.set_link_mtu(p, mtu).await?;
            air.set_link_master(p, b).await?;
        }
        air.set_link_up(b, true).await?;
        self.configure_node_eth0(&node).await?;
        self.nodes[n].at = Some(mag);
        Ok(())
    }

    /// The node's veth ([`Radio::VethMove`]): `eth0` in its namespace, `acc<n>` at the MAG.
    async fn create_node_link(&mut self, n: usize, mag: usize) -> anyhow::Result<()> {
        let node = self.nodes[n].clone();
        let nl = Netlink::connect_in(&node.ns)?;
        nl.add_veth("eth0", &node.access_if, &self.mag_ns[mag])
            .await?;
        self.configure_node_eth0(&node).await?;
        let m = Netlink::connect_in(&self.mag_ns[mag])?;
        let a = m.link_index(&node.access_if).await?;
        m.set_link_mtu(a, self.spec.access_mtu).await?;
        self.nodes[n].at = Some(mag);
        Ok(())
    }

    /// The node's own link, `eth0`: its MAC, MTU and the sysctls of a host (a phone) that
    /// takes its address from Router Advertisements.
    async fn configure_node_eth0(&self, node: &Node) -> anyhow::Result<()> {
        let nl = Netlink::connect_in(&node.ns)?;
        let lo = nl.link_index("lo").await?;
        nl.set_link_up(lo, true).await?;
        let e = nl.link_index("eth0").await?;
        nl.set_link_address(e, node.mac).await?;
        nl.set_link_mtu(e, self.spec.access_mtu).await?;
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
            sysctl(&nl, &format!("net/ipv6/conf/all/{k}"), v).ok();
            sysctl(&nl, &format!("net/ipv6/conf/eth0/{k}"), v)?;
        }
        Ok(())
    }

    /// The profiles the LMA (`lma`) or the MAGs know.
    fn profiles(&self, lma: bool) -> Vec<MobileNodeProfile> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let unknown = self.spec.unknown_nodes.contains(i)
                    || (lma && self.spec.lma_unknown_nodes.contains(i));
                !unknown
            })
            .map(|(i, n)| {
                let mut p =
                    MobileNodeProfile::new(Nai::new(n.mn_id.clone()).unwrap_or_else(|_| {
                        Nai::new("invalid@lab.example").unwrap_or_else(|e| unreachable!("{e}"))
                    }));
                p.link_layer_addresses = vec![LinkLayerAddress::mac(n.mac)];
                p.ipv4 = self.spec.ipv4;
                p.ipv6 = !(self.spec.ipv4 && self.spec.ipv4_only_nodes.contains(&i));
                p
            })
            .collect()
    }

    pub fn config_path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}.yaml"))
    }

    pub fn log_path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}.log"))
    }

    /// The LMA configuration the lab writes.
    pub fn lma_config(&self) -> anyhow::Result<LmaConfig> {
        let mut c: LmaConfig = serde_saphyr::from_str(&format!(
            "address: '{LMA_ADDRESS}'\nprefix_pools: [{{prefix: '{POOL}'}}]\n"
        ))?;
        c.name = "lma".into();
        c.authorized_mags = (0..self.spec.mags)
            .filter(|i| !self.spec.unauthorized_mags.contains(i))
            .map(|i| ConfiguredMag::named(mag_address(i), format!("mag{}", i + 1)))
            .collect();
        c.mobile_nodes = self.profiles(true);
        if self.spec.ipv4 {
            c.ipv4_pools = vec![pmip::config::Ipv4Pool {
                prefix: POOL4.parse()?,
                default_router: None,
            }];
        }
        c.datapath.mode = self.spec.datapath;
        c.datapath.transport_interface = Some("tr0".into());
        c.state_dir = self.dir.join("lma-state");
        c.api.listen = "[::]:50051".parse()?;
        c.metrics.listen = Some("[::]:9464".parse()?);
        c.domain.heartbeat.interval_s = self.spec.heartbeat_interval_s;
        c.domain.enable_mag_local_routing = self.spec.local_routing;
        c.domain.fast_handover.mode = self.spec.fast_handover;
        c.domain.fast_handover.access_points = self.access_points();
        if let Some(l) = &self.spec.link_local {
            c.domain.link_local = l.clone();
        }
        c.ipsec = self.ipsec_config(0)?;
        c.validate()?;
        Ok(c)
    }

    fn access_points(&self) -> BTreeMap<String, Ipv6Addr> {
        (0..self.spec.mags)
            .map(|i| (format!("ap{}", i + 1), mag_address(i)))
            .collect()
    }

    /// The configuration of MAG `i`.
    pub fn mag_config(&self, i: usize) -> anyhow::Result<MagConfig> {
        let mut c: MagConfig = serde_saphyr::from_str(&format!(
            "proxy_coa: '{}'\nlma_address: '{LMA_ADDRESS}'\naccess_interfaces: ['acc*']\n",
            mag_address(i)
        ))?;
        c.name = format!("mag{}", i + 1);
        c.mobile_nodes = self.profiles(false);
        c.timers = self.spec.mag_timers;
        c.policy_server = Some(format!("http://[{LMA_ADDRESS}]:50051"));
        c.datapath.mode = self.spec.datapath;
        c.datapath.transport_interface = Some("tr0".into());
        c.state_dir = self.dir.join(format!("mag{}-state", i + 1));
        c.api.listen = "[::]:50051".parse()?;
        c.metrics.listen = Some("[::]:9464".parse()?);
        c.domain.heartbeat.interval_s = self.spec.heartbeat_interval_s;
        c.domain.enable_mag_local_routing = self.spec.local_routing;
        c.domain.fast_handover.mode = self.spec.fast_handover;
        c.domain.fast_handover.access_points = self.access_points();
        // Nodes come back quickly in the lab: a periodic RA every 2 s keeps them current.
        c.router_advertisement.interval_s = 2;
        if let Some(l) = &self.spec.link_local {
            c.domain.link_local = l.clone();
        }
        if let Some(n) = self.spec.neighbor_unreachability {
            c.neighbor_unreachability = n;
        }
        c.ipsec = self.ipsec_config(i + 1)?;
        c.validate()?;
        Ok(c)
    }

    /// The lab's secret, from which every ESP key is derived: made once per lab directory.
    fn esp_secret(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.dir.join("esp-secret");
        if let Ok(s) = std::fs::read(&path)
            && s.len() == 32
        {
            return Ok(s);
        }
        let mut s = vec![0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut s)?;
        std::fs::write(&path, &s)?;
        Ok(s)
    }

    /// Every ESP SA of the lab, both directions of every pair: the LMA with each MAG, each MAG
    /// with each other MAG (HI/HAck, RFC 5949 §7). SPI `0x10000000 | src << 12 | dst` with the
    /// LMA 0 and MAG `i` as `i + 1`; keys SHA-512(secret, src, dst) cut to the algorithm's
    /// length.
    pub fn esp_sas(&self) -> anyhow::Result<Vec<LabSa>> {
        if self.spec.ipsec == IpsecMode::Off {
            return Ok(Vec::new());
        }
        let secret = self.esp_secret()?;
        let alg = self.spec.esp_algorithm;
        let parties = self.spec.mags + 1;
        let mut out = Vec::new();
        for a in 0..parties {
            for b in 0..parties {
                if a == b {
                    continue;
                }
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
                ctx.update(&secret);
                ctx.update(&(a as u32).to_be_bytes());
                ctx.update(&(b as u32).to_be_bytes());
                let key = ctx.finish().as_ref()[..alg.key_len()].to_vec();
                out.push(LabSa {
                    src: party_address(a),
                    dst: party_address(b),
                    spi: 0x1000_0000 | (a as u32) << 12 | b as u32,
                    algorithm: alg,
                    key,
                });
            }
        }
        Ok(out)
    }

    /// The `ipsec` section of party `me` (0 the LMA, `i + 1` MAG `i`): the LMA reads its keys
    /// from files, the MAGs have them inline, so both ways are used.
    fn ipsec_config(&self, me: usize) -> anyhow::Result<IpsecConfig> {
        let mut c = IpsecConfig {
            mode: self.spec.ipsec,
            reload_interval_s: 2,
            ..IpsecConfig::default()
        };
        if self.spec.ipsec == IpsecMode::Off {
            return Ok(c);
        }
        let sas = self.esp_sas()?;
        let mine = party_address(me);
        let keys = self.dir.join("esp-keys");
        std::fs::create_dir_all(&keys)?;
        for out in sas.iter().filter(|s| s.src == mine) {
            let Some(inp) = sas.iter().find(|s| s.src == out.dst && s.dst == mine) else {
                continue;
            };
            let mut e = SecurityAssociationConfig {
                local: None,
                peer: out.dst,
                algorithm: out.algorithm,
                spi_in: inp.spi,
                spi_out: out.spi,
                key_in: Some(KeyMaterial::new(inp.key.clone())),
                key_in_file: None,
                key_out: Some(KeyMaterial::new(out.key.clone())),
                key_out_file: None,
                esn: false,
            };
            if me == 0 {
                for (sa, key, file) in [
                    (inp, &mut e.key_in, &mut e.key_in_file),
                    (out, &mut e.key_out, &mut e.key_out_file),
                ] {
                    let path = keys.join(format!("{:08x}.key", sa.spi));
                    std::fs::write(
                        &path,
                        format!("{}\n", KeyMaterial::new(sa.key.clone()).to_hex()),
                    )?;
                    *key = None;
                    *file = Some(path);
                }
            }
            c.security_associations.push(e);
        }
        Ok(c)
    }

    fn write_configs(&self) -> anyhow::Result<()> {
        std::fs::write(
            self.config_path("lma"),
            serde_saphyr::to_string(&self.lma_config()?)?,
        )?;
        for i in 0..self.spec.mags {
            std::fs::write(
                self.config_path(&format!("mag{}", i + 1)),
                serde_saphyr::to_string(&self.mag_config(i)?)?,
            )?;
        }
        Ok(())
    }

    fn spawn(
        &self,
        ns: &NetNs,
        cmd: &[PathBuf],
        config: &Path,
        log: &Path,
    ) -> anyhow::Result<Child> {
        let (prog, rest) = cmd
            .split_first()
            .ok_or_else(|| anyhow!("no daemon binary"))?;
        let mut c = ns.command(prog)?;
        c.args(rest)
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("PMIP_LAB_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(log)?))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(log)?,
            ));
        c.spawn()
            .with_context(|| format!("starting {} in {}", prog.display(), ns.name()))
    }

    pub fn start_lma(&mut self) -> anyhow::Result<()> {
        let c = self.spawn(
            &self.lma_ns,
            &self.binaries.lma,
            &self.config_path("lma"),
            &self.log_path("lma"),
        )?;
        self.lma_pid = Some(c.id());
        self.lma = Some(c);
        Ok(())
    }

    pub fn start_mag(&mut self, i: usize) -> anyhow::Result<()> {
        let name = format!("mag{}", i + 1);
        let c = self.spawn(
            &self.mag_ns[i],
            &self.binaries.mag,
            &self.config_path(&name),
            &self.log_path(&name),
        )?;
        self.mag_pids[i] = Some(c.id());
        self.mags[i] = Some(c);
        Ok(())
    }

    /// `kill -9` of the LMA.
    pub fn kill_lma(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.lma.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// `kill -9` of MAG `i`.
    pub fn kill_mag(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.mags[i].take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Waits until the daemon in `ns` answers its gRPC health check.
    pub async fn wait_ready(&self, ns: &NetNs, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if grpc_serving(ns).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_path(&what.to_lowercase()))
                    .unwrap_or_default();
                bail!("{what} did not come up; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A (cached) netlink connection in `ns`.
    pub fn nl(&self, ns: &NetNs) -> anyhow::Result<Netlink> {
        let mut m = self
            .netlink
            .lock()
            .map_err(|_| anyhow!("netlink cache poisoned"))?;
        if let Some(n) = m.get(ns.name()) {
            return Ok(n.clone());
        }
        let n = Netlink::connect_in(ns)?;
        m.insert(ns.name().to_owned(), n.clone());
        Ok(n)
    }

    /// A (cached) gRPC channel to the daemon in `ns`.
    pub async fn channel(&self, ns: &NetNs) -> anyhow::Result<tonic::transport::Channel> {
        if let Some(c) = self
            .channels
            .lock()
            .map_err(|_| anyhow!("channel cache poisoned"))?
            .get(ns.name())
        {
            return Ok(c.clone());
        }
        let c = channel_in(ns).await?;
        self.channels
            .lock()
            .map_err(|_| anyhow!("channel cache poisoned"))?
            .insert(ns.name().to_owned(), c.clone());
        Ok(c)
    }

    /// Tells MAG `mag` about a fast handover of node `n` (its `Gateway.HandoverIndication`):
    /// predictive with `new_ap` (at the previous MAG), reactive with `previous_ap` (at the
    /// new one).
    pub async fn handover_indication(
        &self,
        mag: usize,
        n: usize,
        new_ap: &str,
        previous_ap: &str,
    ) -> anyhow::Result<()> {
        let ch = self.channel(&self.mag_ns[mag]).await?;
        let mut c = proto::v1::gateway_client::GatewayClient::new(ch);
        c.handover_indication(proto::v1::HandoverIndicationRequest {
            mn_id: self.nodes[n].mn_id.clone(),
            new_access_point: new_ap.to_owned(),
            previous_access_point: previous_ap.to_owned(),
        })
        .await
        .map_err(|s| anyhow!("HandoverIndication: {}", s.message()))?;
        Ok(())
    }

    /// The air's ports of node `n`: to its own `eth0`, and to MAG `mag`.
    fn ports(&self, n: usize, mag: usize) -> (u32, u32) {
        let i = self.nodes[n].index;
        (air_index(i, 0), air_index(i, mag + 1))
    }

    /// Sets the MAG end of node `n`'s link up or down ([`Radio::VethMove`]).
    async fn set_access_link(&self, n: usize, up: bool) -> anyhow::Result<()> {
        let node = &self.nodes[n];
        let mag = node
            .at
            .ok_or_else(|| anyhow!("node {} has no link", node.index))?;
        let m = self.nl(&self.mag_ns[mag])?;
        let a = m.link_index(&node.access_if).await?;
        m.set_link_up(a, up).await?;
        Ok(())
    }

    /// Node `n` attaches at its MAG: its radio comes up there.
    pub async fn attach(&self, n: usize) -> anyhow::Result<()> {
        let nl = self.nl(&self.nodes[n].ns)?;
        let e = nl.link_index("eth0").await?;
        match self.spec.radio {
            Radio::Carrier => {
                let mag = self.nodes[n]
                    .at
                    .ok_or_else(|| anyhow!("node {} has no MAG", self.nodes[n].index))?;
                nl.set_link_up(e, true).await?;
                let (own, to) = self.ports(n, mag);
                self.nl(&self.air)?
                    .set_links_up(&[(to, true), (own, true)])
                    .await?;
            }
            Radio::VethMove => {
                self.set_access_link(n, true).await?;
                nl.set_link_up(e, true).await?;
            }
        }
        Ok(())
    }

    /// Node `n` detaches: its radio goes away (its MAG's access link loses its carrier).
    pub async fn detach(&self, n: usize) -> anyhow::Result<()> {
        match self.spec.radio {
            Radio::Carrier => {
                let mag = self.nodes[n]
                    .at
                    .ok_or_else(|| anyhow!("node {} has no MAG", self.nodes[n].index))?;
                let (own, at) = self.ports(n, mag);
                self.nl(&self.air)?
                    .set_links_up(&[(at, false), (own, false)])
                    .await?;
                Ok(())
            }
            Radio::VethMove => self.set_access_link(n, false).await,
        }
    }

    /// Hands node `n` over to MAG `to` and returns how long the L2 switch took: the lab's
    /// stand-in for the radio, not the protocol's part, which follows it. The node sees its
    /// link go down and up, as when it moves between access points.
    ///
    /// [`Radio::Carrier`]: in one netlink exchange the old MAG's port and the node's go down
    /// (the old MAG's access link loses its carrier), then the new MAG's port and the node's
    /// come up (the new MAG's access link gets its carrier, and the node's first frames).
    /// [`Radio::VethMove`]: the MAG end of the node's veth moves into the new MAG's namespace
    /// and comes up there.
    pub async fn move_node(&mut self, n: usize, to: usize) -> anyhow::Result<Duration> {
        let from = self.nodes[n]
            .at
            .ok_or_else(|| anyhow!("node has no link"))?;
        if from == to {
            return Ok(Duration::ZERO);
        }
        let took = match self.spec.radio {
            Radio::Carrier => {
                let (own, old) = self.ports(n, from);
                let (_, new) = self.ports(n, to);
                let air = self.nl(&self.air)?;
                let t = Instant::now();
                air.set_links_up(&[(old, false), (own, false), (new, true), (own, true)])
                    .await?;
                t.elapsed()
            }
            Radio::VethMove => {
                let name = self.nodes[n].access_if.clone();
                let m = self.nl(&self.mag_ns[from])?;
                let a = m.link_index(&name).await?;
                let m2 = self.nl(&self.mag_ns[to])?;
                let t = Instant::now();
                m.move_link(a, &self.mag_ns[to], None).await?;
                let b = m2.link_index(&name).await?;
                m2.set_link_mtu(b, self.spec.access_mtu).await?;
                m2.set_link_up(b, true).await?;
                t.elapsed()
            }
        };
        self.nodes[n].at = Some(to);
        Ok(took)
    }

    /// What the radio cut between MAG `mag` and node `n` ([`Radio::Carrier`]): packets the MAG
    /// could not put on the node's access link (that link's transmit drops), and those it had
    /// put on it that were still on their way when the radio went: dropped by the MAG's port
    /// in the air (its receive drops), by the node's port (its transmit drops) or by the node's
    /// `eth0` (its receive drops) as they went down. With the old MAG, what it sent towards
    /// the node after its radio had gone or just before.
    pub fn access_drops(&self, n: usize, mag: usize) -> anyhow::Result<u64> {
        let node = &self.nodes[n];
        let (rx, tx) = (3, 11);
        Ok(net_dev_counter(&self.mag_ns[mag], &node.access_if, tx)?
            + net_dev_counter(&self.air, &format!("m{}x{}", node.index, mag + 1), rx)?
            + net_dev_counter(&self.air, &format!("n{}", node.index), tx)?
            + net_dev_counter(&node.ns, "eth0", rx)?)
    }

    /// The node's global address from the lab's pool, once usable (not tentative).
    pub fn node_address(&self, n: usize) -> Option<Ipv6Addr> {
        let pool: Ipv6Net = POOL.parse().ok()?;
        self.nodes[n]
            .ns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/if_inet6"))
            .ok()?
            .ok()?
            .lines()
            .filter_map(parse_if_inet6)
            .find(|(a, _, flags)| pool.contains(a) && flags & 0x40 == 0)
            .map(|(a, _, _)| a)
    }

    /// Waits for the node's address (SLAAC after the MAG's Router Advertisement).
    pub async fn wait_node_address(&self, n: usize, timeout: Duration) -> anyhow::Result<Ipv6Addr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.node_address(n) {
                return Ok(a);
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} got no address from {POOL} within {timeout:?}",
                    self.nodes[n].index
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True when the node has a default route (through the MAG's fe80::1).
    pub fn node_has_default_route(&self, n: usize) -> bool {
        self.nodes[n]
            .ns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/ipv6_route"))
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|t| {
                t.lines().any(|l| {
                    l.starts_with("00000000000000000000000000000000 00 ")
                        && l.contains("eth0")
                        && l.contains("fe800000000000000000000000000001")
                })
            })
    }

    /// The router of the node's default route (`ip -6 route` default via), if it has one.
    pub fn node_default_router(&self, n: usize) -> Option<Ipv6Addr> {
        let table = self.nodes[n]
            .ns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/ipv6_route"))
            .ok()?
            .ok()?;
        table.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Destination, its length, source, its length, next hop, metric, ..., device.
            if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" {
                return None;
            }
            let hop = u128::from_str_radix(f[4], 16).ok().map(Ipv6Addr::from)?;
            (!hop.is_unspecified()).then_some(hop)
        })
    }

    /// The gRPC address of a daemon, from inside the lab.
    pub fn grpc_url(ns_addr: Ipv6Addr) -> String {
        format!("http://[{ns_addr}]:50051")
    }
}

/// Whether this kernel carries tunnels itself (seg6 or ip6tnl), as the daemons' datapath
/// mode auto probes it, in `ns` (the current namespace when `None`); otherwise mode auto runs
/// the userspace tunnel.
pub async fn kernel_tunnels(ns: Option<&NetNs>) -> anyhow::Result<bool> {
    let nl = match ns {
        Some(ns) => Netlink::connect_in(ns)?,
        None => Netlink::connect()?,
    };
    Ok(datapath::probe_seg6(&nl).await? || datapath::probe_ip6tnl(&nl).await?)
}

impl Lab {
    /// Whether the daemons' tunnels are the kernel's (seg6 or ip6tnl), which carry traffic
    /// while a daemon is down, rather than the userspace tunnel, whose pairs nothing reads
    /// then;
    /// for mode auto, probed in the LMA's namespace as the daemons do.
    pub async fn kernel_tunnels(&self) -> anyhow::Result<bool> {
        match self.spec.datapath {
            DatapathMode::Seg6 | DatapathMode::Ip6tnl => Ok(true),
            DatapathMode::Auto => kernel_tunnels(Some(&self.lma_ns)).await,
            _ => Ok(false),
        }
    }

    /// The LMA's `BindingCache.Stats`.
    pub async fn lma_stats(&self) -> anyhow::Result<proto::v1::LmaStats> {
        in_ns(&self.lma_ns, || async {
            let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await?;
            let mut c = proto::v1::binding_cache_client::BindingCacheClient::new(ch);
            Ok(c.stats(proto::v1::LmaStatsRequest {})
                .await
                .map_err(|s| anyhow!("BindingCache.Stats: {}", s.message()))?
                .into_inner())
        })
        .await
    }

    /// Every binding in the LMA's cache (its gRPC `BindingCache.List`, every page).
    pub async fn bindings(&self) -> anyhow::Result<Vec<proto::v1::Binding>> {
        in_ns(&self.lma_ns, || async {
            let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await?;
            let mut c = proto::v1::binding_cache_client::BindingCacheClient::new(ch);
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let r = c
                    .list(proto::v1::ListBindingsRequest {
                        page_size: 1000,
                        page_token: token,
                        proxy_coa: String::new(),
                    })
                    .await
                    .map_err(|s| anyhow!("BindingCache.List: {}", s.message()))?
                    .into_inner();
                all.extend(r.bindings);
                if r.next_page_token.is_empty() {
                    return Ok(all);
                }
                token = r.next_page_token;
            }
        })
        .await
    }

    /// The Prometheus text of the daemon in `ns` (its `/metrics` on `[::1]:9464`).
    pub fn metrics(&self, ns: &NetNs) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        ns.run(|| -> anyhow::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &"[::1]:9464".parse()?,
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            let body = out
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .ok_or_else(|| anyhow!("not an HTTP response from {}", ns.name()))?;
            Ok(body)
        })?
    }

    /// Packets received and sent on `ifname` in `ns` (`/proc/net/dev`).
    pub fn link_packets(ns: &NetNs, ifname: &str) -> anyhow::Result<(u64, u64)> {
        let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
        let want = format!("{ifname}:");
        let line = text
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(&want))
            .ok_or_else(|| anyhow!("no link {ifname} in {}", ns.name()))?;
        let f: Vec<u64> = line[want.len()..]
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        match (f.get(1), f.get(9)) {
            (Some(rx), Some(tx)) => Ok((*rx, *tx)),
            _ => bail!("unreadable /proc/net/dev line for {ifname}: {line}"),
        }
    }
}

/// The value of one sample of a Prometheus text exposition: `name` with the labels as they
/// are written (`pmip_mag_events_total{kind="rejected"}`); 0 when the sample is absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == sample).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// (address, ifindex, flags) of one line of `/proc/net/if_inet6`.
fn parse_if_inet6(line: &str) -> Option<(Ipv6Addr, u32, u32)> {
    let mut f = line.split_whitespace();
    let hex = f.next()?;
    let ifindex = u32::from_str_radix(f.next()?, 16).ok()?;
    let _plen = f.next()?;
    let _scope = f.next()?;
    let flags = u32::from_str_radix(f.next()?, 16).ok()?;
    let v = u128::from_str_radix(hex, 16).ok()?;
    Some((Ipv6Addr::from(v), ifindex, flags))
}

/// Runs an async client inside `ns`: a thread enters the namespace and drives `make()` on its
/// own runtime, so every socket the client opens lives in the namespace.
pub async fn in_ns<T, F, Fut>(ns: &NetNs, make: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let ns = ns.clone();
    tokio::task::spawn_blocking(move || {
        ns.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(make())
        })?
    })
    .await?
}

/// A gRPC channel to `[::1]:50051` in `ns`: every connection (and reconnection) is opened
/// inside the namespace, then driven by the caller's runtime like any other.
pub async fn channel_in(ns: &NetNs) -> anyhow::Result<tonic::transport::Channel> {
    let ns = ns.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let ns = ns.clone();
        async move {
            let s = tokio::task::spawn_blocking(move || {
                ns.run(|| {
                    std::net::TcpStream::connect_timeout(
                        &std::net::SocketAddr::from((Ipv6Addr::LOCALHOST, 50051)),
                        Duration::from_secs(2),
                    )
                })
                .map_err(std::io::Error::other)?
            })
            .await
            .map_err(std::io::Error::other)??;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            let s = tokio::net::TcpStream::from_std(s)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    Ok(
        tonic::transport::Endpoint::from_static("http://[::1]:50051")
            .connect_with_connector(connector)
            .await?,
    )
}

/// Whether the gRPC health service in `ns` (port 50051 on loopback) says SERVING.
pub async fn grpc_serving(ns: &NetNs) -> bool {
    in_ns(ns, || async {
        let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await?;
        let mut c = tonic_health::pb::health_client::HealthClient::new(ch);
        let r = c
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(r.get_ref().status == tonic_health::ServingStatus::Serving as i32)
    })
    .await
    .unwrap_or(false)
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = self.kill_lma();
        for i in 0..self.mags.len() {
            let _ = self.kill_mag(i);
        }
        remove_namespaces(&self.namespaces);
        let _ = std::fs::remove_file(state_file(&self.spec.name));
    }
}

/// Tells the MAG in `mag_ns` about a fast handover (its gRPC `Gateway.HandoverIndication`):
/// predictive with `new_ap` (at the previous MAG), reactive with `previous_ap` (at the new).
pub async fn handover_indication(
    mag_ns: &NetNs,
    mn_id: &str,
    new_ap: &str,
    previous_ap: &str,
) -> anyhow::Result<()> {
    let req = proto::v1::HandoverIndicationRequest {
        mn_id: mn_id.to_owned(),
        new_access_point: new_ap.to_owned(),
        previous_access_point: previous_ap.to_owned(),
    };
    in_ns(mag_ns, move || async move {
        let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
            .connect()
            .await?;
        let mut c = proto::v1::gateway_client::GatewayClient::new(ch);
        c.handover_indication(req)
            .await
            .map_err(|s| anyhow!("HandoverIndication: {}", s.message()))?;
        Ok(())
    })
    .await
}

/// What `pmip-lab up` leaves behind for the later commands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SavedLab {
    name: String,
    mags: usize,
    nodes: usize,
    fast_handover: FastHandoverMode,
    local_routing: bool,
    dir: PathBuf,
    /// Each node's MAG (0-based).
    at: Vec<Option<usize>>,
    /// The stand-in for the radio (a lab recorded before there was a choice moved veths).
    #[serde(default = "veth_move")]
    radio: Radio,
    /// The namespaces the lab made.
    #[serde(default)]
    namespaces: Vec<String>,
    /// The daemons' process ids.
    #[serde(default)]
    lma_pid: Option<u32>,
    #[serde(default)]
    mag_pids: Vec<Option<u32>>,
}

fn veth_move() -> Radio {
    Radio::VethMove
}

/// Whether process `pid` runs in namespace `ns` (not some other process that took the id).
fn process_in(pid: u32, ns: &NetNs) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/net")),
        std::fs::metadata(ns.path()),
    ) {
        (Ok(p), Ok(n)) => p.ino() == n.ino() && p.dev() == n.dev(),
        _ => false,
    }
}

/// What `pmip-lab down` removed.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub daemons: usize,
}

/// Stops the daemons of the lab `name` that `pmip-lab up` recorded and removes the namespaces
/// and daemon state it made; nothing else, whatever its name. Without a record nothing is
/// removed: the error names the namespaces with the lab's prefix that it leaves alone.
pub fn down(name: &str) -> anyhow::Result<Removed> {
    let f = state_file(name);
    let raw = match std::fs::read(&f) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let others = existing_namespaces(name);
            if others.is_empty() {
                bail!(
                    "no lab {name:?} is recorded ({}): nothing to remove",
                    f.display()
                );
            }
            bail!(
                "no lab {name:?} is recorded ({}), so none of {} was made by it: they are left \
                 alone (remove one with `ip netns delete NAME`)",
                f.display(),
                others.join(", ")
            );
        }
        Err(e) => return Err(e).with_context(|| f.display().to_string()),
    };
    let s: SavedLab =
        serde_json::from_slice(&raw).with_context(|| format!("{} is damaged", f.display()))?;
    let made = if s.namespaces.is_empty() {
        namespace_names(&s.name, s.mags, s.nodes)
    } else {
        s.namespaces.clone()
    };
    let mut removed = Removed::default();
    let pids = s
        .lma_pid
        .into_iter()
        .chain(s.mag_pids.iter().flatten().copied());
    for pid in pids {
        if made.iter().any(|n| process_in(pid, &NetNs::named(n))) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            removed.daemons += 1;
        }
    }
    let existing = existing_namespaces(name);
    removed.namespaces = made.into_iter().filter(|n| existing.contains(n)).collect();
    remove_namespaces(&removed.namespaces);
    for d in
        std::iter::once("lma-state".to_owned()).chain((1..=s.mags).map(|i| format!("mag{i}-state")))
    {
        let _ = std::fs::remove_dir_all(s.dir.join(d));
    }
    std::fs::remove_file(&f).with_context(|| f.display().to_string())?;
    Ok(removed)
}

/// Where a running lab's description is kept.
pub fn state_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/pmip-lab/{name}.json"))
}

impl Lab {
    /// Records the running lab for `pmip-lab status|attach|detach|handover|down`.
    pub fn save_state(&self) -> anyhow::Result<()> {
        let s = SavedLab {
            name: self.spec.name.clone(),
            mags: self.spec.mags,
            nodes: self.spec.nodes,
            fast_handover: self.spec.fast_handover,
            local_routing: self.spec.local_routing,
            dir: self.dir.clone(),
            at: self.nodes.iter().map(|n| n.at).collect(),
            radio: self.spec.radio,
            namespaces: self.namespaces.clone(),
            lma_pid: self.lma_pid,
            mag_pids: self.mag_pids.clone(),
        };
        let f = state_file(&self.spec.name);
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&f, serde_json::to_vec_pretty(&s)?)?;
        Ok(())
    }

    /// A handle on a lab that `pmip-lab up` left running. Dropping it leaves the lab alone.
    pub fn load(name: &str, binaries: Binaries) -> anyhow::Result<Lab> {
        let f = state_file(name);
        let s: SavedLab = serde_json::from_slice(
            &std::fs::read(&f)
                .with_context(|| format!("no running lab {name:?} ({})", f.display()))?,
        )?;
        let names = namespace_names(&s.name, s.mags, s.nodes);
        let mut spec = Spec::new(&s.name, s.mags, s.nodes);
        spec.fast_handover = s.fast_handover;
        spec.local_routing = s.local_routing;
        spec.radio = s.radio;
        spec.dir = Some(s.dir.clone());
        let nodes = (0..s.nodes)
            .map(|n| Node {
                index: n + 1,
                mn_id: node_id(n + 1),
                mac: node_mac(n + 1),
                ns: NetNs::named(&names[3 + s.mags + n]),
                at: s.at.get(n).copied().flatten(),
                access_if: format!("acc{}", n + 1),
            })
            .collect();
        Ok(Lab {
            net: NetNs::named(&names[0]),
            lma_ns: NetNs::named(&names[1]),
            cn: NetNs::named(&names[2]),
            mag_ns: (0..s.mags).map(|i| NetNs::named(&names[3 + i])).collect(),
            air: NetNs::named(&names[3 + s.mags + s.nodes]),
            nodes,
            binaries,
            lma: None,
            mags: (0..s.mags).map(|_| None).collect(),
            lma_pid: s.lma_pid,
            mag_pids: s.mag_pids.clone(),
            namespaces: if s.namespaces.is_empty() {
                names
            } else {
                s.namespaces.clone()
            },
            keep: true,
            netlink: Default::default(),
            channels: Default::default(),
            dir: s.dir,
            _tmp: None,
            spec,
        })
    }

    /// Node number (1-based, as people count) to index.
    pub fn node_index(&self, node: usize) -> anyhow::Result<usize> {
        if node == 0 || node > self.nodes.len() {
            bail!("--node: from 1 to {}", self.nodes.len());
        }
        Ok(node - 1)
    }

    /// Runs `pmipctl` with `args` inside `ns` and returns its standard output; an error with
    /// its standard error when it fails.
    pub fn pmipctl(&self, ns: &NetNs, args: &[&str]) -> anyhow::Result<String> {
        let (prog, rest) = self
            .binaries
            .pmipctl
            .split_first()
            .ok_or_else(|| anyhow!("no pmipctl"))?;
        let out = ns
            .command(prog)?
            .args(rest)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", prog.display()))?;
        if !out.status.success() {
            bail!(
                "pmipctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Where everything is and how to reach it: a row per party with its address, namespace,
    /// daemon process and whether the daemon answers its gRPC health check.
    pub async fn status(&self) -> String {
        let mut s = format!(
            "lab {}: 1 LMA, {} MAGs, {} mobile nodes, fast handover {:?}, radio {}; files in {}\n",
            self.spec.name,
            self.spec.mags,
            self.nodes.len(),
            self.spec.fast_handover,
            match self.spec.radio {
                Radio::Carrier => "carrier",
                Radio::VethMove => "veth-move",
            },
            self.dir.display()
        );
        let mut t =
            pmipctl::show::Table::new(&["ROLE", "ADDRESS", "NAMESPACE", "PID", "HEALTH", "NOTES"]);
        let daemon = |pid: Option<u32>, ns: NetNs| async move {
            let pid_text = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let health = match pid {
                Some(p) if !process_in(p, &ns) => "exited".to_owned(),
                _ if grpc_serving(&ns).await => "serving".to_owned(),
                _ => "not serving".to_owned(),
            };
            (pid_text, health)
        };
        let (pid, health) = daemon(self.lma_pid, self.lma_ns.clone()).await;
        t.row(vec![
            "LMA".into(),
            LMA_ADDRESS.to_string(),
            self.lma_ns.name().into(),
            pid,
            health,
            "gRPC [::1]:50051, metrics [::1]:9464 in its namespace".into(),
        ]);
        for (i, ns) in self.mag_ns.iter().enumerate() {
            let (pid, health) = daemon(self.mag_pids.get(i).copied().flatten(), ns.clone()).await;
            t.row(vec![
                format!("MAG{}", i + 1),
                mag_address(i).to_string(),
                ns.name().into(),
                pid,
                health,
                String::new(),
            ]);
        }
        t.row(vec![
            "CN".into(),
            CN_ADDRESS.to_string(),
            self.cn.name().into(),
            "-".into(),
            "-".into(),
            String::new(),
        ]);
        for (n, node) in self.nodes.iter().enumerate() {
            let addr = self
                .node_address(n)
                .map_or_else(|| "(no address)".to_owned(), |a| a.to_string());
            t.row(vec![
                format!("MN{}", node.index),
                addr,
                node.ns.name().into(),
                "-".into(),
                "-".into(),
                match node.at {
                    Some(m) => format!("{} at MAG{}", node.mn_id, m + 1),
                    None => format!("{} detached", node.mn_id),
                },
            ]);
        }
        s.push_str(&t.render());
        s.push_str(&format!(
            "try: ip netns exec {} pmipctl bindings list\n",
            self.lma_ns.name()
        ));
        s
    }

    /// Removes the daemons' state folders in the lab's folder (bindings, restart counters).
    fn remove_daemon_state(&self) -> anyhow::Result<()> {
        let dirs = std::iter::once("lma-state".to_owned())
            .chain((1..=self.spec.mags).map(|i| format!("mag{i}-state")));
        for d in dirs {
            let p = self.dir.join(d);
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| p.display().to_string()),
            }
        }
        Ok(())
    }

    /// Waits until the LMA has node `n`'s binding at MAG `mag` (active) and the node has an
    /// address from its prefix; returns the address. The error says what was seen instead.
    pub async fn wait_registered(
        &self,
        n: usize,
        mag: usize,
        timeout: Duration,
    ) -> anyhow::Result<Ipv6Addr> {
        let deadline = Instant::now() + timeout;
        let node = &self.nodes[n];
        let want = mag_address(mag);
        loop {
            let seen = match self.bindings().await {
                Err(e) => format!("the LMA's bindings cannot be read: {e:#}"),
                Ok(all) => match all.iter().find(|b| b.mn_id == node.mn_id) {
                    None => format!("the LMA has no binding of {}", node.mn_id),
                    Some(b) if b.proxy_coa != want.to_string() => format!(
                        "the LMA has {}'s binding at {} (MAG{}), not at MAG{}",
                        node.mn_id,
                        b.proxy_coa,
                        (0..self.spec.mags)
                            .find(|i| mag_address(*i).to_string() == b.proxy_coa)
                            .map_or_else(|| "?".into(), |i| (i + 1).to_string()),
                        mag + 1
                    ),
                    Some(b) if b.state != proto::v1::BindingState::Active as i32 => format!(
                        "{}'s binding at MAG{} is not active (state {})",
                        node.mn_id,
                        mag + 1,
                        b.state
                    ),
                    Some(b) => {
                        let prefixes: Vec<Ipv6Net> = (b.home_network_prefixes.iter())
                            .filter_map(|p| p.parse().ok())
                            .collect();
                        match self.node_address(n) {
                            Some(a) if prefixes.iter().any(|p| p.contains(&a)) => return Ok(a),
                            Some(a) => format!(
                                "node {} has {a}, not from its home network prefixes {}",
                                node.index,
                                b.home_network_prefixes.join(",")
                            ),
                            None => format!("node {} has no usable address", node.index),
                        }
                    }
                },
            };
            if Instant::now() > deadline {
                bail!("after {timeout:?}: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
