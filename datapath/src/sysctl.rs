//! The sysctls a datapath needs, and the values it found before it changed them.
//!
//! In a container that is not privileged `/proc/sys` is mounted read-only (runc, as containerd
//! and CRI-O run it): a write fails with EROFS whatever the capabilities. So a value is read
//! first and written only when it differs: a daemon whose sysctls were set before it started
//! (by a privileged init container, by the node's configuration) runs without privilege, and
//! a daemon that cannot set one names it and says where it could be set instead.
//!
//! The value found before the first change is written down in a [`Ledger`] file in the
//! daemon's state directory, so that `--cleanup`, a later process, puts it back.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A sysctl, by its path below `/proc/sys` (`net/ipv6/conf/eth0/forwarding`). An interface
/// name may hold dots, so the path form is the one that is unambiguous; [`fmt::Display`]
/// prints the dotted name `sysctl(8)` uses, with such dots written as `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sysctl(String);

impl Sysctl {
    /// From a path below `/proc/sys`; a leading `/` is ignored.
    pub fn new(path: &str) -> Self {
        Sysctl(path.trim_start_matches('/').to_owned())
    }

    /// The path below `/proc/sys`.
    pub fn path(&self) -> &str {
        &self.0
    }

    /// The file in this process's `/proc/sys` (which shows the network namespace of the
    /// thread that opens it).
    pub fn file(&self) -> PathBuf {
        Path::new("/proc/sys").join(&self.0)
    }
}

impl fmt::Display for Sysctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // sysctl(8): components are joined with '.', and a '.' inside one is shown as '/'.
        let dotted: Vec<String> = self.0.split('/').map(|c| c.replace('.', "/")).collect();
        f.write_str(&dotted.join("."))
    }
}

/// What [`crate::Netlink::ensure_sysctl`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The sysctl had the value already; nothing was written.
    AlreadySet,
    /// It was written; it held `previous` before.
    Changed { previous: String },
}

/// Reads the sysctl and writes `value` when it differs. Runs in the calling thread's network
/// namespace (the caller enters the right one).
pub(crate) fn ensure_here(key: &Sysctl, value: &str) -> io::Result<Ensured> {
    let file = key.file();
    let now = std::fs::read_to_string(&file)?;
    let now = now.trim();
    if now == value {
        return Ok(Ensured::AlreadySet);
    }
    std::fs::write(&file, value.as_bytes())?;
    Ok(Ensured::Changed {
        previous: now.to_owned(),
    })
}

/// Why a sysctl could not be set, with what to do about it when the cause is the container.
pub(crate) fn explain(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EROFS) => {
            "; /proc/sys is read-only in a container that is not privileged: set it on the \
             node, from a privileged init container (`--set-sysctls`), or run the daemon privileged"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "; setting it needs CAP_NET_ADMIN in the network namespace's owning user namespace"
        }
        _ => "",
    }
}

/// The values found before this datapath changed them, kept in a file (one `path=value` per
/// line) so that a later `--cleanup` can put them back. The first value found for a sysctl is
/// kept: a daemon restarted after it set one finds its own value, not the original.
#[derive(Debug, Default)]
pub struct Ledger {
    file: Option<PathBuf>,
    found: BTreeMap<Sysctl, String>,
}

