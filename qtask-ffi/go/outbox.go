package qtask

/*
#include <stdlib.h>
#include "qtask.h"
*/
import "C"

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
	"unsafe"
)

// Statement is one SQL statement and its arguments, in placeholder order.
type Statement struct {
	SQL  string
	Args []interface{}
}

// InsertStatement is the insert of one task, rendered for the caller's own
// connection (qtask_create_statement). Run Insert in your transaction: when
// ReturnsID it returns one row (the new id) or none when a live task of the
// queue holds the order number; otherwise (MySQL) one affected row means
// inserted (the id is the last insert id), none means held. When held, run
// Existing (nil without an order number): its one row is that task's id.
type InsertStatement struct {
	Insert    Statement
	ReturnsID bool
	Existing  *Statement
}

// CreateStatement renders the insert of task for a connection of the
// caller's, with the database's usual placeholders ($1 for PostgreSQL, ? for
// SQLite and MySQL), or paramStyle ("qmark", "dollar", "format", "numeric").
// Nothing is written. Use it to run the insert on a pgx.Tx:
//
//	st, _ := client.CreateStatement(task, "")
//	err := tx.QueryRow(ctx, st.Insert.SQL, st.Insert.Args...).Scan(&id)
func (c *Client) CreateStatement(task TaskArgs, paramStyle string) (*InsertStatement, error) {
	text, err := task.json()
	if err != nil {
		return nil, err
	}
	ctext, err := cString("task", string(text))
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ctext))
	var style *C.char
	if paramStyle != "" {
		if style, err = cString("paramStyle", paramStyle); err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(style))
	}
	var out *C.char
	if err := call(func() C.qtask_result { return C.qtask_create_statement(c.h, ctext, style, &out) }); err != nil {
		return nil, err
	}
	raw := C.GoString(out)
	C.qtask_string_free(out)
	return parseStatement(raw)
}

type wireStatement struct {
	SQL string        `json:"sql"`
	Raw []interface{} `json:"params"`
}

func (w wireStatement) statement() (Statement, error) {
	args := make([]interface{}, len(w.Raw))
	for i, p := range w.Raw {
		if n, ok := p.(json.Number); ok {
			v, err := n.Int64()
			if err != nil {
				return Statement{}, err
			}
			args[i] = v
		} else {
			args[i] = p // string or nil
		}
	}
	return Statement{SQL: w.SQL, Args: args}, nil
}

func parseStatement(raw string) (*InsertStatement, error) {
	var wire struct {
		Insert    wireStatement  `json:"insert"`
		ReturnsID bool           `json:"returns_id"`
		Existing  *wireStatement `json:"existing"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	if err := dec.Decode(&wire); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "decoding a statement: " + err.Error()}
	}
	insert, err := wire.Insert.statement()
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "decoding a statement: " + err.Error()}
	}
	st := &InsertStatement{Insert: insert, ReturnsID: wire.ReturnsID}
	if wire.Existing != nil {
		existing, err := wire.Existing.statement()
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "decoding a statement: " + err.Error()}
		}
		st.Existing = &existing
	}
	return st, nil
}

// Execer is what CreateTx runs statements on: *sql.Tx (and *sql.Conn, *sql.DB).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...interface{}) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...interface{}) *sql.Row
}

// CreateTx writes a task inside the caller's transaction tx, on the caller's
// database (the one this client uses): workers see the task only once tx
// commits, and a rollback leaves nothing (River's InsertTx). If a live task of
// the queue holds the order number, its id is returned with Existing set.
// Dispatched is always false: a db-queue worker claims the task after the
// commit, and the sweeper offers it to Redis within a sweep interval (or call
// Dispatch after the commit).
func (c *Client) CreateTx(ctx context.Context, tx Execer, name string, input interface{}, timeout time.Duration, queue string, opts ...Option) (Created, error) {
	return c.CreateTaskTx(ctx, tx, NewTaskArgs(name, input, timeout, queue, opts...))
}

// CreateTaskTx is CreateTx taking a TaskArgs.
func (c *Client) CreateTaskTx(ctx context.Context, tx Execer, task TaskArgs) (Created, error) {
	if err := ctx.Err(); err != nil {
		return Created{}, err
	}
	st, err := c.CreateStatement(task, "")
	if err != nil {
		return Created{}, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		created, ok, err := st.run(ctx, tx)
		if err != nil || ok {
			return created, err
		}
	}
	return Created{}, &Error{Code: CodeInvalidState, Message: "invalid state: the order number kept changing hands while creating"}
}

// run inserts once; ok is false when the order number's holder ended meanwhile.
func (st *InsertStatement) run(ctx context.Context, tx Execer) (Created, bool, error) {
	if st.ReturnsID {
		var id int64
		err := tx.QueryRowContext(ctx, st.Insert.SQL, st.Insert.Args...).Scan(&id)
		if err == nil {
			return Created{ID: id}, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return Created{}, false, err
		}
	} else {
		res, err := tx.ExecContext(ctx, st.Insert.SQL, st.Insert.Args...)
		if err != nil {
			return Created{}, false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return Created{}, false, err
		} else if n == 1 {
			id, err := res.LastInsertId()
			return Created{ID: id}, err == nil, err
		}
	}
	if st.Existing == nil {
		return Created{}, false, &Error{Code: CodeInternal, Message: "internal error: the insert wrote nothing"}
	}
	var id int64
	err := tx.QueryRowContext(ctx, st.Existing.SQL, st.Existing.Args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Created{}, false, nil
	}
	return Created{ID: id, Existing: err == nil}, err == nil, err
}

// Dispatch offers a task created with CreateTx, after the commit, to its
// Redis queue now rather than at the next sweep. true: on the queue now (or
// the queue is db). false: not waiting and due (already offered or claimed,
// ended, delayed, or not committed), or Redis was down.
func (c *Client) Dispatch(ctx context.Context, taskID int64) (bool, error) {
	var dispatched C.bool
	err := callCtx(ctx, func() C.qtask_result { return C.qtask_dispatch(c.h, C.int64_t(taskID), &dispatched) })
	return bool(dispatched), err
}
