//! Runs the `qtask` binary against SQLite, PostgreSQL and MariaDB: lists, retries,
//! cancels, pauses, exit codes, and the dashboard's /metrics and access rules.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use qtask_core::blocking::Client;
use qtask_core::{Config, NewTask, Status};
use serde_json::{json, Value};

const Q: &str = "CLI:Q";

struct Db {
    name: &'static str,
    url: String,
}

/// SQLite always; the servers when they answer (a failure in CI when they do not).
fn databases() -> Vec<Db> {
    let file = std::env::temp_dir().join(format!("qtask-cli-{}.db", std::process::id()));
    let mut dbs = vec![Db {
        name: "sqlite",
        url: format!("sqlite://{}", file.display()),
    }];
    for (name, var, default) in [
        (
            "postgres",
            "QTASK_TEST_PG_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        (
            "mariadb",
            "QTASK_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
    ] {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
        let probe = Config {
            db: url.clone(),
            sweeper: false,
            max_connections: 1,
            ..Config::default()
        };
        match Client::open(probe) {
            Ok(c) => {
                c.close();
                dbs.push(Db { name, url });
            }
            Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("{name} not reachable at {url} (CI=true: a missing server is a failure)")
            }
            Err(_) => eprintln!("SKIP: {name} not reachable at {url} (run scripts/services.sh)"),
        }
    }
    dbs
}

fn prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("cli{}_{tag}_{}_", std::process::id(), nanos % 100_000)
}

struct World {
    db: String,
    prefix: String,
    client: Client,
}

impl World {
    fn new(db: &Db, tag: &str) -> World {
        let prefix = prefix(tag);
        let world = World {
            db: db.url.clone(),
            prefix: prefix.clone(),
            client: Client::open(Config {
                db: db.url.clone(),
                table_prefix: prefix,
                sweeper: false,
                ..Config::default()
            })
            .unwrap(),
        };
        let out = world.qtask(&["install"]);
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", db.name);
        world
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("qtask").unwrap();
        cmd.env_remove("QTASK_DB_URL")
            .env_remove("QTASK_QUEUE_URL")
            .env("QTASK_TABLE_PREFIX", &self.prefix)
            .args(["--db", &self.db])
            .args(args);
        cmd
    }

