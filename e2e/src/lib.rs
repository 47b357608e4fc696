//! The namespace lab (`pmip-lab`) and the end-to-end tests' building blocks: a PMIPv6 domain
//! in network namespaces with the real daemons ([`lab`]), traffic made with sockets inside the
//! namespaces ([`traffic`]), captures of the lab's links read by Wireshark ([`capture`]), a
//! stock DHCPv4 client in a node ([`dhcp_client`]).

pub mod capture;
pub mod demo;
pub mod dhcp_client;
pub mod lab;
pub mod traffic;
