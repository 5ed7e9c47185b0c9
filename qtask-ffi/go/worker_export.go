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
	err := run.handle(C.GoString(message))
	if err == nil {
		return 0
	}
	text := C.CString(strings.ReplaceAll(err.Error(), "\x00", ""))
	C.qtask_outcome_set_error(outcome, text)
	C.free(unsafe.Pointer(text))
	return 1
}
