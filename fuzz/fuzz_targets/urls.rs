//! URL parsers: the database dialect, the Redis queue target (single, cluster, TLS
//! options), config validation of both, and `redact`, which must hide every
//! password it is shown.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qtask_core::store::Dialect;
use qtask_core::{redact, Config};

fuzz_target!(|text: &str| {
    let _ = Dialect::from_url(text);
    if text.starts_with("redis") {
        let _ = qtask_core::queue::check_url(text);
    }
    let config = Config {
        db: text.to_string(),
        queue: text.to_string(),
        ..Config::default()
    };
    let _ = config.validate();
    let hidden = redact(text);
    assert_eq!(redact(&hidden), hidden, "redact is not idempotent");
    // A `scheme://user:password@host` with a plain password loses it.
    if let Some((scheme, rest)) = text.split_once("://") {
        let url_like = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !rest.contains("://");
        if let Some((_, password)) = rest.rsplit_once('@').and_then(|(u, _)| u.split_once(':')) {
            let plain = password.len() >= 4 && password.bytes().all(|b| b.is_ascii_alphanumeric());
            if url_like && plain {
                assert!(
                    !hidden.contains(&format!(":{password}@")),
                    "{text:?} -> {hidden:?}"
                );
            }
        }
    }
});
