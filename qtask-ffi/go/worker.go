package qtask

/*
#include <stdint.h>
#include <stdlib.h>
#include "qtask.h"

// Defined in worker_export.go (cgo export).
extern int32_t qtaskGoWorkerCallback(char *message_json, qtask_outcome *outcome, void *user_data);

// The run's cgo.Handle travels as the callback's user_data, a number, never a Go pointer.
static qtask_result qtask_go_worker_new(qtask_client *client, const char *queue, uint32_t concurrency,
                                        uintptr_t run, qtask_worker **out) {
	return qtask_worker_new(client, queue, concurrency, (qtask_worker_callback)qtaskGoWorkerCallback,
	                        (void *)run, out);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Handler works on one message. Returning nil finishes the task; an error fails
// this attempt: the task is retried after a backoff (or failed for good when its
// attempts or deadline are spent) with err.Error() kept as its last error. A
// panic is recovered and fails the attempt the same way.
type Handler func(ctx context.Context, m *Message) error

// WorkerOptions tune a Worker. Zero fields take the defaults.
type WorkerOptions struct {
	// Concurrency is how many handlers run at once (default 1).
	Concurrency int
}

// Worker runs a Handler on the tasks of one queue with qtask's worker engine
// (the one behind every binding: claims in batches, renews leases, writes
// outcomes in batches, backs off while a server is down). Handlers run on
// the engine's threads, up to Concurrency at once.
type Worker struct {
	client  *Client
	queue   string
	options WorkerOptions
	handler Handler

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
}

// NewWorker makes a worker for queue on client; give it a handler with Handle,
// then Run it.
func NewWorker(client *Client, queue string, options WorkerOptions) *Worker {
	return &Worker{client: client, queue: queue, options: options}
}

// Handle sets the handler. Call it before Run.
func (w *Worker) Handle(handler func(ctx context.Context, m *Message) error) {
	w.handler = handler
}

// workerRun is what the engine's threads reach through the callback's cgo.Handle.
type workerRun struct {
	handler Handler
	ctx     context.Context
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
	queue, err := cString("queue", w.queue)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(queue))

	run := cgo.NewHandle(&workerRun{handler: w.handler, ctx: detached{ctx}})
	defer run.Delete()
	var worker *C.qtask_worker
	if err := call(func() C.qtask_result {
		return C.qtask_go_worker_new(w.client.h, queue, C.uint32_t(concurrency), C.uintptr_t(run), &worker)
	}); err != nil {
		return err
	}
	defer C.qtask_worker_free(worker)

	ended := make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-ctx.Done():
			C.qtask_worker_stop(worker)
		case <-ended:
		}
	}()
	var report C.qtask_worker_report
	err = call(func() C.qtask_result { return C.qtask_worker_run(worker, &report) })
	w.mu.Lock()
	w.report = Report{Finished: uint64(report.finished), Failed: uint64(report.failed), Skipped: uint64(report.skipped)}
	w.mu.Unlock()
	return err
}

// LastReport is what the worker did during its last Run.
func (w *Worker) LastReport() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.report
}

// handle runs the handler on one message, turning a panic into an error.
func (r *workerRun) handle(raw string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	msg, err := parseMessage(raw)
	if err != nil {
		return err
	}
	err = r.handler(r.ctx, msg)
	if err == nil {
		return nil
	}
	if err.Error() == "" {
		return errors.New("handler returned an error with no text")
	}
	return err
}

// detached keeps a context's values but not its cancellation or deadline.
type detached struct{ context.Context }

func (detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detached) Done() <-chan struct{}       { return nil }
func (detached) Err() error                  { return nil }
