//! pyo3 module over qtask-core (being written).
