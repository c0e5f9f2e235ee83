//! apim-sim: the deterministic simulator: a simulated world running apim-components. Empty until the simulator issue lands.
