//! Pure: a MobileNode's status from what the LMA said about it, and the Kubernetes Events a
//! change of status deserves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proto::v1::BindingState;

use crate::crd::{MobileNodeState, MobileNodeStatus};
use crate::mirror::Observation;

/// The binding part of a status (state, MAG, prefix, ...) from an observation. Conditions,
/// lab and generation are the reconciler's.
pub fn from_observation(
    obs: &Observation,
    lab_attached_to: Option<&str>,
    previous: Option<&MobileNodeStatus>,
) -> MobileNodeStatus {
    let mut s = MobileNodeStatus {
        lab_attached_to: lab_attached_to.map(str::to_string),
        lma_revision: obs.cursor.map(|(e, r)| format!("{e}/{r}")),
        ..MobileNodeStatus::default()
    };
    let rejected_later = match (&obs.rejection, &obs.binding) {
        (Some(_), None) => true,
        (Some((rev, _)), Some(b)) => *rev > b.revision,
        _ => false,
    };
    if let Some(b) = &obs.binding {
        s.state = match BindingState::try_from(b.state).unwrap_or(BindingState::Unspecified) {
            BindingState::Active => MobileNodeState::Attached,
            BindingState::Deregistering | BindingState::AwaitingHandoff => {
                MobileNodeState::HandingOver
            }
            BindingState::Revoking => MobileNodeState::Detached,
            BindingState::Unspecified => MobileNodeState::Registering,
        };
        if b.state == BindingState::Revoking as i32 {
            s.reason = Some("the binding is being revoked (RFC 5846)".into());
        }
        s.mag = Some(b.mag_name.clone().unwrap_or_else(|| b.proxy_coa.clone()));
        s.proxy_coa = Some(b.proxy_coa.clone());
        s.prefix = b.home_network_prefixes.first().cloned();
        s.prefixes = b.home_network_prefixes.clone();
        s.ipv4_address = (!b.ipv4_home_address.is_empty()).then(|| b.ipv4_home_address.clone());
        s.lifetime_seconds = Some(b.lifetime_granted_seconds);
        s.handovers = b.handover_count;
        s.last_handover_interruption_ms = b.last_handover_interruption_ms;
    } else if lab_attached_to.is_some() {
        s.state = MobileNodeState::Registering;
        s.reason =
            Some("attached to its MAG, waiting for the LMA to accept the registration".into());
    }
    if rejected_later && let Some((_, r)) = &obs.rejection {
        let mag = r.mag_name.clone().unwrap_or_else(|| r.proxy_coa.clone());
        s.state = MobileNodeState::Rejected;
        let mut reason = format!("PBA status {} ({}) to MAG {mag}", r.status, r.status_name);
        if !r.detail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&r.detail);
        }
        s.reason = Some(reason);
    }
    // Without a binding, keep the counters of the last session for people to read.
    if obs.binding.is_none()
        && let Some(p) = previous
    {
        s.handovers = p.handovers;
        s.last_handover_interruption_ms = p.last_handover_interruption_ms;
    }
    s
}

/// An Event to publish: (type is Warning?, reason, note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The node's home addresses for people: `prefix P`, `prefix P and IPv4 home address A`,
/// `IPv4 home address A`.
fn homes(s: &MobileNodeStatus) -> String {
    match (&s.prefix, &s.ipv4_address) {
        (Some(p), Some(a)) => format!("prefix {p} and IPv4 home address {a}"),
        (None, Some(a)) => format!("IPv4 home address {a}"),
        (p, None) => format!("prefix {}", p.as_deref().unwrap_or("?")),
    }
}

