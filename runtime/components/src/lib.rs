//! apim-components: the component logic — publisher, store, key manager, gateway, and the
//! balancer's choice of target — written once against the `World` interfaces.
//!
//! Nothing here does I/O or knows which world it runs in: no tokio, hyper or sqlx, no wall
//! clock, no OS randomness. The real world (apim-runtime) and the simulated one (apim-sim)
//! both run exactly this code.

pub mod auth;
pub mod backends;
pub mod balancer;
pub mod breaker;
pub mod client;
pub mod defects;
pub mod feed;
pub mod gateway;
pub mod guard;
pub mod http;
pub mod jwt;
pub mod keymanager;
pub mod limits;
pub mod mem;
pub mod node;
pub mod publisher;
pub mod schedule;
pub mod secret;
pub mod security;
pub mod store;
pub mod tokens;
pub mod validate;
pub mod wire;
pub mod world;

pub use http::{Request, Response};
pub use node::Node;
pub use world::{CallError, Peer, Storage, World};
