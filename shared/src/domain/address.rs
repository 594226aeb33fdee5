//! IP address classification for outbound connections (security policy A 8.2) and the
//! operator outbound allowlist (security policy, "Operator exceptions").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// An address that outbound connections must not reach.
///
/// `rule` names the rule that matched (for example "loopback address"). It never contains
/// the address itself, so it is safe to show to users and to write to logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("address not allowed: {rule}")]
pub struct BlockedAddress {
    /// Human-readable name of the rule that matched.
    pub rule: &'static str,
}

impl BlockedAddress {
    /// True for the verdict on an empty DNS answer, which callers report as a resolution
    /// failure rather than as a blocked address.
    pub fn is_no_address(&self) -> bool {
        self.rule == NO_ADDRESS
    }
}

const UNSPECIFIED: &str = "unspecified address";
const LOOPBACK: &str = "loopback address";
const PRIVATE: &str = "private network address";
const LINK_LOCAL: &str = "link-local address";
const CGNAT: &str = "carrier-grade NAT address";
const DOCUMENTATION: &str = "documentation address";
const MULTICAST: &str = "multicast address";
const RESERVED: &str = "reserved address";
const BROADCAST: &str = "broadcast address";
const BENCHMARKING: &str = "benchmarking address";
const SIX_TO_FOUR: &str = "6to4";
const TEREDO: &str = "Teredo";
const OUTSIDE_GLOBAL_UNICAST: &str = "IPv6 address outside global unicast";
const NO_ADDRESS: &str = "no address";

/// Blocked IPv4 ranges as (network, prefix length, rule). Checked in order, so the
/// single-address broadcast entry must precede the 240/4 entry that contains it.
const V4_BLOCKED: &[(u32, u8, &str)] = &[
    (v4(255, 255, 255, 255), 32, BROADCAST),
    (v4(0, 0, 0, 0), 8, UNSPECIFIED),
    (v4(10, 0, 0, 0), 8, PRIVATE),
    (v4(100, 64, 0, 0), 10, CGNAT),
    (v4(127, 0, 0, 0), 8, LOOPBACK),
    (v4(169, 254, 0, 0), 16, LINK_LOCAL),
    (v4(172, 16, 0, 0), 12, PRIVATE),
    (v4(192, 0, 0, 0), 24, RESERVED),
    (v4(192, 0, 2, 0), 24, DOCUMENTATION),
    (v4(192, 88, 99, 0), 24, SIX_TO_FOUR),
    (v4(192, 168, 0, 0), 16, PRIVATE),
    (v4(198, 18, 0, 0), 15, BENCHMARKING),
    (v4(198, 51, 100, 0), 24, DOCUMENTATION),
    (v4(203, 0, 113, 0), 24, DOCUMENTATION),
    (v4(224, 0, 0, 0), 4, MULTICAST),
    (v4(240, 0, 0, 0), 4, RESERVED),
];

