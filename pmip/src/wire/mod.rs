//! The Mobility Header wire format.
