package qtask

/*
#include <stdint.h>
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"runtime/cgo"
	"strings"
	"unsafe"
)

// qtaskGoWorkerCallback is the C worker's callback for every Go Worker: it runs
// on an engine thread, finds the run through user_data (a cgo.Handle) and calls
// its handler. Its declaration is in worker.go's preamble (a file with an
// export may not define C functions).
//
//export qtaskGoWorkerCallback
func qtaskGoWorkerCallback(message *C.char, outcome *C.qtask_outcome, userData unsafe.Pointer) C.int32_t {
	run := cgo.Handle(uintptr(userData)).Value().(*workerRun)
	done := run.handle(C.GoString(message), func() bool { return bool(C.qtask_outcome_time_up(outcome)) })
	if done.text != "" {
		text := C.CString(strings.ReplaceAll(done.text, "\x00", ""))
		C.qtask_outcome_set_error(outcome, text)
		C.free(unsafe.Pointer(text))
	}
	if done.code == C.QTASK_OUTCOME_CODE_RETRY_AFTER {
		C.qtask_outcome_set_delay(outcome, C.double(done.delay.Seconds()))
	}
	if done.result != nil {
		// encoding/json escapes NUL inside strings, so the text has none.
		result := C.CString(string(done.result))
		C.qtask_outcome_set_result(outcome, result)
		C.free(unsafe.Pointer(result))
	}
	return done.code
}
