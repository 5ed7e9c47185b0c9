/* The outbox from C: qtask_create_statement renders a task's insert, and the
 * caller runs it on its own connection inside its own transaction (SQLite with
 * libsqlite3, PostgreSQL with libpq). A commit makes the task visible to
 * workers; a rollback leaves nothing.
 *
 *   outbox_test <work dir> [postgres url]
 */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qtask.h"

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    qtask_last_error());                                                  \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)
#define OK(call) CHECK((call) == QTASK_RESULT_OK)

enum { MAX_PARAMS = 64 };

/* One statement of qtask_create_statement's JSON: SQL and its params as text. */
typedef struct {
    char *sql;
    int n;
    char *values[MAX_PARAMS]; /* NULL for a JSON null */
    bool is_int[MAX_PARAMS];
} statement;

typedef struct {
    statement insert;
    bool returns_id;
    bool has_existing;
    statement existing;
} caller_insert;

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* A JSON string at *p (after the opening quote is checked); returns a malloc'd copy. */
static char *parse_string(const char **pp) {
    const char *p = skip_ws(*pp);
    CHECK(*p == '"');
    p++;
    char *out = malloc(strlen(p) + 1);
    CHECK(out != NULL);
    size_t n = 0;
    while (*p != '"') {
        CHECK(*p != '\0');
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned code = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            CHECK(code < 0x80); /* the test's inputs are ASCII */
            out[n++] = (char)code;
            p += 4;
            break;
        }
        default: out[n++] = *p; break; /* \" \\ \/ */
        }
        p++;
    }
    out[n] = '\0';
    *pp = p + 1;
    return out;
}

static const char *after_key(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(json, pattern);
    CHECK(p != NULL);
    p = skip_ws(p + strlen(pattern));
    CHECK(*p == ':');
    return skip_ws(p + 1);
}

static void parse_statement(const char *p, statement *st) {
    memset(st, 0, sizeof *st);
    const char *q = after_key(p, "sql");
    st->sql = parse_string(&q);
    q = after_key(q, "params");
    CHECK(*q == '[');
    q = skip_ws(q + 1);
    while (*q != ']') {
        CHECK(st->n < MAX_PARAMS);
        if (*q == '"') {
            st->values[st->n] = parse_string(&q);
        } else if (strncmp(q, "null", 4) == 0) {
            st->values[st->n] = NULL;
            q += 4;
        } else {
            char *end;
            long long v = strtoll(q, &end, 10);
            CHECK(end != q);
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", v);
            st->values[st->n] = strdup(buf);
            st->is_int[st->n] = true;
            q = end;
        }
        st->n++;
        q = skip_ws(q);
        if (*q == ',') q = skip_ws(q + 1);
    }
}

static void free_statement(statement *st) {
    free(st->sql);
    for (int i = 0; i < st->n; i++) free(st->values[i]);
}

/* Renders the insert of one task through the C ABI. */
static caller_insert render(qtask_client *client, const char *task_json) {
    char *json = NULL;
    OK(qtask_create_statement(client, task_json, NULL, &json));
    caller_insert ci;
    parse_statement(after_key(json, "insert"), &ci.insert);
    ci.returns_id = strncmp(after_key(json, "returns_id"), "true", 4) == 0;
    const char *existing = after_key(json, "existing");
    ci.has_existing = strncmp(existing, "null", 4) != 0;
    if (ci.has_existing) parse_statement(existing, &ci.existing);
    qtask_string_free(json);
    return ci;
}

static void free_insert(caller_insert *ci) {
    free_statement(&ci->insert);
    if (ci->has_existing) free_statement(&ci->existing);
}

/* --- SQLite (libsqlite3) */

static int64_t sqlite_row_id(sqlite3 *db, const statement *st) {
    sqlite3_stmt *stmt;
    CHECK(sqlite3_prepare_v2(db, st->sql, -1, &stmt, NULL) == SQLITE_OK);
    for (int i = 0; i < st->n; i++) {
        if (st->values[i] == NULL)
            sqlite3_bind_null(stmt, i + 1);
        else if (st->is_int[i])
            sqlite3_bind_int64(stmt, i + 1, strtoll(st->values[i], NULL, 10));
        else
            sqlite3_bind_text(stmt, i + 1, st->values[i], -1, SQLITE_TRANSIENT);
    }
    int rc = sqlite3_step(stmt);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    CHECK(rc == SQLITE_ROW || rc == SQLITE_DONE);
    sqlite3_finalize(stmt);
    return id;
}

/* Inserts on the caller's connection: the new id, or the live holder's id. */
static int64_t sqlite_insert(sqlite3 *db, qtask_client *client, const char *task_json, bool *existing) {
    caller_insert ci = render(client, task_json);
    CHECK(ci.returns_id);
    int64_t id = sqlite_row_id(db, &ci.insert);
    *existing = id == 0;
    if (id == 0) {
        CHECK(ci.has_existing);
        id = sqlite_row_id(db, &ci.existing);
    }
    free_insert(&ci);
    return id;
}

