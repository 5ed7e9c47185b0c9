//! Size bounds on task inputs, checked before anything large is built.
//!
//! `max_payload_bytes` limits the input's compact JSON. A binding that receives
//! JSON text refuses text far over the limit before parsing it, and the compact
//! form is written through a writer that stops at the limit, so an oversized
//! input costs memory proportional to the limit, never to the input.

use std::io;

use serde_json::Value;

use crate::error::{invalid, Result};

/// Raw text may exceed the limit this many times before it is refused unparsed:
/// the compact form of a JSON value is never longer than a sixth of its text
/// (`\u00e9` is 6 bytes for one character), whitespace aside.
pub const RAW_TEXT_FACTOR: usize = 6;

/// Longest options or config JSON text a binding parses.
pub const MAX_SETTINGS_TEXT: usize = 64 * 1024;

/// Parses a task input received as JSON text, refusing text over
/// [`RAW_TEXT_FACTOR`] × `max_payload_bytes` before parsing it.
pub fn parse_input(text: &str, max_payload_bytes: usize) -> Result<Value> {
    let raw_limit = max_payload_bytes.saturating_mul(RAW_TEXT_FACTOR);
    if text.len() > raw_limit {
        return Err(over_limit(text.len(), max_payload_bytes));
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("input is not valid JSON: {e}")))
}

/// Refuses settings text (config, options) over [`MAX_SETTINGS_TEXT`] before parsing it.
pub fn check_settings_text(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_SETTINGS_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes, over the limit of {MAX_SETTINGS_TEXT}",
            text.len()
        )));
    }
    Ok(())
}

/// The compact JSON of `value`, or an error as soon as it passes `max_bytes`.
pub(crate) fn to_bounded_json<T: serde::Serialize + ?Sized>(value: &T, max_bytes: usize) -> Result<String> {
    let mut writer = BoundedWriter {
        buf: Vec::new(),
        max_bytes,
    };
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => String::from_utf8(writer.buf).map_err(|e| invalid(format!("input: {e}"))),
        Err(e) if e.is_io() => Err(invalid(format!("input is over the limit of {max_bytes} bytes"))),
        Err(e) => Err(invalid(format!("input: {e}"))),
    }
}

fn over_limit(len: usize, max_payload_bytes: usize) -> crate::Error {
    invalid(format!(
        "input is {len} bytes of JSON text, over the limit of {max_payload_bytes} \
         (text is refused unparsed beyond {RAW_TEXT_FACTOR} times the limit)"
    ))
}

struct BoundedWriter {
    buf: Vec<u8>,
    max_bytes: usize,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.max_bytes {
            return Err(io::Error::other("over the limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_far_over_the_limit_is_refused_unparsed() {
        // Not JSON at all: refused for its size, so it was never parsed.
        let err = parse_input(&"x".repeat(61), 10).unwrap_err();
        assert!(err.to_string().contains("over the limit of 10"), "{err}");
        assert!(parse_input(r#"{"a": 1}"#, 10).is_ok());
        assert!(parse_input("{", 10)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }

    #[test]
    fn compact_json_stops_at_the_limit() {
        let value = serde_json::json!({"a": "x".repeat(100)});
        assert!(to_bounded_json(&value, 50).is_err());
        assert_eq!(
            to_bounded_json(&serde_json::json!({"a": 1}), 7).unwrap(),
            r#"{"a":1}"#
        );
        assert!(to_bounded_json(&serde_json::json!({"a": 1}), 6).is_err());
    }
}
