//! The test header carried at the start of every generated packet's UDP payload.
//!
//! Layout (24 bytes, all fields little-endian, no padding):
//!
//! | offset | size | field       | meaning                                              |
//! |-------:|-----:|-------------|------------------------------------------------------|
//! | 0      | 4    | `magic`     | [`MAGIC`] (`"BVN1"`), identifies pktgen packets        |
//! | 4      | 4    | `stream_id` | one per flow; sequence numbers are per stream        |
//! | 8      | 8    | `seq`       | per-stream sequence number, first packet is 0        |
//! | 16     | 8    | `tx_ns`     | `CLOCK_MONOTONIC` ns read just before the send call  |
//!
//! The rest of the payload (up to the configured packet size) is zero filler.

use thiserror::Error;

/// Magic value `"BVN1"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BVN1");

/// Encoded size of [`Header`] in bytes.
pub const HEADER_LEN: usize = std::mem::size_of::<Header>();

/// The pktgen test header. `#[repr(C)]` so its in-memory size equals its wire size; it is
/// still encoded field by field (little-endian) so the wire format does not depend on the host.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Always [`MAGIC`] on the wire.
    pub magic: u32,
    /// Stream (flow) identifier.
    pub stream_id: u32,
    /// Sequence number within the stream.
    pub seq: u64,
    /// Transmit timestamp, `CLOCK_MONOTONIC` nanoseconds.
    pub tx_ns: u64,
}

const _: () = assert!(HEADER_LEN == 24);

/// Why a payload could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The buffer is shorter than [`HEADER_LEN`].
    #[error("payload too short: {len} bytes, a pktgen header needs {HEADER_LEN}")]
    TooShort {
        /// Length of the buffer that was offered.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`]: not a pktgen packet.
    #[error("bad magic {found:#010x}, expected {MAGIC:#010x}")]
    BadMagic {
        /// The value found.
        found: u32,
    },
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    /// A header with [`MAGIC`] set.
    pub fn new(stream_id: u32, seq: u64, tx_ns: u64) -> Self {
        Self {
            magic: MAGIC,
            stream_id,
            seq,
            tx_ns,
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), PayloadError> {
        let len = buf.len();
        let out = buf
            .get_mut(..HEADER_LEN)
            .ok_or(PayloadError::TooShort { len })?;
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4..8].copy_from_slice(&self.stream_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.tx_ns.to_le_bytes());
        Ok(())
    }

    /// Reads a header from the start of `buf`, checking the length and the magic.
    pub fn decode(buf: &[u8]) -> Result<Self, PayloadError> {
        let b = buf
            .get(..HEADER_LEN)
            .ok_or(PayloadError::TooShort { len: buf.len() })?;
        let magic = le_u32(b, 0);
        if magic != MAGIC {
            return Err(PayloadError::BadMagic { found: magic });
        }
        Ok(Self {
            magic,
            stream_id: le_u32(b, 4),
            seq: le_u64(b, 8),
            tx_ns: le_u64(b, 16),
        })
    }
}

/// Overwrites only the `tx_ns` field of an already encoded header (the send loop stamps the
/// time right before the syscall, after the rest of the header was written).
pub fn stamp_tx_ns(buf: &mut [u8], tx_ns: u64) -> Result<(), PayloadError> {
    let len = buf.len();
    buf.get_mut(16..HEADER_LEN)
        .ok_or(PayloadError::TooShort { len })?
        .copy_from_slice(&tx_ns.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_the_documented_byte_layout() {
        let h = Header::new(0x0102_0304, 0x1122_3344_5566_7788, u64::MAX - 1);
        let mut buf = [0xAAu8; 40];
        h.encode(&mut buf).expect("buffer is long enough");
        assert_eq!(&buf[0..4], b"BVN1");
        assert_eq!(&buf[4..8], &[0x04, 0x03, 0x02, 0x01]);
        assert_eq!(buf[8], 0x88);
        assert_eq!(buf[15], 0x11);
        assert_eq!(&buf[16..24], &(u64::MAX - 1).to_le_bytes());
        assert!(buf[24..].iter().all(|&b| b == 0xAA), "filler was touched");
        assert_eq!(Header::decode(&buf), Ok(h));
    }

    #[test]
    fn rejects_short_buffers_and_foreign_packets() {
        let mut short = [0u8; HEADER_LEN - 1];
        assert_eq!(
            Header::new(1, 2, 3).encode(&mut short),
            Err(PayloadError::TooShort { len: 23 })
        );
        assert_eq!(
            Header::decode(&short),
            Err(PayloadError::TooShort { len: 23 })
        );
        let mut buf = [0u8; HEADER_LEN];
        Header::new(1, 2, 3).encode(&mut buf).expect("fits");
        buf[0] ^= 0xFF;
        assert!(matches!(
            Header::decode(&buf),
            Err(PayloadError::BadMagic { .. })
        ));
    }

    #[test]
    fn stamping_changes_only_the_timestamp() {
        let mut buf = [0u8; 64];
        Header::new(7, 9, 100).encode(&mut buf).expect("fits");
        stamp_tx_ns(&mut buf, 12345).expect("fits");
        assert_eq!(Header::decode(&buf), Ok(Header::new(7, 9, 12345)));
        assert!(stamp_tx_ns(&mut buf[..20], 1).is_err());
    }
}
