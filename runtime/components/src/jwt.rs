//! JWT access tokens (RFC 9068) signed with EdDSA (Ed25519, RFC 8037): what the key manager
//! issues and what a gateway checks on its own, with the key manager's public keys (a JWKS,
//! RFC 7517) — so that an API call needs no key manager while its token is valid.
//!
//! Verification is strict and decides nothing it was not given: the header must name EdDSA
//! and a known key id (`alg: none` and every other algorithm are refused before any key is
//! looked at), the signature must hold, and the token must be unexpired (to the second, no leeway), already issued and
//! for the audience asked. Ed25519 signatures are deterministic: the same key and claims give
//! the same token, as the simulator's determinism needs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The one signing algorithm, as JOSE names it.
pub const ALG: &str = "EdDSA";
/// The media type of an access token (RFC 9068, 2.1).
pub const TYP: &str = "at+jwt";
/// A token longer than this is refused unread: no header or claims set of apim's is near it.
pub const MAX_LEN: usize = 4096;
/// Clocks of nodes differ a little: `iat` is judged with this much leeway (`exp` with none).
pub const LEEWAY_S: u64 = 5;

/// The claims of an access token (RFC 9068, 2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub client_id: String,
    /// The application the client's keys belong to: what subscriptions name.
    pub application: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// A signing key of the deployment: an Ed25519 key pair from a 32-byte seed.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl SigningKey {
    /// The key of `seed` (the deployment's secret: the PKI keeps it, the simulator draws it).
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| format!("not an Ed25519 seed: {e}"))?;
        let kid = thumbprint(pair.public_key().as_ref());
        Ok(SigningKey { pair, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as published in the JWKS.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            x: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: ALG.into(),
            typ: Some(TYP.into()),
            kid: Some(self.kid.clone()),
        };
        // Serialising plain structs of strings and numbers cannot fail.
        let part = |v: Vec<u8>| B64.encode(v);
        let input = format!(
            "{}.{}",
            part(serde_json::to_vec(&header).unwrap_or_default()),
            part(serde_json::to_vec(claims).unwrap_or_default())
        );
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

/// The JWK thumbprint (RFC 7638) of an Ed25519 public key: its key id.
fn thumbprint(x: &[u8]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, B64.encode(x));
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// A public key of the key manager, by its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub x: Vec<u8>,
}

/// The keys a gateway accepts signatures of: the key manager's current key and those still
/// valid for tokens they signed (rotation with overlap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<PublicKey>,
}

impl Jwks {
    /// The JWKS document (RFC 7517, 5; RFC 8037, 2), as the key manager serves it.
    pub fn to_json(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": ALG,
                    "kid": k.kid, "x": B64.encode(&k.x),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Reads a JWKS document; keys of another type are passed over, a malformed one refused.
    pub fn from_json(v: &serde_json::Value) -> Result<Jwks, String> {
        let keys = v
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("a JWKS has a `keys` array")?;
        let mut out = Vec::new();
        for k in keys {
            if k.get("kty").and_then(|t| t.as_str()) != Some("OKP")
                || k.get("crv").and_then(|c| c.as_str()) != Some("Ed25519")
            {
                continue;
            }
            let kid = k
                .get("kid")
                .and_then(|s| s.as_str())
                .ok_or("a key without `kid`")?;
            let x = k
                .get("x")
                .and_then(|s| s.as_str())
                .and_then(|x| B64.decode(x).ok())
                .filter(|x| x.len() == 32)
                .ok_or_else(|| format!("key `{kid}`: `x` is not an Ed25519 public key"))?;
            out.push(PublicKey {
                kid: kid.to_string(),
                x,
            });
        }
        Ok(Jwks { keys: out })
    }
}

/// Why a token was refused. Each is its own case, so that a test can show each check works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not three base64url parts of JSON, or too long.
    Malformed,
    /// An algorithm other than EdDSA, `none` included.
    Algorithm(String),
    /// A key id the gateway does not know (or none).
    UnknownKey,
    BadSignature,
    Expired,
    /// Issued in the future, past the leeway.
    NotYetValid,
    WrongAudience,
}

