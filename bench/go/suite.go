package main

// suite.go: `bench --suite SYSTEM --params JSON`, one system's rows for bench/run.py
// as JSON lines ({"row": …, "value": …}, {"note": …}). SYSTEM: qtask-go (db and
// queue from the params), river, asynq.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"qtask.dev/qtask"
)

type suiteParams struct {
	PG          string  `json:"pg"`
	Redis       string  `json:"redis"`
	DB          string  `json:"db"`
	Queue       string  `json:"queue"`
	Prefix      string  `json:"prefix"`
	Schema      string  `json:"schema"`
	NEnqueue    int     `json:"n_enqueue"`
	NDrain      int     `json:"n_drain"`
	Concurrency []int   `json:"concurrency"`
	Batch       int     `json:"batch"`
	Rate        float64 `json:"rate"`
	LatencySecs float64 `json:"latency_secs"`
	Delayed     int     `json:"delayed"`
	Timeout     float64 `json:"timeout"`
	// DrainOnly: only the drain rows, for comparing workers back to back.
	DrainOnly bool `json:"drain_only"`
}

func emit(row string, value float64) {
	b, _ := json.Marshal(map[string]interface{}{"row": row, "value": value})
	fmt.Println(string(b))
}

func note(text string) {
	b, _ := json.Marshal(map[string]string{"note": text})
	fmt.Println(string(b))
}

func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

// cpuSeconds is the CPU time (user + system) of this process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// perfControl profiles only the drain: with QTASK_BENCH_PERF_CTL naming the
// control fifo of `perf record --control fifo:PATH -D -1`, the drain sends
// "enable" as it starts and "disable" as it ends (as qtask-bench does).
func perfControl(command string) {
	if path := os.Getenv("QTASK_BENCH_PERF_CTL"); path != "" {
		if err := os.WriteFile(path, []byte(command+"\n"), 0); err != nil {
			fmt.Fprintf(os.Stderr, "go-bench: cannot write %q to %s: %v\n", command, path, err)
		}
	}
}

// rssMB reads VmRSS or VmHWM (the peak) of this process.
func rssMB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// sink counts handler starts and keeps how late each was.
type sink struct {
	mu     sync.Mutex
	count  int
	target int
	first  time.Time
	nth    time.Time
	lags   []float64
	doneCh chan struct{}
}

func (s *sink) reset(target int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count, s.target, s.first, s.nth, s.lags = 0, target, time.Time{}, time.Time{}, nil
	s.doneCh = make(chan struct{})
}

func (s *sink) hit(payload map[string]interface{}) {
	now := time.Now()
	ms := nowMs()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() {
		s.first = now
	}
	for _, k := range []string{"t", "due"} {
		if v, ok := payload[k].(float64); ok {
			s.lags = append(s.lags, ms-v)
			break
		}
	}
	s.count++
	if s.count == s.target {
		s.nth = now
		close(s.doneCh)
	}
}

func (s *sink) wait(limit time.Duration) error {
	s.mu.Lock()
	ch := s.doneCh
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-time.After(limit):
		s.mu.Lock()
		defer s.mu.Unlock()
		return fmt.Errorf("%d of %d handled after %s", s.count, s.target, limit)
	}
}

func (s *sink) percentiles() (float64, float64) {
	s.mu.Lock()
	lags := append([]float64(nil), s.lags...)
	s.mu.Unlock()
	sort.Float64s(lags)
	at := func(p float64) float64 {
		if len(lags) == 0 {
			return -1
		}
		return lags[int(float64(len(lags)-1)*p+0.5)]
	}
	return at(0.5), at(0.99)
}

// suiteSystem is what the rows need of a task queue; enqueueBatch nil: no batch call.
type suiteSystem struct {
	enqueue        func(ctx context.Context, queue string, payload map[string]interface{}) error
	enqueueBatch   func(ctx context.Context, queue string, payloads []map[string]interface{}) error
	enqueueDelayed func(ctx context.Context, queue string, payload map[string]interface{}, delay time.Duration) error
	// startWorker runs a worker of c on queue until the returned stop is called.
	startWorker func(ctx context.Context, queue string, c int) (stop func(), err error)
	close       func()
}

