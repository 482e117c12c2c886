//! The payload AEAD of the payload-cipher function: ChaCha20-Poly1305 or AES-256-GCM, and the
//! per-socket nonce sequence.
//!
//! Wire format of a sealed payload: `nonce (12) ‖ ciphertext (n) ‖ tag (16)`; no associated data
//! (headers are rewritten by NAT/LB functions on the way, so they cannot be authenticated).

use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};

use super::UserspaceError;

/// Nonce length of both AEADs.
pub const NONCE_LEN: usize = 12;
/// Tag length of both AEADs.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed payload has more than its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Key length of both AEADs.
pub const KEY_LEN: usize = 32;

/// The AEAD algorithm (the CRD's `payloadCipher.algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ChaCha20-Poly1305 (RFC 8439).
    ChaCha20Poly1305,
    /// AES-256-GCM.
    Aes256Gcm,
}

impl From<crds::functions::CipherAlgorithm> for Algorithm {
    fn from(a: crds::functions::CipherAlgorithm) -> Self {
        match a {
            crds::functions::CipherAlgorithm::ChaCha20Poly1305 => Algorithm::ChaCha20Poly1305,
            crds::functions::CipherAlgorithm::Aes256Gcm => Algorithm::Aes256Gcm,
        }
    }
}

/// Seal or open (the CRD's `payloadCipher.direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Encrypt and authenticate.
    Encrypt,
    /// Verify and decrypt.
    Decrypt,
}

impl From<crds::functions::CipherDirection> for Direction {
    fn from(d: crds::functions::CipherDirection) -> Self {
        match d {
            crds::functions::CipherDirection::Encrypt => Direction::Encrypt,
            crds::functions::CipherDirection::Decrypt => Direction::Decrypt,
        }
    }
}

/// Authentication failed: the ciphertext, nonce or tag was changed, or the key is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload authentication failed")]
pub struct AuthError;

enum Inner {
    ChaCha(Box<ChaCha20Poly1305>),
    Aes(Box<Aes256Gcm>),
}

/// A keyed AEAD.
pub struct Aead {
    inner: Inner,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aead")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Aead {
    /// Keys `algorithm` with a 32-byte key.
    pub fn new(algorithm: Algorithm, key: &[u8; KEY_LEN]) -> Self {
        let inner = match algorithm {
            Algorithm::ChaCha20Poly1305 => {
                Inner::ChaCha(Box::new(ChaCha20Poly1305::new(&(*key).into())))
            }
            Algorithm::Aes256Gcm => Inner::Aes(Box::new(Aes256Gcm::new(&(*key).into()))),
        };
        Self { inner, algorithm }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Encrypts `buf` in place and returns the tag; `None` if the AEAD refuses the length
    /// (more than 2^38 bytes — never a frame).
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], buf: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let nonce = (*nonce).into();
        let tag = match &self.inner {
            Inner::ChaCha(c) => c.encrypt_inout_detached(&nonce, &[], buf.into()),
            Inner::Aes(c) => c.encrypt_inout_detached(&nonce, &[], buf.into()),
        };
        tag.ok().map(Into::into)
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure the contents of `buf` are unspecified.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        let nonce = (*nonce).into();
        let tag = (*tag).into();
        match &self.inner {
            Inner::ChaCha(c) => c.decrypt_inout_detached(&nonce, &[], buf.into(), &tag),
            Inner::Aes(c) => c.decrypt_inout_detached(&nonce, &[], buf.into(), &tag),
        }
        .map_err(|_| AuthError)
    }

    /// Seals `plaintext` into the wire format `nonce ‖ ciphertext ‖ tag` (`None`: too long for
    /// the AEAD).
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(nonce);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(nonce, &mut out[NONCE_LEN..])?;
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// Opens a payload in the wire format; returns the plaintext.
    pub fn open(&self, wire: &[u8]) -> Result<Vec<u8>, AuthError> {
        if wire.len() < OVERHEAD {
            return Err(AuthError);
        }
        let (nonce, rest) = wire.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| AuthError)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| AuthError)?;
        let mut pt = ct.to_vec();
        self.open_in_place(&nonce, &mut pt, &tag)?;
        Ok(pt)
    }
}

/// The nonce sequence of one socket: a 32-bit random prefix followed by a 64-bit counter that
/// starts at a random value and is incremented (mod 2^64) for every sealed packet.
///
/// Why a nonce is never reused with the same key:
/// - within one sequence the counter takes each of its 2^64 values at most once: [`NonceSeq::next_nonce`]
///   returns `None` (the packet is dropped, counted as `nonce_exhausted`) once 2^64 - 1 nonces
///   were handed out, so the counter never wraps back onto its start;
/// - sequences are never shared between sockets or threads (each tier worker owns its own), and
///   a restart creates a new sequence from fresh OS randomness; two sequences using the same key
///   can only collide if their 32-bit prefixes are equal (probability 2^-32) *and* their counter
///   windows of n1 and n2 packets overlap (probability (n1 + n2) / 2^64), i.e. about
///   (n1 + n2) / 2^96 per pair — the same margin as a 96-bit random nonce per *window* rather than
///   per packet.
#[derive(Debug)]
pub struct NonceSeq {
    prefix: [u8; 4],
    counter: u64,
    remaining: u64,
}

