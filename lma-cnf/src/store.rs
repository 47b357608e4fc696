//! The LMA's durable state: bindings, mobile node profiles, authorized MAGs and the restart
//! counter, in a [redb] database at `<state_dir>/lma.redb`.
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store whose commits are copy-on-write
//! B-tree updates sealed by a checksummed commit slot and an fsync, so a `kill -9` (or a
//! power cut) at any instant leaves either the previous or the new commit, never a torn one;
//! a damaged file is detected by its checksums rather than read as garbage. It needs no
//! server, no C toolchain and no tuning.
//!
//! The daemon commits once per turn of its loop, after the datapath and before the replies go
//! out: a PBA is never sent for a binding the store could still lose. A store that cannot be
//! opened or read is an error with its path and cause; it is never silently replaced.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use pmip::config::MobileNodeProfile;
use pmip::lma::{BindingRecord, LmaSnapshot};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

const BINDINGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bindings");
const PROFILES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("profiles");
const MAGS: TableDefinition<'_, &str, &str> = TableDefinition::new("authorized_mags");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

const RESTART_COUNTER: &str = "restart_counter";
const BOOTS: &str = "boots";
const SCHEMA: &str = "schema_version";
/// 1: binding records in JSON. 2: binding records in [`crate::record`]'s binary layout (JSON
/// ones still read, and rewritten as they change). A version-1 store is marked 2 when opened,
/// so that a daemon of version 1 refuses it instead of failing on a binary record.
const SCHEMA_VERSION: u64 = 2;

/// redb's page cache. Its default (1 GiB) kept every written page resident: at 1,000,000
/// bindings `pmip-bench scale` measured 1207 B of RSS per binding with it, and 32 MiB still
/// cost 33 B per binding there once full. The store is read in full only at start, a commit
/// touches few pages (the B-tree's branches, which stay cached, and the leaves of the keys it
/// writes; the write buffer gets half of this), and the kernel's page cache holds the file
/// anyway.
const CACHE_BYTES: usize = 8 << 20;

/// Binding records decoded by [`Store::for_each_binding`]'s reading thread at a time.
pub const CHUNK: usize = 4096;
/// Chunks that thread may decode ahead of their consumer.
pub const CHUNKS_AHEAD: usize = 8;

/// This run of the daemon, from [`Store::begin_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// RFC 5847 §3.2's Restart Counter.
    pub restart_counter: u32,
    /// How many times the daemon started on this store, this run included.
    pub boot: u64,
}

/// File name of the database inside the state directory.
pub const FILE: &str = "lma.redb";

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state store {path} cannot be opened: {reason}. It is kept as it is; move it away to start with no state"
    )]
    Open { path: PathBuf, reason: String },
    #[error("state store {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("state store {path}: record {table}/{key} is unreadable: {reason}")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "state store {path} was written by a newer version (schema {found}, this one reads {SCHEMA_VERSION})"
    )]
    Schema { path: PathBuf, found: u64 },
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Bindings, the API's profiles and MAGs (with their names), the restart counter.
    pub snapshot: LmaSnapshot,
}

/// What [`Store::for_each_binding`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BindingsRead {
    pub records: usize,
    /// How long the caller waited for records: the rest of the time went to its own work.
    pub waited: std::time::Duration,
}

/// Changes to write in one transaction. Later changes to the same key replace earlier ones.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    bindings: BTreeMap<String, Option<BindingRecord>>,
    profiles: BTreeMap<String, Option<MobileNodeProfile>>,
    mags: Option<BTreeMap<Ipv6Addr, String>>,
}

impl Batch {
    pub fn put_binding(&mut self, r: BindingRecord) {
        self.bindings.insert(r.key(), Some(r));
    }

    /// Whether this batch writes or deletes the binding of `key`.
    pub fn has_binding(&self, key: &str) -> bool {
        self.bindings.contains_key(key)
    }

    /// Forgets what this batch would write for `key` (a later batch carries it instead).
    pub fn forget_binding(&mut self, key: &str) {
        self.bindings.remove(key);
    }

    /// [`Batch::put_binding`] with the record's key already at hand.
    pub fn put_keyed(&mut self, key: String, r: BindingRecord) {
        debug_assert_eq!(key, r.key());
        self.bindings.insert(key, Some(r));
    }

    pub fn delete_binding(&mut self, key: String) {
        self.bindings.insert(key, None);
    }

