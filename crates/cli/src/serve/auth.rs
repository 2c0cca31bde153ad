//! Client tokens: `Authorization: Bearer <token>`, compared in constant time.
//!
//! The variable named by `--client-token-env` holds one token or several separated by commas (one
//! per client, so one can be revoked alone). Each candidate is hashed with SHA-256 and compared
//! with every configured token's hash byte by byte without early exit, so neither the position of
//! the first wrong byte nor the token's length shows in the time taken.

use sha2::{Digest, Sha256};

/// The accepted tokens, kept only as hashes.
pub struct ClientTokens {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ClientTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTokens")
            .field("count", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

impl ClientTokens {
    /// Parse the variable's value; `None` when it holds no token.
    pub fn parse(value: &str) -> Option<Self> {
        let hashes: Vec<[u8; 32]> = value
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| Sha256::digest(token.as_bytes()).into())
            .collect();
        (!hashes.is_empty()).then_some(Self { hashes })
    }

    /// The index of the token an `Authorization` header value carries, if any.
    pub fn check(&self, header: Option<&[u8]>) -> Option<usize> {
        let candidate = header
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .map(|token| token.trim_ascii())?;
        let candidate: [u8; 32] = Sha256::digest(candidate).into();
        let mut found = None;
        for (index, hash) in self.hashes.iter().enumerate() {
            // Every hash is compared in full, a match or not.
            if constant_time_eq(hash, &candidate) {
                found = Some(index);
            }
        }
        found
    }
}

/// Equal 32-byte strings, in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_configured_token_and_nothing_else() {
        let tokens = ClientTokens::parse(" alpha-token , beta-token ,").expect("two tokens");
        assert_eq!(tokens.check(Some(b"Bearer alpha-token")), Some(0));
        assert_eq!(tokens.check(Some(b"Bearer beta-token")), Some(1));
        assert_eq!(tokens.check(Some(b"Bearer alpha-toke")), None);
        assert_eq!(tokens.check(Some(b"Basic alpha-token")), None);
        assert_eq!(tokens.check(Some(b"alpha-token")), None);
        assert_eq!(tokens.check(None), None);
        assert!(ClientTokens::parse(" , ").is_none());
        assert!(!format!("{tokens:?}").contains("alpha"));
    }
}
