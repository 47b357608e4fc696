//! Whether the daemon's own address can be used yet. An IPv6 address is tentative while
//! duplicate address detection runs (RFC 4862 §5.4, about a second after it was added); a
//! socket cannot be bound to it then (EADDRNOTAVAIL), and after a failed detection never. The
//! daemon waits a little for a tentative address and otherwise says what is wrong and what to
//! do, instead of a bare "Cannot assign requested address".

use std::net::Ipv6Addr;
use std::time::Duration;

use tracing::info;

/// How long a daemon waits for duplicate address detection on its address (RFC 4862 §5.4:
/// DupAddrDetectTransmits × RetransTimer, 1 × 1 s by default).
pub const DAD_WAIT: Duration = Duration::from_secs(5);

/// `/proc/net/if_inet6` flags (`IFA_F_*`, linux/if_addr.h).
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

/// An address of this network namespace as `/proc/net/if_inet6` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressState {
    /// No interface holds it.
    Missing,
    /// Duplicate address detection still runs on `interface`.
    Tentative { interface: String },
    /// Duplicate address detection found another node with the address on `interface`.
    DadFailed { interface: String },
    /// Ready: a socket can be bound to it.
    Usable { interface: String },
}

/// The state of `addr` in the text of `/proc/net/if_inet6` (one address a line: 32 hex
/// digits, interface index, prefix length, scope, flags, name).
pub fn state_in(if_inet6: &str, addr: Ipv6Addr) -> AddressState {
    let want = format!("{:032x}", u128::from(addr));
    for line in if_inet6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, _, _, flags, name] = f[..] else {
            continue;
        };
        if !hex.eq_ignore_ascii_case(&want) {
            continue;
        }
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        let interface = name.to_owned();
        return if flags & IFA_F_DADFAILED != 0 {
            AddressState::DadFailed { interface }
        } else if flags & IFA_F_TENTATIVE != 0 {
            AddressState::Tentative { interface }
        } else {
            AddressState::Usable { interface }
        };
    }
    AddressState::Missing
}

/// The state of `addr` in this process's network namespace; `Missing` when it cannot be read.
pub fn state(addr: Ipv6Addr) -> AddressState {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map_or(AddressState::Missing, |t| state_in(&t, addr))
}

/// What to tell the operator about an address that cannot be used, or `None`.
pub fn problem(addr: Ipv6Addr, s: &AddressState, waited: Duration) -> Option<String> {
    match s {
        AddressState::Tentative { interface } => Some(format!(
            "{addr} on {interface} is still tentative after {}s: duplicate address detection \
             (RFC 4862 §5.4) has not finished, so no socket can be bound to it. Start the daemon \
             once `ip -6 addr show dev {interface}` no longer shows it `tentative`, or add the \
             address with `nodad` (or set net.ipv6.conf.{interface}.accept_dad=0) where no other \
             node can hold it",
            waited.as_secs()
        )),
        AddressState::DadFailed { interface } => Some(format!(
            "{addr} on {interface} failed duplicate address detection (RFC 4862 §5.4): another \
             node on that link holds it (`ip -6 addr show dev {interface}` shows `dadfailed`). \
             Give this host an address of its own, then remove and add it again"
        )),
        AddressState::Missing | AddressState::Usable { .. } => None,
    }
}

/// Waits up to [`DAD_WAIT`] while `addr` is tentative; an error says why it cannot be used
/// and what to do. A missing address is left to the socket's own error.
pub async fn wait_until_usable(addr: Ipv6Addr) -> anyhow::Result<()> {
    wait_until_usable_for(addr, DAD_WAIT).await
}

/// [`wait_until_usable`] with another bound.
pub async fn wait_until_usable_for(addr: Ipv6Addr, bound: Duration) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let mut said = false;
    loop {
        let s = state(addr);
        match &s {
            AddressState::Tentative { interface } if start.elapsed() < bound => {
                if !said {
                    info!(
                        address = %addr,
                        %interface,
                        "the address is tentative (duplicate address detection runs): waiting"
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                return match problem(addr, &s, start.elapsed()) {
                    Some(p) => Err(anyhow::anyhow!(p)),
                    None => Ok(()),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From a namespace where `ip -6 addr add 2001:db8::1/64 dev eth0` ran a moment before
    // (tentative), fe80::1 on lo is permanent and 2001:db8::2 failed detection.
    const IF_INET6: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000001 02 40 00 40     eth0
20010db8000000000000000000000002 02 40 00 c8     eth0
20010db8000000000000000000000003 02 40 00 80     eth0
";

    #[test]
    fn reads_each_state_from_proc_net_if_inet6() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let eth0 = || "eth0".to_owned();
        assert_eq!(
            state_in(IF_INET6, a("2001:db8::1")),
            AddressState::Tentative { interface: eth0() }
        );
        assert_eq!(
            state_in(IF_INET6, a("2001:db8::2")),
            AddressState::DadFailed { interface: eth0() }
        );
        assert_eq!(
            state_in(IF_INET6, a("2001:db8::3")),
            AddressState::Usable { interface: eth0() }
        );
        assert_eq!(
            state_in(IF_INET6, Ipv6Addr::LOCALHOST),
            AddressState::Usable {
                interface: "lo".into()
            }
        );
        assert_eq!(state_in(IF_INET6, a("2001:db8::9")), AddressState::Missing);
        assert_eq!(
            state_in("garbage\n", a("2001:db8::9")),
            AddressState::Missing
        );
    }

    #[test]
    fn the_message_says_what_is_wrong_and_what_to_do() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let t = AddressState::Tentative {
            interface: "eth0".into(),
        };
        let m = problem(a, &t, Duration::from_secs(5)).unwrap();
        assert!(
            m.starts_with("2001:db8::1 on eth0 is still tentative after 5s"),
            "{m}"
        );
        assert!(m.contains("nodad"), "{m}");
        let f = AddressState::DadFailed {
            interface: "eth0".into(),
        };
        assert!(
            problem(a, &f, Duration::ZERO)
                .unwrap()
                .contains("another node")
        );
        assert_eq!(problem(a, &AddressState::Missing, Duration::ZERO), None);
    }
}
