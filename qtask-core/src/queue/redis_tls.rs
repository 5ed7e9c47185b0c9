//! TLS options of Redis URLs, which the redis crate does not read itself.
//!
//! `rediss://host:6380/0?tls_ca=/path/ca.pem` trusts the certificate authorities in
//! that PEM file instead of the system's (as PostgreSQL's `sslrootcert=` and MySQL's
//! `ssl-ca=` do). Without it, `rediss://` trusts the system's roots
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured); `#insecure` skips verification.

use redis::TlsCertificates;

/// The query parameter naming a CA file.
const TLS_CA: &str = "tls_ca=";

/// The URL without any `tls_ca=` parameter, and the certificates that parameter names.
pub(super) fn take_tls_ca(url: &str) -> Result<(String, Option<TlsCertificates>), String> {
    let mut rest = url.to_string();
    let mut path = None;
    let mut search = 0;
    while let Some(found) = rest[search..].find(TLS_CA).map(|i| search + i) {
        let value_start = found + TLS_CA.len();
        let value_end = rest[value_start..]
            .find(['&', '#', ','])
            .map_or(rest.len(), |i| value_start + i);
        let (cut_start, cut_end) = match rest[..found].chars().next_back() {
            // `?a=1&tls_ca=x…`: the `&` goes with it.
            Some('&') => (found - 1, value_end),
            // `?tls_ca=x&a=1`: the `?` stays, the `&` after goes.
            Some('?') if rest[value_end..].starts_with('&') => (found, value_end + 1),
            // `?tls_ca=x`: nothing else in the query.
            Some('?') => (found - 1, value_end),
            // `x_tls_ca=`: another parameter.
            _ => {
                search = value_start;
                continue;
            }
        };
        let value = &rest[value_start..value_end];
        if value.is_empty() {
            return Err("tls_ca= names no file".into());
        }
        path = Some(value.to_string());
        rest.replace_range(cut_start..cut_end, "");
        search = cut_start;
    }
    let certificates = match path {
        None => None,
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| format!("tls_ca {path:?}: {e}"))?;
            Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            })
        }
    };
    Ok((rest, certificates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(url: &str) -> String {
        // A file that exists everywhere; its content does not matter here.
        let url = url.replace("CA", "/etc/hostname");
        match take_tls_ca(&url) {
            Ok((rest, _)) => rest,
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn the_ca_parameter_is_taken_out() {
        assert_eq!(stripped("rediss://h:6380/0?tls_ca=CA"), "rediss://h:6380/0");
        assert_eq!(
            stripped("rediss://h:6380/0?tls_ca=CA&protocol=resp3"),
            "rediss://h:6380/0?protocol=resp3"
        );
        assert_eq!(
            stripped("rediss://h:6380/0?protocol=resp3&tls_ca=CA"),
            "rediss://h:6380/0?protocol=resp3"
        );
        assert_eq!(
            stripped("rediss://h:1,rediss://h:2/?tls_ca=CA"),
            "rediss://h:1,rediss://h:2/"
        );
        assert_eq!(
            stripped("rediss://h:6380/?tls_ca=CA#insecure"),
            "rediss://h:6380/#insecure"
        );
        assert_eq!(
            stripped("rediss://h:6380/?x_tls_ca=1"),
            "rediss://h:6380/?x_tls_ca=1"
        );
        assert_eq!(stripped("redis://h/"), "redis://h/");
        assert!(stripped("rediss://h/?tls_ca=").starts_with("error"));
        assert!(stripped("rediss://h/?tls_ca=/no/such/file").starts_with("error"));
        assert!(take_tls_ca("rediss://h/?tls_ca=/etc/hostname")
            .unwrap()
            .1
            .is_some());
    }
}
