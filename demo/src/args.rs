//! Command-line options, parsed with the standard library only.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
qtask-demo: thousands of tasks on a fresh SQLite file, several worker processes,
one of them killed with SIGKILL mid-run; ends with a summary where lost must be 0.

usage: qtask-demo [options]

  --tasks N          real-time tasks (default 5000)
  --delayed N        delayed tasks, due 1 to 3 s after creation (default 1000)
  --workers N        worker processes (default 4)
  --concurrency N    handlers running at once in each worker (default 8)
  --timeout SECS     each task's lease; a killed worker's tasks return after it (default 2)
  --work-ms MS       simulated work per task, up to this many ms (default 5)
  --no-kill          do not kill a worker
  --dir PATH         where the SQLite file and the ledger go; emptied first
                     (default: $TMPDIR/qtask-demo)
  --db URL           database (default sqlite://DIR/qtask-demo.db); postgres:// and
                     mysql:// URLs get a table of their own, dropped at the end
  --queue URL        queue: db (default) or a redis:// URL
  --time-limit SECS  fail if not every task is finished by then (default 300)
  -h, --help         this text

exit status: 0 when every created task finished, 1 when any was lost, 2 on error.";

/// What the parent process was asked to do.
#[derive(Clone, Debug)]
pub struct DemoArgs {
    pub tasks: u64,
    pub delayed: u64,
    pub workers: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub work_ms: u64,
    pub kill: bool,
    pub dir: PathBuf,
    pub db: Option<String>,
    pub queue: String,
    pub time_limit: Duration,
}

/// What a worker process (the demo binary re-run with `worker`) is told.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    pub db: String,
    pub queue: String,
    pub table_prefix: String,
    pub concurrency: usize,
    pub work_ms: u64,
    pub ledger: PathBuf,
}

pub enum Command {
    Demo(DemoArgs),
    Worker(WorkerArgs),
    Help,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("worker") {
        args.next();
        return parse_worker(Options::read(args)?).map(Command::Worker);
    }
    let mut options = Options::read(args)?;
    if options.flag("help") || options.flag("h") {
        return Ok(Command::Help);
    }
    let demo = DemoArgs {
        tasks: options.number("tasks", 5000)?,
        delayed: options.number("delayed", 1000)?,
        workers: options.number("workers", 4)?,
        concurrency: options.number("concurrency", 8)?,
        timeout: Duration::from_secs_f64(options.number("timeout", 2.0)?),
        work_ms: options.number("work-ms", 5)?,
        kill: !options.flag("no-kill"),
        dir: options
            .text("dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("qtask-demo")),
        db: options.text("db"),
        queue: options.text("queue").unwrap_or_else(|| "db".into()),
        time_limit: Duration::from_secs_f64(options.number("time-limit", 300.0)?),
    };
    options.finish()?;
    if demo.workers == 0 || demo.concurrency == 0 {
        return Err("--workers and --concurrency must be at least 1".into());
    }
    if demo.tasks + demo.delayed == 0 {
        return Err("nothing to do: --tasks and --delayed are both 0".into());
    }
    if demo.timeout < Duration::from_millis(100) {
        return Err("--timeout must be at least 0.1 s".into());
    }
    Ok(Command::Demo(demo))
}

fn parse_worker(mut options: Options) -> Result<WorkerArgs, String> {
    let required = |options: &mut Options, name: &str| {
        options
            .text(name)
            .ok_or_else(|| format!("worker: --{name} is required"))
    };
    let worker = WorkerArgs {
        db: required(&mut options, "db")?,
        queue: required(&mut options, "queue")?,
        table_prefix: required(&mut options, "table-prefix")?,
        ledger: PathBuf::from(required(&mut options, "ledger")?),
        concurrency: options.number("concurrency", 8)?,
        work_ms: options.number("work-ms", 5)?,
    };
    options.finish()?;
    Ok(worker)
}

/// `--name value`, `--name=value` and bare `--flag`s, consumed by name.
struct Options {
    pairs: Vec<(String, Option<String>)>,
}

impl Options {
    fn read(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .ok_or_else(|| format!("unexpected argument {arg:?} (try --help)"))?;
            if let Some((name, value)) = name.split_once('=') {
                pairs.push((name.to_string(), Some(value.to_string())));
            } else if args.peek().is_some_and(|next| !next.starts_with('-')) {
                pairs.push((name.to_string(), args.next()));
            } else {
                pairs.push((name.to_string(), None));
            }
        }
        Ok(Options { pairs })
    }

    fn take(&mut self, name: &str) -> Option<Option<String>> {
        let at = self.pairs.iter().rposition(|(n, _)| n == name)?;
        let (_, value) = self.pairs.remove(at);
        self.pairs.retain(|(n, _)| n != name);
        Some(value)
    }

    fn flag(&mut self, name: &str) -> bool {
        self.take(name).is_some()
    }

    fn text(&mut self, name: &str) -> Option<String> {
        self.take(name).flatten()
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.take(name) {
            None => Ok(default),
            Some(None) => Err(format!("--{name} needs a value")),
            Some(Some(text)) => text
                .parse()
                .map_err(|_| format!("--{name}: {text:?} is not a valid number")),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(format!("unknown option --{name} (try --help)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(line: &str) -> DemoArgs {
        match parse(line.split_whitespace().map(String::from)) {
            Ok(Command::Demo(demo)) => demo,
            _ => panic!("{line:?} did not parse as a demo"),
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let d = demo("");
        assert_eq!((d.tasks, d.delayed, d.workers, d.kill), (5000, 1000, 4, true));
        let d = demo("--tasks 200 --delayed=20 --workers 2 --no-kill --timeout 0.5");
        assert_eq!((d.tasks, d.delayed, d.workers, d.kill), (200, 20, 2, false));
        assert_eq!(d.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_input_is_refused() {
        for line in ["--tasks x", "--bogus 1", "stray", "--workers 0", "--tasks"] {
            assert!(
                parse(line.split_whitespace().map(String::from)).is_err(),
                "{line}"
            );
        }
    }
}
