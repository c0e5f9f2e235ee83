//! apim-sim: the deterministic simulator. A simulated world — in-memory databases, a virtual
//! network built from the plan, a virtual clock, one seeded random source, a single-threaded
//! scheduler — running the component logic of apim-components, under a fault schedule.
//!
//! Nothing here reads the wall clock, the OS random source or iterates a hash map: the same
//! plan, scenario and seed give the same run, byte for byte.

pub mod codes;
pub mod compare;
pub mod diagram;
pub mod driver;
pub mod exec;
pub mod explore;
pub mod failover;
pub mod html;
pub mod jobs;
pub mod oracle;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod workload;
pub mod world;
