//! Build time of a 10,000-node topology, all emitters.
fn main() {}
