//! An LMA restored from its durable records, one record at a time (see [`Lma::restore`]).
//!
//! A daemon restarting at a million bindings restores the cache while it is still reading its
//! store: [`Restoring`] takes each record as it is decoded, so no list of a million records is
//! built first, and the work that needs them all (the prefix pools' claims) is done once, in
//! bulk, by [`Restoring::finish`].

use core::time::Duration;
use std::net::Ipv6Addr;

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use ipnet::Ipv6Net;

use super::{BindingRecord, Lma, LmaOutput, LmaSnapshot, to_ms};
use crate::cache::{BindingCacheEntry, BindingState, Ordering, Prefixes};
use crate::config::LmaConfig;
use crate::policy::PolicyError;
use crate::time::Instant;
use crate::wire::{SequenceNumber, Timestamp, WallClock};

/// An LMA being restored: policy first ([`Restoring::new`]), then the bindings in any number
/// of [`Restoring::binding`] calls, then [`Restoring::finish`]. The result is the same LMA
/// as [`Lma::restore`] of a snapshot holding those records in that order.
#[derive(Debug)]
pub struct Restoring {
    lma: Lma,
    now: Instant,
    wall_ms: u64,
    grace: Duration,
    /// The restart counter the snapshot was taken with.
    stored_counter: u32,
    /// Prefixes of the restored bindings, claimed in the pools by [`Restoring::finish`].
    claims: Vec<Ipv6Net>,
    /// Sessions restored per MAG, counted here (a million lookups in the LMA's ordered map
    /// cost more than this one) and handed to the LMA by [`Restoring::finish`].
    mags: HashMap<Ipv6Addr, u32, FixedState>,
}

impl Restoring {
    /// Starts from `snapshot`'s profiles, authorized MAGs and restart counter; its bindings are
    /// left to [`Restoring::binding`]. The arguments are [`Lma::restore`]'s.
    pub fn new(
        config: LmaConfig,
        snapshot: &LmaSnapshot,
        restart_counter: u32,
        seed: u64,
        now: Instant,
        wall: WallClock,
        grace: Duration,
    ) -> Result<Self, PolicyError> {
        let mut lma = Lma::new(config, restart_counter, seed)?;
        for p in &snapshot.profiles {
            // The configuration file wins over what the API once stored under the same MN-ID.
            if lma.policy.check_api_change(p.mn_id.as_str()).is_ok() {
                lma.policy.upsert(p.clone())?;
            }
        }
        for (m, name) in &snapshot.authorized_mags {
            lma.policy.mags_mut().add(*m, name.clone());
        }
        Ok(Restoring {
            lma,
            now,
            wall_ms: to_ms(wall),
            grace,
            stored_counter: snapshot.restart_counter,
            claims: Vec::new(),
            mags: HashMap::default(),
        })
    }

    /// Pre-sizes the cache for `n` more bindings (the store knows how many it holds).
    pub fn reserve(&mut self, n: usize) {
        self.lma.cache.reserve(n);
        self.claims.reserve(n);
    }

    /// Restores one binding, or gives its record back when it is not restored: it expired
    /// while the LMA was down, its de-registration wait ended, it has no home address, or a
    /// binding restored before it holds one of its prefixes or its IPv4 home address.
    pub fn binding(&mut self, r: BindingRecord) -> Result<(), Box<BindingRecord>> {
        if !self.restorable(&r) {
            return Err(Box::new(r));
        }
        let entry = entry_from_record(r, self.now, self.wall_ms, self.grace);
        self.claims.extend_from_slice(entry.prefixes.as_slice());
        if let Some(v4) = entry.ipv4 {
            self.lma.ipv4.claim(v4.address);
        }
        *self.mags.entry(entry.proxy_coa).or_default() += 1;
        self.lma.cache.insert(entry);
        Ok(())
    }