func runSuite(name, params string) error {
	var p suiteParams
	if err := json.Unmarshal([]byte(params), &p); err != nil {
		return fmt.Errorf("--params: %w", err)
	}
	ctx := context.Background()
	s := &sink{}
	s.reset(0)
	var sys *suiteSystem
	var err error
	switch name {
	case "qtask-go":
		sys, err = suiteQtask(p, s)
	case "river":
		sys, err = suiteRiver(ctx, p, s)
	case "asynq":
		sys, err = suiteAsynq(p, s)
	default:
		return fmt.Errorf("unknown suite system %q", name)
	}
	if sys != nil && sys.close != nil {
		defer sys.close()
	}
	if err != nil {
		return err
	}
	return suiteRows(ctx, p, sys, s)
}

func suiteRows(ctx context.Context, p suiteParams, sys *suiteSystem, s *sink) error {
	limit := time.Duration(p.Timeout * float64(time.Second))
	var wg sync.WaitGroup
	var failed atomic.Value
	batches := func(queue string, n int) error {
		if sys.enqueueBatch == nil {
			return enqueueParallel(ctx, sys, queue, n)
		}
		for start := 0; start < n; start += p.Batch {
			var payloads []map[string]interface{}
			for i := start; i < n && i < start+p.Batch; i++ {
				payloads = append(payloads, map[string]interface{}{"i": i})
			}
			if err := sys.enqueueBatch(ctx, queue, payloads); err != nil {
				return err
			}
		}
		return nil
	}
	if !p.DrainOnly {
		if err := enqueueRows(ctx, p, sys, batches); err != nil {
			return err
		}
	}

	for _, c := range p.Concurrency {
		queue := fmt.Sprintf("drain%d", c)
		if err := batches(queue, p.NDrain); err != nil {
			return err
		}
		s.reset(p.NDrain)
		perfControl("enable")
		cpu := cpuSeconds()
		stop, err := sys.startWorker(ctx, queue, c)
		if err != nil {
			return err
		}
		err = s.wait(limit)
		cpu = cpuSeconds() - cpu
		perfControl("disable")
		stop()
		if err != nil {
			return err
		}
		emit(fmt.Sprintf("drain_c%d", c), float64(p.NDrain)/s.nth.Sub(s.first).Seconds())
		if p.DrainOnly {
			emit(fmt.Sprintf("drain_c%d_cpu_us", c), cpu*1e6/float64(p.NDrain))
		}
	}
	emit("rss_busy", rssMB("VmHWM:"))
	if p.DrainOnly {
		return nil
	}

	// Latency: 8 producers sharing a steady rate; a worker of 8.
	n := int(p.Rate * p.LatencySecs)
	s.reset(n)
	stop, err := sys.startWorker(ctx, "latency", 8)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := k; i < n; i += 8 {
				time.Sleep(time.Until(t0.Add(time.Duration(float64(i) / p.Rate * float64(time.Second)))))
				if err := sys.enqueue(ctx, "latency", map[string]interface{}{"t": nowMs()}); err != nil {
					failed.Store(err)
					return
				}
			}
		}(k)
	}
	wg.Wait()
	offered := float64(n) / time.Since(t0).Seconds()
	err = s.wait(120 * time.Second)
	stop()
	if err != nil {
		return err
	}
	p50, p99 := s.percentiles()
	emit("latency_p50", p50)
	emit("latency_p99", p99)
	note(fmt.Sprintf("latency: %d tasks offered at %.0f/s", n, offered))

	// Delayed: due 1 or 2 s after creation; lateness = handler start - due time.
	s.reset(p.Delayed)
	stop, err = sys.startWorker(ctx, "delayed", 8)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	for i := 0; i < p.Delayed; i++ {
		delay := time.Duration(1+i%2) * time.Second
		due := nowMs() + float64(delay.Milliseconds())
		if err := sys.enqueueDelayed(ctx, "delayed", map[string]interface{}{"due": due}, delay); err != nil {
			stop()
			return err
		}
	}
	err = s.wait(60 * time.Second)
	stop()
	if err != nil {
		return err
	}
	p50, p99 = s.percentiles()
	emit("delayed_p50", p50)
	emit("delayed_p99", p99)
	return nil
}

