// BullMQ's rows for bench/run.py, as JSON lines on stdout:
//   node suite.js bullmq --params JSON
// BullMQ as its documentation sets it up: a Queue to add jobs, a Worker with
// `concurrency` in the same process, ioredis connections with
// maxRetriesPerRequest null, completed and failed jobs removed.
"use strict";
const fs = require("fs");
const { Queue, Worker } = require("bullmq");

const emit = (row, value) => console.log(JSON.stringify({ row, value }));
const note = (text) => console.log(JSON.stringify({ note: text }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssMB(field) {
  const line = fs.readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith(field));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : 0;
}

class Sink {
  reset(target) {
    this.count = 0;
    this.target = target;
    this.first = null;
    this.nth = null;
    this.lags = [];
  }
  hit(data) {
    const now = performance.now();
    const ms = Date.now();
    if (this.first === null) this.first = now;
    const t = typeof data.t === "number" ? data.t : data.due;
    if (typeof t === "number") this.lags.push(ms - t);
    this.count += 1;
    if (this.count === this.target) this.nth = now;
  }
  async wait(limitMs) {
    const start = Date.now();
    while (this.nth === null) {
      if (Date.now() - start > limitMs) throw new Error(`${this.count} of ${this.target} handled after ${limitMs} ms`);
      await sleep(2);
    }
  }
  percentiles() {
    const lags = [...this.lags].sort((a, b) => a - b);
    const at = (p) => lags[Math.round((lags.length - 1) * p)];
    return [at(0.5), at(0.99)];
  }
}

async function main() {
  const p = JSON.parse(process.argv[process.argv.indexOf("--params") + 1]);
  const url = new URL(p.redis);
  const connection = { host: url.hostname, port: Number(url.port || 6379), db: Number(url.pathname.slice(1) || 0), maxRetriesPerRequest: null };
  const prefix = `bench-${p.prefix}`;
  const opts = { removeOnComplete: true, removeOnFail: true };
  const sink = new Sink();
  sink.reset(0);
  const queues = new Map();
  const q = (name) => {
    if (!queues.has(name)) queues.set(name, new Queue(name, { connection, prefix }));
    return queues.get(name);
  };
  const startWorker = async (name, concurrency) => {
    const worker = new Worker(name, async (job) => sink.hit(job.data), { connection, prefix, concurrency });
    await worker.waitUntilReady();
    return () => worker.close();
  };
  note(`bullmq ${require("bullmq/package.json").version}, prefix ${prefix}, removeOnComplete`);

  let stop = await startWorker("idle", 8);
  await sleep(1000);
  emit("rss_idle", rssMB("VmRSS:"));
  await stop();

  let t0 = performance.now();
  for (let i = 0; i < p.n_enqueue; i++) await q("enq1").add("record", { i }, opts);
  emit("enqueue_1", p.n_enqueue / ((performance.now() - t0) / 1000));

  t0 = performance.now();
  await Promise.all(
    [...Array(8).keys()].map(async (k) => {
      for (let i = 0; i < Math.floor(p.n_enqueue / 8); i++) await q("enq8").add("record", { i, k }, opts);
    }),
  );
  emit("enqueue_8", (Math.floor(p.n_enqueue / 8) * 8) / ((performance.now() - t0) / 1000));

  const fill = async (name, n) => {
    for (let s = 0; s < n; s += p.batch) {
      const jobs = [];
      for (let i = s; i < Math.min(n, s + p.batch); i++) jobs.push({ name: "record", data: { i }, opts });
      await q(name).addBulk(jobs);
    }
  };
  t0 = performance.now();
  await fill("enqb", p.n_enqueue);
  emit("enqueue_batch", p.n_enqueue / ((performance.now() - t0) / 1000));

  for (const c of p.concurrency) {
    const name = `drain${c}`;
    await fill(name, p.n_drain);
    sink.reset(p.n_drain);
    stop = await startWorker(name, c);
    try {
      await sink.wait(p.timeout * 1000);
    } finally {
      await stop();
    }
    emit(`drain_c${c}`, p.n_drain / ((sink.nth - sink.first) / 1000));
  }
  emit("rss_busy", rssMB("VmHWM:"));

  // Latency: 8 producers sharing a steady rate; a worker of 8.
  const n = Math.floor(p.rate * p.latency_secs);
  sink.reset(n);
  stop = await startWorker("latency", 8);
  await sleep(500);
  t0 = performance.now();
  await Promise.all(
    [...Array(8).keys()].map(async (k) => {
      for (let i = k; i < n; i += 8) {
        const pause = t0 + (i / p.rate) * 1000 - performance.now();
        if (pause > 0) await sleep(pause);
        await q("latency").add("record", { t: Date.now() }, opts);
      }
    }),
  );
  const offered = n / ((performance.now() - t0) / 1000);
  try {
    await sink.wait(120000);
  } finally {
    await stop();
  }
  let [p50, p99] = sink.percentiles();
  emit("latency_p50", p50);
  emit("latency_p99", p99);
  note(`latency: ${n} tasks offered at ${offered.toFixed(0)}/s`);

  // Delayed: due 1 or 2 s after creation; lateness = handler start - due time.
  sink.reset(p.delayed);
  stop = await startWorker("delayed", 8);
  await sleep(1000);
  for (let i = 0; i < p.delayed; i++) {
    const delay = (1 + (i % 2)) * 1000;
    await q("delayed").add("record", { due: Date.now() + delay }, { ...opts, delay });
  }
  try {
    await sink.wait(60000);
  } finally {
    await stop();
  }
  [p50, p99] = sink.percentiles();
  emit("delayed_p50", p50);
  emit("delayed_p99", p99);

  for (const queue of queues.values()) {
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bullmq: ${err.stack || err}`);
    process.exit(1);
  },
);
