package qtask_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qtask.dev/qtask"
)

// An unreachable Redis makes the engine warn; the warning reaches Go without the password.
func TestLoggerGetsWarningsWithoutPassword(t *testing.T) {
	var mu sync.Mutex
	var warnings []string
	if err := qtask.SetLogger(func(level qtask.LogLevel, line string) {
		mu.Lock()
		defer mu.Unlock()
		if level == qtask.LogWarning || strings.Contains(line, "hunter2") {
			warnings = append(warnings, line)
		}
	}); err != nil {
		t.Fatal(err)
	}
	client, err := qtask.Open(bg, qtask.Config{
		DB:             "sqlite://" + filepath.Join(t.TempDir(), "logs.db"),
		Queue:          "redis://:hunter2@127.0.0.1:1/0",
		DisableSweeper: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Install(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateNow(bg, "logged", map[string]int{}, time.Minute, "GO:LOGS"); err != nil {
		t.Fatal(err)
	}
	client.Close()
	if err := qtask.SetLogger(nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(warnings) == 0 {
		t.Fatal("no warning reached the logger")
	}
	for _, line := range warnings {
		if strings.Contains(line, "hunter2") {
			t.Errorf("password in %q", line)
		}
	}
}