static void test_sqlite(const char *dir) {
    char path[1024], config[1200];
    snprintf(path, sizeof path, "%s/outbox.db", dir);
    snprintf(config, sizeof config, "{\"db\": \"sqlite://%s\", \"sweeper\": false}", path);
    qtask_client *client = NULL;
    OK(qtask_open(config, &client));
    OK(qtask_install(client));
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    const char *task = "{\"name\": \"outbox\", \"input\": {\"k\": \"v\\\"q\"}, \"queue\": \"C:OUTBOX\", "
                       "\"timeout\": 30.5, \"order_no\": \"C-1\", \"priority\": 7}";
    bool existing;

    /* Rollback: nothing. */
    CHECK(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    int64_t dropped = sqlite_insert(db, client, task, &existing);
    CHECK(dropped > 0 && !existing);
    CHECK(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    char *row = NULL;
    CHECK(qtask_get(client, dropped, &row) == QTASK_RESULT_NOT_FOUND && row == NULL);

    /* Commit: a worker gets it; the same order number then returns it. */
    CHECK(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    int64_t kept = sqlite_insert(db, client, task, &existing);
    CHECK(kept > 0 && !existing);
    CHECK(qtask_get(client, kept, &row) == QTASK_RESULT_NOT_FOUND);
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite_insert(db, client, task, &existing) == kept && existing);
    OK(qtask_get(client, kept, &row));
    CHECK(strstr(row, "\"priority\":7") != NULL);
    qtask_string_free(row);
    char *msg = NULL;
    OK(qtask_pop(client, "C:OUTBOX", 3.0, &msg));
    CHECK(msg != NULL);
    char want[64];
    snprintf(want, sizeof want, "\"task_id\":%lld", (long long)kept);
    CHECK(strstr(msg, want) != NULL && strstr(msg, "\"k\":\"v\\\"q\"") != NULL);
    qtask_string_free(msg);

    /* Bad input: an unknown key, a bad style. */
    CHECK(qtask_create_statement(client, "{\"name\": \"n\", \"input\": {}, \"queue\": \"Q\", \"retries\": 1}", NULL,
                                 &msg) == QTASK_RESULT_INVALID_ARGUMENT && msg == NULL);
    CHECK(qtask_create_statement(client, "{\"name\": \"n\", \"input\": {}, \"queue\": \"Q\"}", "named", &msg) ==
          QTASK_RESULT_INVALID_ARGUMENT);
    /* qtask's own copy of SQLite is separate: close the client before the caller's connection. */
    qtask_close(client);
    sqlite3_close(db);
    printf("ok - sqlite: rollback leaves nothing, commit is seen, order_no returns the live task, priority kept\n");
}

/* --- PostgreSQL (libpq) */

static int64_t pg_row_id(PGconn *pg, const statement *st, bool *found) {
    PGresult *res = PQexecParams(pg, st->sql, st->n, NULL, (const char *const *)st->values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) fprintf(stderr, "%s\n", PQerrorMessage(pg));
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
    *found = PQntuples(res) == 1;
    int64_t id = *found ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return id;
}

static void pg_exec(PGconn *pg, const char *sql) {
    PGresult *res = PQexec(pg, sql);
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);
}

static void test_postgres(const char *url) {
    char config[1200];
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c_outbox_%ld_", (long)getpid());
    snprintf(config, sizeof config, "{\"db\": \"%s\", \"table_prefix\": \"%s\", \"sweeper\": false}", url, prefix);
    qtask_client *client = NULL;
    OK(qtask_open(config, &client));
    OK(qtask_install(client));
    PGconn *pg = PQconnectdb(url);
    CHECK(PQstatus(pg) == CONNECTION_OK);
    const char *task = "{\"name\": \"outbox\", \"input\": {\"n\": 1}, \"queue\": \"C:OUTBOX\", \"timeout\": 30}";
    bool found;

    pg_exec(pg, "BEGIN");
    caller_insert ci = render(client, task);
    CHECK(ci.returns_id && !ci.has_existing);
    int64_t dropped = pg_row_id(pg, &ci.insert, &found);
    CHECK(found && dropped > 0);
    char *msg = NULL;
    OK(qtask_pop(client, "C:OUTBOX", 0, &msg));
    CHECK(msg == NULL); /* not committed: no worker sees it */
    pg_exec(pg, "ROLLBACK");
    CHECK(qtask_get(client, dropped, &msg) == QTASK_RESULT_NOT_FOUND);

    pg_exec(pg, "BEGIN");
    int64_t kept = pg_row_id(pg, &ci.insert, &found);
    CHECK(found && kept > dropped);
    pg_exec(pg, "COMMIT");
    free_insert(&ci);
    OK(qtask_pop(client, "C:OUTBOX", 3.0, &msg));
    CHECK(msg != NULL);
    char want[64];
    snprintf(want, sizeof want, "\"task_id\":%lld", (long long)kept);
    CHECK(strstr(msg, want) != NULL);
    qtask_string_free(msg);
    bool dispatched = false;
    OK(qtask_dispatch(client, kept, &dispatched));
    CHECK(dispatched); /* the db queue: workers claim due rows themselves */

    char drop[256];
    snprintf(drop, sizeof drop, "DROP TABLE IF EXISTS %stask, %squeue, %sschedule", prefix, prefix, prefix);
    PQclear(PQexec(pg, drop));
    PQfinish(pg);
    qtask_close(client);
    printf("ok - postgres: rollback leaves nothing, a worker sees the task only after the commit\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: outbox_test <work dir> [postgres url]\n");
        return 2;
    }
    test_sqlite(argv[1]);
    if (argc > 2 && argv[2][0] != '\0') {
        test_postgres(argv[2]);
    } else {
        printf("SKIP: postgres url not given; the C outbox ran on SQLite only\n");
    }
    return 0;
}
