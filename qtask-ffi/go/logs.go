package qtask

/*
#include <stdint.h>
#include "qtask.h"

// Defined in logs_export.go (cgo export).
extern void qtaskGoLog(int32_t level, char *message, void *user_data);

static qtask_result qtask_go_set_log_callback(int on) {
	return qtask_set_log_callback(on ? (qtask_log_callback)qtaskGoLog : NULL, NULL);
}
*/
import "C"

import "sync/atomic"

// LogLevel is the severity of one of qtask's log lines: the numbers of
// Python's logging (40 error, 30 warning, 20 info).
type LogLevel int32

const (
	LogError   LogLevel = 40
	LogWarning LogLevel = 30
	LogInfo    LogLevel = 20
)

// logger holds the func set by SetLogger (a func() value, so that nil can be stored).
var logger atomic.Value

// SetLogger sends qtask's log lines (info and above: a server down, a sweep
// failing; URL passwords hidden) to log from now on; nil stops them (the
// default drops them). log is called on qtask's threads, possibly from several
// at once: keep it short, and do not call SetLogger from it.
func SetLogger(log func(level LogLevel, line string)) error {
	logger.Store(log)
	on := C.int(0)
	if log != nil {
		on = 1
	}
	return call(func() C.qtask_result { return C.qtask_go_set_log_callback(on) })
}

func forwardLog(level LogLevel, line string) {
	if log, _ := logger.Load().(func(LogLevel, string)); log != nil {
		log(level, line)
	}
}