/// Whether a bearer token is a JWT (three parts, a JSON header) rather than an opaque token.
pub fn looks_like(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// Checks `token` against `keys` at `now_s` (seconds since the epoch) for `audience`.
/// The claims of a token, nothing checked: for the simulator's deliberate defects only.
pub fn claims_unchecked(token: &str) -> Option<Claims> {
    let c = token.split('.').nth(1)?;
    B64.decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

pub fn verify(token: &str, keys: &Jwks, now_s: u64, audience: &str) -> Result<Claims, Reject> {
    verify_with(token, keys, now_s, audience, ed25519_ok)
}

/// Whether `sig` is `key`'s Ed25519 signature of `signed`.
pub fn ed25519_ok(key: &[u8], signed: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(signed, sig)
        .is_ok()
}

/// [`verify`], with the signature checked by `signature_ok(key, signed, sig)`.
pub fn verify_with(
    token: &str,
    keys: &Jwks,
    now_s: u64,
    audience: &str,
    signature_ok: impl Fn(&[u8], &[u8], &[u8]) -> bool,
) -> Result<Claims, Reject> {
    if token.len() > MAX_LEN {
        return Err(Reject::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed);
    };
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Reject::Malformed)?;
    if header.alg != ALG {
        return Err(Reject::Algorithm(header.alg));
    }
    let key = header
        .kid
        .and_then(|kid| keys.keys.iter().find(|k| k.kid == kid))
        .ok_or(Reject::UnknownKey)?;
    let sig = B64.decode(s).map_err(|_| Reject::Malformed)?;
    let signed = &token[..h.len() + 1 + c.len()];
    if !signature_ok(&key.x, signed.as_bytes(), &sig) {
        return Err(Reject::BadSignature);
    }
    let claims: Claims = B64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Reject::Malformed)?;
    // No leeway past `exp`: a clock ahead refuses a token early, never serves one late.
    if now_s >= claims.exp {
        return Err(Reject::Expired);
    }
    if claims.iat > now_s.saturating_add(LEEWAY_S) {
        return Err(Reject::NotYetValid);
    }
    if claims.aud != audience {
        return Err(Reject::WrongAudience);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32]).expect("key")
    }

    fn claims() -> Claims {
        Claims {
            iss: "https://km.example/".into(),
            sub: "app-1".into(),
            aud: "apim-gateways".into(),
            exp: 2_000,
            iat: 1_000,
            jti: "t-1".into(),
            client_id: "ck-1".into(),
            application: "app-1".into(),
        }
    }

    fn jwks(keys: &[&SigningKey]) -> Jwks {
        Jwks {
            keys: keys.iter().map(|k| k.public()).collect(),
        }
    }

    /// A token whose header or claims are replaced, signed again by `k`.
    fn forged(k: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = k.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    #[test]
    fn a_token_signed_by_a_published_key_verifies_and_is_deterministic() {
        let k = key(1);
        let t = k.sign(&claims());
        assert_eq!(t, k.sign(&claims()));
        assert_eq!(
            verify(&t, &jwks(&[&k]), 1_500, "apim-gateways"),
            Ok(claims())
        );
    }

    #[test]
    fn each_check_refuses_what_it_must() {
        let (k, other) = (key(1), key(2));
        let keys = jwks(&[&k]);
        let good = k.sign(&claims());
        let at = |t: &str, now: u64, aud: &str| verify(t, &keys, now, aud);
        // Signed by a key the gateway does not have, under a known kid: the signature fails.
        let mut parts: Vec<&str> = good.split('.').collect();
        let foreign = other.sign(&claims());
        let foreign_sig = foreign.rsplit('.').next().unwrap_or_default();
        parts[2] = foreign_sig;
        assert_eq!(
            at(&parts.join("."), 1_500, "apim-gateways"),
            Err(Reject::BadSignature)
        );
        // Claims changed after signing.
        let mut changed = claims();
        changed.application = "app-2".into();
        let swapped = format!(
            "{}.{}.{}",
            good.split('.').next().unwrap_or_default(),
            B64.encode(serde_json::to_vec(&changed).unwrap_or_default()),
            good.rsplit('.').next().unwrap_or_default()
        );
        assert_eq!(
            at(&swapped, 1_500, "apim-gateways"),
            Err(Reject::BadSignature)
        );
        // alg none, with no signature at all.
        let body = serde_json::to_string(&claims()).unwrap_or_default();
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","kid":"x"}"#),
            B64.encode(&body)
        );
        assert_eq!(
            at(&none, 1_500, "apim-gateways"),
            Err(Reject::Algorithm("none".into()))
        );
        // An HMAC token keyed with the public key (the classic confusion) is another algorithm.
        let hs = forged(
            &k,
            &format!(r#"{{"alg":"HS256","kid":"{}"}}"#, k.kid()),
            &body,
        );
        assert_eq!(
            at(&hs, 1_500, "apim-gateways"),
            Err(Reject::Algorithm("HS256".into()))
        );
        // An unknown key id, even with a good signature by that unknown key.
        assert_eq!(
            at(&foreign, 1_500, "apim-gateways"),
            Err(Reject::UnknownKey)
        );
        // Expired, not yet valid, for another audience.
        assert_eq!(at(&good, 2_000, "apim-gateways"), Err(Reject::Expired));
        assert!(at(&good, 1_999, "apim-gateways").is_ok());
        assert_eq!(
            at(&good, 1_000 - LEEWAY_S - 1, "apim-gateways"),
            Err(Reject::NotYetValid)
        );
        assert_eq!(at(&good, 1_500, "another"), Err(Reject::WrongAudience));
        // Garbage of every shape.
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "....",
            "x.y.z",
            &"a".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(
                at(bad, 1_500, "apim-gateways"),
                Err(Reject::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_jwks_reads_back_and_keeps_keys_apart() {
        let (k, next) = (key(1), key(2));
        let keys = jwks(&[&k, &next]);
        assert_ne!(k.kid(), next.kid());
        assert_eq!(Jwks::from_json(&keys.to_json()), Ok(keys.clone()));
        // Rotation: tokens of either key verify while both are published.
        for signer in [&k, &next] {
            assert!(verify(&signer.sign(&claims()), &keys, 1_500, "apim-gateways").is_ok());
        }
        let bad = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "AAAA"}]});
        assert!(Jwks::from_json(&bad).is_err());
        let rsa = serde_json::json!({"keys": [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}]});
        assert_eq!(Jwks::from_json(&rsa), Ok(Jwks::default()));
    }
}
