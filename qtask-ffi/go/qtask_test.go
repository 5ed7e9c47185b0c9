package qtask_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"qtask.dev/qtask"
)

// suffix keeps this run's namespace and queues apart from other runs and
// other suites sharing the same PostgreSQL database or Redis.
var suffix = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000_000)

func TestSQLite(t *testing.T) {
	exercise(t, qtask.Config{DB: "sqlite://" + filepath.Join(t.TempDir(), "go.db")})
}

func TestPostgres(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	exercise(t, qtask.Config{DB: pg, Queue: "db"})
}

func TestPostgresRedis(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	redis := serverURL(t, "Redis", "QTASK_TEST_REDIS_URL", "6379")
	exercise(t, qtask.Config{DB: pg, Queue: redis, RedisPrefix: "qtask-go-" + suffix})
}

// serverURL returns the URL in env when its server accepts TCP connections.
// Otherwise it prints one SKIP line and skips, or fails when CI=true.
func serverURL(t *testing.T, server, env, defaultPort string) string {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		missing(t, fmt.Sprintf("SKIP: %s not configured (%s is empty)", server, env))
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, raw, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		missing(t, fmt.Sprintf("SKIP: %s not reachable at %s", server, raw))
	}
	conn.Close()
	return raw
}

func missing(t *testing.T, line string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(line + " (CI=true: a missing server is a failure)")
	}
	fmt.Fprintln(os.Stderr, line)
	t.Skip(line)
}

// bg is the context of calls that are not about contexts.
var bg = context.Background()

func open(t *testing.T, cfg qtask.Config) *qtask.Client {
	t.Helper()
	cfg.Namespace = "go-" + suffix
	cfg.SweepInterval = 200 * time.Millisecond
	cfg.RetryBackoff = 100 * time.Millisecond
	client, err := qtask.Open(bg, cfg)
	if err != nil {
		t.Fatalf("open %+v: %v", cfg, err)
	}
	t.Cleanup(client.Close)
	if err := client.Install(bg); err != nil {
		t.Fatalf("install: %v", err)
	}
	return client
}

// exercise is the one suite every backend runs.
func exercise(t *testing.T, cfg qtask.Config) {
	client := open(t, cfg)
	t.Run("Cycle", func(t *testing.T) { testCycle(t, client) })
	t.Run("ManyGoroutines", func(t *testing.T) { testManyGoroutines(t, client) })
	t.Run("Delay", func(t *testing.T) { testDelay(t, client) })
	t.Run("OrderNO", func(t *testing.T) { testOrderNO(t, client) })
	t.Run("FailAndCancel", func(t *testing.T) { testFailAndCancel(t, client) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, client) })
	t.Run("Context", func(t *testing.T) { testContext(t, client) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, cfg) })
}

func queue(name string) string { return "GO:" + name + ":" + suffix }

func mustPop(t *testing.T, c *qtask.Client, q string, wait time.Duration) *qtask.Message {
	t.Helper()
	msg, err := c.Pop(bg, q, wait)
	if err != nil {
		t.Fatalf("pop %s: %v", q, err)
	}
	if msg == nil {
		t.Fatalf("pop %s: nothing within %v", q, wait)
	}
	return msg
}

func testCycle(t *testing.T, c *qtask.Client) {
	q := queue("cycle")
	id, invoke, err := c.Create(bg, "订单绑定任务", map[string]interface{}{"order_no": "8973097380045", "n": 7},
		time.Minute, q, qtask.WithDeleteDeadline(time.Hour), qtask.WithMaxCount(5), qtask.WithDeadline(time.Hour))
	if err != nil || id <= 0 {
		t.Fatalf("create: id %d, %v", id, err)
	}
	if err := invoke(bg); err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if err := invoke(bg); !errors.Is(err, qtask.ErrClosed) {
		t.Fatalf("second invoke: want ErrClosed, got %v", err)
	}
	msg := mustPop(t, c, q, 5*time.Second)
	if msg.TaskID != id || msg.Attempt != 1 || msg.Input["order_no"] != "8973097380045" || msg.Input["n"] != 7.0 {
		t.Fatalf("message %+v (raw %s) for task %d", msg, msg.Raw, id)
	}
	if _, ok := msg.Input["task_id"]; ok {
		t.Fatalf("task_id left in Input: %v", msg.Input)
	}
	ok, err := c.Processing(bg, id)
	if err != nil || !ok {
		t.Fatalf("processing: %v %v", ok, err)
	}
	if task, err := c.Get(bg, id); err != nil || task.Status != "processing" || task.Count != 1 || task.MaxCount != 5 {
		t.Fatalf("get while processing: %+v %v", task, err)
	}
	if err := c.Finish(bg, id); err != nil {
		t.Fatalf("finish: %v", err)
	}
	task, err := c.Get(bg, id)
	if err != nil || task.Status != "finished" || task.Name != "订单绑定任务" || task.Queue != q {
		t.Fatalf("get after finish: %+v %v", task, err)
	}
	if ok, err := c.Processing(bg, id); err != nil || ok {
		t.Fatalf("processing a finished task: %v %v", ok, err)
	}
	if msg, err := c.Pop(bg, q, 0); err != nil || msg != nil {
		t.Fatalf("a finished task popped again: %+v %v", msg, err)
	}
}

