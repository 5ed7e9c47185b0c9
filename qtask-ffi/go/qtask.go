// Package qtask is the Go binding of qtask, a durable task dispatcher: a
// task's row in a database (SQLite, PostgreSQL, MySQL) is the source of
// truth, a queue (the database itself, or Redis) carries it to a worker, and
// a sweeper re-dispatches whatever is due or overdue.
//
// It calls libqtask (the C ABI, include/qtask.h) through cgo and adds
// nothing but type conversions. Build with the library on the linker path:
//
//	CGO_LDFLAGS="-L/path/to/qtask/target/release -Wl,-rpath,/path/to/qtask/target/release" go build
//
// A *Client is safe for concurrent use by many goroutines. Every call that
// talks to a server takes a context.Context first: a call whose ctx is already
// done returns ctx.Err() without reaching libqtask, and a Pop or Result blocked
// in the engine ends as soon as its ctx is done (a libqtask cancel token).
// Other calls are single statements that run to their end once started.
package qtask

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -lqtask
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// Version is libqtask's version.
func Version() string {
	return C.GoString(C.qtask_version())
}

// Client is a connection to one namespace of a task table and its queue,
// with a background sweeper unless Config.DisableSweeper is set. Safe for
// concurrent use; Close releases it, after which calls return ErrClosed.
type Client struct {
	h *C.qtask_client
}

// Config says how a client reaches its database and queue. Zero fields take
// qtask's defaults (and QTASK_DB_URL, QTASK_QUEUE_URL, QTASK_NAMESPACE).
type Config struct {
	// DB is the database URL: sqlite://file.db, postgres://..., mysql://...
	DB string
	// Queue is "db" (the database itself) or a Redis URL.
	Queue string
	// Namespace lets several applications share one table (the seed's plat_name).
	Namespace       string
	TablePrefix     string
	RedisPrefix     string
	DisableSweeper  bool
	SweepInterval   time.Duration
	BatchSize       int
	MaxPayloadBytes int
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	MaxConnections  int
}

func (c Config) json() string {
	m := map[string]interface{}{}
	setS := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	setS("db", c.DB)
	setS("queue", c.Queue)
	setS("namespace", c.Namespace)
	setS("table_prefix", c.TablePrefix)
	setS("redis_prefix", c.RedisPrefix)
	if c.DisableSweeper {
		m["sweeper"] = false
	}
	setD := func(k string, v time.Duration) {
		if v != 0 {
			m[k] = v.Seconds()
		}
	}
	setD("sweep_interval", c.SweepInterval)
	setD("retry_backoff", c.RetryBackoff)
	setD("retry_backoff_max", c.RetryBackoffMax)
	setI := func(k string, v int) {
		if v != 0 {
			m[k] = v
		}
	}
	setI("batch_size", c.BatchSize)
	setI("max_payload_bytes", c.MaxPayloadBytes)
	setI("max_connections", c.MaxConnections)
	b, _ := json.Marshal(m) // a map of strings, numbers and bools always marshals
	return string(b)
}

// Open connects with cfg. It does not create tables: call Install once.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	return OpenJSON(ctx, cfg.json())
}

// OpenJSON connects with a JSON config object using the keys of qtask_open
// (db, queue, namespace, sweeper, sweep_interval in seconds, ...); "" or "{}"
// gives the defaults. An unknown key is an ErrInvalidArgument.
func OpenJSON(ctx context.Context, config string) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := cString("config", config)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cfg))
	var h *C.qtask_client
	if err := call(func() C.qtask_result { return C.qtask_open(cfg, &h) }); err != nil {
		return nil, err
	}
	return &Client{h: h}, nil
}

// Close stops the sweeper and closes the pool. Closing twice is fine.
func (c *Client) Close() {
	C.qtask_close(c.h)
}

// Install creates or migrates qtask's tables. Idempotent; never drops data.
func (c *Client) Install(ctx context.Context) error {
	return callCtx(ctx, func() C.qtask_result { return C.qtask_install(c.h) })
}

// Option is one of the seed's task options.
type Option func(*TaskArgs)

// WithDeadline: after created+d the task is never dispatched again (default 7 days).
func WithDeadline(d time.Duration) Option {
	return func(t *TaskArgs) { t.Deadline = d; t.mark("deadline") }
}

// WithDeleteDeadline: a finished task's row is deleted d after it finished (default at once).
func WithDeleteDeadline(d time.Duration) Option {
	return func(t *TaskArgs) { t.DeleteDeadline = d; t.mark("delete_deadline") }
}

