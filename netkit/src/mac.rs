//! MAC addresses as text: `aa:bb:cc:dd:ee:ff`.

/// A MAC address that is not six two-digit hexadecimal bytes separated by colons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address '{0}': expected six hexadecimal bytes like 02:00:00:00:00:01")]
pub struct BadMac(pub String);

/// Parses `aa:bb:cc:dd:ee:ff`: six groups of exactly two hexadecimal digits (either case), nothing
/// around them.
pub fn parse(s: &str) -> Result<[u8; 6], BadMac> {
    let bad = || BadMac(s.to_owned());
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    match parts.next() {
        None => Ok(out),
        Some(_) => Err(bad()),
    }
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
pub fn format(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The MAC address of interface `name` in the calling thread's namespace, from
/// `/sys/class/net/<name>/address`.
pub fn of_interface(name: &str) -> Result<[u8; 6], InterfaceMacError> {
    let path = format!("/sys/class/net/{name}/address");
    let text = std::fs::read_to_string(&path).map_err(|source| InterfaceMacError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(parse(text.trim_end())?)
}

/// Why [`of_interface`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceMacError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bad(#[from] BadMac),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let m = parse("02:aB:00:ff:10:09").expect("valid");
        assert_eq!(m, [0x02, 0xab, 0x00, 0xff, 0x10, 0x09]);
        assert_eq!(format(m), "02:ab:00:ff:10:09");
    }

    #[test]
    fn refuses_what_is_not_six_two_digit_bytes() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:00:00:00:00:01",
            "002:00:00:00:00:01",
            "+2:00:00:00:00:01",
            "02-00-00-00-00-01",
            " 02:00:00:00:00:01",
            "02:00:00:00:00:01\n",
            "zz:00:00:00:00:01",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn reads_the_loopback_address() {
        assert_eq!(of_interface("lo").expect("lo"), [0; 6]);
        assert!(matches!(
            of_interface("no-such-if0"),
            Err(InterfaceMacError::Read { .. })
        ));
    }
}
