//! The pmip Kubernetes operator. See `README.md` beside this crate for the contract with the
//! daemons.

pub mod crd;

pub use crd::crd_yaml;