impl NonceSeq {
    /// A sequence with a random prefix and start, from the OS random source.
    pub fn random() -> Result<Self, UserspaceError> {
        let mut seed = [0u8; 12];
        getrandom::fill(&mut seed).map_err(|e| UserspaceError::Random(e.to_string()))?;
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&seed[..4]);
        let mut start = [0u8; 8];
        start.copy_from_slice(&seed[4..]);
        Ok(Self::from_parts(prefix, u64::from_be_bytes(start)))
    }

    /// A sequence with a given prefix and counter start (tests, known-answer checks).
    pub fn from_parts(prefix: [u8; 4], start: u64) -> Self {
        Self {
            prefix,
            counter: start,
            remaining: u64::MAX,
        }
    }

    /// The next nonce, or `None` when this sequence is spent.
    pub fn next_nonce(&mut self) -> Option<[u8; NONCE_LEN]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.prefix);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        Some(n)
    }

    /// Nonces left before the sequence is spent.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    #[cfg(test)]
    pub(crate) fn set_remaining(&mut self, n: u64) {
        self.remaining = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn round_trip_both_algorithms() {
        for alg in [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let a = Aead::new(alg, &KEY);
            let mut seq = NonceSeq::random().unwrap();
            let n = seq.next_nonce().unwrap();
            let wire = a.seal(&n, b"hello payload").unwrap();
            assert_eq!(wire.len(), 13 + OVERHEAD);
            assert_eq!(&wire[..12], &n);
            assert_ne!(&wire[12..25], b"hello payload");
            assert_eq!(a.open(&wire).unwrap(), b"hello payload");
        }
    }

    #[test]
    fn chacha_matches_rfc8439_vector() {
        // RFC 8439 section 2.8.2 (AAD omitted there would change the tag, so check the
        // keystream part: ciphertext of the first bytes must match the RFC's)
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let a = Aead::new(Algorithm::ChaCha20Poly1305, &key);
        let wire = a
            .seal(&nonce, b"Ladies and Gentlemen of the class of '99")
            .unwrap();
        assert_eq!(
            &wire[12..20],
            &[0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb]
        );
    }

    #[test]
    fn tamper_and_wrong_key_rejected() {
        for alg in [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let a = Aead::new(alg, &KEY);
            let wire = a.seal(&[1; 12], b"secret").unwrap();
            for i in 0..wire.len() {
                let mut t = wire.clone();
                t[i] ^= 0x01;
                assert_eq!(a.open(&t), Err(AuthError), "{alg:?} flip at {i}");
            }
            let other = Aead::new(alg, &[8u8; 32]);
            assert_eq!(other.open(&wire), Err(AuthError));
            assert_eq!(a.open(&wire[..OVERHEAD - 1]), Err(AuthError));
        }
    }

    #[test]
    fn algorithms_differ() {
        let c = Aead::new(Algorithm::ChaCha20Poly1305, &KEY)
            .seal(&[0; 12], b"x")
            .unwrap();
        let g = Aead::new(Algorithm::Aes256Gcm, &KEY)
            .seal(&[0; 12], b"x")
            .unwrap();
        assert_ne!(c, g);
        assert!(Aead::new(Algorithm::Aes256Gcm, &KEY).open(&c).is_err());
    }

    #[test]
    fn nonce_sequence_unique_and_exhausts() {
        let mut s = NonceSeq::from_parts([1, 2, 3, 4], u64::MAX - 1);
        let a = s.next_nonce().unwrap();
        let b = s.next_nonce().unwrap();
        let c = s.next_nonce().unwrap();
        assert_eq!(&a[..4], &[1, 2, 3, 4]);
        assert_eq!(&a[4..], &(u64::MAX - 1).to_be_bytes());
        assert_eq!(&b[4..], &u64::MAX.to_be_bytes());
        assert_eq!(&c[4..], &0u64.to_be_bytes());
        s.set_remaining(1);
        assert!(s.next_nonce().is_some());
        assert!(s.next_nonce().is_none());
        assert_eq!(s.remaining(), 0);

        let mut r1 = NonceSeq::random().unwrap();
        let mut r2 = NonceSeq::random().unwrap();
        assert_ne!(r1.next_nonce(), r2.next_nonce());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(r1.next_nonce().unwrap()));
        }
    }

    #[test]
    fn debug_hides_key() {
        let s = format!("{:?}", Aead::new(Algorithm::Aes256Gcm, &KEY));
        assert!(s.contains("redacted") && !s.contains('7'));
    }
}
