//! The oracle: the clients' own record of what the deployment acknowledged (tokens issued,
//! subscriptions asked for, revocations and retirements confirmed), and the rules every answer
//! must keep against it. It shares no decision code with the components or their storage, so
//! a bug there cannot fool both sides.
//!
//! Every time is the client's: a token's expiry is when the client got it plus its lifetime
//! (never earlier than the key manager's), a revocation counts from its acknowledgement, and a
//! request is judged by when it was sent, so no rule needs a tolerance.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
struct Issued {
    application: String,
    expires_ms: u64,
    revoked_ms: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Oracle {
    /// Token hash -> what its client was told.
    tokens: BTreeMap<String, Issued>,
    /// Application -> the APIs it asked to subscribe to, acknowledged or not: an
    /// unacknowledged subscription may exist.
    subscriptions: BTreeMap<String, BTreeSet<String>>,
    /// API id -> when its retirement was acknowledged (absent: never retired).
    retired: BTreeMap<String, u64>,
    /// APIs that were acknowledged as published.
    published: BTreeSet<String>,
    /// Token hash -> when its revocation was acknowledged: the one lookup every call of the
    /// workload's own needs, in a map far smaller than `tokens`.
    revocations: BTreeMap<String, u64>,
}

/// What an API call named: the token's hash and the API's id (`None`: never published).
pub struct Call<'a> {
    pub sent_ms: u64,
    pub token_hash: &'a str,
    pub api: Option<&'a str>,
}

impl Oracle {
    pub fn issued(&mut self, token_hash: String, application: &str, expires_ms: u64) {
        self.tokens.insert(
            token_hash,
            Issued {
                application: application.to_string(),
                expires_ms,
                revoked_ms: None,
            },
        );
    }

    pub fn revoked(&mut self, token_hash: &str, at_ms: u64) {
        if let Some(t) = self.tokens.get_mut(token_hash) {
            let at = *t.revoked_ms.get_or_insert(at_ms);
            self.revocations.insert(token_hash.to_string(), at);
        }
    }

    pub fn subscribing(&mut self, application: &str, api: &str) {
        self.subscriptions
            .entry(application.to_string())
            .or_default()
            .insert(api.to_string());
    }

    /// The subscription is ending: from now on no gateway told of it may serve it.
    pub fn unsubscribing(&mut self, application: &str, api: &str) {
        if let Some(apis) = self.subscriptions.get_mut(application) {
            apis.remove(api);
        }
    }

    pub fn published(&mut self, api: &str) {
        self.published.insert(api.to_string());
    }

    pub fn retired(&mut self, api: &str, at_ms: u64) {
        self.retired.entry(api.to_string()).or_insert(at_ms);
    }

    pub fn retired_at(&self, api: &str) -> Option<u64> {
        self.retired.get(api).copied()
    }

    /// When the revocation of a token was acknowledged, if it was.
    pub fn revocation_of(&self, token_hash: &str) -> Option<u64> {
        self.revocations.get(token_hash).copied()
    }

    pub fn is_subscribing(&self, application: &str, api: &str) -> bool {
        self.subscriptions
            .get(application)
            .is_some_and(|apis| apis.contains(api))
    }

    /// What is wrong with a 200 to `call`, given that a revoked token may work for `bound_ms`
    /// after its revocation and a retired API until `retire_bound_ms` after it.
    pub fn served(&self, call: &Call<'_>, bound_ms: u64, retire_bound_ms: u64) -> Option<String> {
        let Some(t) = self.tokens.get(call.token_hash) else {
            return Some("an invoke succeeded with a token the key manager never issued".into());
        };
        if call.sent_ms >= t.expires_ms {
            return Some(format!(
                "an invoke sent {} ms after its token expired succeeded",
                call.sent_ms - t.expires_ms
            ));
        }
        if let Some(r) = t.revoked_ms
            && call.sent_ms > r.saturating_add(bound_ms)
        {
            return Some(format!(
                "an invoke sent {} ms after its token's revocation was acknowledged succeeded (bound {bound_ms} ms)",
                call.sent_ms - r
            ));
        }
        let Some(api) = call.api else {
            return Some("an invoke of an API that was never published succeeded".into());
        };
        if !self.published.contains(api) {
            return Some(format!(
                "an invoke of API {api}, never acknowledged as published, succeeded"
            ));
        }
        if let Some(&r) = self.retired.get(api)
            && call.sent_ms > r + retire_bound_ms
        {
            return Some(format!(
                "an invoke of API {api} sent {} ms after its retirement was acknowledged succeeded",
                call.sent_ms - r
            ));
        }
        if !self.is_subscribing(&t.application, api) {
            return Some(format!(
                "an invoke succeeded without a subscription (application {}, API {api})",
                t.application
            ));
        }
        None
    }

