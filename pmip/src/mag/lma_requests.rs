//! What the LMA asks of the MAG: binding revocation (RFC 5846 §9.1) and update notifications
//! (RFC 7077 §6.1).

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::bul::BulState;
use super::{Mag, MagEvent, MagOutput, Withdrawal};
use crate::time::Instant;
use crate::types::LinkLayerAddress;
use crate::wire::{
    BindingRevocationIndication, BraStatus, MN_ID_SUBTYPE_NAI, Message, MobilityOption,
    NotificationReason, RevocationFlags, RevocationTrigger, UpaStatus, UpdateNotification,
    UpdateNotificationAck, UpnFlags, WallClock,
};

impl Mag {
    /// RFC 5846 §9.1: the LMA revokes one node's binding, or (G) all of them.
    pub(super) fn on_bri(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bri: &BindingRevocationIndication<'_>,
    ) {
        let global = bri.flags.contains(RevocationFlags::G);
        let trigger = bri.trigger;
        let status = if !bri.flags.contains(RevocationFlags::P) {
            BraStatus::ProxyBindingRevocationNotSupported
        } else if matches!(trigger, RevocationTrigger::Unknown(_)) {
            BraStatus::RevocationTriggerNotSupported
        } else if global
            != matches!(
                trigger,
                RevocationTrigger::PerPeerPolicy
                    | RevocationTrigger::RevokingMobilityNodeLocalPolicy
            )
        {
            BraStatus::RevocationFunctionNotSupported
        } else if global {
            match self.global_revocation_keys(bri) {
                Ok(keys) => {
                    for ll in keys {
                        self.revoked(now, ll, trigger);
                    }
                    BraStatus::Success
                }
                Err(status) => status,
            }
        } else {
            let id = bri.options.iter().find_map(|o| match o {
                MobilityOption::MobileNodeIdentifier { id, .. } => core::str::from_utf8(id).ok(),
                _ => None,
            });
            // "uses the mobility option(s) included ... to identify the mobile node binding":
            // the node's entries, those of the prefixes named if any are.
            let named: Vec<Ipv6Net> = bri
                .options
                .iter()
                .filter_map(|o| match o {
                    MobilityOption::HomeNetworkPrefix(p) => Some(p),
                    _ => None,
                })
                .collect();
            let keys = id.map(|id| {
                self.bul
                    .of_mn_id(id)
                    .filter(|e| named.is_empty() || e.prefixes.iter().any(|p| named.contains(p)))
                    .map(|e| e.link_layer)
                    .collect::<Vec<_>>()
            });
            let inter_mag = matches!(
                trigger,
                RevocationTrigger::InterMagHandoverSameAccessType
                    | RevocationTrigger::InterMagHandoverDifferentAccessType
                    | RevocationTrigger::InterMagHandoverUnknown
            );
            let v = bri.flags.contains(RevocationFlags::V);
            let v4 = bri.options.iter().find_map(|o| match o {
                MobilityOption::Ipv4HomeAddressRequest { address, .. } => Some(address),
                _ => None,
            });
            match keys {
                None => BraStatus::RevokedMobileNodesIdentityRequired,
                // §9.1, V: only the IPv4 home address the option names goes; the node keeps
                // its prefixes. The reading taken for a V without the option: §8.2's
                // "IPv4 Home Address Option Required".
                Some(_) if v && v4.is_none() => BraStatus::Ipv4HomeAddressOptionRequired,
                Some(keys) if v => {
                    let holding: Vec<LinkLayerAddress> = (keys.into_iter())
                        .filter(|ll| {
                            self.bul
                                .get(ll)
                                .is_some_and(|e| e.ipv4.map(|h| h.address) == v4)
                        })
                        .collect();
                    if holding.is_empty() {
                        BraStatus::BindingDoesNotExist
                    } else {
                        for ll in holding {
                            self.release_ipv4(now, ll);
                        }
                        BraStatus::Success
                    }
                }
                Some(keys) if keys.is_empty() => BraStatus::BindingDoesNotExist,
                // §9.1: the node moved to another MAG, says the LMA; if it is still attached
                // here, it did not.
                Some(keys) if inter_mag && keys.iter().any(|ll| self.is_attached(ll)) => {
                    BraStatus::RevocationFailedMnIsAttached
                }
                Some(keys) => {
                    for ll in keys {
                        self.revoked(now, ll, trigger);
                    }
                    BraStatus::Success
                }
            }
        };
        if let Some(t) = crate::acknowledge_bri(bri, status, dst, src) {
            self.push(MagOutput::Transmit(t));
        }
    }

