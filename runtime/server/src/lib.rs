//! apim-runtime: the real world (tokio, hyper, sqlx) and the `up` / `node` supervisors.
pub mod storage;
