package qtask

/*
#include <stdint.h>
*/
import "C"

import "unsafe"

// qtaskGoLog is libqtask's log callback for SetLogger.
//
//export qtaskGoLog
func qtaskGoLog(level C.int32_t, message *C.char, _ unsafe.Pointer) {
	forwardLog(LogLevel(level), C.GoString(message))
}
