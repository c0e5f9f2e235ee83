//! apim-compiler: topology -> plan (per-node configs, load-balancer rules) and the emitters that render it. Empty until the compiler issue lands.
