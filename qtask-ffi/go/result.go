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

// Result returns the result a finished task kept (the JSON its handler returned
// through HandleResult; "null" when none), waiting up to wait while the task is
// live, or until ctx is done (then ctx's error, at once). The finished row, and
// so its result, is kept only until its delete deadline: create the task with
// WithDeleteDeadline to read it. Errors: ErrNotFound (no such task, or cleaned
// up), ErrInvalidState (it failed or was cancelled; the message says why),
// ErrTimeout (still live after wait).
func (c *Client) Result(ctx context.Context, taskID int64, wait time.Duration) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *C.char
	err := cancellable(ctx, func(token *C.qtask_cancel_token) C.qtask_result {
		return C.qtask_task_result_cancellable(c.h, C.int64_t(taskID), seconds(wait), token, &out)
	})
	if err != nil {
		if errors.Is(err, ErrTimeout) && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	raw := json.RawMessage(C.GoString(out))
	C.qtask_string_free(out)
	return raw, nil
}
