package qtask

/*
#include <stdint.h>
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Handler works on one message. Returning nil finishes the task; an error fails
// this attempt: the task is retried after a backoff (or failed for good when its
// attempts or deadline are spent) with err.Error() kept as its last error. A
// panic is recovered and fails the attempt the same way. The errors of
// RetryAfter, Cancel and FailNow (also wrapped, as errors.As sees them) end the
// attempt their own way.
type Handler func(ctx context.Context, m *Message) error

// ResultHandler is a Handler that also returns a result: a non-nil value is
// marshalled to JSON and kept with the finished task (see Client.Result).
type ResultHandler func(ctx context.Context, m *Message) (interface{}, error)

// WorkerOptions tune a Worker. Zero fields take the defaults.
type WorkerOptions struct {
	// Concurrency is how many handlers run at once (default 1).
	Concurrency int
	// TimeLimit is the longest one attempt may run (default: none); a task's
	// own time limit (WithTimeLimit) takes its place. The handler's context
	// carries the limit as its Deadline; when the engine says the time is up,
	// the context is cancelled (context.Canceled, with ErrTimeUp as its
	// context.Cause) and the attempt fails with "time limit of Ns exceeded",
	// retried with backoff like an error; whatever the handler returns afterwards
	// is ignored. A handler that ignores its context keeps its slot until it
	// returns.
	TimeLimit time.Duration
}

// outcome is the error type of RetryAfter, Cancel and FailNow.
type outcome struct {
	code   C.int32_t
	delay  time.Duration
	reason string
}

func (o *outcome) Error() string {
	switch o.code {
	case C.QTASK_OUTCOME_CODE_RETRY_AFTER:
		return fmt.Sprintf("retry after %s", o.delay)
	case C.QTASK_OUTCOME_CODE_CANCEL:
		return "cancel: " + o.reason
	default:
		return "fail now: " + o.reason
	}
}

// RetryAfter, returned by a handler, brings the task back after d (River's
// JobSnooze): the attempt is given back (its max count grows by one) and the
// last error is kept. Past the task's deadline it fails for good instead.
func RetryAfter(d time.Duration) error {
	return &outcome{code: C.QTASK_OUTCOME_CODE_RETRY_AFTER, delay: d}
}

// Cancel, returned by a handler, ends the task as cancelled with reason kept as
// its last error; it never runs again.
func Cancel(reason string) error {
	return &outcome{code: C.QTASK_OUTCOME_CODE_CANCEL, reason: reason}
}

// FailNow, returned by a handler, ends the task as failed for good with reason
// kept as its last error, whatever attempts it had left.
func FailNow(reason string) error {
	return &outcome{code: C.QTASK_OUTCOME_CODE_FAIL_NOW, reason: reason}
}

// Worker runs a Handler on the tasks of one queue with qtask's worker engine
// (the one behind every binding: claims in batches, renews leases, writes
// outcomes in batches, backs off while a server is down). Handlers run on
// goroutines, up to Concurrency at once: the engine hands its tasks over in
// batches (qtask_worker_take) and takes their outcomes back in batches, taking
// the tasks that wait in the same call (qtask_worker_complete_take), so no
// engine thread calls into Go. A few tasks more than Concurrency wait ready
// on the engine's side; a task's time limit (its ctx deadline) starts when it
// is taken.
type Worker struct {
	client  *Client
	queue   string
	options WorkerOptions
	handler ResultHandler
	kinds   map[string]ResultHandler

	mu     sync.Mutex
	report Report
}

// Report is what a worker did during its last Run.
type Report struct {
	// Finished counts handlers that returned nil.
	Finished uint64
	// Failed counts handlers that returned an error or panicked.
	Failed uint64
	// Skipped counts outcomes of attempts that were no longer current (the
	// lease ran out and a newer attempt began, or the task ended meanwhile).
	Skipped uint64
	// Snoozed counts handlers that returned RetryAfter.
	Snoozed uint64
	// Cancelled counts handlers that returned Cancel.
	Cancelled uint64
}

// NewWorker makes a worker for queue on client; give it a handler with Handle,
// then Run it.
func NewWorker(client *Client, queue string, options WorkerOptions) *Worker {
	return &Worker{client: client, queue: queue, options: options}
}

// Handle sets the handler. Call it before Run.
func (w *Worker) Handle(handler func(ctx context.Context, m *Message) error) {
	w.handler = func(ctx context.Context, m *Message) (interface{}, error) { return nil, handler(ctx, m) }
}

// HandleResult sets a handler that returns a result. Call it before Run.
func (w *Worker) HandleResult(handler func(ctx context.Context, m *Message) (interface{}, error)) {
	w.handler = handler
}

// HandleKind sets the handler of the tasks named name (their kind; Message.Name),
// as Python's @client.task(queue, name=...) does: one queue carries several kinds
// of task, each to its own handler. Call it before Run, once per kind. Without a
// Handle (or HandleResult) handler, the worker takes only these kinds: a task of
// another name never reaches a handler, its attempt fails with "no handler for
// task name ..." and it is retried with backoff, so that during a rolling deploy
// a worker that knows the kind takes it later. With one, that handler takes every
// other name.
func (w *Worker) HandleKind(name string, handler func(ctx context.Context, m *Message) error) {
	w.HandleKindResult(name, func(ctx context.Context, m *Message) (interface{}, error) { return nil, handler(ctx, m) })
}

// HandleKindResult is HandleKind with a handler that returns a result.
func (w *Worker) HandleKindResult(name string, handler func(ctx context.Context, m *Message) (interface{}, error)) {
	if w.kinds == nil {
		w.kinds = map[string]ResultHandler{}
	}
	w.kinds[name] = handler
}

// workerRun is one Run's handler and context.
type workerRun struct {
	handler ResultHandler
	kinds   map[string]ResultHandler
	ctx     context.Context
	worker  *C.qtask_worker
}

// job is one task taken from the engine, copied into Go memory.
type job struct {
	token   uint64
	taskID  int64
	attempt int64
	name    string
	raw     []byte
	// deadline is when the attempt's time limit passes; zero: it has none.
	deadline time.Time
}

// Run works until ctx is done, then lets running handlers return, writes their
// outcomes and returns nil (or the error that kept the worker from running).
// Handlers get a context with ctx's values that is not cancelled with it, so
// that a stop lets them end their work.
func (w *Worker) Run(ctx context.Context) error {
	if w.handler == nil && len(w.kinds) == 0 {
		return &Error{Code: CodeInvalidArgument, Message: "invalid argument: no handler: call Handle or HandleKind before Run"}
	}
	concurrency := w.options.Concurrency
	if concurrency == 0 {
		concurrency = 1
	}
	if concurrency < 0 || concurrency > 1<<20 {
		return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("invalid argument: concurrency %d", concurrency)}
	}
	if w.options.TimeLimit < 0 {
		return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("invalid argument: time limit %s", w.options.TimeLimit)}
	}
	queue, err := cString("queue", w.queue)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(queue))

	var worker *C.qtask_worker
	if err := call(func() C.qtask_result {
		return C.qtask_worker_new_pull(w.client.h, queue, C.uint32_t(concurrency), &worker)
	}); err != nil {
		return err
	}
	defer C.qtask_worker_free(worker)
	if w.options.TimeLimit > 0 {
		if err := call(func() C.qtask_result {
			return C.qtask_worker_set_time_limit(worker, C.double(w.options.TimeLimit.Seconds()))
		}); err != nil {
			return err
		}
	}
	if w.handler == nil {
		// Only the kinds: the engine keeps the others from the handlers.
		names := make([]string, 0, len(w.kinds))
		for name := range w.kinds {
			names = append(names, name)
		}
		sort.Strings(names)
		text, err := json.Marshal(names)
		if err != nil {
			return err
		}
		kinds, err := cString("kinds", string(text))
		if err != nil {
			return err
		}
		err = call(func() C.qtask_result { return C.qtask_worker_set_kinds(worker, kinds) })
		C.free(unsafe.Pointer(kinds))
		if err != nil {
			return err
		}
	}

	ended := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			C.qtask_worker_stop(worker)
		case <-ended:
		}
	}()
	// The engine runs on a thread of its own; this goroutine takes its tasks in
	// batches and hands them to a pool of goroutines (grown as needed, up to
	// the concurrency, and reused: a goroutine per task would grow a fresh
	// stack each time); a completer gives their outcomes back in batches.
	var report C.qtask_worker_report
	var runErr error
	go func() {
		runErr = call(func() C.qtask_result { return C.qtask_worker_run(worker, &report) })
		close(ended)
	}()
	run := &workerRun{handler: w.handler, kinds: w.kinds, ctx: detached{ctx}, worker: worker}
	jobs := make(chan job, concurrency)
	// idle counts the pool's goroutines waiting for a job, less the jobs queued.
	var idle int32
	var handlers sync.WaitGroup
	var done *completions
	serve := func(first job) {
		defer handlers.Done()
		done.add(first.token, run.handle(first))
		for {
			atomic.AddInt32(&idle, 1)
			j, ok := <-jobs
			if !ok {
				return
			}
			done.add(j.token, run.handle(j))
		}
	}
	// Between batches this goroutine waits in Go's netpoller on the worker's
	// wake pipe rather than in a blocking cgo call, which would cost a thread
	// hand-off and keep sysmon polling at its fastest.
	wake := wakeFile(worker)
	if wake != nil {
		defer wake.Close()
	}
	// dispatch gives a taken task to an idle goroutine of the pool, or starts one.
	dispatch := func(t *C.qtask_taken_task) {
		j := job{
			token:   uint64(t.token),
			taskID:  int64(t.task_id),
			attempt: int64(t.attempt),
			name:    C.GoStringN(t.name, C.int(t.name_len)),
			raw:     C.GoBytes(unsafe.Pointer(t.message_json), C.int(t.message_len)),
		}
		if t.time_left_seconds >= 0 {
			j.deadline = time.Now().Add(time.Duration(float64(t.time_left_seconds) * float64(time.Second)))
		}
		if atomic.AddInt32(&idle, -1) < 0 {
			atomic.AddInt32(&idle, 1)
			handlers.Add(1)
			go serve(j)
		} else {
			jobs <- j
		}
	}
	// The completer takes the tasks that wait as it completes others (the engine
	// hands a few over ahead): a burst of short tasks then never waits for the
	// engine's thread, nor for this goroutine to be woken.
	done = newCompletions(worker, concurrency, dispatch)
	var wakeBuf [64]byte
	tasks := make([]C.qtask_taken_task, concurrency)
	for {
		wait := C.double(1.0)
		if wake != nil {
			wait = 0
		}
		var count C.size_t
		err := call(func() C.qtask_result {
			return C.qtask_worker_take(worker, &tasks[0], C.size_t(len(tasks)), wait, &count)
		})
		if err != nil {
			// Closed: the run returned, every task handed out was completed.
			break
		}
		if count == 0 && wake != nil {
			if _, err := wake.Read(wakeBuf[:]); err != nil {
				wake.Close()
				wake = nil
			}
			continue
		}
		for i := range tasks[:count] {
			dispatch(&tasks[i])
		}
	}
	close(jobs)
	<-ended
	handlers.Wait()
	done.close()
	w.mu.Lock()
	w.report = Report{
		Finished: uint64(report.finished), Failed: uint64(report.failed), Skipped: uint64(report.skipped),
		Snoozed: uint64(report.snoozed), Cancelled: uint64(report.cancelled),
	}
	w.mu.Unlock()
	return runErr
}

// completion is one handled task on its way back to the engine.
type completion struct {
	token   uint64
	handled handled
}

// wakeFile is a pollable copy of the worker's wake pipe (nil where there is
// none: the pump then waits inside qtask_worker_take).
func wakeFile(worker *C.qtask_worker) *os.File {
	var fd C.int32_t
	if C.qtask_worker_wake_fd(worker, &fd) != C.QTASK_RESULT_OK {
		return nil
	}
	// A copy that the File owns and closes; the worker keeps its own. The pipe
	// is non-blocking, so the File uses the netpoller.
	own, err := syscall.Dup(int(fd))
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(own), "qtask-worker-wake")
}

// completions gathers the outcomes of handled tasks and gives them back to the
// engine in batches, one call for as many as came in meanwhile, from a
// goroutine of its own while the handlers go on; the same call takes the tasks
// that wait for the slots it frees, which go to dispatch.
type completions struct {
	worker   *C.qtask_worker
	dispatch func(*C.qtask_taken_task)
	mu       sync.Mutex
	pending  []completion
	wake     chan struct{} // capacity 1: something is pending
	closed   chan struct{}
	done     chan struct{}
}

func newCompletions(worker *C.qtask_worker, max int, dispatch func(*C.qtask_taken_task)) *completions {
	c := &completions{worker: worker, dispatch: dispatch, wake: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{})}
	go c.loop(max)
	return c
}

func (c *completions) add(token uint64, h handled) {
	c.mu.Lock()
	c.pending = append(c.pending, completion{token: token, handled: h})
	first := len(c.pending) == 1
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// close writes what is pending and returns once the loop has ended; call it
// after the last add.
func (c *completions) close() {
	close(c.closed)
	<-c.done
}

func (c *completions) loop(max int) {
	defer close(c.done)
	var taken []completion
	batch := make([]C.qtask_completion, 0, max)
	next := make([]C.qtask_taken_task, max)
	var texts []*C.char
	closed := false
	for {
		if !closed {
			select {
			case <-c.wake:
				// Let handlers that are about to end join this batch.
				runtime.Gosched()
			case <-c.closed:
				closed = true
			}
		}
		c.mu.Lock()
		taken, c.pending = c.pending, taken[:0]
		c.mu.Unlock()
		if len(taken) == 0 {
			if closed {
				return
			}
			continue
		}
		batch, texts = batch[:0], texts[:0]
		for _, done := range taken {
			batch, texts = appendCompletion(batch, texts, done)
		}
		// The array is Go memory holding only C pointers, which cgo allows. After
		// close, nothing more is dispatched: the run has returned.
		var count C.size_t
		if closed {
			C.qtask_worker_complete(c.worker, &batch[0], C.size_t(len(batch)))
		} else {
			C.qtask_worker_complete_take(c.worker, &batch[0], C.size_t(len(batch)), &next[0], C.size_t(len(next)), &count)
		}
		for _, text := range texts {
			C.free(unsafe.Pointer(text))
		}
		for i := range next[:count] {
			c.dispatch(&next[i])
		}
	}
}

// appendCompletion adds c to batch, with its texts copied into C memory (also
// appended to texts, for the caller to free after the call).
func appendCompletion(batch []C.qtask_completion, texts []*C.char, c completion) ([]C.qtask_completion, []*C.char) {
	item := C.qtask_completion{token: C.uint64_t(c.token), code: c.handled.code}
	if c.handled.text != "" {
		item.error = C.CString(strings.ReplaceAll(c.handled.text, "\x00", ""))
		texts = append(texts, item.error)
	}
	if c.handled.code == C.QTASK_OUTCOME_CODE_RETRY_AFTER {
		item.delay_seconds = C.double(c.handled.delay.Seconds())
	}
	if c.handled.result != nil {
		// encoding/json escapes NUL inside strings, so the text has none.
		item.result_json = C.CString(string(c.handled.result))
		texts = append(texts, item.result_json)
	}
	return append(batch, item), texts
}

// LastReport is what the worker did during its last Run.
func (w *Worker) LastReport() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.report
}

// handled is how one handler call ended, for the completer to report.
type handled struct {
	code   C.int32_t
	text   string
	delay  time.Duration
	result []byte
}

// handle runs the handler on one task, turning a panic into an error.
func (r *workerRun) handle(j job) handled {
	value, err := r.call(j)
	var o *outcome
	switch {
	case err == nil && value == nil:
		return handled{code: C.QTASK_OUTCOME_CODE_FINISH}
	case err == nil:
		result, merr := json.Marshal(value)
		if merr != nil {
			return handled{code: C.QTASK_OUTCOME_CODE_FAIL_NOW, text: "the result is not JSON: " + merr.Error()}
		}
		return handled{code: C.QTASK_OUTCOME_CODE_FINISH, result: result}
	case errors.As(err, &o):
		return handled{code: o.code, text: o.reason, delay: o.delay}
	case err.Error() == "":
		return handled{code: C.QTASK_OUTCOME_CODE_RETRY, text: "handler returned an error with no text"}
	default:
		return handled{code: C.QTASK_OUTCOME_CODE_RETRY, text: err.Error()}
	}
}

func (r *workerRun) call(j job) (value interface{}, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	msg := &Message{TaskID: j.taskID, Attempt: j.attempt, Name: j.name, Raw: json.RawMessage(j.raw)}
	// Into an interface{}: encoding/json then builds the map directly, without
	// reflection per key (a third of the decoding time here).
	var input interface{}
	if err := json.Unmarshal(msg.Raw, &input); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "message is not a JSON object: " + err.Error()}
	}
	var isObject bool
	if msg.Input, isObject = input.(map[string]interface{}); !isObject {
		return nil, &Error{Code: CodeInternal, Message: "message is not a JSON object"}
	}
	delete(msg.Input, "task_id")
	delete(msg.Input, "attempt")
	ctx := r.ctx
	if !j.deadline.IsZero() {
		limited, stop := r.limit(ctx, j)
		defer stop()
		ctx = limited
	}
	handler, ok := r.kinds[msg.Name]
	if !ok {
		handler = r.handler
	}
	if handler == nil {
		// The engine routes only the kinds here; a guard, not a path.
		return nil, fmt.Errorf("no handler for task name %q", msg.Name)
	}
	return handler(ctx, msg)
}

// ErrTimeUp is the cause (context.Cause) of a handler's context cancelled
// because the attempt's time limit passed: the task's own (WithTimeLimit), else
// the worker's (WorkerOptions.TimeLimit).
var ErrTimeUp = errors.New("qtask: the attempt's time limit passed")

// limitedCtx is a handler's context under a time limit: its Deadline is when
// the limit passes, and it is cancelled (context.Canceled, cause ErrTimeUp)
// once the engine, whose clock decides the outcome, says so.
type limitedCtx struct {
	context.Context
	deadline time.Time
}

func (c *limitedCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// limit returns j's context under its time limit. From the deadline on it asks
// the engine every few milliseconds whether the time is up; stop ends that and
// returns only when the engine is no longer asked.
func (r *workerRun) limit(parent context.Context, j job) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	var mu sync.Mutex
	stopped := false
	var timer *time.Timer
	var check func()
	check = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if bool(C.qtask_worker_time_up(r.worker, C.uint64_t(j.token))) {
			cancel(ErrTimeUp)
			return
		}
		timer = time.AfterFunc(5*time.Millisecond, check)
	}
	mu.Lock()
	timer = time.AfterFunc(time.Until(j.deadline), check)
	mu.Unlock()
	return &limitedCtx{Context: ctx, deadline: j.deadline}, func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		mu.Unlock()
		cancel(context.Canceled)
	}
}

// detached keeps a context's values but not its cancellation or deadline.
type detached struct{ context.Context }

func (detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detached) Done() <-chan struct{}       { return nil }
func (detached) Err() error                  { return nil }
