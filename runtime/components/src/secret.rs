//! Random tokens and their hashes: tokens are long random values, stored only as SHA-256 hashes.

use crate::world::World;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A random value of `bytes` bytes, as hex, from the world's random source.
pub fn random_hex(world: &impl World, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    world.random(&mut buf);
    hex(&buf)
}

/// The SHA-256 of a token, as hex: what the databases keep.
pub fn hash(token: &str) -> String {
    hex(&digest(token))
}

/// The SHA-256 of a token, as bytes: how a gateway keys its cache in memory.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The bytes of a hash written as hex (as the databases and notifications carry it).
pub fn digest_of_hash(hash: &str) -> Option<[u8; 32]> {
    let bytes = hash.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Compares secrets in time independent of where they differ.
pub fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            super::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            super::digest_of_hash(&super::hash("abc")),
            Some(super::digest("abc"))
        );
        assert_eq!(super::digest_of_hash("not hex"), None);
        assert_eq!(super::digest_of_hash(&"zz".repeat(32)), None);
    }
}
