//! Typed field values: status codes, Handoff Indicator, Access Technology Type, flags, lifetime.
//! Every enum is open: a value it does not name is kept in its `Unknown` variant.

/// Defines an open `u8`/`u16` enum with its RFC names.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this implementation does not name, kept as received.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The value on the wire.
            pub fn value(self) -> $repr {
                self.into()
            }

            /// The name the RFC gives this value, or `None` when it is not one we know.
            pub fn rfc_name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($text), )*
                    $name::Unknown(_) => None,
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.rfc_name() {
                    Some(n) => write!(f, "{} ({})", n, self.value()),
                    None => write!(f, "unknown ({})", self.value()),
                }
            }
        }
    };
}

pub(crate) use open_enum;

open_enum! {
    /// Binding Acknowledgement status (RFC 6275 §6.1.8, RFC 5213 §8.9, RFC 5845 §6.4,
    /// RFC 5844 §3.3.5). Values below 128 mean accepted.
    pub enum Status: u8 {
        Accepted = 0 => "PBU_ACCEPTED",
        AcceptedPrefixDiscoveryNecessary = 1 => "ACCEPTED_BUT_PREFIX_DISCOVERY_NECESSARY",
        GreKeyOptionNotRequired = 2 => "GRE_KEY_OPTION_NOT_REQUIRED",
        GreTunnelingButTlvHeaderNotSupported = 3 => "GRE_TUNNELING_BUT_TLV_HEADER_NOT_SUPPORTED",
        ReasonUnspecified = 128 => "REASON_UNSPECIFIED",
        AdministrativelyProhibited = 129 => "ADMINISTRATIVELY_PROHIBITED",
        InsufficientResources = 130 => "INSUFFICIENT_RESOURCES",
        HomeRegistrationNotSupported = 131 => "HOME_REGISTRATION_NOT_SUPPORTED",
        NotHomeSubnet = 132 => "NOT_HOME_SUBNET",
        NotHomeAgentForThisMobileNode = 133 => "NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE",
        DuplicateAddressDetectionFailed = 134 => "DUPLICATE_ADDRESS_DETECTION_FAILED",
        SequenceNumberOutOfWindow = 135 => "SEQUENCE_NUMBER_OUT_OF_WINDOW",
        ExpiredHomeNonceIndex = 136 => "EXPIRED_HOME_NONCE_INDEX",
        ExpiredCareOfNonceIndex = 137 => "EXPIRED_CARE_OF_NONCE_INDEX",
        ExpiredNonces = 138 => "EXPIRED_NONCES",
        RegistrationTypeChangeDisallowed = 139 => "REGISTRATION_TYPE_CHANGE_DISALLOWED",
        ProxyRegNotEnabled = 152 => "PROXY_REG_NOT_ENABLED",
        NotLmaForThisMobileNode = 153 => "NOT_LMA_FOR_THIS_MOBILE_NODE",
        MagNotAuthorizedForProxyReg = 154 => "MAG_NOT_AUTHORIZED_FOR_PROXY_REG",
        NotAuthorizedForHomeNetworkPrefix = 155 => "NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX",
        TimestampMismatch = 156 => "TIMESTAMP_MISMATCH",
        TimestampLowerThanPrevAccepted = 157 => "TIMESTAMP_LOWER_THAN_PREV_ACCEPTED",
        MissingHomeNetworkPrefixOption = 158 => "MISSING_HOME_NETWORK_PREFIX_OPTION",
        BcePbuPrefixSetDoNotMatch = 159 => "BCE_PBU_PREFIX_SET_DO_NOT_MATCH",
        MissingMnIdentifierOption = 160 => "MISSING_MN_IDENTIFIER_OPTION",
        MissingHandoffIndicatorOption = 161 => "MISSING_HANDOFF_INDICATOR_OPTION",
        MissingAccessTechTypeOption = 162 => "MISSING_ACCESS_TECH_TYPE_OPTION",
        GreKeyOptionRequired = 163 => "GRE_KEY_OPTION_REQUIRED",
        NotAuthorizedForIpv4MobilityService = 170 => "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE",
        NotAuthorizedForIpv4HomeAddress = 171 => "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS",
        NotAuthorizedForIpv6MobilityService = 172 => "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE",
        MultipleIpv4HomeAddressAssignmentNotSupported = 173 => "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED",
        InvalidCareOfAddress = 174 => "INVALID_CARE_OF_ADDRESS",
    }
}

