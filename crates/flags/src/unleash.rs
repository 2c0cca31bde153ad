//! Unleash-compatible bucketing, so a team migrating from Unleash keeps its cohorts.
//!
//! Unleash's gradual and flexible rollout strategies compute
//! `normalized = murmurhash3_x86_32("{groupId}:{key}", seed 0) % 100 + 1` and let a key in when
//! `normalized <= percentage` (so 0% lets nobody in). Here the flag's salt is the `groupId`, and since
//! upramp percentages have three decimals, a key is in when `normalized * 1000 <= thousandths`, which is
//! the same rule for whole percentages.

use crate::Percent;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86_32 over a stream of byte slices, without buffering more than one 4-byte block.
#[derive(Debug, Clone)]
pub struct Murmur3 {
    state: u32,
    tail: [u8; 4],
    tail_len: usize,
    total_len: u32,
}

impl Murmur3 {
    /// A hasher with the given seed (Unleash uses 0).
    pub fn new(seed: u32) -> Self {
        Self {
            state: seed,
            tail: [0; 4],
            tail_len: 0,
            total_len: 0,
        }
    }

    /// Feed bytes; the result is the same however the input is split.
    pub fn write(&mut self, mut bytes: &[u8]) {
        // The reference wraps the length to 32 bits in the finalizer, so wrapping here matches it.
        self.total_len = self.total_len.wrapping_add(bytes.len() as u32);
        if self.tail_len > 0 {
            while self.tail_len < 4 {
                let Some((&first, rest)) = bytes.split_first() else {
                    return;
                };
                self.tail[self.tail_len] = first;
                self.tail_len += 1;
                bytes = rest;
            }
            self.state = mix_block(self.state, u32::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(4);
        for block in &mut blocks {
            let word = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            self.state = mix_block(self.state, word);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The 32-bit hash of everything written.
    pub fn finish(&self) -> u32 {
        let mut h = self.state;
        if self.tail_len > 0 {
            let mut k = 0u32;
            for (i, &byte) in self.tail[..self.tail_len].iter().enumerate() {
                k |= u32::from(byte) << (8 * i);
            }
            h ^= scramble(k);
        }
        h ^= self.total_len;
        fmix32(h)
    }
}

fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn mix_block(h: u32, k: u32) -> u32 {
    (h ^ scramble(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// MurmurHash3 x86_32 of `bytes` with `seed`.
///
/// ```
/// assert_eq!(upramp_flags::unleash::murmur3_x86_32(b"hello", 0), 0x248b_fa47);
/// ```
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut hasher = Murmur3::new(seed);
    hasher.write(bytes);
    hasher.finish()
}

/// Unleash's `normalizedValue(key, groupId)`: `murmur3("{group_id}:{key}", 0) % 100 + 1`, in `1..=100`.
/// Does not allocate.
///
/// ```
/// assert_eq!(upramp_flags::unleash::normalized_value("gr1", "123"), 73);
/// ```
pub fn normalized_value(group_id: &str, key: &str) -> u32 {
    let mut hasher = Murmur3::new(0);
    hasher.write(group_id.as_bytes());
    hasher.write(b":");
    hasher.write(key.as_bytes());
    hasher.finish() % 100 + 1
}

/// Whether a normalized value (`1..=100`) is inside `rollout` by Unleash's rule `normalized <= percentage`.
pub const fn is_in_rollout(normalized: u32, rollout: Percent) -> bool {
    normalized * 1000 <= rollout.thousandths()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The published MurmurHash3 x86_32 reference vectors (SMHasher and its common ports).
    #[test]
    fn matches_reference_murmur3_vectors() {
        let cases: [(&[u8], u32, u32); 10] = [
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
            (b"\x21\x43\x65\x87", 0x5082_edee, 0x2362_f9de),
            (b"\x21\x43\x65", 0, 0x7e4a_8634),
            (b"\x21\x43", 0, 0xa0f7_b07a),
            (b"\x21", 0, 0x7266_1cf4),
            (b"Hello, world!", 1234, 0xfaf6_cdb3),
        ];
        for (input, seed, expected) in cases {
            assert_eq!(
                murmur3_x86_32(input, seed),
                expected,
                "{input:?} seed {seed}"
            );
        }
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn streaming_matches_one_shot_for_every_split() {
        let input = b"AB12A:some-user-id-42";
        let expected = murmur3_x86_32(input, 0);
        for first in 0..=input.len() {
            for second in first..=input.len() {
                let mut hasher = Murmur3::new(0);
                hasher.write(&input[..first]);
                hasher.write(&input[first..second]);
                hasher.write(&input[second..]);
                assert_eq!(hasher.finish(), expected, "split at {first}, {second}");
            }
        }
    }

    /// `normalizedValue` vectors from Unleash client test suites.
    #[test]
    fn matches_unleash_normalized_values() {
        assert_eq!(normalized_value("gr1", "123"), 73);
        assert_eq!(normalized_value("groupX", "999"), 25);
    }

    /// Cases from Unleash's client-specification: `03-gradual-rollout-user-id-strategy.json` and
    /// `10-flexible-rollout-strategy.json` (group id, key, percentage, expected result).
    #[test]
    fn matches_unleash_client_specification() {
        let cases = [
            ("AB12A", "123", 100, true),
            ("AB12A", "122", 50, true),
            ("AB12A", "155", 50, false),
            ("AB12A", "122", 0, false),
            ("Feature.flexibleRollout.10", "174", 10, true),
            ("Feature.flexibleRollout.10", "499", 10, false),
            ("Feature.flexibleRollout.userId.55", "25", 55, true),
            ("Feature.flexibleRollout.sessionId.42", "147", 42, true),
        ];
        for (group, key, percent, expected) in cases {
            let rollout = Percent::from_thousandths(percent * 1000).unwrap();
            let value = normalized_value(group, key);
            assert_eq!(
                is_in_rollout(value, rollout),
                expected,
                "{group}:{key} at {percent}% (value {value})"
            );
        }
    }
}