// Producers and workers on one client at once: every task is run exactly once.
func testManyGoroutines(t *testing.T, c *qtask.Client) {
	const producers, perProducer, workers = 8, 25, 8
	q := queue("many")
	created := make(chan int64, producers*perProducer)
	var wg sync.WaitGroup
	errs := make(chan error, producers+workers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < perProducer; i++ {
				input := map[string]interface{}{"p": p, "i": i}
				var id int64
				var err error
				if i%2 == 0 {
					id, err = c.CreateNow(bg, "many", input, time.Minute, q)
				} else {
					var invoke qtask.Invoke
					if id, invoke, err = c.Create(bg, "many", input, time.Minute, q); err == nil {
						err = invoke(bg)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("producer %d: %w", p, err)
					return
				}
				created <- id
			}
		}(p)
	}
	var mu sync.Mutex
	runs := map[int64]int{}
	done := make(chan struct{})
	var workerWG sync.WaitGroup
	for w := 0; w < workers; w++ {
		workerWG.Add(1)
		go func() {
			defer workerWG.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				msg, err := c.Pop(bg, q, 200*time.Millisecond)
				if err != nil {
					errs <- err
					return
				}
				if msg == nil {
					continue
				}
				ok, err := c.Processing(bg, msg.TaskID)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					continue
				}
				mu.Lock()
				runs[msg.TaskID]++
				mu.Unlock()
				if err := c.Finish(bg, msg.TaskID); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(created)
	want := map[int64]bool{}
	for id := range created {
		want[id] = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(runs)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) || len(errs) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	workerWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(want) != producers*perProducer {
		t.Fatalf("created %d distinct tasks, want %d", len(want), producers*perProducer)
	}
	for id := range want {
		if runs[id] != 1 {
			t.Errorf("task %d ran %d times", id, runs[id])
		}
	}
	if len(runs) != len(want) {
		t.Errorf("ran %d tasks, created %d", len(runs), len(want))
	}
}

func testDelay(t *testing.T, c *qtask.Client) {
	q := queue("delay")
	start := time.Now()
	id, err := c.Delay(bg, "delayed", json.RawMessage(`{"k": "v"}`), time.Second, time.Minute, q)
	if err != nil {
		t.Fatalf("delay: %v", err)
	}
	if msg, err := c.Pop(bg, q, 300*time.Millisecond); err != nil || msg != nil {
		t.Fatalf("popped %+v (%v) after %v, before its delay", msg, err, time.Since(start))
	}
	msg := mustPop(t, c, q, 5*time.Second)
	if waited := time.Since(start); waited < 950*time.Millisecond {
		t.Fatalf("popped after only %v", waited)
	}
	if msg.TaskID != id || msg.Input["k"] != "v" {
		t.Fatalf("message %s for task %d", msg.Raw, id)
	}
	if ok, err := c.Processing(bg, id); err != nil || !ok {
		t.Fatalf("processing: %v %v", ok, err)
	}
	if err := c.Finish(bg, id); err != nil {
		t.Fatal(err)
	}
}

func testOrderNO(t *testing.T, c *qtask.Client) {
	q := queue("order")
	orderNO := "ORD-" + suffix
	a, err := c.CreateNow(bg, "bind", map[string]int{"x": 1}, time.Minute, q, qtask.WithOrderNO(orderNO))
	if err != nil {
		t.Fatal(err)
	}
	b, invoke, err := c.Create(bg, "bind", map[string]int{"x": 2}, time.Minute, q, qtask.WithOrderNO(orderNO))
	if err != nil {
		t.Fatal(err)
	}
	if err := invoke(bg); err != nil {
		t.Fatal(err)
	}
	d, err := c.Delay(bg, "bind", map[string]int{"x": 3}, time.Second, time.Minute, q, qtask.WithOrderNO(orderNO))
	if err != nil {
		t.Fatal(err)
	}
	if a <= 0 || a != b || a != d {
		t.Fatalf("order_no %s gave ids %d %d %d", orderNO, a, b, d)
	}
	if err := c.Cancel(bg, a); err != nil {
		t.Fatal(err)
	}
	e, err := c.CreateNow(bg, "bind", map[string]int{"x": 4}, time.Minute, q, qtask.WithOrderNO(orderNO))
	if err != nil || e == a {
		t.Fatalf("after cancel: id %d (old %d), %v", e, a, err)
	}
	if err := c.Cancel(bg, e); err != nil {
		t.Fatal(err)
	}
}

func testFailAndCancel(t *testing.T, c *qtask.Client) {
	q := queue("fail")
	id, err := c.CreateNow(bg, "flaky", map[string]int{}, time.Minute, q, qtask.WithMaxCount(5))
	if err != nil {
		t.Fatal(err)
	}
	msg := mustPop(t, c, q, 5*time.Second)
	if msg.TaskID != id {
		t.Fatalf("popped %d, want %d", msg.TaskID, id)
	}
	if err := c.Fail(bg, id, "boom: disk full"); err != nil {
		t.Fatal(err)
	}
	task, err := c.Get(bg, id)
	if err != nil || task.Status != "waiting" || task.LastError == nil || *task.LastError != "boom: disk full" {
		t.Fatalf("after fail: %+v %v", task, err)
	}
	if err := c.Cancel(bg, id); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(bg, id); !errors.Is(err, qtask.ErrInvalidState) {
		t.Fatalf("finish a cancelled task: want ErrInvalidState, got %v", err)
	}
	if _, err := c.Get(bg, 1<<60); !errors.Is(err, qtask.ErrNotFound) {
		t.Fatalf("get unknown: want ErrNotFound, got %v", err)
	}
}

func kept(t *testing.T, c *qtask.Client) int64 {
	t.Helper()
	s, err := c.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	// Finished rows are deleted by cleanup at once; the rest stay for days.
	return s.Waiting + s.Processing + s.Failed + s.Cancelled
}

func testBadInput(t *testing.T, c *qtask.Client) {
	q := queue("bad")
	before := kept(t, c)
	big := make([]byte, 1<<20+16)
	for i := range big {
		big[i] = 'x'
	}
	cases := []struct {
		name string
		err  error
	}{
		{"zero timeout", first(c.CreateNow(bg, "n", map[string]int{}, 0, q))},
		{"negative timeout", first(c.CreateNow(bg, "n", map[string]int{}, -time.Second, q))},
		{"negative delay", first(c.Delay(bg, "n", map[string]int{}, -time.Second, time.Minute, q))},
		{"negative deadline", first(c.CreateNow(bg, "n", map[string]int{}, time.Minute, q, qtask.WithDeadline(-time.Hour)))},
		{"zero max count", first(c.CreateNow(bg, "n", map[string]int{}, time.Minute, q, qtask.WithMaxCount(0)))},
		{"negative max count", first(c.CreateNow(bg, "n", map[string]int{}, time.Minute, q, qtask.WithMaxCount(-1)))},
		{"malformed JSON", first(c.CreateNow(bg, "n", json.RawMessage(`{"a": `), time.Minute, q))},
		{"JSON not an object", first(c.CreateNow(bg, "n", []int{1, 2}, time.Minute, q))},
		{"reserved key", first(c.CreateNow(bg, "n", map[string]int{"task_id": 1}, time.Minute, q))},
		{"unmarshalable input", first(c.CreateNow(bg, "n", map[string]interface{}{"f": func() {}}, time.Minute, q))},
		{"invalid UTF-8 name", first(c.CreateNow(bg, "bad \xff\xfe", map[string]int{}, time.Minute, q))},
		{"NUL in name", first(c.CreateNow(bg, "a\x00b", map[string]int{}, time.Minute, q))},
		{"empty name", first(c.CreateNow(bg, "", map[string]int{}, time.Minute, q))},
		{"empty queue", first(c.CreateNow(bg, "n", map[string]int{}, time.Minute, ""))},
		{"oversized payload", first(c.CreateNow(bg, "n", map[string]string{"blob": string(big)}, time.Minute, q))},
		{"deferred oversized payload", third(c.Create(bg, "n", map[string]string{"blob": string(big)}, time.Minute, q))},
		{"negative pop wait", second(c.Pop(bg, q, -time.Second))},
		{"NUL in fail reason", c.Fail(bg, 1, "a\x00b")},
		{"unknown config key", second(qtask.OpenJSON(bg, `{"no_such_key": 1}`))},
		{"malformed config", second(qtask.OpenJSON(bg, `{"db": `))},
		{"negative sweep interval", second(qtask.Open(bg, qtask.Config{SweepInterval: -time.Second}))},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, qtask.ErrInvalidArgument) {
			t.Errorf("%s: want ErrInvalidArgument, got %v", tc.name, tc.err)
		}
	}
	if _, err := qtask.Open(bg, qtask.Config{DB: "postgres://postgres@127.0.0.1:1/x", DisableSweeper: true}); !errors.Is(err, qtask.ErrDatabase) {
		t.Errorf("unreachable database: want ErrDatabase, got %v", err)
	}
	if after := kept(t, c); after != before {
		t.Errorf("bad input wrote %d tasks", after-before)
	}
}

func testClosed(t *testing.T, cfg qtask.Config) {
	c := open(t, cfg)
	c.Close()
	c.Close() // twice is fine
	if _, err := c.CreateNow(bg, "n", map[string]int{}, time.Minute, queue("closed")); !errors.Is(err, qtask.ErrClosed) {
		t.Errorf("create on a closed client: want ErrClosed, got %v", err)
	}
	if _, err := c.Pop(bg, queue("closed"), 0); !errors.Is(err, qtask.ErrClosed) {
		t.Errorf("pop on a closed client: want ErrClosed, got %v", err)
	}
	if _, err := c.Stats(bg); !errors.Is(err, qtask.ErrClosed) {
		t.Errorf("stats on a closed client: want ErrClosed, got %v", err)
	}
}

func first(_ int64, err error) error                 { return err }
func second[T any](_ T, err error) error             { return err }
func third(_ int64, _ qtask.Invoke, err error) error { return err }