// WithMaxCount: the task is dispatched at most n times (default 100).
func WithMaxCount(n int) Option {
	return func(t *TaskArgs) { t.MaxCount = n; t.mark("max_count") }
}

// WithOrderNO sets an external business number: while a task of the same
// queue with this number is live, creating it again returns that task's id.
func WithOrderNO(orderNO string) Option {
	return func(t *TaskArgs) { t.OrderNO = orderNO; t.mark("order_no") }
}

// WithDelay makes the task first due d from now (for CreateTask and CreateTx).
func WithDelay(d time.Duration) Option {
	return func(t *TaskArgs) { t.Delay = d; t.mark("delay") }
}

// WithPriority: claims take higher priority first, then the earliest due
// (default 0, from -1000 to 1000).
func WithPriority(p int) Option {
	return func(t *TaskArgs) { t.Priority = p; t.mark("priority") }
}

// WithTimeLimit: one attempt may run at most d (default: the worker's
// TimeLimit, if any); past it the attempt fails (see TaskArgs.TimeLimit).
func WithTimeLimit(d time.Duration) Option {
	return func(t *TaskArgs) { t.TimeLimit = d; t.mark("time_limit") }
}

// Invoke dispatches a task written by Create; call it after the caller's own
// transaction commits (the seed's invoke). A nil error means the task is on
// the queue, or the queue was down and the sweeper will dispatch it. Calling
// it more than once returns ErrClosed. Never called, the task is dispatched
// by the sweeper once its timeout has passed. A ctx already done returns
// ctx.Err() and leaves the dispatch to the sweeper.
type Invoke func(ctx context.Context) error

type invokeHandle struct {
	h *C.qtask_invoke
}

func freeInvoke(i *invokeHandle) { C.qtask_invoke_free(i.h) }

// Create writes a task and returns its id and the Invoke that dispatches it
// (the seed's qtask.Create). input is marshalled with encoding/json and must
// be a JSON object (json.RawMessage and []byte are taken as JSON text).
// timeout is the lease of one dispatch (fractions of a second are kept).
//
// The row is committed on qtask's own connection: to create a task inside
// your own database transaction, use CreateTx.
func (c *Client) Create(ctx context.Context, name string, input interface{}, timeout time.Duration, queue string, opts ...Option) (int64, Invoke, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	args, err := newCTaskArgs(name, input, queue, opts)
	if err != nil {
		return 0, nil, err
	}
	defer args.free()
	var id C.int64_t
	var h *C.qtask_invoke
	err = call(func() C.qtask_result {
		return C.qtask_create_deferred(c.h, args.name, args.input, seconds(timeout), args.queue, args.options, &id, &h)
	})
	if err != nil {
		return 0, nil, err
	}
	handle := &invokeHandle{h: h}
	runtime.SetFinalizer(handle, freeInvoke)
	invoke := func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err // the finalizer frees the handle; the sweeper dispatches
		}
		runtime.SetFinalizer(handle, nil)
		return call(func() C.qtask_result { return C.qtask_invoke_run(handle.h, nil) })
	}
	return int64(id), invoke, nil
}

// CreateNow writes a task and dispatches it at once (Create followed by its Invoke).
func (c *Client) CreateNow(ctx context.Context, name string, input interface{}, timeout time.Duration, queue string, opts ...Option) (int64, error) {
	created, err := c.CreateTask(ctx, NewTaskArgs(name, input, timeout, queue, opts...))
	return created.ID, err
}

// Delay writes a task that the sweeper dispatches delay from now (the seed's
// qtask.Delay).
func (c *Client) Delay(ctx context.Context, name string, input interface{}, delay, timeout time.Duration, queue string, opts ...Option) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	args, err := newCTaskArgs(name, input, queue, opts)
	if err != nil {
		return 0, err
	}
	defer args.free()
	var id C.int64_t
	err = call(func() C.qtask_result {
		return C.qtask_delay(c.h, args.name, args.input, seconds(delay), seconds(timeout), args.queue, args.options, &id)
	})
	return int64(id), err
}

// CreateTask writes the task; without a Delay it is dispatched now.
func (c *Client) CreateTask(ctx context.Context, task TaskArgs) (Created, error) {
	var created Created
	if err := ctx.Err(); err != nil {
		return created, err
	}
	text, err := task.json()
	if err != nil {
		return created, err
	}
	ctext, err := cString("task", string(text))
	if err != nil {
		return created, err
	}
	defer C.free(unsafe.Pointer(ctext))
	err = c.jsonOut(ctx, &created, func(out **C.char) C.qtask_result { return C.qtask_create_task(c.h, ctext, out) })
	return created, err
}