impl Ledger {
    /// A ledger kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The ledger kept in `file`, with what an earlier run recorded there. A missing file is
    /// an empty ledger.
    pub fn open(file: PathBuf) -> Result<Self> {
        let mut found = BTreeMap::new();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let Some((k, v)) = line.split_once('=') else {
                        return Err(ledger_error(
                            &file,
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("line {line:?} is not PATH=VALUE"),
                            ),
                        ));
                    };
                    found.insert(Sysctl::new(k.trim()), v.trim().to_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ledger_error(&file, e)),
        }
        Ok(Ledger {
            file: Some(file),
            found,
        })
    }

    /// Records the value `key` had before a change, unless one is recorded already.
    pub fn record(&mut self, key: &Sysctl, previous: &str) -> Result<()> {
        if self.found.contains_key(key) {
            return Ok(());
        }
        self.found.insert(key.clone(), previous.to_owned());
        self.save()
    }

    /// The recorded sysctls and the values they had.
    pub fn entries(&self) -> impl Iterator<Item = (&Sysctl, &str)> {
        self.found.iter().map(|(k, v)| (k, v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Forgets `key` (it was put back).
    pub fn forget(&mut self, key: &Sysctl) -> Result<()> {
        if self.found.remove(key).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.found.is_empty() {
            return match std::fs::remove_file(file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ledger_error(file, e)),
                _ => Ok(()),
            };
        }
        let text: String = self
            .found
            .iter()
            .map(|(k, v)| format!("{}={v}\n", k.path()))
            .collect();
        // Written aside and renamed: a crash leaves the old ledger or the new one.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, file))
            .map_err(|e| ledger_error(file, e))
    }
}

/// Puts back the values recorded in the ledger `file` (in `nl`'s namespace) and forgets each
/// one put back. Returns the sysctls and the values they got. A sysctl that cannot be written
/// stops it, named in the error; the ones not yet restored stay recorded.
pub fn restore(nl: &crate::Netlink, file: &Path) -> Result<Vec<(Sysctl, String)>> {
    let mut ledger = Ledger::open(file.to_owned())?;
    let recorded: Vec<(Sysctl, String)> = ledger
        .entries()
        .map(|(k, v)| (k.clone(), v.to_owned()))
        .collect();
    let mut out = Vec::new();
    for (key, value) in recorded {
        if let Ensured::Changed { previous } = nl.ensure_sysctl(&key, &value)? {
            tracing::info!(sysctl = %key, from = %previous, to = %value, "sysctl restored");
        }
        ledger.forget(&key)?;
        out.push((key, value));
    }
    Ok(out)
}

fn ledger_error(file: &Path, source: io::Error) -> Error {
    Error::SysctlLedger {
        path: file.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_as_sysctl_prints_them() {
        assert_eq!(
            Sysctl::new("/net/ipv6/conf/all/forwarding").to_string(),
            "net.ipv6.conf.all.forwarding"
        );
        assert_eq!(
            Sysctl::new("net/ipv6/conf/eth0.100/seg6_enabled").to_string(),
            "net.ipv6.conf.eth0/100.seg6_enabled"
        );
        assert_eq!(
            Sysctl::new("net/ipv6/conf/eth0.100/seg6_enabled").path(),
            "net/ipv6/conf/eth0.100/seg6_enabled"
        );
    }

    #[test]
    fn ledger_keeps_the_first_value_across_runs_and_empties_itself() {
        let dir = std::env::temp_dir().join(format!("datapath-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sysctls");
        let fwd = Sysctl::new("net/ipv6/conf/all/forwarding");
        let seg6 = Sysctl::new("net/ipv6/conf/eth0.7/seg6_enabled");
        let mut l = Ledger::open(file.clone()).unwrap();
        assert!(l.is_empty());
        l.record(&fwd, "0").unwrap();
        l.record(&seg6, "0").unwrap();
        // A restarted daemon finds the value it set itself: the original stays.
        let mut again = Ledger::open(file.clone()).unwrap();
        again.record(&fwd, "1").unwrap();
        let got: Vec<(String, String)> = Ledger::open(file.clone())
            .unwrap()
            .entries()
            .map(|(k, v)| (k.path().to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("net/ipv6/conf/all/forwarding".into(), "0".into()),
                ("net/ipv6/conf/eth0.7/seg6_enabled".into(), "0".into()),
            ]
        );
        again.forget(&fwd).unwrap();
        again.forget(&seg6).unwrap();
        assert!(!file.exists(), "an empty ledger leaves no file");
        std::fs::write(&file, "no equals sign\n").unwrap();
        let e = Ledger::open(file.clone()).unwrap_err().to_string();
        assert!(e.contains("PATH=VALUE") && e.contains("sysctls"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_only_proc_sys_says_what_to_do() {
        let e = io::Error::from_raw_os_error(libc::EROFS);
        assert!(explain(&e).contains("privileged init container"));
        assert_eq!(explain(&io::Error::from_raw_os_error(libc::ENOENT)), "");
    }
}