// enqueueRows measures the idle RSS and the enqueue rows.
func enqueueRows(ctx context.Context, p suiteParams, sys *suiteSystem, batches func(string, int) error) error {
	stop, err := sys.startWorker(ctx, "idle", 8)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	emit("rss_idle", rssMB("VmRSS:"))
	stop()

	t0 := time.Now()
	for i := 0; i < p.NEnqueue; i++ {
		if err := sys.enqueue(ctx, "enq1", map[string]interface{}{"i": i}); err != nil {
			return err
		}
	}
	emit("enqueue_1", float64(p.NEnqueue)/time.Since(t0).Seconds())

	t0 = time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := 0; i < p.NEnqueue/8; i++ {
				if err := sys.enqueue(ctx, "enq8", map[string]interface{}{"i": i, "k": k}); err != nil {
					failed.Store(err)
					return
				}
			}
		}(k)
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	emit("enqueue_8", float64(p.NEnqueue/8*8)/time.Since(t0).Seconds())

	if sys.enqueueBatch != nil {
		t0 = time.Now()
		if err := batches("enqb", p.NEnqueue); err != nil {
			return err
		}
		emit("enqueue_batch", float64(p.NEnqueue)/time.Since(t0).Seconds())
	}

	return nil
}

// enqueueParallel queues n tasks (not timed) from 16 goroutines, for a system
// without a batch call.
func enqueueParallel(ctx context.Context, sys *suiteSystem, queue string, n int) error {
	const producers = 16
	errs := make(chan error, producers)
	for k := 0; k < producers; k++ {
		go func(k int) {
			for i := k; i < n; i += producers {
				if err := sys.enqueue(ctx, queue, map[string]interface{}{"i": i}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(k)
	}
	var first error
	for k := 0; k < producers; k++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ---------------------------------------------------------------- qtask

func suiteQtask(p suiteParams, s *sink) (*suiteSystem, error) {
	maxC := 8
	for _, c := range p.Concurrency {
		if c > maxC {
			maxC = c
		}
	}
	cfg := fmt.Sprintf(`{"db":%q,"queue":%q,"table_prefix":%q,"redis_prefix":%q,"max_connections":%d}`,
		p.DB, p.Queue, p.Prefix, "qtask-bench-"+p.Prefix, maxC+8)
	ctx := context.Background()
	cl, err := qtask.OpenJSON(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sys := &suiteSystem{close: func() {
		cl.Close()
		if strings.HasPrefix(p.DB, "postgres") {
			// The task table and the queue settings and schedule tables beside it.
			for _, table := range []string{"task", "queue", "schedule"} {
				dropTable(p.DB, p.Prefix+table)
			}
		}
	}}
	if err := cl.Install(ctx); err != nil {
		return sys, err
	}
	note(fmt.Sprintf("libqtask %s, table %stask; worker: qtask.Worker (the engine of qtask-core, handlers on its threads)", qtask.Version(), p.Prefix))
	sys.enqueue = func(ctx context.Context, queue string, payload map[string]interface{}) error {
		_, err := cl.CreateNow(ctx, "bench", payload, 5*time.Minute, queue)
		return err
	}
	sys.enqueueDelayed = func(ctx context.Context, queue string, payload map[string]interface{}, delay time.Duration) error {
		_, err := cl.Delay(ctx, "bench", payload, delay, 5*time.Minute, queue)
		return err
	}
	sys.startWorker = func(ctx context.Context, queue string, c int) (func(), error) {
		wctx, cancel := context.WithCancel(ctx)
		w := qtask.NewWorker(cl, queue, qtask.WorkerOptions{Concurrency: c})
		w.Handle(func(_ context.Context, m *qtask.Message) error {
			s.hit(m.Input)
			return nil
		})
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Fprintf(os.Stderr, "bench: worker: %v\n", err)
			}
		}, nil
	}
	return sys, nil
}

// ---------------------------------------------------------------- River

type recordArgs struct {
	Payload map[string]interface{} `json:"payload"`
}

func (recordArgs) Kind() string { return "record" }

type recordWorker struct {
	river.WorkerDefaults[recordArgs]
	sink *sink
}

func (w *recordWorker) Work(_ context.Context, job *river.Job[recordArgs]) error {
	w.sink.hit(job.Args.Payload)
	return nil
}

func suiteRiver(ctx context.Context, p suiteParams, s *sink) (*suiteSystem, error) {
	cfg, err := pgxpool.ParseConfig(p.PG)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	schema := p.Schema
	sys := &suiteSystem{close: func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(c, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
		}
		pool.Close()
	}}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return sys, err
	}
	driver := riverpgxv5.New(pool)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: logger})
	if err != nil {
		return sys, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return sys, fmt.Errorf("rivermigrate: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &recordWorker{sink: s})
	inserter, err := river.NewClient(driver, &river.Config{Schema: schema, Workers: workers, Logger: logger})
	if err != nil {
		return sys, err
	}
	note(fmt.Sprintf("schema %s (rivermigrate); FetchCooldown 1ms (River's default 100ms fetches at most MaxWorkers jobs per 100 ms: 10 jobs/s at 1); pool of 40", schema))
	sys.enqueue = func(ctx context.Context, queue string, payload map[string]interface{}) error {
		_, err := inserter.Insert(ctx, recordArgs{Payload: payload}, &river.InsertOpts{Queue: queue})
		return err
	}
	sys.enqueueBatch = func(ctx context.Context, queue string, payloads []map[string]interface{}) error {
		params := make([]river.InsertManyParams, len(payloads))
		for i, x := range payloads {
			params[i] = river.InsertManyParams{Args: recordArgs{Payload: x}, InsertOpts: &river.InsertOpts{Queue: queue}}
		}
		_, err := inserter.InsertMany(ctx, params)
		return err
	}
	sys.enqueueDelayed = func(ctx context.Context, queue string, payload map[string]interface{}, delay time.Duration) error {
		_, err := inserter.Insert(ctx, recordArgs{Payload: payload}, &river.InsertOpts{Queue: queue, ScheduledAt: time.Now().Add(delay)})
		return err
	}
	sys.startWorker = func(ctx context.Context, queue string, c int) (func(), error) {
		client, err := river.NewClient(driver, &river.Config{
			Schema:  schema,
			Workers: workers,
			Logger:  logger,
			Queues:  map[string]river.QueueConfig{queue: {MaxWorkers: c}},
			// River's documented throughput knob; its default caps a worker of 1
			// at 10 jobs/s.
			FetchCooldown: time.Millisecond,
		})
		if err != nil {
			return nil, err
		}
		if err := client.Start(ctx); err != nil {
			return nil, err
		}
		return func() {
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = client.Stop(c)
		}, nil
	}
	return sys, nil
}

// ---------------------------------------------------------------- asynq

func suiteAsynq(p suiteParams, s *sink) (*suiteSystem, error) {
	ro, err := redis.ParseURL(p.Redis)
	if err != nil {
		return nil, err
	}
	opt := asynq.RedisClientOpt{Addr: ro.Addr, Username: ro.Username, Password: ro.Password, DB: ro.DB}
	client := asynq.NewClient(opt)
	sys := &suiteSystem{close: func() { client.Close() }}
	note("asynq defaults (MaxRetry 25, DelayedTaskCheckInterval 5s), Redis DB " + strconv.Itoa(ro.DB))
	task := func(payload map[string]interface{}) *asynq.Task {
		b, _ := json.Marshal(payload)
		return asynq.NewTask("record", b)
	}
	sys.enqueue = func(ctx context.Context, queue string, payload map[string]interface{}) error {
		_, err := client.EnqueueContext(ctx, task(payload), asynq.Queue(queue))
		return err
	}
	sys.enqueueDelayed = func(ctx context.Context, queue string, payload map[string]interface{}, delay time.Duration) error {
		_, err := client.EnqueueContext(ctx, task(payload), asynq.Queue(queue), asynq.ProcessIn(delay))
		return err
	}
	sys.startWorker = func(ctx context.Context, queue string, c int) (func(), error) {
		mux := asynq.NewServeMux()
		mux.HandleFunc("record", func(_ context.Context, t *asynq.Task) error {
			var payload map[string]interface{}
			_ = json.Unmarshal(t.Payload(), &payload)
			s.hit(payload)
			return nil
		})
		srv := asynq.NewServer(opt, asynq.Config{
			Concurrency: c,
			Queues:      map[string]int{queue: 1},
			LogLevel:    asynq.WarnLevel,
			Logger:      quietLogger{},
		})
		if err := srv.Start(mux); err != nil {
			return nil, err
		}
		return srv.Shutdown, nil
	}
	return sys, nil
}
