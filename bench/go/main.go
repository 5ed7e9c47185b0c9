// Command bench puts qtask's Go package next to the Go task queues people
// would pick instead (River on PostgreSQL, asynq on Redis), measured in the
// same run, on the same servers, on the same machine.
//
// Run it through run.sh (it builds libqtask in release and sets the cgo flags):
//
//	bash bench/go/run.sh [--n 2000] [--rounds 3] [--only SYSTEM,...] [--concurrency 1,4] [--markdown]
//
// For every system: n jobs enqueued one by one (timed: the enqueue rate), then
// drained to completion by in-process workers with concurrency 1 (timed); the
// same again with concurrency 4. The handler does nothing. All systems run in
// turn, --rounds times (default 3); the tables give the medians. A program,
// not a test: nothing asserts a speed, and no test suite calls it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
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

// The systems, in the order they run.
var systems = []struct{ name, label string }{
	{"floor-pgx", "pgx INSERT, autocommit (floor, PG)"},
	{"floor-redis", "go-redis LPUSH (floor, Redis)"},
	{"qtask-pg-redis", "qtask PostgreSQL + Redis queue"},
	{"qtask-pg-db", "qtask PostgreSQL + db queue"},
	{"river", "River (PostgreSQL)"},
	{"asynq", "asynq (Redis only)"},
}

// The pairs whose ratio qtask / peer is printed.
var pairs = [][2]string{
	{"qtask-pg-db", "river"},
	{"qtask-pg-redis", "asynq"},
}

type options struct {
	n            int
	conc         []int
	only         map[string]bool
	pg           string
	redisURL     string
	redisDB      int
	runID        string
	timeout      time.Duration
	riverCool    time.Duration
	markdown     bool
	rounds       int
	redisOptions *redis.Options
}

// A system under test: enqueue one job, drain n jobs with c workers.
type system struct {
	enqueue func(ctx context.Context, i int) error
	// drain processes n queued jobs with concurrency c and returns the time from
	// the workers' start until the n-th job is done (nil for the floors).
	drain func(ctx context.Context, c, n int) (time.Duration, error)
	notes string
}

type result struct {
	enqueue float64         // jobs/s over all fills
	drain   map[int]float64 // concurrency -> jobs/s
	notes   string
	err     error
}

