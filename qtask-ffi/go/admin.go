package qtask

/*
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"math"
	"unsafe"
)

// Filter says which tasks of the client's namespace an operator means; zero
// fields match anything. Status is waiting, processing, finished, failed or
// cancelled; times are Unix milliseconds.
type Filter struct {
	Status       string `json:"status,omitempty"`
	Queue        string `json:"queue,omitempty"`
	Name         string `json:"name,omitempty"`
	CreatedFrom  int64  `json:"created_from,omitempty"`
	CreatedUntil int64  `json:"created_until,omitempty"`
}

// TaskPage is one page of ListTasks, newest first. NextBeforeID (0 on the last
// page) is the beforeID of the next page.
type TaskPage struct {
	Tasks        []Task `json:"tasks"`
	NextBeforeID int64  `json:"next_before_id"`
}

// QueueSummary is one queue's counts by status and whether it is paused.
type QueueSummary struct {
	Queue      string      `json:"queue"`
	Paused     bool        `json:"paused"`
	Limits     QueueLimits `json:"limits"`
	Waiting    int64       `json:"waiting"`
	Processing int64       `json:"processing"`
	Finished   int64       `json:"finished"`
	Failed     int64       `json:"failed"`
	Cancelled  int64       `json:"cancelled"`
}

// RatePoint is how many tasks ended in one minute (MinuteAt: its start, Unix ms).
type RatePoint struct {
	MinuteAt int64 `json:"minute_at"`
	Finished int64 `json:"finished"`
	Failed   int64 `json:"failed"`
}

func (f Filter) cJSON() (*C.char, error) {
	text, err := json.Marshal(f)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: "filter: " + err.Error()}
	}
	return cString("filter", string(text))
}

// ListTasks returns up to limit (1 to 1000) tasks matching f, newest first, with
// ids below beforeID (0: from the newest).
func (c *Client) ListTasks(ctx context.Context, f Filter, beforeID int64, limit int) (*TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	filter, err := f.cJSON()
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(filter))
	if limit < 0 || int64(limit) > math.MaxUint32 {
		limit = 0 // refused by qtask with ErrInvalidArgument
	}
	var page TaskPage
	err = c.jsonOut(ctx, &page, func(out **C.char) C.qtask_result {
		return C.qtask_list_tasks(c.h, filter, C.int64_t(beforeID), C.uint32_t(limit), out)
	})
	if err != nil {
		return nil, err
	}
	return &page, nil
}

// Retry makes a failed or cancelled task wait again, due now, with a fresh
// attempt budget; its last error is kept.
func (c *Client) Retry(ctx context.Context, taskID int64) error {
	return callCtx(ctx, func() C.qtask_result { return C.qtask_retry(c.h, C.int64_t(taskID)) })
}

// RetryMatching retries every failed or cancelled task matching f; it returns how many.
func (c *Client) RetryMatching(ctx context.Context, f Filter) (uint64, error) {
	return c.bulk(ctx, f, func(filter *C.char, out *C.uint64_t) C.qtask_result {
		return C.qtask_retry_matching(c.h, filter, out)
	})
}

// CancelMatching cancels every waiting or processing task matching f; it returns how many.
func (c *Client) CancelMatching(ctx context.Context, f Filter) (uint64, error) {
	return c.bulk(ctx, f, func(filter *C.char, out *C.uint64_t) C.qtask_result {
		return C.qtask_cancel_matching(c.h, filter, out)
	})
}

func (c *Client) bulk(ctx context.Context, f Filter, run func(*C.char, *C.uint64_t) C.qtask_result) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	filter, err := f.cJSON()
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(filter))
	var n C.uint64_t
	if err := call(func() C.qtask_result { return run(filter, &n) }); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// PauseQueue stops dispatching queue until ResumeQueue; every worker notices
// within one sweep interval.
func (c *Client) PauseQueue(ctx context.Context, queue string) error {
	return c.queueCall(ctx, queue, func(q *C.char) C.qtask_result { return C.qtask_pause_queue(c.h, q) })
}

// ResumeQueue dispatches a paused queue again.
func (c *Client) ResumeQueue(ctx context.Context, queue string) error {
	return c.queueCall(ctx, queue, func(q *C.char) C.qtask_result { return C.qtask_resume_queue(c.h, q) })
}

func (c *Client) queueCall(ctx context.Context, queue string, run func(*C.char) C.qtask_result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q, err := cString("queue", queue)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(q))
	return call(func() C.qtask_result { return run(q) })
}

// QueueLimits are the limits of one queue across every worker of every
// process; nil is no limit.
type QueueLimits struct {
	// MaxProcessing: tasks of the queue processing at once (at least 1).
	MaxProcessing *uint32 `json:"max_processing"`
	// MaxPerSecond: claims per second (above 0; fractions allowed).
	MaxPerSecond *float64 `json:"max_per_second"`
}

// SetQueueLimits sets (or, with nil fields, removes) the limits of queue,
// enforced when tasks are claimed; other processes notice within one sweep
// interval.
func (c *Client) SetQueueLimits(ctx context.Context, queue string, limits QueueLimits) error {
	text, err := json.Marshal(limits)
	if err != nil {
		return err
	}
	l := C.CString(string(text))
	defer C.free(unsafe.Pointer(l))
	return c.queueCall(ctx, queue, func(q *C.char) C.qtask_result { return C.qtask_set_queue_limits(c.h, q, l) })
}

// Queues returns every queue of the namespace with its counts, pause flag and limits.
func (c *Client) Queues(ctx context.Context) ([]QueueSummary, error) {
	var queues []QueueSummary
	err := c.jsonOut(ctx, &queues, func(out **C.char) C.qtask_result { return C.qtask_queues(c.h, out) })
	return queues, err
}

// Rates returns the tasks finished and failed per minute over the last minutes
// (1 to 1440), oldest first.
func (c *Client) Rates(ctx context.Context, minutes int) ([]RatePoint, error) {
	if minutes < 0 || int64(minutes) > math.MaxUint32 {
		minutes = 0 // refused by qtask with ErrInvalidArgument
	}
	var rates []RatePoint
	err := c.jsonOut(ctx, &rates, func(out **C.char) C.qtask_result {
		return C.qtask_rates(c.h, C.uint32_t(minutes), out)
	})
	return rates, err
}
