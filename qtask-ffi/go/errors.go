package qtask

/*
#include "qtask.h"
*/
import "C"

import "fmt"

// Code is a libqtask result code (qtask_result in qtask.h).
type Code int32

// The codes of qtask.h, by their C names (one list: qtask-ffi/src/error.rs); 0 is success.
const (
	CodeInvalidArgument Code = C.QTASK_RESULT_INVALID_ARGUMENT
	CodeNotFound        Code = C.QTASK_RESULT_NOT_FOUND
	CodeInvalidState    Code = C.QTASK_RESULT_INVALID_STATE
	CodeDatabase        Code = C.QTASK_RESULT_DATABASE
	CodeQueue           Code = C.QTASK_RESULT_QUEUE
	CodeTimeout         Code = C.QTASK_RESULT_TIMEOUT
	CodeClosed          Code = C.QTASK_RESULT_CLOSED
	CodeInternal        Code = C.QTASK_RESULT_INTERNAL
)

func (c Code) String() string {
	switch c {
	case CodeInvalidArgument:
		return "invalid argument"
	case CodeNotFound:
		return "not found"
	case CodeInvalidState:
		return "invalid state"
	case CodeDatabase:
		return "database"
	case CodeQueue:
		return "queue"
	case CodeTimeout:
		return "timeout"
	case CodeClosed:
		return "closed"
	case CodeInternal:
		return "internal"
	}
	return fmt.Sprintf("code %d", int32(c))
}

// Error is a failed call: its code and libqtask's message.
// errors.Is(err, qtask.ErrNotFound) tests the code.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "qtask: " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument, Message: "invalid argument"}
	ErrNotFound        = &Error{Code: CodeNotFound, Message: "not found"}
	ErrInvalidState    = &Error{Code: CodeInvalidState, Message: "invalid state"}
	ErrDatabase        = &Error{Code: CodeDatabase, Message: "database error"}
	ErrQueue           = &Error{Code: CodeQueue, Message: "queue error"}
	ErrTimeout         = &Error{Code: CodeTimeout, Message: "timed out"}
	ErrClosed          = &Error{Code: CodeClosed, Message: "client is closed"}
	ErrInternal        = &Error{Code: CodeInternal, Message: "internal error"}
)