func main() {
	// bench/run.py's entry: --suite SYSTEM --params JSON (suite.go).
	if len(os.Args) == 5 && os.Args[1] == "--suite" && os.Args[3] == "--params" {
		if err := runSuite(os.Args[2], os.Args[4]); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	o := parseFlags()
	started := time.Now()
	fmt.Printf("# qtask Go peer benchmark, %s\n", started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("# %s, %d CPUs (GOMAXPROCS %d), load average %s, libqtask %s, %s\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg(), qtask.Version(), depVersions())
	fmt.Printf("# n = %d per fill, concurrency %v, PG %s, Redis %s DB %d, run id %s\n",
		o.n, o.conc, o.pg, o.redisOptions.Addr, o.redisDB, o.runID)

	// Rounds go over all systems in turn, so that a slow moment of the machine
	// hits every system rather than one.
	results := map[string][]*result{}
	skipped := map[string]error{}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range systems {
			if (o.only != nil && !o.only[s.name]) || skipped[s.name] != nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: round %d/%d %s ...\n", round, o.rounds, s.name)
			t0 := time.Now()
			r := runOne(o, s.name)
			if r.err != nil {
				skipped[s.name] = r.err
				fmt.Printf("!!! SKIPPED %s: %v\n", s.name, r.err)
				continue
			}
			results[s.name] = append(results[s.name], r)
			fmt.Fprintf(os.Stderr, "bench: round %d/%d %s done in %.1fs (enqueue %.0f/s, drain %v)\n",
				round, o.rounds, s.name, time.Since(t0).Seconds(), r.enqueue, r.drain)
		}
	}
	for name := range skipped {
		delete(results, name)
	}
	printTables(o, results)
	fmt.Printf("\nLoad average at end: %s; whole run %.0f s.\n", loadavg(), time.Since(started).Seconds())
}

func parseFlags() *options {
	o := &options{}
	pgDefault := envOr("QTASK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
	redisDefault := envOr("QTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/")
	var conc, only string
	flag.IntVar(&o.n, "n", 2000, "jobs per fill")
	flag.StringVar(&conc, "concurrency", "1,4", "worker concurrencies, one fill each")
	flag.StringVar(&only, "only", "", "comma-separated systems to run (default all): "+names())
	flag.StringVar(&o.pg, "pg", pgDefault, "PostgreSQL URL")
	flag.StringVar(&o.redisURL, "redis", redisDefault, "Redis URL (its DB number is replaced by --redis-db)")
	flag.IntVar(&o.redisDB, "redis-db", 10, "Redis DB number; FLUSHDB'd before and after each system")
	flag.StringVar(&o.runID, "run-id", fmt.Sprintf("gb%d_%d", os.Getpid(), time.Now().Unix()), "names the qtask table prefixes and River's schema")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Second, "cut-off for one system")
	flag.DurationVar(&o.riverCool, "river-fetch-cooldown", time.Millisecond, "River's FetchCooldown (River's default is 100ms)")
	flag.IntVar(&o.rounds, "rounds", 3, "passes over all systems; the tables give the median of the rounds")
	flag.BoolVar(&o.markdown, "markdown", false, "print the tables as Markdown")
	flag.Parse()
	for _, f := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fatalf("--concurrency: %q is not a positive integer", f)
		}
		o.conc = append(o.conc, c)
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			s = strings.TrimSpace(s)
			if !strings.Contains(" "+names()+" ", " "+s+" ") {
				fatalf("--only: unknown system %q (known: %s)", s, names())
			}
			o.only[s] = true
		}
	}
	ro, err := redis.ParseURL(o.redisURL)
	if err != nil {
		fatalf("--redis: %v", err)
	}
	ro.DB = o.redisDB
	o.redisOptions = ro
	if o.rounds < 1 {
		fatalf("--rounds must be positive")
	}
	if o.n < 1 {
		fatalf("--n must be positive")
	}
	return o
}

func names() string {
	var s []string
	for _, x := range systems {
		s = append(s, x.name)
	}
	return strings.Join(s, " ")
}

// runOne sets a system up, runs its fills and tears it down, within o.timeout.
func runOne(o *options, name string) *result {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	done := make(chan *result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- &result{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		done <- fills(ctx, o, name)
	}()
	select {
	case r := <-done:
		if r.err == nil && ctx.Err() != nil {
			r.err = fmt.Errorf("timed out after %s", o.timeout)
		}
		return r
	case <-ctx.Done():
		// Give its clean-up (deferred in fills) a moment to run.
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		return &result{err: fmt.Errorf("timed out after %s", o.timeout)}
	}
}

func fills(ctx context.Context, o *options, name string) *result {
	rdb := redis.NewClient(o.redisOptions)
	defer rdb.Close()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return &result{err: fmt.Errorf("redis FLUSHDB: %w", err)}
	}
	defer rdb.FlushDB(context.Background())

	var s *system
	var cleanup func()
	var err error
	switch name {
	case "floor-pgx":
		s, cleanup, err = floorPgx(ctx, o)
	case "floor-redis":
		s, cleanup, err = floorRedis(ctx, rdb)
	case "qtask-pg-redis":
		u := *o.redisOptions
		s, cleanup, err = qtaskSystem(ctx, o, fmt.Sprintf("redis://%s/%d", u.Addr, u.DB), o.runID+"_r_")
	case "qtask-pg-db":
		s, cleanup, err = qtaskSystem(ctx, o, "db", o.runID+"_d_")
	case "river":
		s, cleanup, err = riverSystem(ctx, o)
	case "asynq":
		s, cleanup, err = asynqSystem(ctx, o, rdb)
	}
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return &result{err: err}
	}

	r := &result{drain: map[int]float64{}}
	var enqTime time.Duration
	enqueued := 0
	for _, c := range o.conc {
		t0 := time.Now()
		for i := 0; i < o.n; i++ {
			if err := s.enqueue(ctx, enqueued+i); err != nil {
				return &result{err: fmt.Errorf("enqueue %d: %w", i, err)}
			}
		}
		enqTime += time.Since(t0)
		enqueued += o.n
		if s.drain == nil {
			continue
		}
		d, err := s.drain(ctx, c, o.n)
		if err != nil {
			return &result{err: fmt.Errorf("drain c=%d: %w", c, err)}
		}
		r.drain[c] = float64(o.n) / d.Seconds()
	}
	r.enqueue = float64(enqueued) / enqTime.Seconds()
	r.notes = s.notes
	return r
}