    /// What is wrong with a 200 to one of the workload's own calls: a token it was issued
    /// (expiring at `expires_ms`) on an API it subscribed to and did not retire, so what
    /// remains to judge is expiry and revocation (the rest holds by construction; the probes
    /// are judged by `served`).
    pub fn served_own(
        &self,
        sent_ms: u64,
        token_hash: &str,
        expires_ms: u64,
        bound_ms: u64,
    ) -> Option<String> {
        if sent_ms >= expires_ms {
            return Some(format!(
                "an invoke sent {} ms after its token expired succeeded",
                sent_ms - expires_ms
            ));
        }
        let revoked = *self.revocations.get(token_hash)?;
        (sent_ms > revoked.saturating_add(bound_ms)).then(|| {
            format!(
                "an invoke sent {} ms after its token's revocation was acknowledged succeeded (bound {bound_ms} ms)",
                sent_ms - revoked
            )
        })
    }

    /// What is wrong with introspection saying a token is active for a client of
    /// `application`.
    pub fn introspected_active(
        &self,
        sent_ms: u64,
        token_hash: &str,
        application: &str,
    ) -> Option<String> {
        let Some(t) = self.tokens.get(token_hash) else {
            return Some("introspection called a token that was never issued active".into());
        };
        if t.application != application {
            return Some(
                "introspection told a client another application's token is active".into(),
            );
        }
        if sent_ms >= t.expires_ms {
            return Some("introspection called an expired token active".into());
        }
        if t.revoked_ms.is_some_and(|r| sent_ms > r) {
            return Some("introspection called a revoked token active".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle() -> Oracle {
        let mut o = Oracle::default();
        o.issued("t".into(), "app", 10_000);
        o.published("api");
        o.subscribing("app", "api");
        o
    }

    #[test]
    fn each_rule_refuses_its_own_case_and_nothing_else() {
        let o = oracle();
        let at = |sent_ms, token_hash, api| {
            o.served(
                &Call {
                    sent_ms,
                    token_hash,
                    api,
                },
                1000,
                0,
            )
        };
        assert_eq!(at(5_000, "t", Some("api")), None);
        assert!(
            at(5_000, "forged", Some("api"))
                .unwrap_or_default()
                .contains("never issued")
        );
        assert!(
            at(10_000, "t", Some("api"))
                .unwrap_or_default()
                .contains("expired")
        );
        assert!(
            at(5_000, "t", None)
                .unwrap_or_default()
                .contains("never published")
        );
        assert!(
            at(5_000, "t", Some("other"))
                .unwrap_or_default()
                .contains("never acknowledged")
        );
        let mut o2 = o.clone();
        o2.published("other");
        let r = o2.served(
            &Call {
                sent_ms: 5_000,
                token_hash: "t",
                api: Some("other"),
            },
            1000,
            0,
        );
        assert!(r.unwrap_or_default().contains("without a subscription"));
        o2.revoked("t", 2_000);
        let at2 = |o: &Oracle, sent_ms| {
            o.served(
                &Call {
                    sent_ms,
                    token_hash: "t",
                    api: Some("api"),
                },
                1000,
                0,
            )
        };
        assert_eq!(at2(&o2, 3_000), None, "within the bound");
        assert!(at2(&o2, 3_001).unwrap_or_default().contains("revocation"));
        o2.retired("api", 1_000);
        assert!(at2(&o2, 1_500).unwrap_or_default().contains("retirement"));
    }
}
