//! SipHash-1-3 resumed from a state that has already absorbed a flag's salt and separator: the hot
//! path of [`crate::PreparedFlag`].
//!
//! `siphasher` stays the reference implementation ([`crate::bucket`] and [`crate::evaluate`] use it).
//! This one computes the same function, checked bit for bit against `siphasher` by property tests
//! over random salts and keys and exhaustively over every salt and key length up to 40 bytes. It is
//! faster because it is specialised for what a prepared flag does: the salt's leftover bytes are
//! fixed, so the first block is one shift and an OR, and the key is read in whole 8-byte words, the
//! last partial word included, instead of byte by byte through a general streaming buffer.

/// A SipHash-1-3 state after absorbing a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SaltedSip {
    v: [u64; 4],
    /// The prefix's last `pending` bytes (fewer than 8), little-endian in the low bytes.
    tail: u64,
    pending: usize,
    /// Bytes absorbed; only its low byte enters the hash.
    length: usize,
}

impl SaltedSip {
    /// The state of SipHash-1-3 keyed with `key` after absorbing every slice of `prefix` in order.
    pub(crate) fn new(key: &[u8; 16], prefix: &[&[u8]]) -> Self {
        let k0 = u64::from_le_bytes(half(key, 0));
        let k1 = u64::from_le_bytes(half(key, 8));
        let mut state = SaltedSip {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            pending: 0,
            length: 0,
        };
        for part in prefix {
            state.absorb(part);
        }
        state
    }

    /// Absorb `bytes` one at a time: the plain streaming form, for the prefix and for short keys,
    /// neither of which is worth the word-at-a-time path.
    fn absorb(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.tail |= u64::from(*byte) << (8 * self.pending);
            self.pending += 1;
            self.length = self.length.wrapping_add(1);
            if self.pending == 8 {
                compress(&mut self.v, self.tail);
                self.tail = 0;
                self.pending = 0;
            }
        }
    }

    /// The SipHash-1-3 of the prefix followed by `message`.
    #[inline(always)]
    pub(crate) fn hash(&self, message: &[u8]) -> u64 {
        if message.len() < 8 {
            return self.hash_short(message);
        }
        let mut v = self.v;
        let length = self.length.wrapping_add(message.len());
        let mut rest = message;
        if self.pending > 0 {
            // The message's first 8 bytes shifted past the pending ones: the high bytes that do not
            // fit fall off, and are read again as part of the next block.
            let need = 8 - self.pending;
            compress(
                &mut v,
                self.tail | (word_at(message, 0) << (8 * self.pending)),
            );
            rest = &message[need..];
        }
        let mut blocks = rest.chunks_exact(8);
        for block in &mut blocks {
            // Always 8 bytes: the conversion cannot fail, and the check compiles away.
            compress(
                &mut v,
                <[u8; 8]>::try_from(block).map_or(0, u64::from_le_bytes),
            );
        }
        let remaining = blocks.remainder().len();
        // The last partial block is the message's last `remaining` bytes: read the message's last
        // word (it has at least 8 bytes) and shift the earlier bytes out.
        // No bytes remaining is a shift by 64, which `checked_shr` turns into 0 without a branch.
        let last = word_at(message, message.len() - 8)
            .checked_shr(8 * (8 - remaining) as u32)
            .unwrap_or(0);
        finish(v, last | ((length as u64 & 0xff) << 56))
    }

    /// Keys under 8 bytes: rare for routing keys, so the streaming form will do.
    #[cold]
    fn hash_short(&self, message: &[u8]) -> u64 {
        let mut state = *self;
        state.absorb(message);
        finish(state.v, state.tail | ((state.length as u64 & 0xff) << 56))
    }
}

fn half(key: &[u8; 16], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&key[at..at + 8]);
    out
}

/// The little-endian word at `bytes[at..at + 8]`; the caller guarantees the bytes exist.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// One message block, one compression round (the "1" of SipHash-1-3).
#[inline(always)]
fn compress(v: &mut [u64; 4], block: u64) {
    v[3] ^= block;
    round(v);
    v[0] ^= block;
}

/// The final block, then three finalization rounds (the "3").
#[inline(always)]
fn finish(mut v: [u64; 4], last: u64) -> u64 {
    compress(&mut v, last);
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use proptest::prelude::*;
    use siphasher::sip::SipHasher13;

    use super::*;
    use crate::bucket::{SEPARATOR, SIPHASH_KEY};

    fn reference(salt: &[u8], message: &[u8]) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&SIPHASH_KEY);
        hasher.write(salt);
        hasher.write(&[SEPARATOR]);
        hasher.write(message);
        hasher.finish()
    }

    fn fast(salt: &[u8], message: &[u8]) -> u64 {
        SaltedSip::new(&SIPHASH_KEY, &[salt, &[SEPARATOR]]).hash(message)
    }

    #[test]
    fn equals_siphasher_for_every_salt_and_key_length_up_to_40() {
        let bytes: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for salt_len in 0..=40 {
            for key_len in 0..=40 {
                let (salt, key) = (&bytes[..salt_len], &bytes[40..40 + key_len]);
                assert_eq!(
                    fast(salt, key),
                    reference(salt, key),
                    "salt {salt_len} key {key_len}"
                );
            }
        }
    }

    #[test]
    fn equals_siphasher_past_256_bytes_where_the_length_byte_wraps() {
        let key = vec![0xabu8; 300];
        for key_len in [255, 256, 257, 263, 264, 300] {
            assert_eq!(
                fast(b"async_upload", &key[..key_len]),
                reference(b"async_upload", &key[..key_len])
            );
        }
    }

    proptest! {
        #[test]
        fn equals_siphasher(
            salt in proptest::collection::vec(any::<u8>(), 0..64),
            key in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            prop_assert_eq!(fast(&salt, &key), reference(&salt, &key));
        }
    }
}
