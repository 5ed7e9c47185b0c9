//! A message as the Python dict a handler gets, built straight from the engine's
//! JSON value: no JSON text in between (what `json.loads` would return).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use qtask_core::Message;
use serde_json::Value;

/// The message's fields as `qtask.Message(**fields)` takes them: `task_id`,
/// `attempt`, `name`, `queue`, `deadline_at` and `input` (a dict of its own, so that
/// its keys never meet ours; the same shape as `worker::message_json`). The keys are
/// interned: made once, not per message.
pub(crate) fn message_dict<'py>(py: Python<'py>, message: &Message) -> PyResult<Bound<'py, PyDict>> {
    let input = PyDict::new(py);
    for (key, value) in &message.input {
        input.set_item(key, value_object(py, value)?)?;
    }
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "task_id"), message.task_id)?;
    dict.set_item(intern!(py, "attempt"), message.attempt)?;
    dict.set_item(intern!(py, "name"), &message.name)?;
    dict.set_item(intern!(py, "queue"), &message.queue)?;
    dict.set_item(intern!(py, "deadline_at"), message.deadline_at)?;
    dict.set_item(intern!(py, "input"), input)?;
    Ok(dict)
}

fn value_object<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_object(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, value_object(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