// Message is what a worker pops: the task's input plus its id and dispatch number.
type Message struct {
	TaskID  int64
	Attempt int64
	// Name is the task's name (its kind); set on the messages a Worker hands
	// its handler.
	Name string
	// Input is the task's input object (without task_id and attempt).
	Input map[string]interface{}
	// Raw is the wire form: the input with task_id and attempt added.
	Raw json.RawMessage
}

// Pop waits up to wait for a message of queue; nil, nil when there was none.
// Call Processing before working on it. When ctx is done (cancelled, or its
// deadline passed) Pop ends at once with ctx.Err(), having claimed nothing: a
// task that arrives later is left for the next Pop. A message already being
// claimed at that moment is returned, so that no attempt is begun and dropped.
func (c *Client) Pop(ctx context.Context, queue string, wait time.Duration) (*Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := cString("queue", queue)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(q))
	var out *C.char
	err = cancellable(ctx, func(token *C.qtask_cancel_token) C.qtask_result {
		return C.qtask_pop_cancellable(c.h, q, seconds(wait), token, &out)
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, ctx.Err() // nil when the wait ran out, ctx's error when ctx ended it
	}
	raw := C.GoString(out)
	C.qtask_string_free(out)
	return parseMessage(raw)
}

// parseMessage reads the wire form of a message: the input plus task_id and attempt.
func parseMessage(raw string) (*Message, error) {
	msg := &Message{Raw: json.RawMessage(raw)}
	if err := json.Unmarshal(msg.Raw, &msg.Input); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "message is not a JSON object: " + err.Error()}
	}
	var ids struct {
		TaskID  int64 `json:"task_id"`
		Attempt int64 `json:"attempt"`
	}
	if err := json.Unmarshal(msg.Raw, &ids); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "message ids: " + err.Error()}
	}
	msg.TaskID, msg.Attempt = ids.TaskID, ids.Attempt
	delete(msg.Input, "task_id")
	delete(msg.Input, "attempt")
	return msg, nil
}

// Processing marks the task running and extends its lease by its timeout
// (the seed's qtask.Processing). false: skip it (finished, failed,
// cancelled, past its deadline or gone). Call it again during a long job.
func (c *Client) Processing(ctx context.Context, taskID int64) (bool, error) {
	var mayRun C.bool
	err := callCtx(ctx, func() C.qtask_result { return C.qtask_processing(c.h, C.int64_t(taskID), &mayRun) })
	return bool(mayRun), err
}

// Finish marks the task finished: it is never dispatched again.
func (c *Client) Finish(ctx context.Context, taskID int64) error {
	return callCtx(ctx, func() C.qtask_result { return C.qtask_finish(c.h, C.int64_t(taskID)) })
}

// Fail records a failed attempt: retried after a backoff, or failed for good
// when its attempts or deadline are spent.
func (c *Client) Fail(ctx context.Context, taskID int64, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := cString("reason", reason)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(r))
	return call(func() C.qtask_result { return C.qtask_fail(c.h, C.int64_t(taskID), r) })
}

// Cancel stops a live task.
func (c *Client) Cancel(ctx context.Context, taskID int64) error {
	return callCtx(ctx, func() C.qtask_result { return C.qtask_cancel(c.h, C.int64_t(taskID)) })
}

// Task is one row of the task table. Times are Unix milliseconds.
type Task struct {
	ID         int64                  `json:"id"`
	Namespace  string                 `json:"namespace"`
	Name       string                 `json:"name"`
	Queue      string                 `json:"queue"`
	Input      map[string]interface{} `json:"input"`
	OrderNO    *string                `json:"order_no"`
	Status     string                 `json:"status"` // waiting, processing, finished, failed, cancelled
	TimeoutMs  int64                  `json:"timeout_ms"`
	NextAt     *int64                 `json:"next_at"`
	DeadlineAt int64                  `json:"deadline_at"`
	DeleteAt   int64                  `json:"delete_at"`
	MaxCount   int64                  `json:"max_count"`
	Count      int64                  `json:"count"`
	LastError  *string                `json:"last_error"`
	CreatedAt  int64                  `json:"created_at"`
	UpdatedAt  int64                  `json:"updated_at"`
	Priority   int64                  `json:"priority"`
}

