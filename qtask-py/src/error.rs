//! The one place where qtask-core's errors become Python exceptions.
//!
//! The exception classes live in `qtask.errors` (Python), because several of them
//! also subclass a built-in (`InvalidArgument` is a `ValueError`, `NotFound` a
//! `KeyError`, `TimeoutError` the built-in `TimeoutError`); every one is rooted at
//! `qtask.Error`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use qtask_core::Error;

/// A core error on its way to Python: `?` turns it into the matching `qtask.*` exception.
pub struct PyQtaskError(Error);

pub type PyQtaskResult<T> = Result<T, PyQtaskError>;

impl From<Error> for PyQtaskError {
    fn from(err: Error) -> Self {
        PyQtaskError(err)
    }
}

/// The name of the `qtask.errors` class for each core error.
fn class_name(err: &Error) -> &'static str {
    match err {
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::NotFound(_) => "NotFound",
        Error::InvalidState(_) => "InvalidState",
        Error::Database(_) => "DatabaseError",
        Error::Queue(_) => "QueueError",
        Error::Timeout(_) => "TimeoutError",
        Error::Closed => "ClosedError",
        Error::Internal(_) => "InternalError",
    }
}

impl From<PyQtaskError> for PyErr {
    fn from(PyQtaskError(err): PyQtaskError) -> PyErr {
        let name = class_name(&err);
        let message = err.to_string();
        Python::attach(|py| {
            let class = py
                .import("qtask.errors")
                .and_then(|module| module.getattr(name))
                .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
            match class {
                Ok(class) => PyErr::from_type(class, message),
                // Only if the package is broken; still an exception, never a panic.
                Err(import_error) => {
                    let err = PyRuntimeError::new_err(format!("qtask.{name}: {message}"));
                    err.set_cause(py, Some(import_error));
                    err
                }
            }
        })
    }
}