/// IPv6 ranges given a specific rule name. Everything outside 2000::/3 is blocked anyway;
/// the entries outside it only give a more helpful name than the generic rule.
const V6_BLOCKED: &[(u128, u8, &str)] = &[
    (0, 128, UNSPECIFIED),
    (1, 128, LOOPBACK),
    (0xfc00 << 112, 7, PRIVATE),
    (0xfe80 << 112, 10, LINK_LOCAL),
    (0xff00 << 112, 8, MULTICAST),
    // Inside 2000::/3 but not usable as a destination.
    (0x2001_0db8 << 96, 32, DOCUMENTATION),
    (0x2001_0000 << 96, 32, TEREDO),
    (0x2002 << 112, 16, SIX_TO_FOUR),
    (0x3fff << 112, 20, DOCUMENTATION),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

fn in_v4(ip: u32, net: u32, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    ip & mask == net & mask
}

fn in_v6(ip: u128, net: u128, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    ip & mask == net & mask
}

/// Checks one address against the blocked ranges of security policy A 8.2.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are unwrapped with
/// [`IpAddr::to_canonical`] first and judged as IPv4. Every other IPv6 address outside
/// 2000::/3 is blocked, including the deprecated IPv4-compatible form `::a.b.c.d`, NAT64
/// prefixes and unique-local addresses, as are Teredo, 6to4 and the documentation ranges.
pub fn classify(ip: IpAddr) -> Result<(), BlockedAddress> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Result<(), BlockedAddress> {
    let bits = u32::from(ip);
    match V4_BLOCKED.iter().find(|(net, len, _)| in_v4(bits, *net, *len)) {
        Some((_, _, rule)) => Err(BlockedAddress { rule }),
        None => Ok(()),
    }
}

fn classify_v6(ip: Ipv6Addr) -> Result<(), BlockedAddress> {
    let bits = u128::from(ip);
    if let Some((_, _, rule)) = V6_BLOCKED.iter().find(|(net, len, _)| in_v6(bits, *net, *len)) {
        return Err(BlockedAddress { rule });
    }
    // Global unicast is 2000::/3; nothing outside it is a public destination.
    if !in_v6(bits, 0x2000 << 112, 3) {
        return Err(BlockedAddress { rule: OUTSIDE_GLOBAL_UNICAST });
    }
    Ok(())
}

/// Checks DNS syntax shared by instance host names and allowlist names: an already
/// lower-cased name of dot-separated labels of `[a-z0-9-]`, 1-63 bytes each, not starting
/// or ending with `-`, at most 253 bytes in all, no empty label (so no trailing dot), and a
/// last label that is neither all digits nor `0x...` (a WHATWG URL parser would read such
/// a name as an IPv4 number). The label count is left to the caller.
pub(super) fn is_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !labels_ok {
        return false;
    }
    let last = name.rsplit('.').next().unwrap_or_default();
    !(last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x"))
}

/// An allowlist entry that is neither a CIDR range, an IP address nor a host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid outbound allowlist entry {entry:?}: expected a CIDR range, an IP address or a DNS host name")]
pub struct AllowlistError {
    /// The offending entry, trimmed.
    pub entry: String,
}

/// Operator allowlist: CIDR ranges and exact host names exempt from the private-address
/// and name-denylist rules. Empty by default, which exempts nothing.
///
/// It never relaxes any other rule (https only, ports, paths, characters, TLS).
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl Allowlist {
    /// Parses a comma-separated list such as `"127.0.0.1/32, ::1/128, localhost"`.
    ///
    /// Entries are trimmed and empty entries ignored. Each entry is a CIDR range (IPv4 or
    /// IPv6), a bare IP address (taken as /32 or /128) or a DNS host name matched exactly
    /// and case-insensitively; a single-label name such as `localhost` is allowed. Ranges
    /// inside `::ffff:0:0/96` are stored as the IPv4 range they map, because addresses are
    /// canonicalised before they are compared.
    pub fn parse(spec: &str) -> Result<Allowlist, AllowlistError> {
        let mut list = Allowlist::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || AllowlistError { entry: entry.to_owned() };
            if let Ok(net) = entry.parse::<IpNet>() {
                list.push_net(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.push_net(IpNet::from(ip));
            } else {
                let name = entry.to_ascii_lowercase();
                if !is_dns_name(&name) {
                    return Err(bad());
                }
                if !list.hosts.contains(&name) {
                    list.hosts.push(name);
                }
            }
        }
        Ok(list)
    }

    fn push_net(&mut self, net: IpNet) {
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(mapped) => Ipv4Net::new(mapped, v6.prefix_len() - 96).map(IpNet::V4).unwrap_or(net),
                None => net,
            },
            other => other,
        }
        .trunc();
        if !self.nets.contains(&net) {
            self.nets.push(net);
        }
    }

    /// True when `ip` (after unwrapping IPv4-mapped IPv6) lies in an allowlisted range.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// True when `host` equals an allowlisted name, ignoring ASCII case.
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// True when the allowlist names nothing.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    /// The allowlisted ranges, normalised (host bits cleared, mapped ranges as IPv4).
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// The allowlisted host names, lower-cased.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

