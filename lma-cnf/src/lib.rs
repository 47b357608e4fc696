//! `pmip-lma`, the local mobility anchor daemon: a thin shell that moves Mobility Headers,
//! clock ticks, datapath changes, durable state and API calls in and out of
//! [`pmip::lma::Lma`].

pub mod api;
pub mod cli;
pub mod core;
pub mod hub;
pub mod metrics;
pub mod record;
pub mod service;
pub mod store;