// ---------------------------------------------------------------- floors

func floorPgx(ctx context.Context, o *options) (*system, func(), error) {
	conn, err := pgx.Connect(ctx, o.pg)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { conn.Close(context.Background()) }
	if _, err := conn.Exec(ctx, "CREATE TEMPORARY TABLE bench_floor (id bigint PRIMARY KEY)"); err != nil {
		return nil, cleanup, err
	}
	return &system{
		enqueue: func(ctx context.Context, i int) error {
			_, err := conn.Exec(ctx, "INSERT INTO bench_floor (id) VALUES ($1)", i)
			return err
		},
		notes: "one INSERT per call on one connection (prepared), temporary table",
	}, cleanup, nil
}

func floorRedis(ctx context.Context, rdb *redis.Client) (*system, func(), error) {
	return &system{
		enqueue: func(ctx context.Context, i int) error {
			return rdb.LPush(ctx, "bench_floor", `{"i":`+strconv.Itoa(i)+`}`).Err()
		},
		notes: "one LPUSH per call",
	}, nil, nil
}

// ---------------------------------------------------------------- qtask

const qtaskQueue = "bench"

func qtaskSystem(ctx context.Context, o *options, queue, prefix string) (*system, func(), error) {
	cl, err := qtask.Open(ctx, qtask.Config{DB: o.pg, Queue: queue, TablePrefix: prefix, RedisPrefix: "qtask-bench-" + o.runID})
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		cl.Close()
		dropTable(o.pg, prefix+"task")
	}
	if err := cl.Install(ctx); err != nil {
		return nil, cleanup, err
	}
	s := &system{
		enqueue: func(ctx context.Context, i int) error {
			_, err := cl.CreateNow(ctx, "noop", map[string]interface{}{"i": i}, 5*time.Minute, qtaskQueue)
			return err
		},
		notes: fmt.Sprintf("table %stask, dropped after; qtask.Worker on the Client that enqueued, sweeper on; timed until the n-th handler call", prefix),
	}
	s.drain = func(ctx context.Context, c, n int) (time.Duration, error) {
		var handled atomic.Int64
		var doneAt atomic.Int64
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		w := qtask.NewWorker(cl, qtaskQueue, qtask.WorkerOptions{Concurrency: c})
		start := time.Now()
		w.Handle(func(context.Context, *qtask.Message) error { // the handler does nothing
			if handled.Add(1) == int64(n) {
				doneAt.Store(int64(time.Since(start)))
				stop()
			}
			return nil
		})
		if err := w.Run(wctx); err != nil {
			return 0, err
		}
		// Run has returned: every outcome is written.
		if r := w.LastReport(); r.Finished != uint64(n) {
			return 0, fmt.Errorf("%d of %d finished (%+v): %v", r.Finished, n, r, ctx.Err())
		}
		st, err := cl.Stats(ctx)
		if err != nil {
			return 0, err
		}
		if st.Waiting != 0 || st.Processing != 0 {
			return 0, fmt.Errorf("after the drain: %d waiting, %d processing", st.Waiting, st.Processing)
		}
		return time.Duration(doneAt.Load()), nil
	}
	return s, cleanup, nil
}

func dropTable(pg, table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop %s: %v\n", table, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{table}.Sanitize()); err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop %s: %v\n", table, err)
	}
}

// ---------------------------------------------------------------- River

