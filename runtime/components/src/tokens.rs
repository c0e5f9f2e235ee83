//! The deployment's access tokens as a node holds them: their format, the revocation policy,
//! and the keys — the signing keys on a key manager, the public ones on a gateway.

use crate::jwt::{Jwks, SigningKey};
use apim_topology::timing::TRUST_MARGIN_MS;
pub use apim_topology::vocab::{Revocation, TokenFormat};

pub struct Tokens {
    pub format: TokenFormat,
    pub revocation: Revocation,
    /// How long a revoked token may work on a gateway that missed the news.
    pub bound_ms: u64,
    /// How long an access token lives.
    pub lifetime_ms: u64,
    /// The `iss` of the key manager's tokens, and the `aud` a gateway requires.
    pub issuer: String,
    pub audience: String,
    /// The key that signs, then the previous ones, whose tokens stay valid until they expire
    /// (key managers only).
    pub signing: Vec<SigningKey>,
    /// The public keys a gateway accepts from its start (it asks the key manager for a key
    /// it does not know).
    pub jwks: Jwks,
}

impl Tokens {
    /// Opaque tokens and strict revocation within a second.
    pub fn opaque() -> Tokens {
        Tokens {
            format: TokenFormat::Opaque,
            revocation: Revocation::Strict,
            bound_ms: 1_000,
            lifetime_ms: apim_topology::timing::TOKEN_MS,
            issuer: String::new(),
            audience: String::new(),
            signing: Vec::new(),
            jwks: Jwks::default(),
        }
    }

    /// The tokens of a node: it signs with the keys of `seeds` (the first signs, the rest are
    /// kept for their tokens), and accepts `jwks` from its start.
    pub fn new(
        plan: (TokenFormat, Revocation, u64),
        issuer: &str,
        audience: &str,
        seeds: &[[u8; 32]],
        jwks: Jwks,
    ) -> Result<Tokens, String> {
        let (format, revocation, bound_ms) = plan;
        Ok(Tokens {
            format,
            revocation,
            bound_ms,
            lifetime_ms: apim_topology::timing::TOKEN_MS,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            signing: seeds
                .iter()
                .map(SigningKey::from_seed)
                .collect::<Result<_, _>>()?,
            jwks,
        })
    }

    /// The same tokens, living `ms` (at least a second: `expires_in` is in whole seconds).
    pub fn living(mut self, ms: u64) -> Tokens {
        self.lifetime_ms = ms.max(1000);
        self
    }

    /// How long after its last revocation catch-up a gateway's list is fresh enough.
    pub fn trust_ms(&self) -> u64 {
        self.bound_ms.saturating_sub(TRUST_MARGIN_MS)
    }

    /// The key manager's JWKS: the public halves of its signing keys.
    pub fn published(&self) -> Jwks {
        Jwks {
            keys: self.signing.iter().map(SigningKey::public).collect(),
        }
    }

    pub fn jwt(&self) -> bool {
        self.format == TokenFormat::Jwt
    }
}
