//! `pmip-mag` built without the `lab` cargo feature: it makes no emulated mobile node (no
//! network namespace, no veth pair, no sysctl). [`attach`] and [`detach`] say so.

use pmip::types::LinkLayerAddress;

use super::{Error, Result};

/// An emulated node; never made without the `lab` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    pub access_ifname: String,
    never: core::convert::Infallible,
}

/// Refuses: emulated nodes need the `lab` feature.
pub async fn attach(_name: &str, _mac: LinkLayerAddress, _access_ifname: &str) -> Result<LabNode> {
    Err(Error::LabDisabled)
}

/// Refuses: emulated nodes need the `lab` feature.
pub async fn detach(_name: &str) -> Result<()> {
    Err(Error::LabDisabled)
}

impl LabNode {
    /// Unreachable: no value of this type exists.
    pub fn impossible(&self) -> ! {
        match self.never {}
    }
}
