//! Who may use the dashboard: credentials, Host, Origin and the CSRF token.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use qtask_core::{Error, Result};
use serde::Deserialize;

use crate::args::DashboardArgs;

/// The header the page sends with every write action.
pub const CSRF_HEADER: &str = "x-qtask-csrf";
const TOKEN_COOKIE: &str = "qtask_token";
const MIN_SECRET_LEN: usize = 8;

enum Auth {
    /// Loopback without credentials: anyone on this host.
    Open,
    Token(String),
    /// The whole expected `Authorization` value (`Basic base64(user:password)`).
    Basic(String),
}

pub struct Guard {
    auth: Auth,
    csrf: String,
    loopback: bool,
    bound: OnceLock<SocketAddr>,
}

impl Guard {
    pub fn new(args: &DashboardArgs) -> Result<Guard> {
        let auth = match (&args.token, &args.basic_auth) {
            (Some(_), Some(_)) => return Err(Error::InvalidArgument("give --token or --basic-auth, not both".into())),
            (Some(token), None) => {
                if token.len() < MIN_SECRET_LEN || token.chars().any(|c| c.is_whitespace() || c == ';') {
                    return Err(Error::InvalidArgument(format!(
                        "--token must be at least {MIN_SECRET_LEN} characters without spaces or ';'"
                    )));
                }
                Auth::Token(token.clone())
            }
            (None, Some(pair)) => match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && password.len() >= MIN_SECRET_LEN => Auth::Basic(
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)),
                ),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "--basic-auth must be USER:PASSWORD with a password of at least {MIN_SECRET_LEN} characters"
                    )))
                }
            },
            (None, None) if args.listen.ip().is_loopback() => Auth::Open,
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "refusing to serve the dashboard on {} without --token or --basic-auth \
                     (only loopback addresses may go without)",
                    args.listen
                )))
            }
        };
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no random source: {e}")))?;
        let csrf = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Guard {
            auth,
            csrf,
            loopback: args.listen.ip().is_loopback(),
            bound: OnceLock::new(),
        })
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn set_bound(&self, addr: SocketAddr) {
        let _ = self.bound.set(addr);
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match &self.auth {
            Auth::Open => true,
            Auth::Basic(expected) => authorization.is_some_and(|v| same(v, expected)),
            Auth::Token(token) => {
                let bearer = authorization
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|v| same(v.trim(), token));
                bearer || cookie(headers, TOKEN_COOKIE).is_some_and(|v| same(&v, token))
            }
        }
    }

    /// On loopback, only loopback host names: a page of another site whose name
    /// resolves to 127.0.0.1 (DNS rebinding) sends its own name.
    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.loopback {
            return true;
        }
        let hosts: Vec<&str> = headers
            .get_all(header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        !hosts.is_empty()
            && hosts.iter().all(|host| {
                let name = match host.rsplit_once(':') {
                    Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                    _ => host,
                };
                matches!(name, "127.0.0.1" | "localhost" | "[::1]") || name.starts_with("127.")
            })
    }
}

/// Constant-time comparison of secrets.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn deny(status: StatusCode, message: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], message.to_string()).into_response()
}

/// Checks every request; see the module doc.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !guard.host_allowed(headers) {
        return deny(StatusCode::FORBIDDEN, "host not allowed\n");
    }
    if request.uri().path() != "/login" && !guard.authenticated(headers) {
        let mut response = deny(
            StatusCode::UNAUTHORIZED,
            "authentication required (basic auth, `Authorization: Bearer …`, or /login?token=…)\n",
        );
        if matches!(guard.auth, Auth::Basic(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"qtask\", charset=\"UTF-8\""),
            );
        }
        return response;
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = [format!("http://{host}"), format!("https://{host}")];
            if !expected.iter().any(|e| origin.as_bytes() == e.as_bytes()) {
                return deny(StatusCode::FORBIDDEN, "cross-origin write refused\n");
            }
        }
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(token, guard.csrf()) {
            return deny(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
        }
    }
    next.run(request).await
}

#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
}

/// `/login?token=…`: sets the token as a same-site, script-proof cookie and goes home.
pub async fn login(State(app): State<super::App>, Query(login): Query<Login>) -> Response {
    match &app.guard.auth {
        Auth::Token(token) if same(&login.token, token) => {
            let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = header::HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Auth::Token(_) => deny(StatusCode::UNAUTHORIZED, "wrong token\n"),
        _ => Redirect::to("/").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, token: Option<&str>, basic: Option<&str>) -> DashboardArgs {
        DashboardArgs {
            listen: listen.parse().unwrap(),
            token: token.map(String::from),
            basic_auth: basic.map(String::from),
        }
    }

    #[test]
    fn other_addresses_need_credentials() {
        assert!(Guard::new(&args("127.0.0.1:0", None, None)).is_ok());
        assert!(matches!(
            Guard::new(&args("0.0.0.0:8080", None, None)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(Guard::new(&args("0.0.0.0:8080", Some("a-long-token"), None)).is_ok());
        assert!(Guard::new(&args("0.0.0.0:8080", None, Some("ops:a-long-password"))).is_ok());
        assert!(Guard::new(&args("0.0.0.0:8080", Some("short"), None)).is_err());
        assert!(Guard::new(&args("0.0.0.0:8080", None, Some("nopassword"))).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