impl Status {
    /// Values below 128 indicate acceptance (RFC 6275 §6.1.8).
    pub fn is_accepted(self) -> bool {
        self.value() < 128
    }
}

open_enum! {
    /// Handoff Indicator option values (RFC 5213 §8.4; 6 from RFC 7864 via IANA).
    pub enum HandoffIndicator: u8 {
        Reserved = 0 => "Reserved",
        AttachmentOverNewInterface = 1 => "Attachment over a new interface",
        HandoffBetweenInterfaces = 2 => "Handoff between two different interfaces of the mobile node",
        HandoffBetweenMags = 3 => "Handoff between mobile access gateways for the same interface",
        HandoffStateUnknown = 4 => "Handoff state unknown",
        HandoffStateNotChanged = 5 => "Handoff state not changed (Re-registration)",
        AttachmentOverNewInterfaceSharingPrefixes = 6 => "Attachment over a new interface sharing prefixes",
    }
}

open_enum! {
    /// Access Technology Type option values (RFC 5213 §8.5; 6.. from IANA).
    pub enum AccessTechnologyType: u8 {
        Reserved = 0 => "Reserved",
        Virtual = 1 => "Virtual",
        Ppp = 2 => "PPP",
        Ieee8023 = 3 => "IEEE 802.3",
        Ieee80211 = 4 => "IEEE 802.11a/b/g",
        Ieee80216e = 5 => "IEEE 802.16e",
        ThreeGppGeran = 6 => "3GPP GERAN",
        ThreeGppUtran = 7 => "3GPP UTRAN",
        ThreeGppEutran = 8 => "3GPP E-UTRAN",
        ThreeGpp2Ehrpd = 9 => "3GPP2 eHRPD",
        ThreeGpp2Hrpd = 10 => "3GPP2 HRPD",
        ThreeGpp21xRtt = 11 => "3GPP2 1xRTT",
        ThreeGpp2Umb = 12 => "3GPP2 UMB",
        ThreeGppNbIot = 13 => "3GPP NB-IoT",
    }
}

open_enum! {
    /// Binding Error status (RFC 6275 §6.1.9).
    pub enum BindingErrorStatus: u8 {
        UnknownBindingForHomeAddressDestinationOption = 1 => "Unknown binding for Home Address destination option",
        UnrecognizedMhType = 2 => "Unrecognized MH Type value",
    }
}

open_enum! {
    /// Binding Revocation Indication trigger (RFC 5846 §5.1).
    pub enum RevocationTrigger: u8 {
        Unspecified = 0 => "Unspecified",
        AdministrativeReason = 1 => "Administrative Reason",
        InterMagHandoverSameAccessType = 2 => "Inter-MAG Handover - same Access Type",
        InterMagHandoverDifferentAccessType = 3 => "Inter-MAG Handover - different Access Type",
        InterMagHandoverUnknown = 4 => "Inter-MAG Handover - Unknown",
        UserInitiatedSessionTermination = 5 => "User-Initiated Session(s) Termination",
        AccessNetworkSessionTermination = 6 => "Access Network Session(s) Termination",
        PossibleOutOfSyncBceState = 7 => "Possible Out-of-Sync BCE State",
        PerPeerPolicy = 128 => "Per-Peer Policy",
        RevokingMobilityNodeLocalPolicy = 129 => "Revoking Mobility Node Local Policy",
    }
}

open_enum! {
    /// Binding Revocation Acknowledgement status (RFC 5846 §5.2). Wireshark 4.0 shows a
    /// different table (0..6); the RFC's values are the ones used here.
    pub enum BraStatus: u8 {
        Success = 0 => "success",
        PartialSuccess = 1 => "partial success",
        BindingDoesNotExist = 128 => "Binding Does NOT Exist",
        Ipv4HomeAddressOptionRequired = 129 => "IPv4 Home Address Option Required",
        GlobalRevocationNotAuthorized = 130 => "Global Revocation NOT Authorized",
        RevokedMobileNodesIdentityRequired = 131 => "Revoked Mobile Nodes Identity Required",
        RevocationFailedMnIsAttached = 132 => "Revocation Failed - MN is Attached",
        RevocationTriggerNotSupported = 133 => "Revocation Trigger NOT Supported",
        RevocationFunctionNotSupported = 134 => "Revocation Function NOT Supported",
        ProxyBindingRevocationNotSupported = 135 => "Proxy Binding Revocation NOT Supported",
    }
}

