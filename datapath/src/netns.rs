//! Network namespaces the way iproute2 makes them, and what a lab needs inside them.
//!
//! A named namespace is a bind mount of a namespace file on `/run/netns/NAME`, so
//! `ip netns exec NAME ...` works on it for a human looking at a lab. [`NetNs::create`] makes
//! one, [`NetNs::delete`] (or dropping the [`OwnedNetNs`]) removes it.
//!
//! Code runs inside a namespace on a dedicated thread that `setns(2)`es first
//! ([`NetNs::run`]); the calling thread never changes namespace. Sockets keep the namespace
//! they were created in, so a socket (or a netlink connection, [`crate::Netlink::connect_in`])
//! made inside [`NetNs::run`] can be used from any thread afterwards. Child processes enter
//! the namespace between `fork` and `exec` ([`NetNs::command`]).
//!
//! Links, addresses, MTUs and sysctls inside a namespace are set through a
//! [`crate::Netlink`] connected in it: see [`crate::Netlink::add_veth`],
//! [`crate::Netlink::add_address`], [`crate::Netlink::set_link_mtu`],
//! [`crate::Netlink::set_link_up`] and [`crate::Netlink::set_sysctl`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// Where iproute2 keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace, by the path of a file that holds it (`/run/netns/NAME` for a named
/// one, or e.g. `/proc/PID/ns/net`). Cloning it does not clone the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// The named namespace `name` (`/run/netns/NAME`); it is not checked to exist.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: Path::new(NETNS_RUN_DIR).join(name),
        }
    }

    /// The namespace held by `path`, e.g. `/proc/1234/ns/net`.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            name: path.display().to_string(),
            path,
        }
    }

    /// The namespace's name (or its path when it has none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file that holds the namespace.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the named namespace `name` like `ip netns add NAME`: a new network namespace
    /// bind-mounted on `/run/netns/NAME`, with its loopback link down (as the kernel makes it).
    /// Fails if the name is taken.
    pub fn create(name: &str) -> Result<OwnedNetNs> {
        let err = |op: &'static str| {
            let name = name.to_owned();
            move |source: io::Error| Error::NetNs { op, name, source }
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(err("create")(io::Error::from(io::ErrorKind::InvalidInput)));
        }
        let ns = NetNs::named(name);
        ensure_run_dir_is_shared_mount().map_err(err("create"))?;
        // The mount point; O_EXCL makes a name taken by a running lab an error, not a takeover.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&ns.path)
            .map_err(err("create"))?;
        let target = ns.path.clone();
        let made = std::thread::scope(|s| {
            s.spawn(move || -> io::Result<()> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        if let Err(e) = made {
            let _ = fs::remove_file(&ns.path);
            return Err(err("create")(e));
        }
        Ok(OwnedNetNs { ns, armed: true })
    }

    /// Deletes the named namespace `name` like `ip netns delete NAME`. The namespace itself
    /// lives on while a process or socket still holds it.
    pub fn delete(name: &str) -> Result<()> {
        NetNs::named(name).remove()
    }

    fn remove(&self) -> Result<()> {
        let err = |source: io::Error| Error::NetNs {
            op: "delete",
            name: self.name.clone(),
            source,
        };
        match nix::mount::umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(nix::errno::Errno::ENOENT) => {
                return Err(err(io::Error::from_raw_os_error(libc::ENOENT)));
            }
            Err(e) => return Err(err(e.into())),
        }
        fs::remove_file(&self.path).map_err(err)
    }

    fn open(&self) -> Result<File> {
        File::open(&self.path).map_err(|source| Error::NetNs {
            op: "open",
            name: self.name.clone(),
            source,
        })
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        let outcome = std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
                Ok::<R, io::Error>(f())
            })
            .join()
        });
        match outcome {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(source)) => Err(Error::NetNs {
                op: "enter",
                name: self.name.clone(),
                source,
            }),
            Err(_) => Err(Error::NetNs {
                op: "run code in",
                name: self.name.clone(),
                source: io::Error::other("the code panicked"),
            }),
        }
    }

    /// A command that runs `program` inside this namespace (like `ip netns exec`), without
    /// touching the mount namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let fd = OwnedFd::from(self.open()?);
        let mut cmd = Command::new(program);
        enter_before_exec(&mut cmd, fd);
        Ok(cmd)
    }

    /// An rtnetlink handle whose socket lives in this namespace; its connection is spawned on
    /// the current tokio runtime. For code that needs rtnetlink requests this crate does not
    /// wrap; [`crate::Netlink::connect_in`] is the crate's own connection.
    pub fn rtnetlink(&self) -> Result<rtnetlink::Handle> {
        let rt = runtime(Some(self))?;
        let enter = rt.clone();
        let (conn, handle, _) = self
            .run(move || {
                let _entered = enter.enter();
                rtnetlink::new_connection()
            })?
            .map_err(|source| Error::Socket {
                netns: Some(self.name.clone()),
                source,
            })?;
        rt.spawn(conn);
        Ok(handle)
    }
}

pub(crate) fn runtime(ns: Option<&NetNs>) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|e| Error::Socket {
        netns: ns.map(|n| n.name.clone()),
        source: io::Error::other(format!("needs a tokio runtime: {e}")),
    })
}

#[allow(unsafe_code)]
fn enter_before_exec(cmd: &mut Command, fd: OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only makes the
    // setns(2) system call, which is async-signal-safe, and allocates nothing (the error is
    // built from a raw errno).
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        });
    }
}

/// iproute2 makes `/run/netns` a shared mount point so that namespace mounts made later
/// propagate to every mount namespace (ip-netns(8)).
fn ensure_run_dir_is_shared_mount() -> io::Result<()> {
    fs::create_dir_all(NETNS_RUN_DIR)?;
    let shared = |flags| {
        nix::mount::mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            flags,
            None::<&str>,
        )
    };
    match shared(MsFlags::MS_SHARED | MsFlags::MS_REC) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            nix::mount::mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared(MsFlags::MS_SHARED | MsFlags::MS_REC).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// A named namespace that is deleted when this value is dropped (errors then are ignored;
/// call [`OwnedNetNs::delete`] to see them). Dereferences to [`NetNs`].
#[derive(Debug)]
pub struct OwnedNetNs {
    ns: NetNs,
    armed: bool,
}

impl OwnedNetNs {
    /// Deletes the namespace now.
    pub fn delete(mut self) -> Result<()> {
        self.armed = false;
        self.ns.remove()
    }

    /// Keeps the namespace after this value is dropped.
    pub fn keep(mut self) -> NetNs {
        self.armed = false;
        self.ns.clone()
    }
}

impl std::ops::Deref for OwnedNetNs {
    type Target = NetNs;
    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for OwnedNetNs {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.ns.remove();
        }
    }
}