/// Events for the transition from `old` to `new` (coalesced changes show as one transition).
pub fn notices(old: Option<&MobileNodeStatus>, new: &MobileNodeStatus) -> Vec<Notice> {
    let mut out = Vec::new();
    let old_state = old.map(|o| o.state).unwrap_or_default();
    let old_mag = old.and_then(|o| o.mag.clone());
    let old_handovers = old.map(|o| o.handovers).unwrap_or(0);
    match new.state {
        MobileNodeState::Attached
            if old_state != MobileNodeState::Attached && old_mag.is_none() =>
        {
            out.push(Notice {
                warning: false,
                reason: "Attached",
                note: format!(
                    "registered through MAG {} with {}",
                    new.mag.as_deref().unwrap_or("?"),
                    homes(new)
                ),
            });
        }
        MobileNodeState::Rejected if old.and_then(|o| o.reason.as_ref()) != new.reason.as_ref() => {
            out.push(Notice {
                warning: true,
                reason: "Rejected",
                note: new.reason.clone().unwrap_or_default(),
            });
        }
        MobileNodeState::Detached
            if matches!(
                old_state,
                MobileNodeState::Attached | MobileNodeState::HandingOver
            ) =>
        {
            out.push(Notice {
                warning: false,
                reason: "Detached",
                note: format!(
                    "the LMA removed the binding (last MAG {})",
                    old_mag.as_deref().unwrap_or("?")
                ),
            });
        }
        _ => {}
    }
    if new.handovers > old_handovers && new.mag.is_some() && old_mag.is_some() && new.mag != old_mag
    {
        let n = new.handovers - old_handovers;
        let gap = new
            .last_handover_interruption_ms
            .map(|ms| format!(", signalling gap {ms} ms"))
            .unwrap_or_default();
        out.push(Notice {
            warning: false,
            reason: "HandedOver",
            note: format!(
                "MAG {} -> {}{}{gap}",
                old_mag.as_deref().unwrap_or("?"),
                new.mag.as_deref().unwrap_or("?"),
                if n > 1 {
                    format!(" ({n} handovers since the last report)")
                } else {
                    String::new()
                },
            ),
        });
    }
    out
}

/// The status without timestamps, to decide whether a write is needed.
pub fn same_ignoring_times(a: &MobileNodeStatus, b: &MobileNodeStatus) -> bool {
    fn strip(c: &[Condition]) -> Vec<(String, String, String, String)> {
        c.iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    }
    let mut a2 = a.clone();
    let mut b2 = b.clone();
    a2.conditions.clear();
    b2.conditions.clear();
    a2 == b2 && strip(&a.conditions) == strip(&b.conditions)
}

#[cfg(test)]
mod tests {
    use proto::v1::{Binding, RegistrationRejected};

    use super::*;

    fn obs(b: Option<Binding>, r: Option<(u64, RegistrationRejected)>) -> Observation {
        Observation {
            binding: b,
            rejection: r,
            cursor: Some((1, 7)),
        }
    }

    fn b(mag: &str, handovers: u64, state: BindingState, rev: u64) -> Binding {
        Binding {
            mn_id: "mn1@example.org".into(),
            proxy_coa: "2001:db8::10".into(),
            mag_name: Some(mag.into()),
            home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
            lifetime_granted_seconds: 3600,
            handover_count: handovers,
            last_handover_interruption_ms: (handovers > 0).then_some(42),
            state: state as i32,
            revision: rev,
            ..Binding::default()
        }
    }

