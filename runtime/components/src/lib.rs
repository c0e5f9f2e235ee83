//! apim-components: the component logic (publisher, store, key manager, gateway, balancer choice) against the World interfaces; no I/O, no tokio, hyper or sqlx. Empty until the runtime issue lands.