open_enum! {
    /// HI Code with P=1 (RFC 5949 §6.1.1).
    pub enum HiCode: u8 {
        Default = 0 => "default",
        CompletionOfForwarding = 2 => "Indicate the completion of forwarding",
        AllAvailableContextTransferred = 3 => "All available context transferred",
    }
}

open_enum! {
    /// HAck Code with P=1 (RFC 5949 §6.1.2).
    pub enum HackCode: u8 {
        HandoverAccepted = 0 => "Handover Accepted or Successful",
        ContextTransferAccepted = 5 => "Context Transfer Accepted or Successful",
        AllAvailableContextTransferred = 6 => "All available Context Transferred",
        NotAcceptedUnspecified = 128 => "Handover Not Accepted, reason unspecified",
        AdministrativelyProhibited = 129 => "Administratively prohibited",
        InsufficientResources = 130 => "Insufficient resources",
        RequestedContextNotAvailable = 131 => "Requested Context Not Available",
        ForwardingNotAvailable = 132 => "Forwarding Not Available",
    }
}

open_enum! {
    /// Update Notification reason (RFC 7077 §4.1).
    pub enum NotificationReason: u16 {
        ForceReregistration = 1 => "FORCE-REREGISTRATION",
        UpdateSessionParameters = 2 => "UPDATE-SESSION-PARAMETERS",
        VendorSpecificReason = 3 => "VENDOR-SPECIFIC-REASON",
        AniParamsRequested = 4 => "ANI-PARAMS-REQUESTED",
    }
}

open_enum! {
    /// Update Notification Acknowledgement status (RFC 7077 §4.2).
    pub enum UpaStatus: u8 {
        Success = 0 => "SUCCESS",
        FailedToUpdateSessionParameters = 128 => "FAILED-TO-UPDATE-SESSION-PARAMETERS",
        MissingVendorSpecificOption = 129 => "MISSING-VENDOR-SPECIFIC-OPTION",
    }
}

open_enum! {
    /// IPv4 Home Address Reply status (RFC 5844 §3.3.2). Wireshark 4.0 shows these with the
    /// Access Technology Type names; the RFC's are used here.
    pub enum Ipv4HoaStatus: u8 {
        Success = 0 => "Success",
        FailureReasonUnspecified = 128 => "Failure, reason unspecified",
        AdministrativelyProhibited = 129 => "Administratively prohibited",
        IncorrectIpv4HomeAddress = 130 => "Incorrect IPv4 home address",
        InvalidIpv4Address = 131 => "Invalid IPv4 address",
        DynamicIpv4HomeAddressAssignmentNotAvailable = 132 => "Dynamic IPv4 home address assignment not available",
    }
}

/// Subtype of the Mobile Node Identifier option carrying an NAI (RFC 4283 §3.1).
pub const MN_ID_SUBTYPE_NAI: u8 = 1;

/// Defines a flags newtype over an integer with named bit constants.
macro_rules! flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident : $repr:ty {
            $( $(#[$fmeta:meta])* const $flag:ident = $mask:literal, $letter:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$fmeta])* pub const $flag: $name = $name($mask); )*
            /// Every flag this type names, with its letter.
            pub const NAMED: &'static [($name, &'static str)] = &[$( ($name::$flag, $letter), )*];

            pub const fn empty() -> Self {
                $name(0)
            }
            pub const fn bits(self) -> $repr {
                self.0
            }
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
            pub const fn union(self, other: $name) -> Self {
                $name(self.0 | other.0)
            }
            pub fn set(&mut self, other: $name, on: bool) {
                if on {
                    self.0 |= other.0;
                } else {
                    self.0 &= !other.0;
                }
            }
            /// Letters of the flags that are set, e.g. `"A|P"`.
            pub fn letters(self) -> String {
                let mut out = String::new();
                for (f, l) in Self::NAMED {
                    if self.contains(*f) {
                        if !out.is_empty() {
                            out.push('|');
                        }
                        out.push_str(l);
                    }
                }
                out
            }
        }

        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                self.union(rhs)
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, "{}({:#x} {})", stringify!($name), self.0, self.letters())
            }
        }
    };
}

