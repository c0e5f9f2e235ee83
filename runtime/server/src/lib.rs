//! apim-runtime: the real world (tokio, hyper, sqlx) and the `up` / `node` supervisors. Empty until the runtime issue lands.