    pub fn put_profile(&mut self, p: MobileNodeProfile) {
        self.profiles.insert(p.mn_id.to_string(), Some(p));
    }

    pub fn delete_profile(&mut self, mn_id: &str) {
        self.profiles.insert(mn_id.to_owned(), None);
    }

    /// Replaces the whole set of authorized MAGs.
    pub fn set_mags(&mut self, mags: BTreeMap<Ipv6Addr, String>) {
        self.mags = Some(mags);
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.profiles.is_empty() && self.mags.is_none()
    }

    pub fn len(&self) -> usize {
        self.bindings.len() + self.profiles.len() + usize::from(self.mags.is_some())
    }

    /// Adds `later`'s changes on top of these: where both change the same key, `later` wins.
    /// Into an empty batch (no deferred refreshes: every commit while nodes register) the
    /// maps are moved, not rebuilt key by key.
    pub fn absorb(&mut self, later: Batch) {
        if self.bindings.is_empty() {
            self.bindings = later.bindings;
        } else {
            self.bindings.extend(later.bindings);
        }
        if self.profiles.is_empty() {
            self.profiles = later.profiles;
        } else {
            self.profiles.extend(later.profiles);
        }
        if later.mags.is_some() {
            self.mags = later.mags;
        }
    }
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<dir>/lma.redb`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let s = Store { db, path };
        s.init()?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn init(&self) -> Result<(), StoreError> {
        let mut w = self.db.begin_write().map_err(|e| self.io(e))?;
        w.set_durability(Durability::Immediate)
            .map_err(|e| self.io(e))?;
        {
            let mut meta = w.open_table(META).map_err(|e| self.io(e))?;
            let found = meta.get(SCHEMA).map_err(|e| self.io(e))?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::Schema {
                        path: self.path.clone(),
                        found: v,
                    });
                }
                Some(SCHEMA_VERSION) => {}
                Some(_) | None => {
                    meta.insert(SCHEMA, SCHEMA_VERSION)
                        .map_err(|e| self.io(e))?;
                }
            }
            w.open_table(BINDINGS).map_err(|e| self.io(e))?;
            w.open_table(PROFILES).map_err(|e| self.io(e))?;
            w.open_table(MAGS).map_err(|e| self.io(e))?;
        }
        w.commit().map_err(|e| self.io(e))
    }

    /// Reads everything back. Any unreadable record is an error naming it.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut snapshot = self.load_policy()?;
        snapshot.bindings.reserve(self.binding_count()?);
        self.for_each_binding(|r| snapshot.bindings.push(r))?;
        Ok(Loaded { snapshot })
    }

    fn corrupt(&self, table: &'static str, key: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            table,
            key: key.to_owned(),
            reason,
        }
    }

    /// Everything but the bindings: the restart counter, the API's profiles and MAGs.
    pub fn load_policy(&self) -> Result<LmaSnapshot, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.io(e))?;
        let mut out = LmaSnapshot::default();
        let meta = r.open_table(META).map_err(|e| self.io(e))?;
        out.restart_counter = meta
            .get(RESTART_COUNTER)
            .map_err(|e| self.io(e))?
            .map_or(0, |v| v.value()) as u32;
        let t = r.open_table(PROFILES).map_err(|e| self.io(e))?;
        for item in t.iter().map_err(|e| self.io(e))? {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let p: MobileNodeProfile = serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt("profiles", k.value(), e.to_string()))?;
            out.profiles.push(p);
        }
        let t = r.open_table(MAGS).map_err(|e| self.io(e))?;
        for item in t.iter().map_err(|e| self.io(e))? {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let a: Ipv6Addr = k.value().parse().map_err(|e: std::net::AddrParseError| {
                self.corrupt("authorized_mags", k.value(), e.to_string())
            })?;
            out.authorized_mags.insert(a, v.value().to_owned());
        }
        Ok(out)
    }

    /// How many binding records the store holds.
    pub fn binding_count(&self) -> Result<usize, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.io(e))?;
        let t = r.open_table(BINDINGS).map_err(|e| self.io(e))?;
        Ok(t.len().map_err(|e| self.io(e))? as usize)
    }

    /// Hands every binding record to `each`, in the store's key order.
    /// Any unreadable record is an error naming it, and `each` sees none after it.
    ///
    /// A thread of its own walks redb's pages and decodes the records while `each` runs on
    /// the caller's: at a million bindings the two take about as long, and a restarting daemon
    /// restores its cache from the records as they come instead of after the last one.
    /// [`CHUNK`] records at a time cross over, at most [`CHUNKS_AHEAD`] chunks ahead.
    pub fn for_each_binding(
        &self,
        mut each: impl FnMut(BindingRecord),
    ) -> Result<BindingsRead, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Err(e) = self.read_bindings(|chunk| tx.send(Ok(chunk)).is_ok()) {
                    let _ = tx.send(Err(e));
                }
            });
            let mut read = BindingsRead::default();
            loop {
                let t = std::time::Instant::now();
                // Ends when the reader is done (it dropped its sender) or failed.
                let Ok(chunk) = rx.recv() else {
                    return Ok(read);
                };
                read.waited += t.elapsed();
                for r in chunk? {
                    each(r);
                    read.records += 1;
                }
            }
        })
    }

    /// Decodes the binding records in key order and hands them to `send` in chunks, until it
    /// says to stop.
    fn read_bindings(
        &self,
        mut send: impl FnMut(Vec<BindingRecord>) -> bool,
    ) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(|e| self.io(e))?;
        let t = r.open_table(BINDINGS).map_err(|e| self.io(e))?;
        let mut chunk = Vec::with_capacity(CHUNK);
        for item in t.iter().map_err(|e| self.io(e))? {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let rec = crate::record::decode(v.value())
                .map_err(|e| self.corrupt("bindings", k.value(), e.to_string()))?;
            chunk.push(rec);
            if chunk.len() == CHUNK
                && !send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
            {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            send(chunk);
        }
        Ok(())
    }

    /// Records one more start of the daemon, durably, and returns this run's numbers.
    ///
    /// RFC 5847 §3.2: the Restart Counter is incremented when a restart loses the sessions'
    /// state and MUST NOT be when it does not. Every binding is in this store, committed
    /// before its PBA leaves, so a restart with the store keeps the counter. A store without a
    /// counter is new, or a lost one replaced: the counter starts at the wall clock's seconds
    /// (`now_unix_s`), larger than any value a lost store can have held, so the MAGs that had
    /// sessions with the previous store see it change and re-register. The run number
    /// (`boot`) counts every start: the API's watch cursors and page tokens of another run are
    /// refused by it, and the random seed comes from it.
    pub fn begin_run(&self, now_unix_s: u64) -> Result<Run, StoreError> {
        let mut w = self.db.begin_write().map_err(|e| self.io(e))?;
        w.set_durability(Durability::Immediate)
            .map_err(|e| self.io(e))?;
        let run = {
            let mut meta = w.open_table(META).map_err(|e| self.io(e))?;
            let restart_counter = match meta.get(RESTART_COUNTER).map_err(|e| self.io(e))? {
                Some(v) => v.value(),
                None => now_unix_s.clamp(1, u64::from(u32::MAX)),
            };
            let boot = meta
                .get(BOOTS)
                .map_err(|e| self.io(e))?
                .map_or(0, |v| v.value())
                + 1;
            meta.insert(RESTART_COUNTER, restart_counter)
                .map_err(|e| self.io(e))?;
            meta.insert(BOOTS, boot).map_err(|e| self.io(e))?;
            Run {
                restart_counter: restart_counter as u32,
                boot,
            }
        };
        w.commit().map_err(|e| self.io(e))?;
        Ok(run)
    }

    /// Writes a batch in one durable transaction.
    pub fn commit(&self, b: &Batch) -> Result<(), StoreError> {
        if b.is_empty() {
            return Ok(());
        }
        let mut w = self.db.begin_write().map_err(|e| self.io(e))?;
        w.set_durability(Durability::Immediate)
            .map_err(|e| self.io(e))?;
        {
            let mut t = w.open_table(BINDINGS).map_err(|e| self.io(e))?;
            for (k, v) in &b.bindings {
                match v {
                    Some(r) => {
                        let bytes = crate::record::encode(r).map_err(|e| self.io(e))?;
                        t.insert(k.as_str(), bytes.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(|e| self.io(e))?;
                    }
                }
            }
            let mut t = w.open_table(PROFILES).map_err(|e| self.io(e))?;
            for (k, v) in &b.profiles {
                match v {
                    Some(p) => {
                        let bytes = serde_json::to_vec(p).map_err(|e| self.io(e))?;
                        t.insert(k.as_str(), bytes.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(|e| self.io(e))?;
                    }
                }
            }
            if let Some(mags) = &b.mags {
                let mut t = w.open_table(MAGS).map_err(|e| self.io(e))?;
                t.retain(|_, _| false).map_err(|e| self.io(e))?;
                for (a, name) in mags {
                    t.insert(a.to_string().as_str(), name.as_str())
                        .map_err(|e| self.io(e))?;
                }
            }
        }
        w.commit().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip::types::Nai;

    fn record(n: u32) -> BindingRecord {
        BindingRecord {
            mn_id: format!("mn{n}@example.org"),
            home_network_prefixes: vec![format!("2001:db8:100:{n:x}::/64").parse().unwrap()],
            proxy_coa: "2001:db8:1::10".parse().unwrap(),
            access_technology_type: 3,
            handoff_indicator: 1,
            mn_link_layer_id: None,
            link_local_address: None,
            lifetime_s: 3600,
            registered_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: 3,
            delete_at_ms: None,
            last_timestamp: Some(42),
            last_sequence: 7,
            handover_count: 0,
            last_handover_gap_ms: None,
            ipv4_home_address: (n % 2 == 1).then(|| pmip::ipv4_pool::Ipv4HomeAddress {
                address: std::net::Ipv4Addr::from(0xc000_0200 + n),
                prefix_len: 24,
                default_router: std::net::Ipv4Addr::new(192, 0, 2, 1),
            }),
        }
    }

    #[test]
    fn a_later_batch_wins_where_both_change_a_binding() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, b, c) = (record(1), record(2), record(3));
        let mut earlier = Batch::default();
        earlier.put_binding(BindingRecord {
            lifetime_s: 100,
            ..a.clone()
        });
        earlier.put_binding(b.clone());
        earlier.put_binding(c.clone());
        let mut later = Batch::default();
        later.put_binding(a.clone());
        later.delete_binding(b.key());
        assert!(earlier.has_binding(&c.key()));
        earlier.forget_binding(&c.key());
        assert!(!earlier.has_binding(&c.key()));
        earlier.absorb(later);
        assert_eq!(earlier.len(), 2);
        s.commit(&earlier).unwrap();
        let got = s.load().unwrap().snapshot.bindings;
        assert_eq!(got, vec![a], "a's later record; b deleted; c forgotten");
        // Into an empty batch, everything of the later one.
        let mut empty = Batch::default();
        let mut one = Batch::default();
        one.put_binding(c.clone());
        one.delete_profile("mn9@example.org");
        empty.absorb(one);
        assert!(empty.has_binding(&c.key()));
        assert_eq!(empty.len(), 2);
    }

    #[test]
    fn round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let first = s.begin_run(1_800_000_000).unwrap();
            assert_eq!(
                first,
                Run {
                    restart_counter: 1_800_000_000,
                    boot: 1
                },
                "a new store's counter is the wall clock's seconds"
            );
            let mut b = Batch::default();
            for n in 0..10 {
                b.put_binding(record(n));
            }
            b.put_profile(MobileNodeProfile::new(Nai::new("mn1@example.org").unwrap()));
            b.set_mags([("2001:db8:1::10".parse().unwrap(), "node-a".to_owned())].into());
            s.commit(&b).unwrap();
            let mut b = Batch::default();
            b.delete_binding(record(3).key());
            b.put_binding(record(3));
            b.delete_binding(record(4).key());
            s.commit(&b).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        // RFC 5847 §3.2: the sessions survived in the store, the counter stays; the run
        // number counts the start.
        assert_eq!(
            s.begin_run(1_800_000_100).unwrap(),
            Run {
                restart_counter: 1_800_000_000,
                boot: 2
            }
        );
        let l = s.load().unwrap();
        assert_eq!(l.snapshot.restart_counter, 1_800_000_000);
        assert_eq!(l.snapshot.bindings.len(), 9);
        assert!(l.snapshot.bindings.contains(&record(3)));
        assert!(!l.snapshot.bindings.contains(&record(4)));
        assert_eq!(l.snapshot.profiles.len(), 1);
        assert_eq!(
            l.snapshot
                .authorized_mags
                .get(&"2001:db8:1::10".parse().unwrap())
                .unwrap(),
            "node-a"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let mut b = Batch::default();
            for n in 0..100 {
                b.put_binding(record(n));
            }
            s.commit(&b).unwrap();
        }
        let f = dir.path().join(FILE);
        let mut bytes = std::fs::read(&f).unwrap();
        // Wreck the header and commit slots.
        for b in bytes.iter_mut().take(4096) {
            *b ^= 0x5a;
        }
        std::fs::write(&f, &bytes).unwrap();
        let e = Store::open(dir.path())
            .and_then(|s| s.load().map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains("lma.redb"), "{e}");
        // The file is left for inspection.
        assert_eq!(std::fs::read(&f).unwrap(), bytes);
    }

    /// A store written by a version that kept JSON records (schema 1) is read as it is,
    /// marked schema 2 so that such a version refuses it afterwards, and a record rewritten
    /// when its binding changes is in the binary layout.
    #[test]
    fn a_store_of_json_records_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let w = s.db.begin_write().unwrap();
            {
                let mut t = w.open_table(BINDINGS).unwrap();
                for n in 0..3 {
                    let r = record(n);
                    t.insert(r.key().as_str(), serde_json::to_vec(&r).unwrap().as_slice())
                        .unwrap();
                }
                w.open_table(META).unwrap().insert(SCHEMA, 1).unwrap();
            }
            w.commit().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let by_mn_id = |mut v: Vec<BindingRecord>| {
            v.sort_by(|a, b| a.mn_id.cmp(&b.mn_id));
            v
        };
        let got = by_mn_id(s.load().unwrap().snapshot.bindings);
        assert_eq!(got, (0..3).map(record).collect::<Vec<_>>());
        let schema = |s: &Store| {
            let r = s.db.begin_read().unwrap();
            r.open_table(META)
                .unwrap()
                .get(SCHEMA)
                .unwrap()
                .unwrap()
                .value()
        };
        assert_eq!(schema(&s), 2);
        let mut changed = record(1);
        changed.handover_count += 1;
        let mut b = Batch::default();
        b.put_binding(changed.clone());
        s.commit(&b).unwrap();
        let r = s.db.begin_read().unwrap();
        let t = r.open_table(BINDINGS).unwrap();
        let raw = t
            .get(changed.key().as_str())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(raw[0], crate::record::VERSION);
        assert_eq!(by_mn_id(s.load().unwrap().snapshot.bindings)[1], changed);
    }

    /// A store a later version marked (schema 3) is refused with a message that says so.
    #[test]
    fn a_store_of_a_later_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let w = s.db.begin_write().unwrap();
            w.open_table(META).unwrap().insert(SCHEMA, 3).unwrap();
            w.commit().unwrap();
        }
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::Schema { found: 3, .. }), "{e}");
    }

    /// A damaged record among thousands (chunks of them decoded on the reading thread) is an
    /// error naming it, and no record after it is handed out.
    #[test]
    fn a_damaged_record_in_a_large_store_stops_the_read_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let n = 3 * CHUNK as u32;
        let mut b = Batch::default();
        for i in 0..n {
            b.put_binding(record(i));
        }
        s.commit(&b).unwrap();
        let mut all = Vec::new();
        let read = s.for_each_binding(|r| all.push(r)).unwrap();
        assert_eq!((read.records, all.len()), (n as usize, n as usize));
        let mut keys: Vec<String> = all.iter().map(BindingRecord::key).collect();
        let sorted = keys.clone();
        keys.sort();
        assert_eq!(keys, sorted, "in the store's key order");
        let damaged = &keys[2 * CHUNK + 5];
        let w = s.db.begin_write().unwrap();
        {
            let mut t = w.open_table(BINDINGS).unwrap();
            let mut bytes = t.get(damaged.as_str()).unwrap().unwrap().value().to_vec();
            bytes.pop();
            t.insert(damaged.as_str(), bytes.as_slice()).unwrap();
        }
        w.commit().unwrap();
        let mut seen = 0;
        let e = s.for_each_binding(|_| seen += 1).unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt { table: "bindings", key, .. } if key == damaged),
            "{e}"
        );
        assert!(seen <= 2 * CHUNK + 5, "none after it: {seen}");
        assert!(s.load().is_err());
    }

    #[test]
    fn an_undecodable_record_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let w = s.db.begin_write().unwrap();
        {
            let mut t = w.open_table(BINDINGS).unwrap();
            t.insert("2001:db8::/64", b"{not json".as_slice()).unwrap();
        }
        w.commit().unwrap();
        let e = s.load().unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt { table: "bindings", key, .. } if key == "2001:db8::/64"),
            "{e}"
        );
    }
}