    fn restorable(&self, r: &BindingRecord) -> bool {
        let live = match r.delete_at_ms {
            Some(d) => d > self.wall_ms,
            // Expired longer ago than the grace period: its MAG has given up on it.
            None => r.expires_at_ms + self.grace.as_millis() as u64 > self.wall_ms,
        };
        let has_home = !r.home_network_prefixes.is_empty() || r.ipv4_home_address.is_some();
        let cache = &self.lma.cache;
        let free = (r.home_network_prefixes.iter()).all(|p| cache.by_prefix(p).is_none())
            && (r.ipv4_home_address).is_none_or(|v4| cache.by_ipv4(&v4.address).is_none());
        live && has_home && free
    }

    /// The restored binding whose store key (its first prefix, or for an IPv4-only one its
    /// IPv4 home address: [`BindingRecord::key`]) is the same as `r`'s.
    pub fn holds_key_of(&self, r: &BindingRecord) -> bool {
        let cache = &self.lma.cache;
        match (r.home_network_prefixes.first(), r.ipv4_home_address) {
            (Some(p), _) => (cache.by_prefix(p).and_then(|s| cache.get(s)))
                .is_some_and(|e| e.prefixes.as_slice().first() == Some(p)),
            (None, Some(v4)) => (cache.by_ipv4(&v4.address).and_then(|s| cache.get(s)))
                .is_some_and(|e| e.prefixes.as_slice().is_empty()),
            (None, None) => false,
        }
    }

    /// Bindings restored so far.
    pub fn len(&self) -> usize {
        self.lma.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lma.cache.is_empty()
    }

    /// The restored LMA. RFC 5847 §3.2: when its restart counter is not the snapshot's (state
    /// was lost), every MAG that had sessions is told with an unsolicited Heartbeat Response.
    pub fn finish(mut self) -> Lma {
        let mut lma = self.lma;
        lma.prefixes.claim_all(core::mem::take(&mut self.claims));
        for (mag, n) in self.mags {
            lma.mags_gained(mag, n, self.now);
        }
        if lma.restart_counter() != self.stored_counter {
            let mags: Vec<Ipv6Addr> = lma.mag_sessions.keys().copied().collect();
            for t in lma.heartbeats.announce_restart(mags) {
                lma.push(LmaOutput::Transmit(t));
            }
        }
        lma
    }
}

/// The cache entry of a restorable record, with its wall-clock times turned into `now`'s
/// clock.
fn entry_from_record(
    r: BindingRecord,
    now: Instant,
    wall_ms: u64,
    grace: Duration,
) -> BindingCacheEntry {
    let at = |t_ms: u64| -> Instant {
        if t_ms >= wall_ms {
            now + Duration::from_millis(t_ms - wall_ms)
        } else {
            Instant::from_nanos(
                now.as_nanos()
                    .saturating_sub((wall_ms - t_ms).saturating_mul(1_000_000)),
            )
        }
    };
    let ordering = Ordering::new(
        r.last_timestamp.map(Timestamp),
        SequenceNumber(r.last_sequence),
    );
    let mut e = BindingCacheEntry::new(
        r.mn_id.into(),
        Prefixes::from_slice(&r.home_network_prefixes),
        r.proxy_coa,
        r.access_technology_type.into(),
        r.handoff_indicator.into(),
        r.mn_link_layer_id,
        r.link_local_address,
        r.lifetime_s,
        at(r.registered_at_ms),
        ordering,
    );
    e.updated_at = at(r.updated_at_ms);
    e.ipv4 = r.ipv4_home_address;
    e.handover_count = r.handover_count;
    e.set_last_handover_gap(r.last_handover_gap_ms.map(Duration::from_millis));
    match r.delete_at_ms {
        Some(d) => {
            e = e.with_state(BindingState::Deregistering);
            e.expires_at = at(d);
        }
        None => e.expires_at = at(r.expires_at_ms).max(now + grace),
    }
    e
}