    #[test]
    fn states_follow_the_binding() {
        let s = from_observation(
            &obs(Some(b("w1", 0, BindingState::Active, 3)), None),
            None,
            None,
        );
        assert_eq!(s.state, MobileNodeState::Attached);
        assert_eq!(s.mag.as_deref(), Some("w1"));
        assert_eq!(s.prefix.as_deref(), Some("2001:db8:100:1::/64"));
        assert_eq!(s.ipv4_address, None);
        assert_eq!(s.lma_revision.as_deref(), Some("1/7"));
        // RFC 5844: the IPv4 home address, for a dual-stack and an IPv4-only node.
        let mut dual = b("w1", 0, BindingState::Active, 3);
        dual.ipv4_home_address = "192.0.2.10/24".into();
        let s = from_observation(&obs(Some(dual.clone()), None), None, None);
        assert_eq!(s.ipv4_address.as_deref(), Some("192.0.2.10/24"));
        assert_eq!(s.prefix.as_deref(), Some("2001:db8:100:1::/64"));
        dual.home_network_prefixes.clear();
        let s = from_observation(&obs(Some(dual), None), None, None);
        assert_eq!(
            (s.state, s.prefix, s.ipv4_address.as_deref()),
            (MobileNodeState::Attached, None, Some("192.0.2.10/24"))
        );
        let s = from_observation(
            &obs(Some(b("w1", 0, BindingState::Deregistering, 3)), None),
            None,
            None,
        );
        assert_eq!(s.state, MobileNodeState::HandingOver);
        let s = from_observation(&obs(None, None), Some("w2"), None);
        assert_eq!(s.state, MobileNodeState::Registering);
        let s = from_observation(&obs(None, None), None, None);
        assert_eq!(s.state, MobileNodeState::Detached);
    }

    #[test]
    fn rejection_shows_its_pba_status_and_an_older_one_does_not_win() {
        let r = RegistrationRejected {
            mn_id: "mn1@example.org".into(),
            proxy_coa: "2001:db8::30".into(),
            mag_name: Some("w3".into()),
            status: 154,
            status_name: "MAG_NOT_AUTHORIZED_FOR_PROXY_REG".into(),
            detail: "not an authorized MAG".into(),
            count: 1,
        };
        let s = from_observation(&obs(None, Some((5, r.clone()))), None, None);
        assert_eq!(s.state, MobileNodeState::Rejected);
        assert_eq!(
            s.reason.as_deref(),
            Some(
                "PBA status 154 (MAG_NOT_AUTHORIZED_FOR_PROXY_REG) to MAG w3: not an authorized MAG"
            )
        );
        let s = from_observation(
            &obs(
                Some(b("w1", 0, BindingState::Active, 6)),
                Some((5, r.clone())),
            ),
            None,
            None,
        );
        assert_eq!(s.state, MobileNodeState::Attached);
        let s = from_observation(
            &obs(Some(b("w1", 0, BindingState::Active, 4)), Some((5, r))),
            None,
            None,
        );
        assert_eq!(
            s.state,
            MobileNodeState::Rejected,
            "rejected at the new MAG while the old binding lives"
        );
        assert_eq!(notices(None, &s)[0].reason, "Rejected");
    }

    #[test]
    fn coalesced_handovers_are_one_event_with_the_count() {
        let old = from_observation(
            &obs(Some(b("w1", 2, BindingState::Active, 3)), None),
            None,
            None,
        );
        let new = from_observation(
            &obs(Some(b("w2", 5, BindingState::Active, 9)), None),
            None,
            None,
        );
        let n = notices(Some(&old), &new);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].reason, "HandedOver");
        assert!(
            n[0].note.contains("w1 -> w2") && n[0].note.contains("3 handovers"),
            "{}",
            n[0].note
        );
        assert!(notices(Some(&new), &new).is_empty());
        let first = notices(None, &old);
        assert_eq!(first[0].reason, "Attached");
        assert_eq!(
            first[0].note,
            "registered through MAG w1 with prefix 2001:db8:100:1::/64"
        );
        let mut v4 = old.clone();
        v4.ipv4_address = Some("192.0.2.10/24".into());
        assert!(
            notices(None, &v4)[0]
                .note
                .ends_with("with prefix 2001:db8:100:1::/64 and IPv4 home address 192.0.2.10/24")
        );
        v4.prefix = None;
        assert!(
            notices(None, &v4)[0]
                .note
                .ends_with("with IPv4 home address 192.0.2.10/24")
        );
        let gone = from_observation(&obs(None, None), None, Some(&new));
        assert_eq!(gone.handovers, 5, "counters of the last session stay");
        assert_eq!(notices(Some(&new), &gone)[0].reason, "Detached");
    }
}
