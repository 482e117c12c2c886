//! The Internet checksum (RFC 1071): a one's-complement sum of big-endian 16-bit words, folded and
//! complemented. [`sum`] accumulates without folding (so a pseudo-header and a segment can be summed
//! separately), [`finish`] folds and complements.

/// Adds the big-endian 16-bit words of `data` (an odd tail byte is padded with a zero) to `acc`, without
/// folding. Eight bytes at a time; a `u64` accumulator cannot overflow below 2^48 bytes.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // the four 16-bit words of `w`, carries kept
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a one's-complement sum to 16 bits (not complemented).
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Folds and complements: the checksum field's value for the sum `s`.
pub fn finish(s: u64) -> u16 {
    !fold(s)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// The unfolded sum of a TCP/UDP/ICMPv6 pseudo-header: the two addresses (4 or 16 bytes each), the protocol
/// and the segment length.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    sum(dst, sum(src, 0)) + u64::from(proto) + len as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word at a time, the textbook way.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn matches_the_reference_at_every_length_and_verifies_to_zero() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(checksum(&data[..n]), reference(&data[..n]), "length {n}");
        }
        // a header with its checksum in place sums to zero
        let mut h = data[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        h[3] ^= 1;
        assert_ne!(checksum(&h), 0, "a flipped bit is seen");
    }

    #[test]
    fn all_ones_data_does_not_overflow() {
        let data = vec![0xffu8; 1 << 16];
        assert_eq!(checksum(&data), reference(&data));
    }
}
