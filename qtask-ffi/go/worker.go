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
	"strings"
	"sync"
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
	// TimeLimit is the longest one attempt may run (default: none). When it
	// passes, the handler's context is cancelled (context.Canceled) and the
	// attempt fails with "time limit of Ns exceeded", retried with backoff like an
	// error; whatever the handler returns afterwards is ignored. A handler that
	// ignores its context keeps its slot until it returns.
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
// batches (qtask_worker_next) and takes their outcomes back in batches
// (qtask_worker_complete), so no engine thread calls into Go.
type Worker struct {
	client  *Client
	queue   string
	options WorkerOptions
	handler ResultHandler

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

// workerRun is one Run's handler and context.
type workerRun struct {
	handler   ResultHandler
	ctx       context.Context
	timeLimit time.Duration
}

// Run works until ctx is done, then lets running handlers return, writes their
// outcomes and returns nil (or the error that kept the worker from running).
// Handlers get a context with ctx's values that is not cancelled with it, so
// that a stop lets them end their work.
func (w *Worker) Run(ctx context.Context) error {
	if w.handler == nil {
		return &Error{Code: CodeInvalidArgument, Message: "invalid argument: no handler: call Handle before Run"}
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

	ended := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			C.qtask_worker_stop(worker)
		case <-ended:
		}
	}()
	// The engine runs on a thread of its own; this goroutine takes its tasks,
	// and a completer gives their outcomes back.
	var report C.qtask_worker_report
	var runErr error
	go func() {
		runErr = call(func() C.qtask_result { return C.qtask_worker_run(worker, &report) })
		close(ended)
	}()
	run := &workerRun{handler: w.handler, ctx: detached{ctx}, timeLimit: w.options.TimeLimit}
	results := make(chan completion, concurrency)
	completerDone := make(chan struct{})
	go completer(worker, results, concurrency, completerDone)
	tasks := make([]C.qtask_task, concurrency)
	var handlers sync.WaitGroup
	for {
		var count C.size_t
		err := call(func() C.qtask_result {
			return C.qtask_worker_next(worker, &tasks[0], C.size_t(len(tasks)), 1.0, &count)
		})
		if err != nil {
			// Closed: the run returned, every task handed out was completed.
			break
		}
		for _, t := range tasks[:count] {
			token, raw := uint64(t.token), C.GoString(t.message_json)
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				results <- completion{token: token, handled: run.handle(raw, func() bool {
					return bool(C.qtask_worker_time_up(worker, C.uint64_t(token)))
				})}
			}()
		}
	}
	<-ended
	handlers.Wait()
	close(results)
	<-completerDone
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

// completer hands outcomes back to the engine, as many per call as have come in
// since the previous call returned, until results is closed.
func completer(worker *C.qtask_worker, results <-chan completion, max int, done chan<- struct{}) {
	defer close(done)
	batch := make([]C.qtask_completion, 0, max)
	var texts []*C.char
	for first := range results {
		batch, texts = appendCompletion(batch[:0], texts[:0], first)
	more:
		for len(batch) < max {
			select {
			case next, ok := <-results:
				if !ok {
					break more
				}
				batch, texts = appendCompletion(batch, texts, next)
			default:
				break more
			}
		}
		// The array is Go memory holding only C pointers, which cgo allows.
		C.qtask_worker_complete(worker, &batch[0], C.size_t(len(batch)))
		for _, text := range texts {
			C.free(unsafe.Pointer(text))
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

// handle runs the handler on one message, turning a panic into an error.
// timeUp reports the engine's verdict that the time limit passed.
func (r *workerRun) handle(raw string, timeUp func() bool) handled {
	value, err := r.call(raw, timeUp)
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

func (r *workerRun) call(raw string, timeUp func() bool) (value interface{}, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	msg, err := parseMessage(raw)
	if err != nil {
		return nil, err
	}
	ctx := r.ctx
	if r.timeLimit > 0 {
		var stop func()
		ctx, stop = watchTimeUp(ctx, r.timeLimit, timeUp)
		defer stop()
	}
	return r.handler(ctx, msg)
}

// watchTimeUp returns a context cancelled once the engine says the time limit
// passed (its clock decides the outcome, so the handler is told only then): it
// looks from the limit on, every few milliseconds. stop ends the watch and
// returns only when timeUp is no longer called.
func watchTimeUp(parent context.Context, limit time.Duration, timeUp func() bool) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		timer := time.NewTimer(limit)
		defer timer.Stop()
		select {
		case <-done:
			return
		case <-timer.C:
		}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if timeUp() {
				cancel()
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-watched
		cancel()
	}
}

// detached keeps a context's values but not its cancellation or deadline.
type detached struct{ context.Context }

func (detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detached) Done() <-chan struct{}       { return nil }
func (detached) Err() error                  { return nil }