type noopArgs struct {
	I int `json:"i"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func riverSystem(ctx context.Context, o *options) (*system, func(), error) {
	schema := "river_" + o.runID
	cfg, err := pgxpool.ParseConfig(o.pg)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = 10 // qtask's pool default
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(c, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
		}
		pool.Close()
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, cleanup, err
	}
	driver := riverpgxv5.New(pool)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: logger})
	if err != nil {
		return nil, cleanup, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, cleanup, fmt.Errorf("rivermigrate: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	// An insert-only client enqueues; each drain starts a client with workers.
	inserter, err := river.NewClient(driver, &river.Config{Schema: schema, Workers: workers, Logger: logger})
	if err != nil {
		return nil, cleanup, err
	}
	s := &system{
		enqueue: func(ctx context.Context, i int) error {
			_, err := inserter.Insert(ctx, noopArgs{I: i}, nil)
			return err
		},
		notes: fmt.Sprintf("schema %s (rivermigrate), dropped after; FetchCooldown %s; pool of 10", schema, o.riverCool),
	}
	s.drain = func(ctx context.Context, c, n int) (time.Duration, error) {
		client, err := river.NewClient(driver, &river.Config{
			Schema:        schema,
			Workers:       workers,
			Logger:        logger,
			FetchCooldown: o.riverCool,
			Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c}},
		})
		if err != nil {
			return 0, err
		}
		events, unsubscribe := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
		defer unsubscribe()
		start := time.Now()
		if err := client.Start(ctx); err != nil {
			return 0, err
		}
		s.notes += fmt.Sprintf("; c=%d: Start() took %.1f ms (timed)", c, float64(time.Since(start).Microseconds())/1000)
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = client.Stop(c)
		}()
		// Completed events are sent once the completer has written the rows.
		for done := 0; done < n; {
			select {
			case ev := <-events:
				if ev.Kind != river.EventKindJobCompleted {
					return 0, fmt.Errorf("job %d: %s", ev.Job.ID, ev.Kind)
				}
				done++
			case <-ctx.Done():
				return 0, fmt.Errorf("%d of %d completed: %w", done, n, ctx.Err())
			}
		}
		return time.Since(start), nil
	}
	return s, cleanup, nil
}

// ---------------------------------------------------------------- asynq

func asynqSystem(ctx context.Context, o *options, rdb *redis.Client) (*system, func(), error) {
	ro := asynq.RedisClientOpt{Addr: o.redisOptions.Addr, Username: o.redisOptions.Username,
		Password: o.redisOptions.Password, DB: o.redisOptions.DB}
	client := asynq.NewClient(ro)
	cleanup := func() { client.Close() }
	s := &system{
		enqueue: func(ctx context.Context, i int) error {
			payload, _ := json.Marshal(map[string]int{"i": i})
			_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", payload))
			return err
		},
		notes: "default queue and options (MaxRetry 25, no retention)",
	}
	s.drain = func(ctx context.Context, c, n int) (time.Duration, error) {
		var handled atomic.Int64
		last := make(chan struct{})
		mux := asynq.NewServeMux()
		mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
			if handled.Add(1) == int64(n) {
				close(last)
			}
			return nil
		})
		srv := asynq.NewServer(ro, asynq.Config{
			Concurrency: c,
			Queues:      map[string]int{"default": 1},
			LogLevel:    asynq.WarnLevel,
			Logger:      quietLogger{},
		})
		start := time.Now()
		if err := srv.Start(mux); err != nil {
			return 0, err
		}
		s.notes += fmt.Sprintf("; c=%d: Start() took %.1f ms (timed)", c, float64(time.Since(start).Microseconds())/1000)
		defer srv.Shutdown()
		select {
		case <-last:
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d handled: %w", handled.Load(), n, ctx.Err())
		}
		// The n-th handler has run; wait until asynq has acknowledged it too
		// (nothing pending, nothing active).
		for {
			p, err1 := rdb.LLen(ctx, "asynq:{default}:pending").Result()
			a, err2 := rdb.LLen(ctx, "asynq:{default}:active").Result()
			if err := errors.Join(err1, err2); err != nil {
				return 0, err
			}
			if p == 0 && a == 0 {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		return time.Since(start), nil
	}
	return s, cleanup, nil
}

// quietLogger drops asynq's Info/Debug lines; warnings and errors go to stderr.
type quietLogger struct{}

func (quietLogger) Debug(...interface{}) {}
func (quietLogger) Info(...interface{})  {}
func (quietLogger) Warn(a ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"asynq WARN:"}, a...)...)
}
func (quietLogger) Error(a ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"asynq ERROR:"}, a...)...)
}
func (quietLogger) Fatal(a ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"asynq FATAL:"}, a...)...)
	os.Exit(1)
}

// ---------------------------------------------------------------- output

// cell is one figure of a result: -1 the enqueue rate, c the drain rate at c.
func cell(r *result, key int) float64 {
	if key < 0 {
		return r.enqueue
	}
	return r.drain[key]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printTables(o *options, results map[string][]*result) {
	md := o.markdown
	keys := append([]int{-1}, o.conc...)
	header := []string{"system", "enqueue, 1 by 1"}
	for _, c := range o.conc {
		header = append(header, fmt.Sprintf("drain, c=%d", c))
	}

	fmt.Println()
	fmt.Printf("Jobs per second, median of %d round(s) (n = %d per fill; higher is better).\n\n", o.rounds, o.n)
	var rows, spread [][]string
	for _, s := range systems {
		rs := results[s.name]
		if len(rs) == 0 {
			continue
		}
		row := []string{s.label}
		srow := []string{s.label}
		for _, k := range keys {
			var v []float64
			for _, r := range rs {
				if x := cell(r, k); x > 0 {
					v = append(v, x)
				}
			}
			if len(v) == 0 {
				row = append(row, "—")
				srow = append(srow, "—")
				continue
			}
			sort.Float64s(v)
			row = append(row, num(median(v)))
			srow = append(srow, num(v[0])+"–"+num(v[len(v)-1]))
		}
		rows = append(rows, row)
		spread = append(spread, srow)
	}
	table(os.Stdout, md, header, rows)

	fmt.Println()
	fmt.Println("Ratios qtask / peer, median of the per-round ratios (above 1: qtask is faster):")
	fmt.Println()
	rows = nil
	for _, p := range pairs {
		a, b := results[p[0]], results[p[1]]
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		row := []string{p[0] + " / " + p[1]}
		for _, k := range keys {
			var v []float64
			for i := 0; i < len(a) && i < len(b); i++ {
				if x, y := cell(a[i], k), cell(b[i], k); x > 0 && y > 0 {
					v = append(v, x/y)
				}
			}
			if len(v) == 0 {
				row = append(row, "—")
			} else {
				row = append(row, fmt.Sprintf("%.2f", median(v)))
			}
		}
		rows = append(rows, row)
	}
	table(os.Stdout, md, append([]string{"pair"}, header[1:]...), rows)

	if o.rounds > 1 {
		fmt.Println()
		fmt.Println("Lowest–highest of the rounds:")
		fmt.Println()
		table(os.Stdout, md, header, spread)
	}

	fmt.Println()
	for _, s := range systems {
		if rs := results[s.name]; len(rs) > 0 && rs[len(rs)-1].notes != "" {
			fmt.Printf("- %s: %s\n", s.name, rs[len(rs)-1].notes)
		}
	}
}

func table(w io.Writer, md bool, header []string, rows [][]string) {
	if md {
		fmt.Fprintln(w, "| "+strings.Join(header, " | ")+" |")
		sep := []string{"---"}
		for range header[1:] {
			sep = append(sep, "---:")
		}
		fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
		for _, r := range rows {
			fmt.Fprintln(w, "| "+strings.Join(r, " | ")+" |")
		}
		return
	}
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			if l := len([]rune(c)); l > widths[i] {
				widths[i] = l
			}
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

func num(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func depVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var s []string
	for _, d := range bi.Deps {
		short := map[string]string{"github.com/riverqueue/river": "river", "github.com/hibiken/asynq": "asynq",
			"github.com/jackc/pgx/v5": "pgx", "github.com/redis/go-redis/v9": "go-redis"}[d.Path]
		if short != "" {
			s = append(s, short+" "+d.Version)
		}
	}
	return strings.Join(s, ", ")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatalf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(2)
}