// Get reads one task.
func (c *Client) Get(ctx context.Context, taskID int64) (*Task, error) {
	var task Task
	err := c.jsonOut(ctx, &task, func(out **C.char) C.qtask_result { return C.qtask_get(c.h, C.int64_t(taskID), out) })
	if err != nil {
		return nil, err
	}
	return &task, nil
}

// Stats counts the namespace's tasks; the last four fields are this client's counters.
type Stats struct {
	Waiting          int64  `json:"waiting"`
	Processing       int64  `json:"processing"`
	Finished         int64  `json:"finished"`
	Failed           int64  `json:"failed"`
	Cancelled        int64  `json:"cancelled"`
	Due              int64  `json:"due"`
	RedispatchedLive int64  `json:"redispatched_live"`
	Dispatched       uint64 `json:"dispatched"`
	Redispatched     uint64 `json:"redispatched"`
	GaveUp           uint64 `json:"gave_up"`
	Deleted          uint64 `json:"deleted"`
}

// Stats reads the namespace's task counts and this client's counters.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var stats Stats
	err := c.jsonOut(ctx, &stats, func(out **C.char) C.qtask_result { return C.qtask_stats(c.h, out) })
	if err != nil {
		return nil, err
	}
	return &stats, nil
}

func (c *Client) jsonOut(ctx context.Context, v interface{}, f func(**C.char) C.qtask_result) error {
	var out *C.char
	if err := callCtx(ctx, func() C.qtask_result { return f(&out) }); err != nil {
		return err
	}
	text := C.GoString(out)
	C.qtask_string_free(out)
	if err := json.Unmarshal([]byte(text), v); err != nil {
		return &Error{Code: CodeInternal, Message: "decoding: " + err.Error()}
	}
	return nil
}

// callCtx is call after checking ctx: a call whose ctx is done returns
// ctx.Err() without reaching libqtask.
func callCtx(ctx context.Context, f func() C.qtask_result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return call(f)
}

// cancellable runs a blocking C call with a cancel token that is cancelled as
// soon as ctx is done (the engine then ends the wait); a ctx that can never be
// done (context.Background) needs no token.
func cancellable(ctx context.Context, f func(*C.qtask_cancel_token) C.qtask_result) error {
	if ctx.Done() == nil {
		return call(func() C.qtask_result { return f(nil) })
	}
	var token *C.qtask_cancel_token
	if err := call(func() C.qtask_result { return C.qtask_cancel_token_new(&token) }); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		C.qtask_cancel_token_cancel(token)
		close(fired)
	})
	err := call(func() C.qtask_result { return f(token) })
	if !stop() {
		<-fired // cancelling now: free the token only after
	}
	C.qtask_cancel_token_free(token)
	return err
}

// call runs one C function and reads the last error on the same OS thread.
func call(f func() C.qtask_result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := int32(f())
	if rc == 0 {
		return nil
	}
	return &Error{Code: Code(rc), Message: C.GoString(C.qtask_last_error())}
}

// cString copies s into C memory that the caller frees; a NUL byte inside s
// would cut it short, so it is refused.
func cString(what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("invalid argument: %s contains a NUL byte", what)}
	}
	return C.CString(s), nil
}

type cTaskArgs struct {
	name, input, queue, options *C.char
}

func newCTaskArgs(name string, input interface{}, queue string, opts []Option) (*cTaskArgs, error) {
	inputJSON, err := inputJSON(input)
	if err != nil {
		return nil, err
	}
	options := ""
	if len(opts) > 0 {
		var task TaskArgs
		for _, opt := range opts {
			opt(&task)
		}
		b, _ := json.Marshal(task.options()) // strings and numbers always marshal
		options = string(b)
	}
	args := &cTaskArgs{}
	for _, s := range []struct {
		dst  **C.char
		what string
		val  string
	}{{&args.name, "name", name}, {&args.input, "input", string(inputJSON)}, {&args.queue, "queue", queue}, {&args.options, "options", options}} {
		if *s.dst, err = cString(s.what, s.val); err != nil {
			args.free()
			return nil, err
		}
	}
	return args, nil
}

func (a *cTaskArgs) free() {
	for _, p := range []*C.char{a.name, a.input, a.queue, a.options} {
		if p != nil {
			C.free(unsafe.Pointer(p))
		}
	}
}

// seconds converts a duration to the seconds libqtask takes; negative ones
// stay negative, so that libqtask refuses them.
func seconds(d time.Duration) C.double {
	return C.double(d.Seconds())
}
