package qtask_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qtask.dev/qtask"
)

func TestWorkerSQLite(t *testing.T) {
	exerciseWorker(t, qtask.Config{DB: "sqlite://" + filepath.Join(t.TempDir(), "worker.db")})
}

func TestWorkerPostgres(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	exerciseWorker(t, qtask.Config{DB: pg, Queue: "db"})
}

func TestWorkerPostgresRedis(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	redis := serverURL(t, "Redis", "QTASK_TEST_REDIS_URL", "6379")
	exerciseWorker(t, qtask.Config{DB: pg, Queue: redis, RedisPrefix: "qtask-go-worker-" + suffix})
}

func exerciseWorker(t *testing.T, cfg qtask.Config) {
	client := open(t, cfg)
	t.Run("Drain", func(t *testing.T) { testWorkerDrain(t, client) })
	t.Run("ErrorKeepsLastError", func(t *testing.T) { testWorkerError(t, client) })
	t.Run("CancelStopsGracefully", func(t *testing.T) { testWorkerCancel(t, client) })
	t.Run("BadOptions", func(t *testing.T) { testWorkerBadOptions(t, client) })
	t.Run("Outcomes", func(t *testing.T) { testWorkerOutcomes(t, client) })
	t.Run("TimeLimit", func(t *testing.T) { testWorkerTimeLimit(t, client) })
	t.Run("TaskTimeLimit", func(t *testing.T) { testWorkerTaskTimeLimit(t, client) })
	t.Run("Kinds", func(t *testing.T) { testWorkerKinds(t, client) })
	t.Run("StaleOutcomeSkipped", func(t *testing.T) { testWorkerStaleOutcome(t, client) })
}

// runWorker runs w until ctx is done, and returns Run's error through a channel.
func runWorker(ctx context.Context, w *qtask.Worker) <-chan error {
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

// Concurrency 4 drains every task exactly once, with at most 4 handlers at once.
func testWorkerDrain(t *testing.T, c *qtask.Client) {
	const n = 300
	q := queue("worker-drain")
	ids := map[int64]bool{}
	for i := 0; i < n; i++ {
		id, err := c.CreateNow(bg, "drain", map[string]int{"i": i}, time.Minute, q)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[int64]int{}
	var running, most int32
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 4})
	w.Handle(func(ctx context.Context, m *qtask.Message) error {
		now := atomic.AddInt32(&running, 1)
		defer atomic.AddInt32(&running, -1)
		for old := atomic.LoadInt32(&most); now > old && !atomic.CompareAndSwapInt32(&most, old, now); old = atomic.LoadInt32(&most) {
		}
		if _, ok := m.Input["i"]; !ok || m.Attempt != 1 {
			t.Errorf("message %s", m.Raw)
		}
		mu.Lock()
		defer mu.Unlock()
		seen[m.TaskID]++
		if len(seen) == n {
			cancel()
		}
		return nil
	})
	if err := <-runWorker(ctx, w); err != nil {
		t.Fatalf("run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("task %d ran %d times", id, seen[id])
		}
	}
	if most > 4 {
		t.Errorf("%d handlers at once", most)
	}
	if r := w.LastReport(); r.Finished != n || r.Failed != 0 {
		t.Errorf("report %+v", r)
	}
}

// An error fails the attempt with its text as last_error; so does a panic.
func testWorkerError(t *testing.T, c *qtask.Client) {
	q := queue("worker-error")
	failing, err := c.CreateNow(bg, "failing", map[string]string{"how": "error"}, time.Minute, q, qtask.WithMaxCount(1))
	if err != nil {
		t.Fatal(err)
	}
	panicking, err := c.CreateNow(bg, "panicking", map[string]string{"how": "panic"}, time.Minute, q, qtask.WithMaxCount(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls int32
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 2})
	w.Handle(func(ctx context.Context, m *qtask.Message) error {
		if atomic.AddInt32(&calls, 1) == 2 {
			defer cancel()
		}
		if m.Input["how"] == "panic" {
			panic("boom in the handler")
		}
		return errors.New("disk full")
	})
	if err := <-runWorker(ctx, w); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := w.LastReport(); r.Failed != 2 || r.Finished != 0 {
		t.Errorf("report %+v", r)
	}
	for id, want := range map[int64]string{failing: "disk full", panicking: "panic: boom in the handler"} {
		task, err := c.Get(bg, id)
		if err != nil {
			t.Fatalf("get %d: %v", id, err)
		}
		if task.Status != "failed" || task.LastError == nil || *task.LastError != want {
			t.Errorf("task %d: status %s, last_error %v, want %q", id, task.Status, task.LastError, want)
		}
	}
}

