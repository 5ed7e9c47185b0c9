package qtask

/*
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"time"
	"unsafe"
)

// What a schedule does about ticks missed while no process swept.
const (
	// MissedRunOnce makes one catch-up task, then waits for the next future tick (default).
	MissedRunOnce = "run_once"
	// MissedSkip makes none and goes straight to the next future tick.
	MissedSkip = "skip"
)

// Schedule says when a periodic task ticks and what its tasks look like. Set
// exactly one of Cron (5 fields, 6 with seconds first, or "@hourly"…, read in
// TimeZone, an IANA name, default "UTC") and Every (at least one second). Zero
// durations and MaxCount take qtask's defaults. Priority is each task's (claims
// take higher priority first; default 0, from -1000 to 1000).
type Schedule struct {
	Queue          string
	Cron           string
	TimeZone       string
	Every          time.Duration
	Missed         string
	Timeout        time.Duration
	Deadline       time.Duration
	DeleteDeadline time.Duration
	MaxCount       int
	Priority       int
}

// ScheduleInfo is a schedule as the database keeps it; times are Unix milliseconds.
// Cron and TimeZone are empty for an interval, EveryMS 0 for a cron expression.
type ScheduleInfo struct {
	Name          string          `json:"name"`
	Queue         string          `json:"queue"`
	Input         json.RawMessage `json:"input"`
	Cron          string          `json:"cron"`
	TimeZone      string          `json:"time_zone"`
	EveryMS       int64           `json:"every_ms"`
	Missed        string          `json:"missed"`
	TimeoutMS     int64           `json:"timeout_ms"`
	DeadlineMS    int64           `json:"deadline_ms"`
	DeleteAfterMS int64           `json:"delete_after_ms"`
	MaxCount      int64           `json:"max_count"`
	Priority      int64           `json:"priority"`
	NextAt        int64           `json:"next_at"`
	LastTickAt    int64           `json:"last_tick_at"`
	LastTaskID    int64           `json:"last_task_id"`
	CreatedAt     int64           `json:"created_at"`
	UpdatedAt     int64           `json:"updated_at"`
}

func (s Schedule) optionsJSON() ([]byte, error) {
	m := map[string]interface{}{"queue": s.Queue}
	if s.Cron != "" {
		m["cron"] = s.Cron
	}
	if s.TimeZone != "" {
		m["time_zone"] = s.TimeZone
	}
	if s.Every != 0 {
		m["every"] = s.Every.Seconds()
	}
	if s.Missed != "" {
		m["missed"] = s.Missed
	}
	for key, d := range map[string]time.Duration{"timeout": s.Timeout, "deadline": s.Deadline, "delete_deadline": s.DeleteDeadline} {
		if d != 0 {
			m[key] = d.Seconds()
		}
	}
	if s.MaxCount != 0 {
		m["max_count"] = s.MaxCount
	}
	if s.Priority != 0 {
		m["priority"] = s.Priority
	}
	return json.Marshal(m)
}

// Schedule declares the periodic task name, or replaces the one of that name
// (its next tick is kept while its timing is unchanged), so a program may
// declare its schedules at every start. Each tick makes exactly one task named
// name with input, however many processes sweep. A bad cron expression, time
// zone or interval is ErrInvalidArgument and writes nothing.
func (c *Client) Schedule(ctx context.Context, name string, input interface{}, s Schedule) (*ScheduleInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	options, err := s.optionsJSON()
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: "invalid argument: schedule: " + err.Error()}
	}
	args, err := newCTaskArgs(name, input, "", nil)
	if err != nil {
		return nil, err
	}
	defer args.free()
	opts, err := cString("options", string(options))
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(opts))
	var info ScheduleInfo
	err = c.jsonOut(ctx, &info, func(out **C.char) C.qtask_result {
		return C.qtask_schedule(c.h, args.name, args.input, opts, out)
	})
	if err != nil {
		return nil, err
	}
	return &info, nil
}

// Unschedule removes the schedule name and reports whether it existed; the
// tasks it already made stay.
func (c *Client) Unschedule(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	n, err := cString("name", name)
	if err != nil {
		return false, err
	}
	defer C.free(unsafe.Pointer(n))
	var existed C.bool
	err = call(func() C.qtask_result { return C.qtask_unschedule(c.h, n, &existed) })
	return bool(existed), err
}

// Schedules returns every schedule of the namespace, by name.
func (c *Client) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	var schedules []ScheduleInfo
	err := c.jsonOut(ctx, &schedules, func(out **C.char) C.qtask_result { return C.qtask_schedules(c.h, out) })
	return schedules, err
}
