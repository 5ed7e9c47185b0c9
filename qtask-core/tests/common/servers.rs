//! Private `redis-server` processes: a test's own Redis, to stop, start and have its
//! clients killed without touching the shared servers.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;

use super::redis::redis_conn;
use super::skip;

/// A `redis-server` of this test alone, on a free loopback port, keeping nothing on
/// disk.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// More `redis-server` arguments, kept across restarts.
    extra: Vec<String>,
}

impl RedisServer {
    /// None (after a SKIP line) when `redis-server` cannot be run here.
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(&[]).await
    }

    /// [`RedisServer::start`] with more `redis-server` arguments.
    pub async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer {
            port,
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        if let Err(err) = server.spawn().await {
            skip("redis-server (private)", &format!("{} ({err})", server.url()));
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Some(mut conn) = redis_conn(&self.url()).await {
                let pong: Result<String, _> = ::redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("redis-server did not answer within 5 s".into())
    }

    /// Kills the server (SIGKILL): every key and connection is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await.expect("restart redis-server");
    }

    /// A connection to run commands on the server.
    pub async fn conn(&self) -> MultiplexedConnection {
        redis_conn(&self.url())
            .await
            .expect("private redis-server reachable")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
