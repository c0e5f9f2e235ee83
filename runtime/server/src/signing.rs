//! The deployment's JWT signing keys on disk, beside the CA certificate: `apim certs` writes
//! a seed (0600) and the public keys (`jwks.json`); a key manager reads the seeds, a gateway
//! only the public keys.
//!
//! Rotation keeps the previous seed: its tokens stay valid until they expire, and the JWKS
//! publishes both keys, so a gateway accepts either.

use apim_compiler::plan::{JWKS_FILE, NodePlan, SEED_FILES};
use apim_components::jwt::Jwks;
use apim_components::tokens::Tokens;
use apim_pki::dir::FileAction;
use std::path::Path;

/// Makes the signing seed when there is none, or a new one when `rotate` (the old one kept as
/// the previous), and writes the public keys of both; answers what it did.
pub fn write(dir: &Path, rotate: bool) -> Result<Vec<FileAction>, String> {
    let [current, previous] = SEED_FILES.map(|f| dir.join(f));
    let mut done = Vec::new();
    let exists = current.exists();
    if exists && rotate {
        std::fs::rename(&current, &previous)
            .map_err(|e| format!("cannot keep {} as the previous key: {e}", current.display()))?;
        done.push(action(
            &previous,
            "renewed",
            Some("the previous signing key, kept for its tokens"),
        ));
    }
    if !exists || rotate {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a signing key: {e}"))?;
        apim_pki::files::write_private(&current, &format!("{}\n", hex(&seed)), 0o600)?;
        let why = if rotate && exists {
            "rotated"
        } else {
            "a new signing key"
        };
        done.push(action(&current, "created", Some(why)));
    } else {
        done.push(action(&current, "kept", None));
    }
    let seeds = [current, previous]
        .iter()
        .filter(|p| p.exists())
        .map(|p| read_seed(p))
        .collect::<Result<Vec<_>, _>>()?;
    let published = Tokens::new(
        (
            apim_components::tokens::TokenFormat::Jwt,
            apim_components::tokens::Revocation::Strict,
            0,
        ),
        "",
        "",
        &seeds,
        Jwks::default(),
    )?
    .published();
    let jwks = dir.join(JWKS_FILE);
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&published.to_json()).unwrap_or_default()
    );
    let before = std::fs::read_to_string(&jwks).ok();
    if before.as_deref() == Some(text.as_str()) {
        done.push(action(&jwks, "kept", None));
    } else {
        std::fs::write(&jwks, &text)
            .map_err(|e| format!("cannot write {}: {e}", jwks.display()))?;
        let what = if before.is_some() {
            "renewed"
        } else {
            "created"
        };
        done.push(action(&jwks, what, Some("the public signing keys")));
    }
    Ok(done)
}

fn action(path: &Path, what: &'static str, why: Option<&str>) -> FileAction {
    FileAction {
        path: path.display().to_string(),
        action: what,
        why: why.map(str::to_string),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_seed(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{} is not a signing key (64 hex digits)", path.display()))
}

/// The public keys in the node's `jwks.json` now, if it can be read.
pub fn published(node: &NodePlan) -> Option<Jwks> {
    let text = std::fs::read_to_string(&node.tokens.jwks).ok()?;
    let v = serde_json::from_str(&text).ok()?;
    Jwks::from_json(&v).ok()
}

/// The tokens of a node as its plan says: a key manager's seeds (the current one must be
/// there when it issues JWTs), and the public keys every node accepts from its start.
pub fn load(node: &NodePlan) -> Result<Tokens, String> {
    let t = &node.tokens;
    let policy = (t.format, t.revocation, t.revocation_bound_ms);
    if t.format != apim_components::tokens::TokenFormat::Jwt {
        return Tokens::new(policy, &t.issuer, &t.audience, &[], Jwks::default())
            .map(|k| k.living(t.lifetime_ms));
    }
    let mut seeds = Vec::new();
    for (i, path) in t.seeds.iter().enumerate() {
        let path = Path::new(path);
        if path.is_file() {
            seeds.push(read_seed(path)?);
        } else if i == 0 {
            return Err(format!(
                "node {} issues JWT access tokens but has no signing key at {} (run `apim certs`)",
                node.name,
                path.display()
            ));
        }
    }
    // Without the public keys a gateway asks the key manager for them on the first token.
    let jwks = match std::fs::read_to_string(&t.jwks) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| Jwks::from_json(&v))
            .map_err(|e| format!("{} is not a JWKS: {e}", t.jwks))?,
        Err(_) => Jwks::default(),
    };
    Tokens::new(policy, &t.issuer, &t.audience, &seeds, jwks).map(|k| k.living(t.lifetime_ms))
}
