//! A gateway's JWT check on any input: it never panics, and it accepts nothing but tokens the
//! deployment's key signed for its audience — not one with a byte changed anywhere.

use apim_components::jwt::{self, Claims, Jwks, SigningKey};
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_seed(&[5; 32]).expect("key")
}

fn keys() -> Jwks {
    Jwks {
        keys: vec![key().public()],
    }
}

fn claims(exp: u64) -> Claims {
    Claims {
        iss: "spiffe://p/key-manager".into(),
        sub: "app".into(),
        aud: "spiffe://p/gateway".into(),
        exp,
        iat: 1_000,
        jti: "j".into(),
        client_id: "ck".into(),
        application: "app".into(),
    }
}

proptest! {
    #[test]
    fn any_text_is_refused_without_a_panic(text in ".{0,600}") {
        prop_assert!(jwt::verify(&text, &keys(), 1_500, "spiffe://p/gateway").is_err());
    }

    #[test]
    fn a_signed_token_with_any_byte_changed_is_refused(at in 0usize..400, to in 0u8..128) {
        let token = key().sign(&claims(2_000));
        prop_assert!(jwt::verify(&token, &keys(), 1_500, "spiffe://p/gateway").is_ok());
        let mut bytes = token.clone().into_bytes();
        let at = at % bytes.len();
        prop_assume!(bytes[at] != to);
        bytes[at] = to;
        let changed = String::from_utf8(bytes).expect("ASCII");
        // A base64url character's last bits may not count: the same bytes decode from both.
        let same_bytes = {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let parts = |t: &str| t.split('.').map(|p| b64.decode(p).ok()).collect::<Vec<_>>();
            parts(&changed) == parts(&token)
        };
        prop_assume!(!same_bytes);
        prop_assert!(jwt::verify(&changed, &keys(), 1_500, "spiffe://p/gateway").is_err());
    }
}
