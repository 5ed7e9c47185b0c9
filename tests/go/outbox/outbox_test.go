// The outbox from Go: CreateTx writes a task inside the caller's *sql.Tx, on
// SQLite (mattn/go-sqlite3 on the system libsqlite3) and PostgreSQL (pgx's
// database/sql driver). A commit makes it visible to workers; a rollback
// leaves nothing. A module of its own, so that the qtask package needs no
// database driver.
package outboxtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"

	"qtask.dev/qtask"
)

var prefix = fmt.Sprintf("go_outbox_%d_", os.Getpid())

func TestCreateTxSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	client := open(t, qtask.Config{DB: "sqlite://" + path, DisableSweeper: true})
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	// qtask has its own copy of SQLite: its client closes before the caller's
	// connections to the same file (see qtask-ffi/README.md).
	defer db.Close()
	defer client.Close()
	exerciseTx(t, client, db, false)
}

func TestCreateTxPostgres(t *testing.T) {
	pg := os.Getenv("QTASK_TEST_PG_URL")
	u, err := url.Parse(pg)
	if pg == "" || err != nil {
		skipOrFail(t, "SKIP: PostgreSQL not configured (QTASK_TEST_PG_URL)")
	}
	if conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second); err != nil {
		skipOrFail(t, "SKIP: PostgreSQL not reachable at "+pg)
	} else {
		conn.Close()
	}
	client := open(t, qtask.Config{DB: pg, TablePrefix: prefix, DisableSweeper: true})
	defer client.Close()
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer db.Exec(fmt.Sprintf("DROP TABLE IF EXISTS %stask, %squeue, %sschedule", prefix, prefix, prefix))
	exerciseTx(t, client, db, true)
}

func open(t *testing.T, cfg qtask.Config) *qtask.Client {
	t.Helper()
	ctx := context.Background()
	client, err := qtask.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Install(ctx); err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client
}

func skipOrFail(t *testing.T, problem string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(problem + " (CI=true: a missing server is a failure)")
	}
	t.Skip(problem)
}

func exerciseTx(t *testing.T, client *qtask.Client, db *sql.DB, canPopBeforeCommit bool) {
	ctx := context.Background()
	const queue = "GO:OUTBOX"
	create := func(tx *sql.Tx) qtask.Created {
		t.Helper()
		created, err := client.CreateTx(ctx, tx, "outbox", map[string]string{"k": "v"}, 30*time.Second, queue,
			qtask.WithOrderNO("GO-1"), qtask.WithPriority(7))
		if err != nil {
			t.Fatal(err)
		}
		return created
	}

	// A rollback leaves nothing.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropped := create(tx)
	if dropped.ID <= 0 || dropped.Existing || dropped.Dispatched {
		t.Fatalf("created %+v", dropped)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var qerr *qtask.Error
	if _, err := client.Get(ctx, dropped.ID); !errors.As(err, &qerr) || qerr.Code != qtask.CodeNotFound {
		t.Fatalf("after rollback: %v", err)
	}

	// A commit makes it visible; until then no worker gets it.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := create(tx)
	if canPopBeforeCommit {
		if msg, err := client.Pop(ctx, queue, 0); err != nil || msg != nil {
			t.Fatalf("popped before the commit: %v %v", msg, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// The order number of a live task returns it.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	again := create(tx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if again.ID != kept.ID || !again.Existing {
		t.Fatalf("again %+v, kept %+v", again, kept)
	}
	if task, err := client.Get(ctx, kept.ID); err != nil || task.Priority != 7 {
		t.Fatalf("get: %+v %v", task, err)
	}

	msg, err := client.Pop(ctx, queue, 3*time.Second)
	if err != nil || msg == nil || msg.TaskID != kept.ID || msg.Input["k"] != "v" {
		t.Fatalf("pop: %+v %v", msg, err)
	}
	if dispatched, err := client.Dispatch(ctx, kept.ID); err != nil || !dispatched {
		t.Fatalf("dispatch on the db queue: %v %v", dispatched, err)
	}
}
