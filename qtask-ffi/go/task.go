package qtask

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// TaskArgs is the one description of a task (qtask-core's TaskArgs): what
// CreateTask, CreateTx and CreateStatement take. Zero fields take qtask's
// defaults.
type TaskArgs struct {
	Name string
	// Input is marshalled with encoding/json and must be a JSON object
	// (json.RawMessage and []byte are taken as JSON text).
	Input interface{}
	Queue string
	// Timeout is the lease of one dispatch (default 5 minutes).
	Timeout time.Duration
	// Deadline: after created+Deadline the task is never dispatched again (default 7 days).
	Deadline time.Duration
	// DeleteDeadline: a finished row is deleted this long after it finished (default at once).
	DeleteDeadline time.Duration
	// MaxCount limits dispatches (default 100).
	MaxCount int
	// OrderNO: while a live task of the queue holds it, creating it again returns that task.
	OrderNO string
	// Delay: the task is first due this long from now (default: now).
	Delay time.Duration
	// Priority: claims take higher priority first, then the earliest due
	// (default 0, from -1000 to 1000).
	Priority int
	// TimeLimit: the longest one attempt may run (default: the worker's
	// TimeLimit, if any); past it the attempt fails. A Worker's handler sees it
	// as its ctx's deadline, and its ctx is cancelled when it passes (see
	// WorkerOptions.TimeLimit).
	TimeLimit time.Duration

	// explicit names the fields set by an Option or an argument, so that a zero
	// given on purpose reaches libqtask (which refuses it) instead of the default.
	explicit map[string]bool
}

func (t *TaskArgs) mark(key string) {
	if t.explicit == nil {
		t.explicit = map[string]bool{}
	}
	t.explicit[key] = true
}

func (t TaskArgs) has(key string, zero bool) bool {
	return !zero || t.explicit[key]
}

// NewTaskArgs builds a TaskArgs from the seed's argument list.
func NewTaskArgs(name string, input interface{}, timeout time.Duration, queue string, opts ...Option) TaskArgs {
	task := TaskArgs{Name: name, Input: input, Queue: queue, Timeout: timeout}
	task.mark("timeout")
	for _, opt := range opts {
		opt(&task)
	}
	return task
}

// Created is the result of a create.
type Created struct {
	ID int64 `json:"id"`
	// Existing: a live task of the queue already held the order number; ID is that task.
	Existing bool `json:"existing"`
	// Dispatched: the message is on its queue now. False for delayed and existing
	// tasks, tasks created in a caller's transaction, and when the queue was down
	// (the sweeper dispatches it later).
	Dispatched bool `json:"dispatched"`
}

// options are the keys of an options object (qtask_create's options_json).
func (t TaskArgs) options() map[string]interface{} {
	m := map[string]interface{}{}
	if t.has("deadline", t.Deadline == 0) {
		m["deadline"] = t.Deadline.Seconds()
	}
	if t.has("delete_deadline", t.DeleteDeadline == 0) {
		m["delete_deadline"] = t.DeleteDeadline.Seconds()
	}
	if t.has("max_count", t.MaxCount == 0) {
		m["max_count"] = t.MaxCount
	}
	if t.has("order_no", t.OrderNO == "") {
		m["order_no"] = t.OrderNO
	}
	if t.has("priority", t.Priority == 0) {
		m["priority"] = t.Priority
	}
	if t.has("time_limit", t.TimeLimit == 0) {
		m["time_limit"] = t.TimeLimit.Seconds()
	}
	return m
}

// json is the task as qtask_create_task and qtask_create_statement read it.
func (t TaskArgs) json() ([]byte, error) {
	input, err := inputJSON(t.Input)
	if err != nil {
		return nil, err
	}
	for what, text := range map[string]string{"name": t.Name, "queue": t.Queue, "order_no": t.OrderNO} {
		if !utf8.ValidString(text) {
			return nil, &Error{Code: CodeInvalidArgument, Message: "invalid argument: " + what + " is not valid UTF-8"}
		}
	}
	m := t.options()
	m["name"] = t.Name
	m["queue"] = t.Queue
	m["input"] = json.RawMessage(input)
	if t.has("timeout", t.Timeout == 0) {
		m["timeout"] = t.Timeout.Seconds()
	}
	if t.has("delay", t.Delay == 0) {
		m["delay"] = t.Delay.Seconds()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: "invalid argument: input: " + err.Error()}
	}
	return b, nil
}

func inputJSON(input interface{}) ([]byte, error) {
	switch v := input.(type) {
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	}
	b, err := json.Marshal(input)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: "invalid argument: input: " + err.Error()}
	}
	return b, nil
}
