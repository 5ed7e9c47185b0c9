package qtask

/*
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// resultChunk is the longest one C call waits, so that ctx is looked at between.
const resultChunk = time.Second

// Result returns the result a finished task kept (the JSON its handler returned
// through HandleResult; "null" when none), waiting up to wait while the task is
// live, or until ctx is done (then ctx's error). The finished row, and so its
// result, is kept only until its delete deadline: create the task with
// WithDeleteDeadline to read it. Errors: ErrNotFound (no such task, or cleaned
// up), ErrInvalidState (it failed or was cancelled; the message says why),
// ErrTimeout (still live after wait).
func (c *Client) Result(ctx context.Context, taskID int64, wait time.Duration) (json.RawMessage, error) {
	if wait < 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: "invalid argument: wait is negative"}
	}
	until := time.Now().Add(wait)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk := time.Until(until)
		if chunk > resultChunk {
			chunk = resultChunk
		}
		if chunk < 0 {
			chunk = 0
		}
		var raw json.RawMessage
		err := c.jsonOut(&raw, func(out **C.char) C.qtask_result {
			return C.qtask_task_result(c.h, C.int64_t(taskID), C.double(chunk.Seconds()), out)
		})
		if err == nil {
			return raw, nil
		}
		if !errors.Is(err, ErrTimeout) || !time.Now().Before(until) {
			return nil, err
		}
	}
}