// Cancelling Run's context lets the running handler end (its own context is
// not cancelled) and writes its outcome before Run returns.
func testWorkerCancel(t *testing.T, c *qtask.Client) {
	q := queue("worker-cancel")
	id, err := c.CreateNow(bg, "slow", map[string]int{}, time.Minute, q, qtask.WithDeleteDeadline(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	release := make(chan struct{})
	var returned int32
	var handlerCtxErr error
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 2})
	w.Handle(func(hctx context.Context, m *qtask.Message) error {
		close(started)
		<-release
		handlerCtxErr = hctx.Err()
		atomic.StoreInt32(&returned, 1)
		return nil
	})
	done := runWorker(ctx, w)
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while its handler was running", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if atomic.LoadInt32(&returned) != 1 || handlerCtxErr != nil {
		t.Fatalf("handler returned %d, its context: %v", returned, handlerCtxErr)
	}
	task, err := c.Get(bg, id)
	if err != nil || task.Status != "finished" {
		t.Fatalf("task after a graceful stop: %+v %v", task, err)
	}
	// A context already done: Run returns at once, having run nothing.
	w2 := qtask.NewWorker(c, q, qtask.WorkerOptions{})
	w2.Handle(func(context.Context, *qtask.Message) error { t.Error("handler called"); return nil })
	if err := w2.Run(ctx); err != nil {
		t.Fatalf("run with a done context: %v", err)
	}
}

func testWorkerBadOptions(t *testing.T, c *qtask.Client) {
	w := qtask.NewWorker(c, queue("worker-bad"), qtask.WorkerOptions{Concurrency: -1})
	w.Handle(func(context.Context, *qtask.Message) error { return nil })
	if err := w.Run(context.Background()); !errors.Is(err, qtask.ErrInvalidArgument) {
		t.Errorf("negative concurrency: %v", err)
	}
	if err := qtask.NewWorker(c, queue("worker-bad"), qtask.WorkerOptions{}).Run(context.Background()); !errors.Is(err, qtask.ErrInvalidArgument) {
		t.Errorf("no handler: %v", err)
	}
	empty := qtask.NewWorker(c, "", qtask.WorkerOptions{})
	empty.Handle(func(context.Context, *qtask.Message) error { return nil })
	if err := empty.Run(context.Background()); !errors.Is(err, qtask.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "queue") {
		t.Errorf("empty queue: %v", err)
	}
}

