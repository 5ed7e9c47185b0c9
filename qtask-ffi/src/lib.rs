//! C ABI over qtask-core (being written).
