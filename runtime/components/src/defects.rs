//! Deliberate defects, one per class of bug the simulator claims to catch. Only the
//! simulator's own tests switch one on (through `World::defects`), to show that its workload
//! and invariants find that class; the real world never does.
//!
//! They exist only with the `defects` feature, which the simulator's tests turn on: without it
//! (the release binary) `Defects::has` is always false, so every defect's branch is compiled
//! out and no switch is left to turn on.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// The gateway serves a token whatever its subscriptions.
    SubscriptionSkipped,
    /// The key manager treats expired tokens as active.
    ExpiryIgnored,
    /// The gateway's cache is keyed on a token's first 64 characters (a JWT's signature is
    /// read at its length), so anything appended to a valid token passes.
    SuffixAccepted,
    /// The gateway never drops a route: retired APIs stay invokable.
    RetiredRouted,
    /// The store lets any signed-in user act on any application.
    OwnerCheckDropped,
    /// The key manager acknowledges a revocation without telling the gateways.
    RevocationPushDropped,
    /// The gateway's revocation catch-up is asked for but not applied to its cache.
    CatchUpNotApplied,
    /// The gateway never reads the registry: a missed publish or a restart is never repaired.
    ReconcileDisabled,
    /// The apim database answers "subscribed" for any API once the application has one
    /// subscription (a storage bug the gateway and key manager cannot see).
    SubscriptionLookupWrong,
    /// The gateway accepts a JWT past its expiry.
    JwtExpiryIgnored,
    /// The gateway accepts a JWT whose key id it does not know without checking its signature.
    UnknownKeyUnchecked,
    /// The gateway never forgets a subscription: an ended one keeps working.
    SubscriptionEndIgnored,
    /// A node's internal listener serves every endpoint to any node of the deployment.
    InternalOpen,
}

impl Defect {
    pub const ALL: [Defect; 13] = [
        Defect::SubscriptionSkipped,
        Defect::ExpiryIgnored,
        Defect::SuffixAccepted,
        Defect::RetiredRouted,
        Defect::OwnerCheckDropped,
        Defect::RevocationPushDropped,
        Defect::CatchUpNotApplied,
        Defect::ReconcileDisabled,
        Defect::SubscriptionLookupWrong,
        Defect::JwtExpiryIgnored,
        Defect::UnknownKeyUnchecked,
        Defect::SubscriptionEndIgnored,
        Defect::InternalOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Defect::SubscriptionSkipped => "subscription-skipped",
            Defect::ExpiryIgnored => "expiry-ignored",
            Defect::SuffixAccepted => "suffix-accepted",
            Defect::RetiredRouted => "retired-routed",
            Defect::OwnerCheckDropped => "owner-check-dropped",
            Defect::RevocationPushDropped => "revocation-push-dropped",
            Defect::CatchUpNotApplied => "catch-up-not-applied",
            Defect::ReconcileDisabled => "reconcile-disabled",
            Defect::SubscriptionLookupWrong => "subscription-lookup-wrong",
            Defect::JwtExpiryIgnored => "jwt-expiry-ignored",
            Defect::UnknownKeyUnchecked => "unknown-key-unchecked",
            Defect::SubscriptionEndIgnored => "subscription-end-ignored",
            Defect::InternalOpen => "internal-open",
        }
    }

    pub fn parse(name: &str) -> Option<Defect> {
        Defect::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// A set of defects; empty everywhere but in the simulator's tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defects(u16);

impl Defects {
    pub const NONE: Defects = Defects(0);

    pub fn of(d: Defect) -> Defects {
        Defects::NONE.with(d)
    }

    pub fn with(self, d: Defect) -> Defects {
        Defects(self.0 | 1 << d as u16)
    }

    #[inline(always)]
    pub fn has(self, d: Defect) -> bool {
        cfg!(feature = "defects") && self.0 & 1 << d as u16 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "defects")]
    fn each_defect_is_its_own_switch() {
        for d in Defect::ALL {
            let s = Defects::of(d);
            assert!(s.has(d));
            assert_eq!(Defect::parse(d.as_str()), Some(d));
            for other in Defect::ALL.into_iter().filter(|o| *o != d) {
                assert!(!s.has(other), "{d:?} switched {other:?}");
            }
        }
        assert!(Defects::NONE.is_empty());
    }

    #[test]
    #[cfg(not(feature = "defects"))]
    fn without_the_feature_no_defect_is_ever_on() {
        for d in Defect::ALL {
            assert!(!Defects::of(d).has(d));
        }
    }
}
