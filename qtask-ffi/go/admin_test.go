package qtask_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"qtask.dev/qtask"
)

func TestAdminSQLite(t *testing.T) {
	exerciseAdmin(t, qtask.Config{DB: "sqlite://" + filepath.Join(t.TempDir(), "admin.db")})
}

func TestAdminPostgres(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	exerciseAdmin(t, qtask.Config{DB: pg, Queue: "db"})
}

// exerciseAdmin lists a failed task with its error, retries it, pauses and
// resumes its queue, and cancels by filter.
func exerciseAdmin(t *testing.T, cfg qtask.Config) {
	c := open(t, cfg)
	q := queue("ADMIN")
	id, err := c.CreateNow(bg, "doomed", map[string]int{"n": 1}, time.Minute, q, qtask.WithMaxCount(1))
	if err != nil {
		t.Fatal(err)
	}
	msg := mustPop(t, c, q, 3*time.Second)
	if ok, err := c.Processing(bg, msg.TaskID); !ok || err != nil {
		t.Fatalf("processing: %v %v", ok, err)
	}
	if err := c.Fail(bg, id, "bank down"); err != nil {
		t.Fatal(err)
	}

	page, err := c.ListTasks(bg, qtask.Filter{Status: "failed", Queue: q}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Tasks) != 1 || page.Tasks[0].ID != id || page.Tasks[0].LastError == nil || *page.Tasks[0].LastError != "bank down" {
		t.Fatalf("failed tasks: %+v", page)
	}
	if _, err := c.ListTasks(bg, qtask.Filter{Status: "done"}, 0, 10); !errors.Is(err, qtask.ErrInvalidArgument) {
		t.Fatalf("unknown status: want ErrInvalidArgument, got %v", err)
	}
	if n, err := c.RetryMatching(bg, qtask.Filter{Status: "failed", Queue: q}); n != 1 || err != nil {
		t.Fatalf("retry matching: %d %v", n, err)
	}
	if err := c.Retry(bg, id); !errors.Is(err, qtask.ErrInvalidState) {
		t.Fatalf("retry a waiting task: want ErrInvalidState, got %v", err)
	}

	if err := c.PauseQueue(bg, q); err != nil {
		t.Fatal(err)
	}
	queues, err := c.Queues(bg)
	if err != nil || len(queues) != 1 || !queues[0].Paused || queues[0].Waiting != 1 {
		t.Fatalf("queues: %+v %v", queues, err)
	}
	if m, err := c.Pop(bg, q, 0); m != nil || err != nil {
		t.Fatalf("a paused queue delivered %+v %v", m, err)
	}
	if err := c.ResumeQueue(bg, q); err != nil {
		t.Fatal(err)
	}
	if m := mustPop(t, c, q, 3*time.Second); m.TaskID != id || m.Attempt != 2 {
		t.Fatalf("after resume: %+v", m)
	}
	if n, err := c.CancelMatching(bg, qtask.Filter{Queue: q}); n != 1 || err != nil {
		t.Fatalf("cancel matching: %d %v", n, err)
	}
	if rates, err := c.Rates(bg, 3); len(rates) != 3 || err != nil {
		t.Fatalf("rates: %+v %v", rates, err)
	}
}

// Priorities pop the higher first; a queue limited to one task processing at
// once holds a second task back until its limits are removed.
func TestPriorityAndLimitsSQLite(t *testing.T) {
	c := open(t, qtask.Config{DB: "sqlite://" + filepath.Join(t.TempDir(), "limits.db")})
	q := queue("PRIO")
	low, err := c.CreateNow(bg, "low", map[string]int{}, time.Minute, q, qtask.WithPriority(-2))
	if err != nil {
		t.Fatal(err)
	}
	high, err := c.CreateNow(bg, "high", map[string]int{}, time.Minute, q, qtask.WithPriority(7))
	if err != nil {
		t.Fatal(err)
	}
	if m := mustPop(t, c, q, 3*time.Second); m.TaskID != high {
		t.Fatalf("popped %d before %d", m.TaskID, high)
	}
	if task, err := c.Get(bg, low); err != nil || task.Priority != -2 {
		t.Fatalf("get: %+v %v", task, err)
	}
	if _, err := c.CreateNow(bg, "bad", map[string]int{}, time.Minute, q, qtask.WithPriority(5000)); !errors.Is(err, qtask.ErrInvalidArgument) {
		t.Fatalf("priority 5000: want ErrInvalidArgument, got %v", err)
	}

	lq := queue("LIMIT")
	one := uint32(1)
	if err := c.SetQueueLimits(bg, lq, qtask.QueueLimits{MaxProcessing: &one}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.CreateNow(bg, "limited", map[string]int{"i": i}, time.Minute, lq); err != nil {
			t.Fatal(err)
		}
	}
	mustPop(t, c, lq, 3*time.Second)
	if m, err := c.Pop(bg, lq, 200*time.Millisecond); m != nil || err != nil {
		t.Fatalf("a second task ran beside the first: %+v %v", m, err)
	}
	queues, err := c.Queues(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range queues {
		if s.Queue == lq && (s.Limits.MaxProcessing == nil || *s.Limits.MaxProcessing != 1 || s.Limits.MaxPerSecond != nil) {
			t.Fatalf("limits: %+v", s.Limits)
		}
	}
	zero := 0.0
	if err := c.SetQueueLimits(bg, lq, qtask.QueueLimits{MaxPerSecond: &zero}); !errors.Is(err, qtask.ErrInvalidArgument) {
		t.Fatalf("rate 0: want ErrInvalidArgument, got %v", err)
	}
	if err := c.SetQueueLimits(bg, lq, qtask.QueueLimits{}); err != nil {
		t.Fatal(err)
	}
	mustPop(t, c, lq, 3*time.Second)
}
