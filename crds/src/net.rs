//! Network value types of the API (CIDRs, addresses, MACs, interface names, port ranges), each with its schema and parser.
//!
//! The wire form of every value is a plain string (what a user writes in YAML); the schema carries a cheap
//! syntactic check for the API server, and `parse()` is the exact check used by `validate()` and by the
//! data plane, so both agree on what a value means.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Declares a string newtype whose schema is `type: string` plus the given keywords.
macro_rules! string_type {
    ($(#[$doc:meta])* $name:ident, { $($schema:tt)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", $($schema)* })
            }
        }
    };
}

string_type!(
    /// An IPv4 or IPv6 prefix in CIDR notation, e.g. `10.0.0.0/8` or `2001:db8::/32`; host bits must be zero.
    Cidr,
    { "format": "cidr", "maxLength": 43 }
);

string_type!(
    /// An IPv4 or IPv6 address, e.g. `192.0.2.1` or `2001:db8::1`.
    IpAddress,
    { "pattern": "^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$", "maxLength": 45 }
);

string_type!(
    /// An Ethernet MAC address, six colon-separated hex octets, e.g. `02:00:00:00:00:01`.
    MacAddress,
    { "pattern": "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$", "maxLength": 17 }
);

string_type!(
    /// A Linux interface name inside the pod: 1 to 15 characters, no `/`, no white space.
    InterfaceName,
    { "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$", "maxLength": 15 }
);

string_type!(
    /// An RFC 1123 DNS label: lower-case alphanumerics and `-`, 1 to 63 characters.
    DnsLabel,
    { "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63 }
);

impl Cidr {
    /// Parses the prefix; host bits must be zero so the rule means what it says.
    pub fn parse(&self) -> Result<IpNet, String> {
        let net: IpNet = self.0.parse().map_err(|_| {
            format!(
                "{:?} is not a CIDR prefix (expected e.g. 10.0.0.0/8 or 2001:db8::/32)",
                self.0
            )
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{:?} has host bits set; did you mean {}?",
                self.0,
                net.trunc()
            ));
        }
        Ok(net)
    }
}

impl IpAddress {
    /// Parses the address.
    pub fn parse(&self) -> Result<IpAddr, String> {
        self.0
            .parse()
            .map_err(|_| format!("{:?} is not an IPv4 or IPv6 address", self.0))
    }
}

impl MacAddress {
    /// Parses the six octets.
    pub fn parse(&self) -> Result<[u8; 6], String> {
        let bad = || {
            format!(
                "{:?} is not a MAC address (expected e.g. 02:00:00:00:00:01)",
                self.0
            )
        };
        netkit::mac::parse(&self.0).map_err(|_| bad())
    }
}

impl InterfaceName {
    /// Checks the kernel's rules for interface names.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.0;
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !s.starts_with(['.', '-']);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a valid interface name (1-15 characters of letters, digits, '_', '.', '-')"
            ))
        }
    }
}

impl DnsLabel {
    /// Checks RFC 1123 label syntax.
    pub fn check(&self) -> Result<(), String> {
        if is_dns_label(&self.0) {
            Ok(())
        } else {
            Err(format!(
                "{:?} is not a DNS label (lower-case letters, digits and '-', starting and ending with an alphanumeric, at most 63 characters)",
                self.0
            ))
        }
    }
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// RFC 1123 subdomain (the rule for most Kubernetes object names): dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An inclusive range of TCP/UDP ports; `to` defaults to `from` (a single port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.to) || self.to >= self.from").message("to must be greater than or equal to from"))]
pub struct PortRange {
    /// First port of the range.
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub from: u16,
    /// Last port of the range (inclusive); omit for a single port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub to: Option<u16>,
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> Self {
        Self {
            from: port,
            to: None,
        }
    }

    /// The last port of the range.
    pub fn end(&self) -> u16 {
        self.to.unwrap_or(self.from)
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.from <= port && port <= self.end()
    }

    /// Whether every port of `other` is in this range.
    pub fn covers(&self, other: &PortRange) -> bool {
        self.from <= other.from && other.end() <= self.end()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to {
            Some(to) if to != self.from => write!(f, "{}-{}", self.from, to),
            _ => write!(f, "{}", self.from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rejects_host_bits_and_garbage() {
        assert!(Cidr::from("10.0.0.0/8").parse().is_ok());
        assert!(Cidr::from("2001:db8::/32").parse().is_ok());
        let e = Cidr::from("10.0.0.1/8").parse().unwrap_err();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        assert!(Cidr::from("10.0.0.0/33").parse().is_err());
        assert!(Cidr::from("10.0.0.0").parse().is_err());
    }

    #[test]
    fn mac_parses_exactly_six_octets() {
        assert_eq!(
            MacAddress::from("02:0a:FF:00:00:01").parse(),
            Ok([2, 10, 255, 0, 0, 1])
        );
        assert!(MacAddress::from("02:0a:FF:00:00").parse().is_err());
        assert!(MacAddress::from("02:0a:FF:00:00:01:02").parse().is_err());
        assert!(MacAddress::from("02:0a:FF:00:00:1").parse().is_err());
        assert!(MacAddress::from("zz:0a:FF:00:00:01").parse().is_err());
    }

    #[test]
    fn names() {
        assert!(is_dns_label("fw-1"));
        assert!(!is_dns_label("-fw"));
        assert!(!is_dns_label("Fw"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("my.secret-1"));
        assert!(InterfaceName::from("eth0").check().is_ok());
        assert!(InterfaceName::from("veth-cnf.100").check().is_ok());
        assert!(InterfaceName::from("a/b").check().is_err());
        assert!(InterfaceName::from("abcdefghijklmnop").check().is_err());
    }

    #[test]
    fn port_ranges() {
        let r = PortRange {
            from: 80,
            to: Some(90),
        };
        assert!(r.contains(80) && r.contains(90) && !r.contains(91));
        assert!(r.covers(&PortRange::single(85)));
        assert!(!PortRange::single(85).covers(&r));
        assert_eq!(r.to_string(), "80-90");
    }
}