    /// RFC 5846 §9.1, a global BRI: with "Per-Peer Policy" every binding; with "Revoking
    /// Mobility Node Local Policy" those of the realm of the MN-ID option (subtype 1, §8.1:
    /// "the content after the '@' character defines the realm", "@example.com" naming
    /// "a@example.com" but not "a@foo.example.com"). Without that option, or without a realm
    /// in it, the bindings cannot be identified: "Revoked Mobile Nodes Identity Required". A
    /// realm with no binding here: "Binding Does NOT Exist" (the reading taken: the option
    /// identified the bindings, there are none). Realms compare as DNS names do, without
    /// regard to case.
    fn global_revocation_keys(
        &self,
        bri: &BindingRevocationIndication<'_>,
    ) -> Result<Vec<LinkLayerAddress>, BraStatus> {
        if bri.trigger != RevocationTrigger::RevokingMobilityNodeLocalPolicy {
            return Ok(self.bul.keys());
        }
        let realm = bri
            .options
            .iter()
            .find_map(|o| match o {
                MobilityOption::MobileNodeIdentifier {
                    subtype: MN_ID_SUBTYPE_NAI,
                    id,
                } => core::str::from_utf8(id).ok(),
                _ => None,
            })
            .and_then(|id| id.rsplit_once('@'))
            .map(|(_, realm)| realm)
            .filter(|realm| !realm.is_empty())
            .ok_or(BraStatus::RevokedMobileNodesIdentityRequired)?;
        let keys: Vec<LinkLayerAddress> = self
            .bul
            .iter()
            .filter(|e| {
                e.mn_id
                    .rsplit_once('@')
                    .is_some_and(|(_, r)| r.eq_ignore_ascii_case(realm))
            })
            .map(|e| e.link_layer)
            .collect();
        if keys.is_empty() {
            return Err(BraStatus::BindingDoesNotExist);
        }
        Ok(keys)
    }

    /// RFC 5846 §9.1 "still directly attached", as this MAG knows it: the node's interface
    /// is on its link and registered or registering (not leaving in a fast handover, not
    /// de-registering, not yet arrived, not refused).
    fn is_attached(&self, ll: &LinkLayerAddress) -> bool {
        self.bul.get(ll).is_some_and(|e| {
            matches!(
                e.state,
                BulState::Registering | BulState::Bound | BulState::Refreshing
            ) && !self.fast.is_leaving(ll)
        })
    }

    /// RFC 5846 §9.1, V: "release all resources associated with the MN IPv4 proxy HoA
    /// binding" and keep the IPv6 binding; the node is served without IPv4 from now on, so
    /// its refreshes ask for none (RFC 5844 §3.2.3.1). An IPv4-only node has nothing left:
    /// its whole binding goes.
    fn release_ipv4(&mut self, now: Instant, ll: LinkLayerAddress) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        if e.prefixes.is_empty() {
            return self.revoked(now, ll, RevocationTrigger::UserInitiatedSessionTermination);
        }
        e.ipv4 = None;
        e.ipv4_service = false;
        e.ipv4_request = None;
        let keep: Vec<ipnet::IpNet> = e.home_nets();
        self.unserve(now, ll, &keep, Withdrawal::Silent);
        self.bul.touch(&ll);
    }

    fn revoked(&mut self, now: Instant, ll: LinkLayerAddress, trigger: RevocationTrigger) {
        let Some(e) = self.bul.get(&ll) else {
            return;
        };
        let mn_id = e.mn_id.clone();
        self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
        self.forget(ll);
        self.event(MagEvent::Revoked { mn_id, trigger });
    }

    /// RFC 7077 §6.1: FORCE-REREGISTRATION sends a refresh; other reasons are acknowledged as
    /// not applied.
    pub(super) fn on_upn(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        upn: &UpdateNotification<'_>,
    ) {
        let id = upn.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier { id, .. } => {
                core::str::from_utf8(id).ok().map(str::to_owned)
            }
            _ => None,
        });
        let bound: Vec<LinkLayerAddress> = id
            .as_deref()
            .map(|id| {
                self.bul
                    .of_mn_id(id)
                    .filter(|e| e.is_bound())
                    .map(|e| e.link_layer)
                    .collect()
            })
            .unwrap_or_default();
        let status = match upn.reason {
            NotificationReason::ForceReregistration if !bound.is_empty() => {
                for ll in bound {
                    self.start_refresh(now, wall, ll);
                }
                UpaStatus::Success
            }
            NotificationReason::VendorSpecificReason => UpaStatus::MissingVendorSpecificOption,
            _ => UpaStatus::FailedToUpdateSessionParameters,
        };
        if upn.flags.contains(UpnFlags::A) {
            let m = Message::UpdateNotificationAck(UpdateNotificationAck {
                sequence: upn.sequence,
                status,
                options: upn.options,
            });
            if let Some(t) = crate::emit(&m, dst, src) {
                self.push(MagOutput::Transmit(t));
            }
        } else if status != UpaStatus::Success {
            // RFC 7077 §6.1: without A, a notification that cannot be acted on is dropped
            // and the error logged.
            self.drop_message(
                src,
                format!(
                    "Update Notification {:?} (sequence {}) not acted on: {status:?}",
                    upn.reason, upn.sequence.0
                ),
            );
        }
    }
}