    fn qtask(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.qtask(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn failed_task(&self, i: i64, error: &str) -> i64 {
        let c = &self.client;
        let id = c
            .create(NewTask::new("cli test", json!({ "i": i }), Q).max_count(1))
            .unwrap()
            .id;
        let m = c.pop(Q, Duration::ZERO).unwrap().expect("due");
        assert!(c.processing(m.task_id).unwrap());
        assert_eq!(c.fail(id, error).unwrap(), Status::Failed);
        id
    }

    fn drop(self) {
        let client = self.client.as_async().clone();
        qtask_core::blocking::wait(async move { Ok(client.store().drop_tables().await?) }).unwrap();
        self.client.close();
    }
}

#[test]
fn failed_tasks_are_listed_retried_and_cancelled() {
    for db in databases() {
        let w = World::new(&db, "retry");
        let a = w.failed_task(1, "connection reset");
        let b = w.failed_task(2, "bad input");

        let page = w.json(&["tasks", "list", "--status", "failed", "--json"]);
        let tasks = page["tasks"].as_array().unwrap();
        let seen: Vec<(i64, &str)> = tasks
            .iter()
            .map(|t| (t["id"].as_i64().unwrap(), t["last_error"].as_str().unwrap()))
            .collect();
        assert_eq!(seen, [(b, "bad input"), (a, "connection reset")], "{}", db.name);

        let table = w.qtask(&["tasks", "list", "--status", "failed"]);
        let text = String::from_utf8(table.stdout).unwrap();
        assert!(
            text.contains("connection reset") && text.contains("1/1"),
            "{text}"
        );

        let none = w.json(&[
            "tasks",
            "list",
            "--created-before",
            "2001-01-01T00:00:00Z",
            "--json",
        ]);
        assert!(none["tasks"].as_array().unwrap().is_empty());
        let since = w.json(&[
            "tasks",
            "list",
            "--created-after",
            "2001-01-01 00:00:00",
            "--json",
        ]);
        assert_eq!(since["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(
            w.qtask(&["tasks", "list", "--created-after", "yesterday"])
                .status
                .code(),
            Some(2)
        );

        let one = w.json(&["tasks", "get", &a.to_string(), "--json"]);
        assert_eq!(one["status"], "failed");

        let retried = w.json(&["tasks", "retry", "--status", "failed", "--json"]);
        assert_eq!(retried["changed"], 2, "{}", db.name);
        let waiting = w.json(&["tasks", "list", "--status", "waiting", "--queue", Q, "--json"]);
        assert_eq!(waiting["tasks"].as_array().unwrap().len(), 2);
        let m = w
            .client
            .pop(Q, Duration::ZERO)
            .unwrap()
            .expect("retried task runs");
        assert_eq!(m.attempt, 2);

        // Exit codes scripts can test.
        assert_eq!(
            w.qtask(&["tasks", "retry", &a.to_string()]).status.code(),
            Some(4)
        );
        assert_eq!(w.qtask(&["tasks", "get", "987654321"]).status.code(), Some(3));
        assert_eq!(
            w.qtask(&["tasks", "list", "--status", "bogus"]).status.code(),
            Some(2)
        );
        assert_eq!(w.qtask(&["tasks", "retry"]).status.code(), Some(2));
        assert_eq!(
            w.qtask(&["tasks", "retry", "--status", "waiting"]).status.code(),
            Some(2)
        );

        // The popped task is processing (its attempt began at the claim); the other waits.
        let other = if m.task_id == a { b } else { a };
        let cancelled = w.json(&["tasks", "cancel", "--status", "waiting", "--queue", Q, "--json"]);
        assert_eq!(cancelled["changed"], 1, "{}", db.name);
        assert_eq!(w.client.get(other).unwrap().status, Status::Cancelled);
        assert_eq!(w.client.get(m.task_id).unwrap().status, Status::Processing);
        let by_id = w.json(&["tasks", "retry", &other.to_string(), "--json"]);
        assert_eq!(by_id["changed"], 1);
        w.drop();
    }
}

#[test]
fn schedules_are_added_listed_and_removed() {
    for db in databases() {
        let w = World::new(&db, "sched");
        let added = w.json(&[
            "schedules",
            "add",
            "nightly report",
            "--queue",
            Q,
            "--cron",
            "0 9 * * *",
            "--time-zone",
            "Asia/Shanghai",
            "--missed",
            "skip",
            "--input",
            r#"{"kind": "report"}"#,
            "--timeout",
            "30",
            "--json",
        ]);
        assert_eq!(added["time_zone"], "Asia/Shanghai", "{}", db.name);
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(added["next_at"].as_i64().unwrap() % 86_400_000, 3_600_000);
        assert_eq!(
            (added["missed"].as_str(), added["timeout_ms"].as_i64()),
            (Some("skip"), Some(30_000))
        );
        let pulse = w.json(&[
            "schedules",
            "add",
            "pulse",
            "--queue",
            Q,
            "--every",
            "5m",
            "--priority",
            "-5",
            "--json",
        ]);
        assert_eq!(
            (pulse["every_ms"].as_i64(), pulse["priority"].as_i64()),
            (Some(300_000), Some(-5))
        );
        let again = w.json(&[
            "schedules",
            "add",
            "pulse",
            "--queue",
            Q,
            "--every",
            "300",
            "--json",
        ]);
        assert_eq!(
            again["next_at"], pulse["next_at"],
            "same timing: the next tick stays"
        );

        let listed = w.json(&["schedules", "list", "--json"]);
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nightly report", "pulse"]);
        let text = String::from_utf8(w.qtask(&["schedules", "list"]).stdout).unwrap();
        assert!(
            text.contains("0 9 * * * (Asia/Shanghai)") && text.contains("every 5m"),
            "{text}"
        );
        // The engine's own view agrees.
        assert_eq!(w.client.schedules().unwrap().len(), 2);

        // Bad timings are usage errors (exit 2) and write nothing.
        for bad in [
            &["--cron", "61 * * * *"][..],
            &["--cron", "* * * * *", "--time-zone", "Mars/Olympus"],
            &["--every", "0"],
            &["--every", "soon"],
            &["--every", "5", "--cron", "* * * * *"],
            &[],
            &["--every", "5", "--input", "[1]"],
            &["--every", "5", "--priority", "1001"],
        ] {
            let mut args = vec!["schedules", "add", "bad", "--queue", Q];
            args.extend_from_slice(bad);
            assert_eq!(w.qtask(&args).status.code(), Some(2), "{bad:?}");
        }
        assert_eq!(
            w.json(&["schedules", "list", "--json"]).as_array().unwrap().len(),
            2
        );

        let removed = w.json(&["schedules", "remove", "pulse", "--json"]);
        assert_eq!(removed["removed"], true);
        let twice = w.json(&["schedules", "remove", "pulse", "--json"]);
        assert_eq!(twice["removed"], false);
        assert_eq!(w.client.schedules().unwrap().len(), 1);
        w.drop();
    }
}

#[test]
fn bulk_work_over_thousands_of_tasks_and_paused_queues() {
    for db in databases() {
        let w = World::new(&db, "bulk");
        let n = 2500;
        let tasks = (0..n)
            .map(|i| NewTask::new("bulk", json!({ "i": i }), Q))
            .collect();
        w.client.create_many(tasks).unwrap();
        let cancelled = w.json(&["tasks", "cancel", "--status", "waiting", "--json"]);
        assert_eq!(cancelled["changed"], n, "{}", db.name);
        let out = w.qtask(&["tasks", "retry", "--status", "cancelled", "--queue", Q]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("retried {n} task(s)")
        );

        assert_eq!(w.qtask(&["queues", "pause", Q]).status.code(), Some(0));
        let queues = w.json(&["queues", "list", "--json"]);
        assert_eq!(queues[0]["queue"], Q);
        assert_eq!(queues[0]["paused"], true);
        assert_eq!(queues[0]["waiting"], n);
        assert!(
            w.client.pop(Q, Duration::ZERO).unwrap().is_none(),
            "{}: paused",
            db.name
        );
        assert_eq!(w.qtask(&["queues", "resume", Q]).status.code(), Some(0));
        // This client read the pause before; it notices the resume within one sweep interval.
        assert!(w.client.pop(Q, Duration::from_secs(5)).unwrap().is_some());
        let stats = w.json(&["stats", "--json"]);
        assert_eq!(
            stats["waiting"].as_i64().unwrap() + stats["processing"].as_i64().unwrap(),
            n
        );
        w.drop();
    }
}

/// A running `qtask dashboard`, stopped on drop.
struct Dashboard {
    child: Child,
    addr: String,
}

impl Dashboard {
    fn start(w: &World, extra: &[&str]) -> Dashboard {
        let mut args = vec!["dashboard", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Dashboard::spawn(w.command(&args))
    }

    /// Starts `qtask … dashboard …` and waits for its listening line.
    fn spawn(mut command: Command) -> Dashboard {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .expect("listening line")
            .to_string();
        Dashboard { child, addr }
    }

    /// One HTTP/1.1 request; returns the status code and the body.
    fn request(&self, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|h| h.starts_with("Host:")) {
            text.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(text.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dashboard_serves_metrics_and_guards_writes() {
    let db = &databases()[0];
    let w = World::new(db, "dash");
    let id = w.failed_task(1, "timeout talking to the bank");

    // Not on another address without credentials.
    let refused = w.qtask(&["dashboard", "--listen", "0.0.0.0:0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token"));

    let d = Dashboard::start(&w, &[]);
    let (code, metrics) = d.request("GET", "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!("qtask_tasks{{queue=\"{Q}\",status=\"failed\"}} 1")),
        "{metrics}"
    );
    let (code, page) = d.request("GET", "/", &[]);
    assert_eq!(code, 200);
    let csrf = page.split("name=\"qtask-csrf\" content=\"").nth(1).unwrap()[..32].to_string();
    let retry = format!("/api/tasks/{id}/retry");
    assert_eq!(d.request("POST", &retry, &[]).0, 403, "no CSRF header");
    let evil = ["Origin: http://evil.example", &format!("x-qtask-csrf: {csrf}")];
    assert_eq!(d.request("POST", &retry, &evil).0, 403, "cross-origin");
    assert_eq!(
        d.request("GET", "/", &["Host: evil.example"]).0,
        403,
        "DNS rebinding"
    );
    let (code, body) = d.request("POST", &retry, &[&format!("x-qtask-csrf: {csrf}")]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(w.client.get(id).unwrap().status, Status::Waiting);
    let (code, _) = d.request("POST", &retry, &[&format!("x-qtask-csrf: {csrf}")]);
    assert_eq!(code, 409, "retrying a waiting task");
    let (_, overview) = d.request("GET", "/api/overview", &[]);
    assert!(!overview.contains("password"));
    // The engine's own series of the dashboard's process: its retry, and the latency
    // of the pages it served.
    let (_, metrics) = d.request("GET", "/metrics", &[]);
    for series in [
        "qtask_tasks_retried_total 1",
        "qtask_dashboard_actions_total{action=\"retry\"} 1",
        "qtask_dashboard_request_duration_seconds_count{route=\"overview\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing in:\n{metrics}");
    }
    drop(d);

    let d = Dashboard::start(&w, &["--token", "s3cret-token-for-tests"]);
    assert_eq!(d.request("GET", "/api/overview", &[]).0, 401);
    assert_eq!(
        d.request("GET", "/metrics", &["Authorization: Bearer wrong-token-xyz"])
            .0,
        401
    );
    assert_eq!(
        d.request(
            "GET",
            "/metrics",
            &["Authorization: Bearer s3cret-token-for-tests"]
        )
        .0,
        200
    );
    assert_eq!(
        d.request("GET", "/login?token=s3cret-token-for-tests", &[]).0,
        303
    );
    assert_eq!(
        d.request("GET", "/", &["Cookie: qtask_token=s3cret-token-for-tests"])
            .0,
        200
    );
    drop(d);

    let d = Dashboard::start(&w, &["--basic-auth", "ops:a-long-password"]);
    assert_eq!(d.request("GET", "/", &[]).0, 401);
    // base64 of "ops:wrong-password", then of "ops:a-long-password"
    assert_eq!(
        d.request("GET", "/", &["Authorization: Basic b3BzOndyb25nLXBhc3N3b3Jk"])
            .0,
        401
    );
    assert_eq!(
        d.request("GET", "/", &["Authorization: Basic b3BzOmEtbG9uZy1wYXNzd29yZA=="])
            .0,
        200
    );
    drop(d);
    w.drop();
}

/// A password in the database or queue URL shows in no output of the `qtask` command
/// (tables, JSON, errors) and on no page of the dashboard (HTML, API, /metrics).
#[test]
fn passwords_never_show_in_the_cli_or_the_dashboard() {
    const SECRET: &str = "s3cret-in-the-url";
    let Some(pg) = databases().into_iter().find(|d| d.name == "postgres") else {
        eprintln!("SKIP: the password test needs PostgreSQL (loopback logins take any password)");
        return;
    };
    let db = Db {
        name: "postgres",
        url: pg.url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1),
    };
    assert!(db.url.contains(SECRET), "{}", db.url);
    let w = World::new(&db, "secret");
    let id = w.failed_task(1, "gave up");
    let hidden = |what: &str, out: &Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(SECRET), "{what} shows the password: {text}");
        text
    };
    let installed = hidden("install", &w.qtask(&["install"]));
    assert!(installed.contains("postgres:***@"), "{installed}");
    let queue = format!("redis://:{SECRET}@127.0.0.1:1/0");
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["queues", "list", "--json"],
        vec!["tasks", "list", "--status", "failed"],
        vec!["tasks", "get", &id.to_string(), "--json"],
        // A Redis queue that is down: the retry's offer fails and is made later.
        vec![
            "--queue", &queue, "tasks", "retry", "--status", "failed", "--json",
        ],
    ] {
        let out = w.qtask(&args);
        hidden(&args.join(" "), &out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    let unreachable = format!("postgres://u:{SECRET}@127.0.0.1:1/none");
    let mut refused = Command::cargo_bin("qtask").unwrap();
    let out = refused.args(["--db", &unreachable, "stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    hidden("an unreachable database", &out);

    let d = Dashboard::spawn(w.command(&["--queue", &queue, "dashboard", "--listen", "127.0.0.1:0"]));
    let (_, overview) = d.request("GET", "/api/overview", &[]);
    assert!(
        overview.contains("postgres:***@") && overview.contains(":***@127.0.0.1:1"),
        "{overview}"
    );
    for path in [
        "/".to_string(),
        "/api/overview".to_string(),
        "/api/tasks?status=waiting".to_string(),
        format!("/api/tasks/{id}"),
        "/metrics".to_string(),
        "/api/tasks/999999999".to_string(),
    ] {
        let (code, body) = d.request("GET", &path, &[]);
        assert!(
            !body.contains(SECRET),
            "{path} ({code}) shows the password: {body}"
        );
    }
    drop(d);
    w.drop();
}

#[test]
fn queue_limits_and_priorities_are_set_and_shown() {
    for db in databases() {
        let w = World::new(&db, "limit");
        let id = w
            .client
            .create(NewTask::new("urgent", json!({}), Q).priority(7))
            .unwrap()
            .id;
        let task = w.json(&["tasks", "get", &id.to_string(), "--json"]);
        assert_eq!(task["priority"], 7, "{}", db.name);
        let out = w.qtask(&["tasks", "get", &id.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("priority") && text.contains('7'), "{text}");

        let out = w.qtask(&[
            "queues",
            "limit",
            Q,
            "--max-processing",
            "2",
            "--max-per-second",
            "0.5",
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{Q}: 2 processing, 0.5/s")
        );
        let queues = w.json(&["queues", "list", "--json"]);
        assert_eq!(
            queues[0]["limits"],
            json!({"max_processing": 2, "max_per_second": 0.5})
        );
        let out = w.qtask(&["queues", "list"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("2 processing, 0.5/s"));
        let out = w.qtask(&["queues", "limit", Q, "--max-processing", "0"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(w.qtask(&["queues", "limit", Q]).status.code(), Some(0));
        let queues = w.json(&["queues", "list", "--json"]);
        assert_eq!(
            queues[0]["limits"],
            json!({"max_processing": null, "max_per_second": null})
        );
        w.drop();
    }
}