/// Vets the answers of one DNS resolution (security policy A 8.2).
///
/// No answer at all is an error (rule "no address"). Each answer is canonicalised; if any
/// of them is blocked by [`classify`] the whole answer set is refused, unless the host name
/// itself is allowlisted (`host_allowlisted`) or that address lies in an allowlisted range.
/// On success returns the canonical addresses without duplicates, in answer order: the only
/// addresses later connections may use.
pub fn check_resolved(
    host_allowlisted: bool,
    answers: &[IpAddr],
    allowlist: &Allowlist,
) -> Result<Vec<IpAddr>, BlockedAddress> {
    if answers.is_empty() {
        return Err(BlockedAddress { rule: NO_ADDRESS });
    }
    let mut validated: Vec<IpAddr> = Vec::with_capacity(answers.len());
    for answer in answers {
        let ip = answer.to_canonical();
        match classify(ip) {
            Err(blocked) if !host_allowlisted && !allowlist.allows_ip(ip) => return Err(blocked),
            _ => {}
        }
        if !validated.contains(&ip) {
            validated.push(ip);
        }
    }
    Ok(validated)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("test address {s} must parse"))
    }

    /// (address, expected rule or None for public).
    const CLASSIFY_V4: &[(&str, Option<&str>)] = &[
        // 0.0.0.0/8
        ("0.0.0.0", Some(UNSPECIFIED)),
        ("0.0.0.1", Some(UNSPECIFIED)),
        ("0.255.255.255", Some(UNSPECIFIED)),
        ("1.0.0.0", None),
        // 10/8
        ("9.255.255.255", None),
        ("10.0.0.0", Some(PRIVATE)),
        ("10.255.255.255", Some(PRIVATE)),
        ("11.0.0.0", None),
        // 100.64/10
        ("100.63.255.255", None),
        ("100.64.0.0", Some(CGNAT)),
        ("100.127.255.255", Some(CGNAT)),
        ("100.128.0.0", None),
        // 127/8
        ("126.255.255.255", None),
        ("127.0.0.0", Some(LOOPBACK)),
        ("127.0.0.1", Some(LOOPBACK)),
        ("127.255.255.255", Some(LOOPBACK)),
        ("128.0.0.0", None),
        // 169.254/16
        ("169.253.255.255", None),
        ("169.254.0.0", Some(LINK_LOCAL)),
        ("169.254.169.254", Some(LINK_LOCAL)),
        ("169.254.255.255", Some(LINK_LOCAL)),
        ("169.255.0.0", None),
        // 172.16/12
        ("172.15.255.255", None),
        ("172.16.0.0", Some(PRIVATE)),
        ("172.31.255.255", Some(PRIVATE)),
        ("172.32.0.0", None),
        // 192.0.0.0/24
        ("191.255.255.255", None),
        ("192.0.0.0", Some(RESERVED)),
        ("192.0.0.255", Some(RESERVED)),
        ("192.0.1.0", None),
        // 192.0.2.0/24
        ("192.0.1.255", None),
        ("192.0.2.0", Some(DOCUMENTATION)),
        ("192.0.2.255", Some(DOCUMENTATION)),
        ("192.0.3.0", None),
        // 192.88.99.0/24
        ("192.88.98.255", None),
        ("192.88.99.0", Some(SIX_TO_FOUR)),
        ("192.88.99.255", Some(SIX_TO_FOUR)),
        ("192.88.100.0", None),
        // 192.168/16
        ("192.167.255.255", None),
        ("192.168.0.0", Some(PRIVATE)),
        ("192.168.255.255", Some(PRIVATE)),
        ("192.169.0.0", None),
        // 198.18/15
        ("198.17.255.255", None),
        ("198.18.0.0", Some(BENCHMARKING)),
        ("198.19.255.255", Some(BENCHMARKING)),
        ("198.20.0.0", None),
        // 198.51.100.0/24
        ("198.51.99.255", None),
        ("198.51.100.0", Some(DOCUMENTATION)),
        ("198.51.100.255", Some(DOCUMENTATION)),
        ("198.51.101.0", None),
        // 203.0.113.0/24
        ("203.0.112.255", None),
        ("203.0.113.0", Some(DOCUMENTATION)),
        ("203.0.113.255", Some(DOCUMENTATION)),
        ("203.0.114.0", None),
        // 224/4 and 240/4
        ("223.255.255.255", None),
        ("224.0.0.0", Some(MULTICAST)),
        ("239.255.255.255", Some(MULTICAST)),
        ("240.0.0.0", Some(RESERVED)),
        ("255.255.255.254", Some(RESERVED)),
        ("255.255.255.255", Some(BROADCAST)),
        // Ordinary public addresses.
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("34.120.0.1", None),
        ("100.0.0.1", None),
        ("172.217.0.1", None),
    ];

    #[test]
    fn classify_ipv4_ranges_at_their_edges() {
        for (addr, expected) in CLASSIFY_V4 {
            let parsed: Ipv4Addr = addr.parse().unwrap();
            let got = classify(IpAddr::V4(parsed)).err().map(|b| b.rule);
            assert_eq!(got, *expected, "{addr}");
            // The same address wrapped as IPv4-mapped IPv6 gets the same verdict.
            let mapped = IpAddr::V6(parsed.to_ipv6_mapped());
            assert_eq!(classify(mapped).err().map(|b| b.rule), *expected, "mapped {addr}");
        }
    }

    const CLASSIFY_V6: &[(&str, Option<&str>)] = &[
        ("::", Some(UNSPECIFIED)),
        ("::1", Some(LOOPBACK)),
        ("::2", Some(OUTSIDE_GLOBAL_UNICAST)),
        // IPv4-compatible (deprecated) form is not unwrapped and stays blocked.
        ("::8.8.8.8", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("::127.0.0.1", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("::ffff:ffff", Some(OUTSIDE_GLOBAL_UNICAST)),
        // IPv4-mapped is unwrapped and judged as IPv4.
        ("::ffff:127.0.0.1", Some(LOOPBACK)),
        ("::ffff:7f00:1", Some(LOOPBACK)),
        ("::ffff:0:0", Some(UNSPECIFIED)),
        ("::ffff:169.254.169.254", Some(LINK_LOCAL)),
        ("::ffff:10.0.0.1", Some(PRIVATE)),
        ("::ffff:8.8.8.8", None),
        ("::ffff:255.255.255.255", Some(BROADCAST)),
        // SIIT ::ffff:0:0:0/96 is not a mapped address.
        ("::ffff:0:808:808", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("::ffff:0:7f00:1", Some(OUTSIDE_GLOBAL_UNICAST)),
        // NAT64 prefixes.
        ("64:ff9b::808:808", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("64:ff9b::7f00:1", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("64:ff9b:1::1", Some(OUTSIDE_GLOBAL_UNICAST)),
        // Discard-only.
        ("100::", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("100::ffff:ffff:ffff:ffff", Some(OUTSIDE_GLOBAL_UNICAST)),
        // Unique local, including the EC2 IMDS IPv6 address.
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("fc00::", Some(PRIVATE)),
        ("fd00:ec2::254", Some(PRIVATE)),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(PRIVATE)),
        // Link-local and site-local.
        ("fe80::", Some(LINK_LOCAL)),
        ("fe80::1", Some(LINK_LOCAL)),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(LINK_LOCAL)),
        ("fec0::", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(OUTSIDE_GLOBAL_UNICAST)),
        // Multicast.
        ("ff00::", Some(MULTICAST)),
        ("ff02::1", Some(MULTICAST)),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(MULTICAST)),
        // 2000::/3 edges.
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(OUTSIDE_GLOBAL_UNICAST)),
        ("2000::", None),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some(OUTSIDE_GLOBAL_UNICAST)),
        // Teredo 2001::/32.
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001::", Some(TEREDO)),
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some(TEREDO)),
        ("2001:1::", None),
        // Documentation 2001:db8::/32.
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8::", Some(DOCUMENTATION)),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some(DOCUMENTATION)),
        ("2001:db9::", None),
        // 6to4 2002::/16.
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2002::", Some(SIX_TO_FOUR)),
        ("2002:7f00:1::1", Some(SIX_TO_FOUR)),
        ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(SIX_TO_FOUR)),
        ("2003::", None),
        // Documentation 3fff::/20.
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("3fff::", Some(DOCUMENTATION)),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Some(DOCUMENTATION)),
        ("3fff:1000::", None),
        // Ordinary public addresses.
        ("2001:4860:4860::8888", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001::1", None),
    ];

    #[test]
    fn classify_ipv6_ranges_at_their_edges() {
        for (addr, expected) in CLASSIFY_V6 {
            let got = classify(ip(addr)).err().map(|b| b.rule);
            assert_eq!(got, *expected, "{addr}");
        }
    }

    #[test]
    fn blocked_address_text_never_contains_the_address() {
        for (addr, _) in CLASSIFY_V4.iter().chain(CLASSIFY_V6) {
            let parsed = ip(addr);
            if let Err(blocked) = classify(parsed) {
                let text = blocked.to_string();
                assert!(!text.contains(addr), "{text}");
                assert!(!text.contains(&parsed.to_string()), "{text}");
            }
        }
    }

    /// (spec, Ok(expected ranges, expected hosts) or Err(bad entry)).
    #[allow(clippy::type_complexity)]
    const ALLOWLIST_PARSE: &[(&str, Result<(&[&str], &[&str]), &str>)] = &[
        ("", Ok((&[], &[]))),
        (" , ,, ", Ok((&[], &[]))),
        ("127.0.0.1/32", Ok((&["127.0.0.1/32"], &[]))),
        ("127.0.0.1", Ok((&["127.0.0.1/32"], &[]))),
        ("::1", Ok((&["::1/128"], &[]))),
        ("::1/128", Ok((&["::1/128"], &[]))),
        (" 10.0.0.0/8 , fd00::/8 ", Ok((&["10.0.0.0/8", "fd00::/8"], &[]))),
        ("10.1.2.3/8", Ok((&["10.0.0.0/8"], &[]))),
        ("::ffff:127.0.0.1/128", Ok((&["127.0.0.1/32"], &[]))),
        ("::ffff:10.0.0.0/104", Ok((&["10.0.0.0/8"], &[]))),
        ("::ffff:0:0/96", Ok((&["0.0.0.0/0"], &[]))),
        ("localhost", Ok((&[], &["localhost"]))),
        ("LocalHost", Ok((&[], &["localhost"]))),
        ("gitlab.corp.internal", Ok((&[], &["gitlab.corp.internal"]))),
        ("sim,127.0.0.1/32,sim", Ok((&["127.0.0.1/32"], &["sim"]))),
        ("127.0.0.1/32,127.0.0.1", Ok((&["127.0.0.1/32"], &[]))),
        ("gitlab-sim.test,::1", Ok((&["::1/128"], &["gitlab-sim.test"]))),
        ("127.1", Err("127.1")),
        ("0x7f.1", Err("0x7f.1")),
        ("2130706433", Err("2130706433")),
        ("0177.0.0.1", Err("0177.0.0.1")),
        ("127.0.0.1/33", Err("127.0.0.1/33")),
        ("::1/129", Err("::1/129")),
        ("127.0.0.1/", Err("127.0.0.1/")),
        ("fe80::1%eth0", Err("fe80::1%eth0")),
        ("[::1]", Err("[::1]")),
        ("*.example.com", Err("*.example.com")),
        ("example.com.", Err("example.com.")),
        ("exa_mple.com", Err("exa_mple.com")),
        ("-bad.com", Err("-bad.com")),
        ("bad-.com", Err("bad-.com")),
        ("a..b", Err("a..b")),
        ("https://example.com", Err("https://example.com")),
        ("example.com:443", Err("example.com:443")),
        ("ok.com, bad entry", Err("bad entry")),
        ("gitlаb.com", Err("gitlаb.com")),
    ];

    #[test]
    fn allowlist_parse_table() {
        for (spec, expected) in ALLOWLIST_PARSE {
            match (Allowlist::parse(spec), expected) {
                (Ok(list), Ok((nets, hosts))) => {
                    let got: Vec<String> = list.nets().iter().map(ToString::to_string).collect();
                    assert_eq!(got, *nets, "{spec}");
                    assert_eq!(list.hosts(), *hosts, "{spec}");
                    assert_eq!(list.is_empty(), nets.is_empty() && hosts.is_empty(), "{spec}");
                }
                (Err(err), Err(entry)) => {
                    assert_eq!(err.entry, *entry, "{spec}");
                    assert!(err.to_string().contains(entry), "{spec}");
                }
                (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn allowlist_label_length_limits() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        assert!(Allowlist::parse(&format!("{label63}.com")).is_ok());
        assert!(Allowlist::parse(&format!("{label64}.com")).is_err());
        let long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
        assert_eq!(long.len(), 253);
        assert!(Allowlist::parse(&long).is_ok());
        assert!(Allowlist::parse(&format!("a{long}")).is_err());
    }

    /// (allowlist spec, address, allowed).
    const ALLOWS_IP: &[(&str, &str, bool)] = &[
        ("", "127.0.0.1", false),
        ("127.0.0.1/32", "127.0.0.1", true),
        ("127.0.0.1/32", "127.0.0.2", false),
        ("127.0.0.1/32", "::ffff:127.0.0.1", true),
        ("127.0.0.1/32", "::127.0.0.1", false),
        ("127.0.0.1/32", "::1", false),
        ("::1/128", "::1", true),
        ("::1/128", "127.0.0.1", false),
        ("10.0.0.0/8", "10.255.255.255", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("10.0.0.0/8", "9.255.255.255", false),
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
        ("fd00::/8", "fd00:ec2::254", true),
        ("fd00::/8", "fc00::1", false),
        ("localhost", "127.0.0.1", false),
        ("0.0.0.0/0", "8.8.8.8", true),
        ("0.0.0.0/0", "::ffff:8.8.8.8", true),
        ("0.0.0.0/0", "2001:4860::1", false),
        ("::/0", "2001:4860::1", true),
    ];

    #[test]
    fn allowlist_allows_ip_table() {
        for (spec, addr, expected) in ALLOWS_IP {
            let list = Allowlist::parse(spec).unwrap();
            assert_eq!(list.allows_ip(ip(addr)), *expected, "{spec} / {addr}");
        }
    }

    /// (allowlist spec, host, allowed).
    const ALLOWS_HOST: &[(&str, &str, bool)] = &[
        ("", "localhost", false),
        ("localhost", "localhost", true),
        ("localhost", "LOCALHOST", true),
        ("localhost", "localhost.", false),
        ("localhost", "a.localhost", false),
        ("gitlab.corp.internal", "GitLab.Corp.Internal", true),
        ("gitlab.corp.internal", "corp.internal", false),
        ("gitlab.corp.internal", "x.gitlab.corp.internal", false),
        ("127.0.0.1/32", "127.0.0.1", false),
    ];

    #[test]
    fn allowlist_allows_host_table() {
        for (spec, host, expected) in ALLOWS_HOST {
            let list = Allowlist::parse(spec).unwrap();
            assert_eq!(list.allows_host(host), *expected, "{spec} / {host}");
        }
    }

    /// (host allowlisted, allowlist spec, answers, expected Ok list or Err rule).
    #[allow(clippy::type_complexity)]
    const CHECK_RESOLVED: &[(bool, &str, &[&str], Result<&[&str], &str>)] = &[
        (false, "", &[], Err(NO_ADDRESS)),
        (true, "0.0.0.0/0", &[], Err(NO_ADDRESS)),
        (false, "", &["8.8.8.8"], Ok(&["8.8.8.8"])),
        (false, "", &["8.8.8.8", "8.8.4.4"], Ok(&["8.8.8.8", "8.8.4.4"])),
        (false, "", &["8.8.8.8", "::ffff:8.8.8.8", "8.8.8.8"], Ok(&["8.8.8.8"])),
        (false, "", &["2001:4860::1", "8.8.8.8"], Ok(&["2001:4860::1", "8.8.8.8"])),
        // One bad answer spoils the set.
        (false, "", &["8.8.8.8", "127.0.0.1"], Err(LOOPBACK)),
        (false, "", &["8.8.8.8", "::ffff:127.0.0.1"], Err(LOOPBACK)),
        (false, "", &["2001:4860::1", "fd00:ec2::254"], Err(PRIVATE)),
        (false, "", &["169.254.169.254"], Err(LINK_LOCAL)),
        (false, "", &["100.64.0.1"], Err(CGNAT)),
        (false, "", &["::"], Err(UNSPECIFIED)),
        (false, "", &["2001:db8::1"], Err(DOCUMENTATION)),
        // Allowlisted range covers exactly the addresses inside it.
        (false, "127.0.0.1/32", &["127.0.0.1"], Ok(&["127.0.0.1"])),
        (false, "127.0.0.1/32", &["::ffff:127.0.0.1"], Ok(&["127.0.0.1"])),
        (false, "127.0.0.1/32", &["127.0.0.1", "127.0.0.2"], Err(LOOPBACK)),
        (false, "127.0.0.1/32", &["127.0.0.1", "8.8.8.8"], Ok(&["127.0.0.1", "8.8.8.8"])),
        (false, "10.0.0.0/8", &["10.0.0.5", "192.168.0.1"], Err(PRIVATE)),
        (false, "localhost", &["127.0.0.1"], Err(LOOPBACK)),
        // An allowlisted host name exempts all of its answers.
        (true, "", &["127.0.0.1", "::1"], Ok(&["127.0.0.1", "::1"])),
        (true, "", &["10.0.0.1", "10.0.0.1"], Ok(&["10.0.0.1"])),
        (true, "", &["::ffff:10.0.0.1"], Ok(&["10.0.0.1"])),
    ];

    #[test]
    fn check_resolved_table() {
        for (host_allowlisted, spec, answers, expected) in CHECK_RESOLVED {
            let list = Allowlist::parse(spec).unwrap();
            let answers: Vec<IpAddr> = answers.iter().map(|a| ip(a)).collect();
            let got = check_resolved(*host_allowlisted, &answers, &list);
            match expected {
                Ok(want) => {
                    let want: Vec<IpAddr> = want.iter().map(|a| ip(a)).collect();
                    assert_eq!(got, Ok(want), "{answers:?}");
                }
                Err(rule) => {
                    assert_eq!(got, Err(BlockedAddress { rule }));
                    assert_eq!(BlockedAddress { rule }.is_no_address(), *rule == NO_ADDRESS);
                }
            }
        }
    }

    mod props {
        use super::super::*;
        use ipnet::Ipv6Net;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn mapped_v4_classifies_like_v4(bits in any::<u32>()) {
                let v4 = Ipv4Addr::from(bits);
                prop_assert_eq!(
                    classify(IpAddr::V4(v4)),
                    classify(IpAddr::V6(v4.to_ipv6_mapped()))
                );
            }

            #[test]
            fn v6_outside_global_unicast_is_blocked(bits in any::<u128>()) {
                let v6 = Ipv6Addr::from(bits);
                let canonical = IpAddr::V6(v6).to_canonical();
                let global_unicast = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
                if canonical.is_ipv6() && !global_unicast.contains(&v6) {
                    prop_assert!(classify(IpAddr::V6(v6)).is_err());
                }
            }

            #[test]
            fn check_resolved_agrees_with_classify(bits in proptest::collection::vec(any::<u32>(), 1..6)) {
                let answers: Vec<IpAddr> = bits.iter().map(|b| IpAddr::V4(Ipv4Addr::from(*b))).collect();
                let all_public = answers.iter().all(|a| classify(*a).is_ok());
                let got = check_resolved(false, &answers, &Allowlist::default());
                prop_assert_eq!(got.is_ok(), all_public);
                prop_assert!(check_resolved(true, &answers, &Allowlist::default()).is_ok());
            }

            #[test]
            fn allowlist_parse_never_panics(spec in ".{0,64}") {
                let _ = Allowlist::parse(&spec);
            }
        }
    }
}
