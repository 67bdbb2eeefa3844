//! IP networks for the `remoteAddress` strategy and the IN_CIDR operator.

use std::net::IpAddr;

/// An IPv4 or IPv6 network (an address is a network of full prefix length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4(u32, u32),
    V6(u128, u128),
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`; whitespace around it is ignored.
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().ok()?)),
            None => (s, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let p = prefix.unwrap_or(32);
                if p > 32 {
                    return None;
                }
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                Some(Cidr::V4(u32::from(a) & mask, mask))
            }
            IpAddr::V6(a) => {
                let p = prefix.unwrap_or(128);
                if p > 128 {
                    return None;
                }
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                Some(Cidr::V6(u128::from(a) & mask, mask))
            }
        }
    }

    /// Whether the address is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) matches the IPv4 network it maps.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4(net, mask), IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V4(net, mask), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| u32::from(a) & mask == *net),
            (Cidr::V6(net, mask), IpAddr::V6(a)) => u128::from(a) & mask == *net,
            (Cidr::V6(net, mask), IpAddr::V4(a)) => u128::from(a.to_ipv6_mapped()) & mask == *net,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(net: &str, ip: &str) -> bool {
        Cidr::parse(net).unwrap().contains(ip.parse().unwrap())
    }

    #[test]
    fn ipv4_and_ipv6() {
        assert!(hit("10.0.0.0/8", "10.255.1.2"));
        assert!(!hit("10.0.0.0/8", "11.0.0.1"));
        assert!(hit("192.168.1.7", "192.168.1.7"));
        assert!(!hit("192.168.1.7", "192.168.1.8"));
        assert!(hit("0.0.0.0/0", "8.8.8.8"));
        assert!(hit("2001:db8::/32", "2001:db8:1::5"));
        assert!(!hit("2001:db8::/32", "2001:db9::1"));
        assert!(hit("::/0", "::1"));
        assert!(hit("10.0.0.0/8", "::ffff:10.1.2.3"));
        assert!(hit("::ffff:0:0/96", "1.2.3.4"));
        assert!(!hit("2001:db8::/32", "10.0.0.1"));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("192.invalid").is_none());
        assert!(Cidr::parse("::/129").is_none());
    }

    proptest::proptest! {
        #[test]
        fn prefix_contains_every_address_that_shares_it(a: u32, b: u32, p in 0u32..=32) {
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            let net = Cidr::parse(&format!("{}/{p}", std::net::Ipv4Addr::from(a))).unwrap();
            let same = (a & mask) == (b & mask);
            proptest::prop_assert_eq!(net.contains(IpAddr::V4(b.into())), same);
        }
    }
}