// Every outcome ends its task its own way, and a result is read back.
func testWorkerOutcomes(t *testing.T, c *qtask.Client) {
	q := queue("worker-outcomes")
	kinds := []string{"finish", "result", "error", "retry_after", "cancel", "fail_now"}
	ids := map[string]int64{}
	for _, kind := range kinds {
		// The error is the last attempt: the test's backoff is short.
		maxCount := 3
		if kind == "error" {
			maxCount = 1
		}
		id, err := c.CreateNow(bg, "outcome", map[string]string{"do": kind}, time.Minute, q,
			qtask.WithMaxCount(maxCount), qtask.WithDeleteDeadline(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ids[kind] = id
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls int32
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 3})
	w.HandleResult(func(ctx context.Context, m *qtask.Message) (interface{}, error) {
		if atomic.AddInt32(&calls, 1) == int32(len(kinds)) {
			defer cancel()
		}
		switch m.Input["do"] {
		case "finish":
			return nil, nil
		case "result":
			return map[string]interface{}{"sum": 3, "名": "任务"}, nil
		case "error":
			return nil, errors.New("boom")
		case "retry_after":
			return nil, qtask.RetryAfter(time.Hour)
		case "cancel":
			return nil, fmt.Errorf("wrapped: %w", qtask.Cancel("no longer wanted"))
		default:
			return nil, qtask.FailNow("bad input")
		}
	})
	if err := <-runWorker(ctx, w); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := w.LastReport(); r.Finished != 2 || r.Failed != 2 || r.Snoozed != 1 || r.Cancelled != 1 || r.Skipped != 0 {
		t.Errorf("report %+v", r)
	}
	for kind, want := range map[string][2]string{
		"finish": {"finished", ""}, "result": {"finished", ""}, "error": {"failed", "boom"},
		"retry_after": {"waiting", ""}, "cancel": {"cancelled", "no longer wanted"}, "fail_now": {"failed", "bad input"},
	} {
		task, err := c.Get(bg, ids[kind])
		if err != nil {
			t.Fatalf("get %s: %v", kind, err)
		}
		lastError := ""
		if task.LastError != nil {
			lastError = *task.LastError
		}
		if task.Status != want[0] || lastError != want[1] {
			t.Errorf("%s: status %s, last_error %q, want %v", kind, task.Status, lastError, want)
		}
		if kind == "retry_after" && task.MaxCount != 4 {
			t.Errorf("retry_after gave its attempt back: max_count %d", task.MaxCount)
		}
	}
	bg := context.Background()
	if raw, err := c.Result(bg, ids["result"], 0); err != nil || string(raw) != `{"sum":3,"名":"任务"}` {
		t.Errorf("result: %s %v", raw, err)
	}
	if raw, err := c.Result(bg, ids["finish"], 0); err != nil || string(raw) != "null" {
		t.Errorf("no result: %s %v", raw, err)
	}
	if _, err := c.Result(bg, ids["cancel"], 0); !errors.Is(err, qtask.ErrInvalidState) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := c.Result(bg, ids["retry_after"], 50*time.Millisecond); !errors.Is(err, qtask.ErrTimeout) {
		t.Errorf("live: %v", err)
	}
	if _, err := c.Result(bg, ids["finish"]+100000, 0); !errors.Is(err, qtask.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	done, stop := context.WithCancel(bg)
	stop()
	if _, err := c.Result(done, ids["retry_after"], time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("done context: %v", err)
	}
	if err := c.Cancel(bg, ids["retry_after"]); err != nil {
		t.Fatal(err)
	}
}

// Past the time limit the handler's context is cancelled and the attempt fails
// with the reason.
func testWorkerTimeLimit(t *testing.T, c *qtask.Client) {
	q := queue("worker-time-limit")
	id, err := c.CreateNow(bg, "slow", map[string]int{}, time.Minute, q, qtask.WithMaxCount(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var told int32
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{TimeLimit: 200 * time.Millisecond})
	w.Handle(func(hctx context.Context, m *qtask.Message) error {
		defer cancel()
		select {
		case <-hctx.Done():
			atomic.StoreInt32(&told, 1)
		case <-time.After(10 * time.Second):
		}
		return nil
	})
	if err := <-runWorker(ctx, w); err != nil {
		t.Fatalf("run: %v", err)
	}
	if atomic.LoadInt32(&told) != 1 {
		t.Error("the handler's context was not cancelled")
	}
	if r := w.LastReport(); r.Failed != 1 || r.Finished != 0 {
		t.Errorf("report %+v", r)
	}
	task, err := c.Get(bg, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != "failed" || task.LastError == nil || *task.LastError != "time limit of 0.2s exceeded" {
		t.Errorf("task %+v", task)
	}
}

// A task's own time limit (shorter than the worker's) is the handler context's
// deadline, and its context is cancelled once the engine says the time is up;
// the attempt fails with the reason. A task without one has no deadline, and
// the handler sees its name.
func testWorkerTaskTimeLimit(t *testing.T, c *qtask.Client) {
	q := queue("worker-task-time-limit")
	limited, err := c.CreateNow(bg, "limited", map[string]string{"do": "block"}, time.Minute, q,
		qtask.WithMaxCount(1), qtask.WithTimeLimit(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	free, err := c.CreateNow(bg, "free", map[string]string{"do": "look"}, time.Minute, q, qtask.WithDeleteDeadline(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var calls int
	var blockedErr, blockedCause error
	var blockedLeft time.Duration
	var hadDeadline, freeHadDeadline bool
	names := map[int64]string{}
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 2, TimeLimit: time.Minute})
	w.Handle(func(hctx context.Context, m *qtask.Message) error {
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			names[m.TaskID] = m.Name
			if calls++; calls == 2 {
				cancel()
			}
		}()
		deadline, ok := hctx.Deadline()
		if m.Input["do"] == "look" {
			freeHadDeadline = ok
			return nil
		}
		left := time.Until(deadline)
		select {
		case <-hctx.Done():
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		defer mu.Unlock()
		hadDeadline, blockedLeft = ok, left
		blockedErr, blockedCause = hctx.Err(), context.Cause(hctx)
		return nil
	})
	if err := <-runWorker(ctx, w); err != nil {
		t.Fatalf("run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The worker's own limit is a minute: a deadline under 200 ms away is the task's.
	if !hadDeadline || blockedLeft <= 0 || blockedLeft > 200*time.Millisecond {
		t.Errorf("deadline: %v, %s left at the start", hadDeadline, blockedLeft)
	}
	if !errors.Is(blockedErr, context.Canceled) || !errors.Is(blockedCause, qtask.ErrTimeUp) {
		t.Errorf("the handler's context: %v, cause %v", blockedErr, blockedCause)
	}
	// A task without a limit of its own has the worker's.
	if !freeHadDeadline {
		t.Error("no deadline under the worker's time limit")
	}
	if names[limited] != "limited" || names[free] != "free" {
		t.Errorf("names %v", names)
	}
	if r := w.LastReport(); r.Failed != 1 || r.Finished != 1 {
		t.Errorf("report %+v", r)
	}
	task, err := c.Get(bg, limited)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != "failed" || task.LastError == nil || *task.LastError != "time limit of 0.2s exceeded" {
		t.Errorf("task %+v", task)
	}
}

// HandleKind routes each task by its name; a name with no handler is failed by
// the engine ("no handler for task name ...", retried with backoff: here its one
// attempt is spent) without reaching a handler. With Handle too, that handler
// takes the other names.
func testWorkerKinds(t *testing.T, c *qtask.Client) {
	q := queue("worker-kinds")
	ids := map[string]int64{}
	for _, name := range []string{"email", "sms", "fax"} {
		id, err := c.CreateNow(bg, name, map[string]string{"to": name}, time.Minute, q,
			qtask.WithMaxCount(1), qtask.WithDeleteDeadline(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]string{}
	record := func(kind string) func(context.Context, *qtask.Message) error {
		return func(_ context.Context, m *qtask.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen[kind] = m.Name + "/" + fmt.Sprint(m.Input["to"])
			return nil
		}
	}
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{Concurrency: 2})
	w.HandleKind("email", record("email"))
	w.HandleKind("sms", record("sms"))
	done := runWorker(ctx, w)
	var fax *qtask.Task
	for i := 0; i < 500; i++ {
		task, err := c.Get(bg, ids["fax"])
		if err != nil {
			t.Fatal(err)
		}
		if fax = task; fax.Status == "failed" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 500; i++ {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	mu.Lock()
	if seen["email"] != "email/email" || seen["sms"] != "sms/sms" || len(seen) != 2 {
		t.Errorf("handled %v", seen)
	}
	mu.Unlock()
	if fax.Status != "failed" || fax.LastError == nil || !strings.Contains(*fax.LastError, `no handler for task name "fax"`) {
		t.Errorf("fax %+v", fax)
	}
	if r := w.LastReport(); r.Finished != 2 || r.Failed != 1 {
		t.Errorf("report %+v", r)
	}

	// Handle beside HandleKind takes every other name.
	other, err := c.CreateNow(bg, "telegram", map[string]string{"to": "telegram"}, time.Minute, q, qtask.WithDeleteDeadline(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	w2 := qtask.NewWorker(c, q, qtask.WorkerOptions{})
	w2.HandleKind("email", func(context.Context, *qtask.Message) error { t.Error("email handler called"); return nil })
	w2.Handle(func(_ context.Context, m *qtask.Message) error {
		defer cancel2()
		if m.TaskID != other || m.Name != "telegram" {
			t.Errorf("default handler got %d %q", m.TaskID, m.Name)
		}
		return nil
	})
	if err := <-runWorker(ctx2, w2); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := w2.LastReport(); r.Finished != 1 {
		t.Errorf("report %+v", r)
	}
}

// Fencing: the task is cancelled while its handler runs; the handler's outcome
// names an attempt that is no longer current, changes nothing and is skipped.
func testWorkerStaleOutcome(t *testing.T, c *qtask.Client) {
	q := queue("worker-stale")
	id, err := c.CreateNow(bg, "stale", map[string]int{}, time.Minute, q, qtask.WithDeleteDeadline(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	release := make(chan struct{})
	w := qtask.NewWorker(c, q, qtask.WorkerOptions{})
	w.Handle(func(context.Context, *qtask.Message) error {
		close(started)
		<-release
		return qtask.FailNow("too late")
	})
	done := runWorker(ctx, w)
	<-started
	if err := c.Cancel(bg, id); err != nil {
		t.Fatal(err)
	}
	cancel() // a graceful stop: the handler ends and its outcome is written first
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := w.LastReport(); r.Skipped != 1 || r.Failed != 0 {
		t.Errorf("report %+v", r)
	}
	task, err := c.Get(bg, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != "cancelled" || task.LastError != nil {
		t.Errorf("task %+v", task)
	}
}
