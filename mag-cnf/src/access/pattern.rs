//! Which interfaces are access links: the `access_interfaces` of the MAG configuration, exact
//! names or patterns in which `*` stands for any run of characters (`acc*`, `*-mn`, `wl*p*`).

/// A set of interface names and `*` patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePatterns {
    patterns: Vec<String>,
}

impl InterfacePatterns {
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns.to_vec(),
        }
    }

    /// Whether `name` is an access link. Never one of the datapath's own links: the
    /// userspace tunnel's veth pairs are Ethernet links too, and a pattern such as `pmip*` or
    /// `*` would otherwise take them for access links (and give them the MAGs' shared
    /// link-layer address).
    pub fn matches(&self, name: &str) -> bool {
        !datapath::tun::is_pair_name(datapath::DEFAULT_TUNNEL_NAME_PREFIX, name)
            && self
                .patterns
                .iter()
                .any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

/// `*` matches any run of bytes (also none); everything else matches itself. Iterative with
/// one backtrack point, so linear in practice (interface names are at most 15 bytes anyway).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Where the last `*` was, and the name position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if Some(c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more byte and retry from there.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> InterfacePatterns {
        InterfacePatterns::new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_names_match_only_themselves() {
        let s = set(&["eth1"]);
        assert!(s.matches("eth1"));
        assert!(!s.matches("eth10"));
        assert!(!s.matches("eth"));
        assert!(!s.matches(""));
    }

    #[test]
    fn the_datapaths_own_links_are_never_access_links() {
        for patterns in [&["pmip*"][..], &["*"], &["pmip6t0", "pmip6t0io", "pmipio0"]] {
            let s = set(patterns);
            for own in ["pmip6t0", "pmip6t0io", "pmip6tin", "pmip6tinio", "pmipio0"] {
                assert!(!s.matches(own), "{patterns:?} {own}");
            }
        }
        assert!(set(&["pmip*"]).matches("pmipacc1"));
        assert!(set(&["*"]).matches("eth1"));
    }

    #[test]
    fn stars_match_any_run() {
        let s = set(&["acc*"]);
        assert!(s.matches("acc"));
        assert!(s.matches("acc0"));
        assert!(s.matches("acc-mn-17"));
        assert!(!s.matches("xacc0"));
        assert!(!s.matches("ac"));

        let s = set(&["*-mn"]);
        assert!(s.matches("a-mn"));
        assert!(s.matches("-mn"));
        assert!(!s.matches("a-mn0"));

        let s = set(&["wl*p*s*"]);
        assert!(s.matches("wlp2s0"));
        assert!(s.matches("wlxp0s"));
        assert!(!s.matches("wlx0"));

        assert!(set(&["*"]).matches("anything"));
        assert!(set(&["a**b"]).matches("ab"));
        assert!(set(&["a*b*c"]).matches("abbbcbc"));
        assert!(!set(&["a*b*c"]).matches("abbbcb"));
    }

    #[test]
    fn any_pattern_of_the_set_counts() {
        let s = set(&["eth1", "acc*"]);
        assert!(s.matches("eth1"));
        assert!(s.matches("acc3"));
        assert!(!s.matches("eth0"));
        assert!(!set(&[]).matches("eth0"));
    }
}
