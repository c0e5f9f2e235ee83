//! The background work of a node, as loops driven by the world's clock: a gateway's
//! reconciliation with the registry and its revocation catch-up, the purge of ended sessions
//! and tokens, and the probing of databases known to be down. Both worlds only spawn these and
//! cancel them when the node stops, so the timing policy is written once.

use crate::node::Node;
use crate::world::{Peer, Storage, World};
use apim_topology::timing::{
    FIRST_READ_RETRY_MS, PROBE_EVERY_MS, PURGE_MS, RECONCILE_MS, REVOCATIONS_MS,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One loop of a node; it never ends by itself.
pub type Loop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The loops `node` needs, by name.
pub fn loops<W: World + 'static>(node: &Arc<Node>, world: &Arc<W>) -> Vec<(&'static str, Loop)> {
    let mut loops: Vec<(&'static str, Loop)> = Vec::new();
    if node.runs(Peer::Gateway) {
        loops.push((
            "reconcile",
            Box::pin(reconcile(node.clone(), world.clone())),
        ));
        loops.push((
            "revocations",
            Box::pin(revocations(node.clone(), world.clone())),
        ));
        if world.tokens().jwt() {
            loops.push((
                "subscriptions",
                Box::pin(subscriptions(node.clone(), world.clone())),
            ));
        }
    }
    if [Peer::Publisher, Peer::Store, Peer::KeyManager]
        .iter()
        .any(|&c| node.runs(c))
    {
        loops.push(("purge", Box::pin(purge(node.clone(), world.clone()))));
    }
    if !world.storage().breakers().is_empty() {
        loops.push(("probe", Box::pin(probe(world.clone()))));
    }
    loops
}

/// Reads the routing table from the registry at start and every `RECONCILE_MS`; until the
/// first read succeeds, every `FIRST_READ_RETRY_MS`.
async fn reconcile<W: World>(node: Arc<Node>, world: Arc<W>) {
    loop {
        // A registry that cannot be read now is read on the next round.
        let _ = node.gateway.reconcile(world.as_ref()).await;
        let pause = if node.gateway.caught_up() {
            RECONCILE_MS
        } else {
            FIRST_READ_RETRY_MS
        };
        world.sleep(pause).await;
    }
}

/// Asks for missed revocations at start, then every `REVOCATIONS_MS` counted from one ask to
/// the next, so a slow answer does not stretch the period past the cache's trust window
/// (`breaker::CATCH_UP_MS` bounds the answer); a late ask is made at once.
async fn revocations<W: World>(node: Arc<Node>, world: Arc<W>) {
    let mut next = world.now_ms();
    loop {
        world.sleep(next.saturating_sub(world.now_ms())).await;
        // A key manager out of reach now is asked again on the next round.
        let _ = node.gateway.sync_revocations(world.as_ref()).await;
        next = (next + REVOCATIONS_MS).max(world.now_ms());
    }
}

/// Reads every subscription from the key manager at start and every `RECONCILE_MS`; until the
/// first read succeeds, every `FIRST_READ_RETRY_MS`. Pushes bring new ones at once.
async fn subscriptions<W: World>(node: Arc<Node>, world: Arc<W>) {
    let mut read = false;
    loop {
        // A key manager out of reach now is asked again on the next round.
        read |= node
            .gateway
            .sync_subscriptions(world.as_ref())
            .await
            .is_ok();
        world
            .sleep(if read {
                RECONCILE_MS
            } else {
                FIRST_READ_RETRY_MS
            })
            .await;
    }
}

async fn purge<W: World>(node: Arc<Node>, world: Arc<W>) {
    loop {
        world.sleep(PURGE_MS).await;
        node.purge(world.as_ref()).await;
    }
}

async fn probe<W: World>(world: Arc<W>) {
    loop {
        world.sleep(PROBE_EVERY_MS).await;
        world.storage().probe().await;
    }
}