pub(crate) use flags;

flags! {
    /// Binding Update flags word (RFC 6275 §6.1.7, RFC 5213 §8.1, RFC 5845 §6.2, IANA).
    pub struct BuFlags: u16 {
        /// Acknowledge: MUST be 1 in a PBU.
        const A = 0x8000, "A";
        /// Home Registration.
        const H = 0x4000, "H";
        /// Link-local address compatibility.
        const L = 0x2000, "L";
        /// Key management mobility capability.
        const K = 0x1000, "K";
        /// MAP registration (RFC 4140).
        const M = 0x0800, "M";
        /// Mobile router (RFC 3963).
        const R = 0x0400, "R";
        /// Proxy registration (RFC 5213 §8.1): MUST be 1 in a PBU.
        const P = 0x0200, "P";
        /// Force UDP encapsulation (RFC 5555).
        const F = 0x0100, "F";
        /// TLV-header format (RFC 5845 §6.2).
        const T = 0x0080, "T";
        /// Bulk binding (RFC 6602).
        const B = 0x0040, "B";
    }
}

flags! {
    /// Binding Acknowledgement flags octet (RFC 6275 §6.1.8, RFC 5213 §8.2, RFC 5845 §6.3).
    pub struct BaFlags: u8 {
        const K = 0x80, "K";
        const R = 0x40, "R";
        /// Proxy registration (RFC 5213 §8.2): 0x20, not 0x40 (which is R).
        const P = 0x20, "P";
        const T = 0x10, "T";
        const B = 0x08, "B";
    }
}

/// A binding lifetime in the wire's 4-second units (RFC 6275 §6.1.7); converted once, here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Lifetime(pub u16);

impl Lifetime {
    pub const ZERO: Lifetime = Lifetime(0);

    /// The lifetime covering at most `secs` seconds (rounded down to 4 s units, saturating).
    pub fn from_secs(secs: u32) -> Self {
        Lifetime(u16::try_from(secs / 4).unwrap_or(u16::MAX))
    }

    pub fn as_secs(self) -> u32 {
        u32::from(self.0) * 4
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_rfc_values() {
        // RFC 5213 §8.9; the off-by-one of OMNeT++ INET (CONSTANTS.md §9) must not recur.
        assert_eq!(Status::MissingHomeNetworkPrefixOption.value(), 158);
        assert_eq!(Status::MissingMnIdentifierOption.value(), 160);
        assert_eq!(Status::MissingAccessTechTypeOption.value(), 162);
        assert_eq!(Status::GreKeyOptionRequired.value(), 163);
        assert_eq!(Status::from(154), Status::MagNotAuthorizedForProxyReg);
        assert_eq!(Status::from(200), Status::Unknown(200));
        assert!(Status::GreKeyOptionNotRequired.is_accepted());
        assert!(!Status::ReasonUnspecified.is_accepted());
        assert_eq!(
            Status::TimestampMismatch.to_string(),
            "TIMESTAMP_MISMATCH (156)"
        );
    }

    #[test]
    fn every_named_value_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(Status::from(v).value(), v);
            assert_eq!(HandoffIndicator::from(v).value(), v);
            assert_eq!(AccessTechnologyType::from(v).value(), v);
            assert_eq!(BraStatus::from(v).value(), v);
            assert_eq!(HackCode::from(v).value(), v);
            assert_eq!(RevocationTrigger::from(v).value(), v);
        }
        assert_eq!(
            NotificationReason::from(4u16),
            NotificationReason::AniParamsRequested
        );
    }

    #[test]
    fn proxy_flags_are_at_the_rfc_positions() {
        assert_eq!(BuFlags::P.bits(), 0x0200);
        assert_eq!(BaFlags::P.bits(), 0x20);
        assert_eq!((BuFlags::A | BuFlags::P).letters(), "A|P");
    }

    #[test]
    fn lifetime_units_are_four_seconds() {
        assert_eq!(Lifetime::from_secs(3600).0, 900);
        assert_eq!(Lifetime(900).as_secs(), 3600);
        assert_eq!(Lifetime::from_secs(u32::MAX).0, u16::MAX);
    }
}
