package qtask_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"qtask.dev/qtask"
)

func TestSchedulesSQLite(t *testing.T) {
	exerciseSchedules(t, qtask.Config{DB: "sqlite://" + filepath.Join(t.TempDir(), "schedules.db")})
}

func TestSchedulesPostgres(t *testing.T) {
	pg := serverURL(t, "PostgreSQL", "QTASK_TEST_PG_URL", "5432")
	exerciseSchedules(t, qtask.Config{DB: pg, Queue: "db"})
}

// exerciseSchedules declares a cron schedule in a time zone and a one-second
// interval, receives the interval's tick, lists, replaces and removes them, and
// checks that bad timings are refused.
func exerciseSchedules(t *testing.T, cfg qtask.Config) {
	c := open(t, cfg)
	q := queue("SCHED")
	nightly := "go nightly " + q
	info, err := c.Schedule(bg, nightly, map[string]string{"kind": "report"},
		qtask.Schedule{Queue: q, Cron: "0 9 * * *", TimeZone: "Asia/Shanghai", Missed: qtask.MissedSkip, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// 09:00 in Shanghai is 01:00 UTC.
	if info.NextAt%86400000 != 3600000 || info.TimeZone != "Asia/Shanghai" || info.Missed != "skip" || info.TimeoutMS != 30000 {
		t.Fatalf("cron schedule: %+v", info)
	}
	pulse := "go pulse " + q
	if info, err := c.Schedule(bg, pulse, map[string]int{"n": 7}, qtask.Schedule{Queue: q, Every: time.Second, Priority: 5}); err != nil || info.Priority != 5 {
		t.Fatal(info, err)
	}
	msg := mustPop(t, c, q, 10*time.Second) // the sweeper (every 200 ms) makes the tick's task
	if msg.Input["n"] != float64(7) {
		t.Fatalf("tick message %+v", msg)
	}
	if task, err := c.Get(bg, msg.TaskID); err != nil || task.Priority != 5 {
		t.Fatalf("the tick's task has the schedule's priority: %+v %v", task, err)
	}
	if err := c.Finish(bg, msg.TaskID); err != nil {
		t.Fatal(err)
	}

	all, err := c.Schedules(bg)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]qtask.ScheduleInfo{}
	for _, s := range all {
		found[s.Name] = s
	}
	if found[pulse].EveryMS != 1000 || found[pulse].LastTaskID == 0 || found[nightly].Cron != "0 9 * * *" {
		t.Fatalf("schedules: %+v", all)
	}
	for _, name := range []string{pulse, nightly} {
		if existed, err := c.Unschedule(bg, name); !existed || err != nil {
			t.Fatalf("unschedule %s: %v %v", name, existed, err)
		}
	}
	if existed, err := c.Unschedule(bg, pulse); existed || err != nil {
		t.Fatalf("unschedule twice: %v %v", existed, err)
	}

	for _, bad := range []qtask.Schedule{
		{Queue: q, Cron: "61 * * * *"},
		{Queue: q, Cron: "* * * * *", TimeZone: "Mars/Olympus"},
		{Queue: q, Every: time.Millisecond},
		{Queue: q, Every: time.Second, Cron: "* * * * *"},
		{Queue: q},
		{Queue: q, Every: time.Second, Missed: "twice"},
		{Queue: q, Every: time.Second, Priority: 1001},
	} {
		if _, err := c.Schedule(bg, "go bad "+q, map[string]int{}, bad); !errors.Is(err, qtask.ErrInvalidArgument) {
			t.Fatalf("schedule %+v: want ErrInvalidArgument, got %v", bad, err)
		}
	}
}
