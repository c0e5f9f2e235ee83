//! apim-pki: the deployment's PKI. A CA, and for every node and balancer of a plan a key and a
//! certificate whose SANs are its host, its names on every platform the outputs target, and its
//! SPIFFE ID; the checks of such files against the plan (`apim check --certs`, `apim node` at
//! start); and writing a folder of them (`apim certs`, `apim up`).

pub mod check;
pub mod dir;
pub mod files;
pub mod inspect;
pub mod issue;

pub use dir::{Subject, Written, read_ca, subjects, subjects_mapped, write_dir};
pub use inspect::{Facts, Problem, spiffe_id, verify};
pub use issue::{Ca, Issued};
