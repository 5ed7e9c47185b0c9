package qtask_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"qtask.dev/qtask"
)

// longWait is far longer than any test: a Pop or Result that returns was ended by its ctx.
const longWait = time.Hour

// noticeWithin bounds how long a cancelled call may take to return before the
// test fails instead of hanging; it takes milliseconds.
const noticeWithin = 20 * time.Second

// testContext: a Pop or Result blocked in the engine ends with ctx's error when
// ctx is cancelled or its deadline passes, claims nothing, and a call whose ctx
// is already done writes nothing.
func testContext(t *testing.T, c *qtask.Client) {
	// Its own queue on each run: the backends of one run share a table.
	q := queue("CTX" + strconv.FormatInt(time.Now().UnixNano(), 36))

	// Cancelled while blocked.
	ctx, cancel := context.WithCancel(bg)
	time.AfterFunc(200*time.Millisecond, cancel)
	msg, err := returnsSoon(t, func() (*qtask.Message, error) { return c.Pop(ctx, q, longWait) })
	if !errors.Is(err, context.Canceled) || msg != nil {
		t.Fatalf("cancelled pop: want context.Canceled, got %v %v", msg, err)
	}
	// The task that arrives later is the next Pop's, on its first attempt.
	id, err := c.CreateNow(bg, "later", map[string]int{"n": 1}, time.Minute, q)
	if err != nil {
		t.Fatal(err)
	}
	if msg := mustPop(t, c, q, 10*time.Second); msg.TaskID != id || msg.Attempt != 1 {
		t.Fatalf("the later task: %+v (want id %d, attempt 1)", msg, id)
	}
	if err := c.Finish(bg, id); err != nil {
		t.Fatal(err)
	}

	// A deadline that passes while blocked.
	ctx, cancel = context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	msg, err = returnsSoon(t, func() (*qtask.Message, error) { return c.Pop(ctx, q, longWait) })
	if !errors.Is(err, context.DeadlineExceeded) || msg != nil {
		t.Fatalf("pop past its deadline: want context.DeadlineExceeded, got %v %v", msg, err)
	}

	// A result awaited on a live task, cancelled.
	live, err := c.CreateNow(bg, "live", map[string]int{}, time.Minute, q)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(bg)
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = returnsSoon(t, func() (*qtask.Message, error) {
		_, err := c.Result(ctx, live, longWait)
		return nil, err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled result: want context.Canceled, got %v", err)
	}

	// Already cancelled: nothing is written, nothing claimed.
	done, cancelDone := context.WithCancel(bg)
	cancelDone()
	writes := map[string]error{
		"CreateNow": second(c.CreateNow(done, "no", map[string]int{}, time.Minute, q)),
		"Delay":     second(c.Delay(done, "no", map[string]int{}, time.Second, time.Minute, q)),
		"CreateTask": func() error {
			_, err := c.CreateTask(done, qtask.NewTaskArgs("no", map[string]int{}, time.Minute, q))
			return err
		}(),
		"Create": func() error {
			_, _, err := c.Create(done, "no", map[string]int{}, time.Minute, q)
			return err
		}(),
		"Schedule": func() error {
			_, err := c.Schedule(done, "go no "+q, map[string]int{}, qtask.Schedule{Queue: q, Every: time.Second})
			return err
		}(),
		"Pop":        func() error { _, err := c.Pop(done, q, time.Second); return err }(),
		"Cancel":     c.Cancel(done, live),
		"Fail":       c.Fail(done, live, "no"),
		"Finish":     c.Finish(done, live),
		"Processing": second(c.Processing(done, live)),
		"PauseQueue": c.PauseQueue(done, q),
	}
	for call, err := range writes {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx: want context.Canceled, got %v", call, err)
		}
	}
	page, err := c.ListTasks(bg, qtask.Filter{Queue: q}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	// "later" was finished and deleted at once: only "live" is left.
	if len(page.Tasks) != 1 || page.Tasks[0].ID != live {
		t.Fatalf("a cancelled ctx wrote a task: %+v", page.Tasks)
	}
	task, err := c.Get(bg, live)
	if err != nil || task.Status != "waiting" || task.Count != 0 {
		t.Fatalf("a cancelled ctx touched the live task: %+v %v", task, err)
	}
	if schedules, err := c.Schedules(bg); err != nil {
		t.Fatal(err)
	} else {
		for _, s := range schedules {
			if s.Queue == q {
				t.Fatalf("a cancelled ctx wrote a schedule: %+v", s)
			}
		}
	}
	if queues, err := c.Queues(bg); err != nil {
		t.Fatal(err)
	} else {
		for _, s := range queues {
			if s.Queue == q && s.Paused {
				t.Fatalf("a cancelled ctx paused the queue")
			}
		}
	}
	if err := c.Cancel(bg, live); err != nil {
		t.Fatal(err)
	}
}

// returnsSoon runs f and fails the test when it has not returned within noticeWithin.
func returnsSoon(t *testing.T, f func() (*qtask.Message, error)) (*qtask.Message, error) {
	t.Helper()
	type popped struct {
		msg *qtask.Message
		err error
	}
	ended := make(chan popped, 1)
	go func() {
		msg, err := f()
		ended <- popped{msg, err}
	}()
	select {
	case p := <-ended:
		return p.msg, p.err
	case <-time.After(noticeWithin):
		t.Fatalf("still blocked %v after its ctx was done", noticeWithin)
		return nil, nil
	}
}
