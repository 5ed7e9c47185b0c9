//! `Config::from_json` (what `qtask_open` and `qtask.Client` parse): any text gives
//! a config that validates, or an InvalidArgument; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qtask_core::{Config, Error};

fuzz_target!(|text: &str| {
    match Config::from_json(text) {
        Ok(config) => {
            config
                .validate()
                .expect("from_json returned a config that does not validate");
            let _ = format!("{config:?}");
        }
        Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("config JSON gave a non-argument error: {other}"),
    }
});
