/*
 * The C ABI's test program: a full task cycle, a delayed task, order_no
 * dedupe, the deferred create, periodic tasks, threads sharing one handle, a pop
 * cancelled from another thread, and every kind of
 * bad input, each checked for its result code and for writing nothing; the
 * worker (drain, a failing callback, stop from another thread and from a signal
 * handler, the pull mode) and the log callback.
 *
 *   qtask_test DIR [cycle]   DIR: a scratch directory for the SQLite files
 *
 * With "cycle" only the basic cycle runs (used for the static-library build).
 * Exits 0 when every check passed. Run by tests/c/run.sh.
 */
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qtask.h"

static int checks, failures;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        checks++;                                                         \
        if (!(cond)) {                                                    \
            failures++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

/* Runs a qtask call and checks its result code; on a mismatch prints the last error. */
#define EXPECT(code, call)                                                         \
    do {                                                                           \
        qtask_result rc_ = (call);                                                 \
        checks++;                                                                  \
        if (rc_ != (code)) {                                                       \
            failures++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s\n  want %s, got %s: %s\n", __FILE__,   \
                    __LINE__, #call, qtask_result_name(code), qtask_result_name(rc_), \
                    qtask_last_error());                                           \
        } else if (rc_ != QTASK_RESULT_OK && qtask_last_error()[0] == '\0') {      \
            failures++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: no last error message\n", __FILE__,   \
                    __LINE__, #call);                                              \
        }                                                                          \
    } while (0)

#define OK(call) EXPECT(QTASK_RESULT_OK, call)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The integer after "key": in a flat JSON object, or LLONG_MIN when absent. */
static long long json_int(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = json ? strstr(json, pattern) : NULL;
    return at ? strtoll(at + strlen(pattern), NULL, 10) : LLONG_MIN;
}

/* Tasks of the namespace that cleanup keeps for days (finished ones it deletes at
 * once, so they are left out): bad input must not change this number. */
static long long kept_tasks(qtask_client *client) {
    char *stats = NULL;
    qtask_result rc = qtask_stats(client, &stats);
    CHECK(rc == QTASK_RESULT_OK && stats != NULL, "stats: %s", qtask_last_error());
    long long total = 0;
    const char *keys[] = {"waiting", "processing", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        total += json_int(stats, keys[i]);
    }
    qtask_string_free(stats);
    return total;
}

static qtask_client *open_sqlite(const char *dir, const char *file) {
    char config[1024];
    snprintf(config, sizeof config,
             "{\"db\": \"sqlite://%s/%s\", \"sweep_interval\": 0.2, \"retry_backoff\": 0.1, "
             "\"connect_timeout\": 60}", /* valgrind on a busy machine is slow to connect */
             dir, file);
    qtask_client *client = NULL;
    OK(qtask_open(config, &client));
    CHECK(client != NULL, "open gave no client");
    if (client) {
        OK(qtask_install(client));
        OK(qtask_install(client)); /* idempotent */
    }
    return client;
}

static void expect_status(qtask_client *client, int64_t id, const char *status) {
    char *task = NULL;
    OK(qtask_get(client, id, &task));
    char want[64];
    snprintf(want, sizeof want, "\"status\":\"%s\"", status);
    CHECK(task && strstr(task, want), "task %lld: want %s in %s", (long long)id, want, task ? task : "NULL");
    qtask_string_free(task);
}

/* create -> pop -> processing -> finish, and what each step leaves in the table. */
static void test_cycle(qtask_client *client) {
    int64_t id = 0;
    OK(qtask_create(client, "订单绑定任务", "{\"order\": \"8973097380045\", \"n\": 7}", 60, "C:CYCLE",
                    "{\"delete_deadline\": 3600}", &id));
    CHECK(id > 0, "id %lld", (long long)id);
    expect_status(client, id, "waiting");

    char *msg = NULL;
    OK(qtask_pop(client, "C:CYCLE", 3.0, &msg));
    CHECK(msg != NULL, "nothing popped");
    CHECK(json_int(msg, "task_id") == id, "task_id in %s", msg);
    CHECK(json_int(msg, "attempt") == 1, "attempt in %s", msg);
    CHECK(json_int(msg, "n") == 7, "input in %s", msg);
    CHECK(msg && strstr(msg, "\"order\":\"8973097380045\""), "input in %s", msg);
    qtask_string_free(msg);

    bool may_run = false;
    OK(qtask_processing(client, id, &may_run));
    CHECK(may_run, "processing refused a fresh task");
    expect_status(client, id, "processing");
    OK(qtask_finish(client, id));
    OK(qtask_finish(client, id)); /* twice is fine */
    expect_status(client, id, "finished");
    may_run = true;
    OK(qtask_processing(client, id, &may_run));
    CHECK(!may_run, "processing allowed a finished task");

    msg = NULL;
    OK(qtask_pop(client, "C:CYCLE", 0, &msg));
    CHECK(msg == NULL, "a finished task was popped again: %s", msg);
    qtask_string_free(msg);
}

/* A 1-second delay: not poppable before, poppable after. */
static void test_delay(qtask_client *client) {
    int64_t id = 0;
    double t0 = now_s();
    OK(qtask_delay(client, "delayed", "{}", 1, 60, "C:DELAY", NULL, &id));
    CHECK(id > 0, "id %lld", (long long)id);
    char *msg = NULL;
    OK(qtask_pop(client, "C:DELAY", 0.3, &msg));
    CHECK(msg == NULL, "delayed task popped after %.2fs: %s", now_s() - t0, msg);
    qtask_string_free(msg);

    msg = NULL;
    OK(qtask_pop(client, "C:DELAY", 5.0, &msg));
    double waited = now_s() - t0;
    CHECK(msg != NULL, "delayed task not popped within 5 s");
    CHECK(json_int(msg, "task_id") == id, "task_id in %s", msg);
    CHECK(waited >= 0.95, "popped after only %.3fs", waited);
    qtask_string_free(msg);
    bool may_run = false;
    OK(qtask_processing(client, id, &may_run));
    CHECK(may_run, "processing refused the delayed task");
    OK(qtask_finish(client, id));
}

/* The same order_no on a live task of the same queue gives the same task. */
static void test_order_no(qtask_client *client) {
    long long before = kept_tasks(client);
    int64_t a = 0, b = 0, c = 0;
    const char *opts = "{\"order_no\": \"ORD-42\", \"max_count\": 3, \"deadline\": 600}";
    OK(qtask_create(client, "bind", "{\"x\": 1}", 60, "C:ORDER", opts, &a));
    OK(qtask_create(client, "bind", "{\"x\": 2}", 60, "C:ORDER", opts, &b));
    OK(qtask_delay(client, "bind", "{\"x\": 3}", 5, 60, "C:ORDER", opts, &c));
    CHECK(a > 0 && a == b && a == c, "ids %lld %lld %lld", (long long)a, (long long)b, (long long)c);
    CHECK(kept_tasks(client) == before + 1, "dedupe wrote %lld tasks", kept_tasks(client) - before);
    char *task = NULL;
    OK(qtask_get(client, a, &task));
    CHECK(json_int(task, "max_count") == 3, "max_count in %s", task);
    CHECK(task && strstr(task, "\"order_no\":\"ORD-42\""), "order_no in %s", task);
    qtask_string_free(task);
    /* Once it is no longer live, the number may be used again. */
    OK(qtask_cancel(client, a));
    OK(qtask_cancel(client, a)); /* twice is fine */
    expect_status(client, a, "cancelled");
    EXPECT(QTASK_RESULT_INVALID_STATE, qtask_finish(client, a));
    OK(qtask_create(client, "bind", "{\"x\": 4}", 60, "C:ORDER", opts, &b));
    CHECK(b > 0 && b != a, "after cancel: ids %lld %lld", (long long)a, (long long)b);
    OK(qtask_cancel(client, b));
}

/* The outbox form: write now, dispatch with the invoke. */
static void test_deferred(qtask_client *client) {
    int64_t id = 0;
    qtask_invoke *invoke = NULL;
    OK(qtask_create_deferred(client, "deferred", "{\"k\": \"v\"}", 60, "C:DEFER", NULL, &id, &invoke));
    CHECK(id > 0 && invoke != NULL, "id %lld invoke %p", (long long)id, (void *)invoke);
    bool dispatched = false;
    OK(qtask_invoke_run(invoke, &dispatched));
    CHECK(dispatched, "invoke did not dispatch");
    EXPECT(QTASK_RESULT_CLOSED, qtask_invoke_run(invoke, &dispatched)); /* single use */
    qtask_invoke_free(invoke);                                          /* no-op now */

    char *msg = NULL;
    OK(qtask_pop(client, "C:DEFER", 3.0, &msg));
    CHECK(json_int(msg, "task_id") == id, "popped %s", msg ? msg : "NULL");
    qtask_string_free(msg);
    bool may_run = false;
    OK(qtask_processing(client, id, &may_run));
    CHECK(may_run, "processing refused");
    OK(qtask_finish(client, id));

    /* Dropped without running: the row exists, nothing leaks. */
    invoke = NULL;
    OK(qtask_create_deferred(client, "deferred", "{}", 60, "C:DEFER", NULL, &id, &invoke));
    qtask_invoke_free(invoke);
    expect_status(client, id, "waiting");
    OK(qtask_cancel(client, id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_invoke_run(NULL, &dispatched));
    qtask_invoke_free(NULL);
}

/* fail() records the reason and retries; an unknown id is NOT_FOUND. */
static void test_fail(qtask_client *client) {
    int64_t id = 0;
    OK(qtask_create(client, "flaky", "{}", 60, "C:FAIL", "{\"max_count\": 5}", &id));
    char *msg = NULL;
    OK(qtask_pop(client, "C:FAIL", 3.0, &msg));
    CHECK(json_int(msg, "task_id") == id, "popped %s", msg ? msg : "NULL");
    qtask_string_free(msg);
    OK(qtask_fail(client, id, "boom: disk full"));
    char *task = NULL;
    OK(qtask_get(client, id, &task));
    CHECK(task && strstr(task, "boom: disk full"), "last_error in %s", task);
    CHECK(task && strstr(task, "\"status\":\"waiting\""), "retry status in %s", task);
    qtask_string_free(task);
    OK(qtask_cancel(client, id));

    task = (char *)"sentinel";
    EXPECT(QTASK_RESULT_NOT_FOUND, qtask_get(client, 987654321, &task));
    CHECK(task == NULL, "out not reset on failure");
    EXPECT(QTASK_RESULT_NOT_FOUND, qtask_finish(client, 987654321));
}

/* Operators: list a failed task with its error, retry it, pause and resume its queue. */
static void test_admin(qtask_client *client) {
    const char *queue = "C:ADMIN";
    int64_t id = 0;
    OK(qtask_create(client, "doomed", "{}", 60, queue, "{\"max_count\": 1}", &id));
    char *msg = NULL;
    OK(qtask_pop(client, queue, 3.0, &msg));
    qtask_string_free(msg);
    bool may_run = false;
    OK(qtask_processing(client, id, &may_run));
    OK(qtask_fail(client, id, "gave up: bank down"));
    expect_status(client, id, "failed");

    char *page = NULL;
    OK(qtask_list_tasks(client, "{\"status\": \"failed\", \"queue\": \"C:ADMIN\"}", 0, 10, &page));
    CHECK(page && strstr(page, "gave up: bank down") && json_int(page, "id") == id, "page %s", page ? page : "NULL");
    qtask_string_free(page);
    page = (char *)"sentinel";
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_list_tasks(client, "{\"status\": \"done\"}", 0, 10, &page));
    CHECK(page == NULL, "out not reset on failure");

    uint64_t n = 99;
    OK(qtask_retry_matching(client, "{\"status\": \"failed\", \"queue\": \"C:ADMIN\"}", &n));
    CHECK(n == 1, "retried %llu", (unsigned long long)n);
    expect_status(client, id, "waiting");
    EXPECT(QTASK_RESULT_INVALID_STATE, qtask_retry(client, id));

    OK(qtask_pause_queue(client, queue));
    char *queues = NULL;
    OK(qtask_queues(client, &queues));
    CHECK(queues && strstr(queues, "{\"queue\":\"C:ADMIN\",\"paused\":true"), "queues %s", queues ? queues : "NULL");
    qtask_string_free(queues);
    msg = (char *)"sentinel";
    OK(qtask_pop(client, queue, 0, &msg));
    CHECK(msg == NULL, "a paused queue delivered %s", msg ? msg : "NULL");
    OK(qtask_resume_queue(client, queue));
    OK(qtask_pop(client, queue, 3.0, &msg));
    CHECK(json_int(msg, "task_id") == id && json_int(msg, "attempt") == 2, "popped %s", msg ? msg : "NULL");
    qtask_string_free(msg);

    OK(qtask_cancel_matching(client, "{\"queue\": \"C:ADMIN\"}", &n));
    CHECK(n == 1, "cancelled %llu", (unsigned long long)n);
    char *rates = NULL;
    OK(qtask_rates(client, 3, &rates));
    CHECK(rates && rates[0] == '[' && strstr(rates, "minute_at"), "rates %s", rates ? rates : "NULL");
    qtask_string_free(rates);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_pause_queue(client, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_retry_matching(client, NULL, NULL));
}

/* Priorities: the higher one is popped first. Limits: with max_processing 1 a second
 * task waits until the limits are removed; bad limits are refused. */
static void test_priority_and_limits(qtask_client *client) {
    int64_t low = 0, high = 0;
    OK(qtask_create(client, "low", "{}", 60, "C:PRIO", "{\"priority\": 1}", &low));
    OK(qtask_create(client, "high", "{}", 60, "C:PRIO", "{\"priority\": 5}", &high));
    char *msg = NULL;
    OK(qtask_pop(client, "C:PRIO", 3.0, &msg));
    CHECK(json_int(msg, "task_id") == high, "popped %s", msg ? msg : "NULL");
    qtask_string_free(msg);
    char *task = NULL;
    OK(qtask_get(client, low, &task));
    CHECK(task && strstr(task, "\"priority\":1"), "task %s", task ? task : "NULL");
    qtask_string_free(task);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "x", "{}", 60, "C:PRIO", "{\"priority\": 1001}", NULL));

    const char *queue = "C:LIMIT";
    OK(qtask_set_queue_limits(client, queue, "{\"max_processing\": 1, \"max_per_second\": 100}"));
    OK(qtask_create(client, "a", "{}", 60, queue, NULL, NULL));
    OK(qtask_create(client, "b", "{}", 60, queue, NULL, NULL));
    OK(qtask_pop(client, queue, 3.0, &msg));
    CHECK(msg != NULL, "first pop under the limit");
    qtask_string_free(msg);
    msg = (char *)"sentinel";
    OK(qtask_pop(client, queue, 0.2, &msg));
    CHECK(msg == NULL, "a second task ran beside the first: %s", msg ? msg : "NULL");
    char *queues = NULL;
    OK(qtask_queues(client, &queues));
    CHECK(queues && strstr(queues, "\"limits\":{\"max_processing\":1,\"max_per_second\":100.0}"), "queues %s",
          queues ? queues : "NULL");
    qtask_string_free(queues);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_set_queue_limits(client, queue, "{\"max_processing\": 0}"));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_set_queue_limits(client, queue, "{\"max_running\": 2}"));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_set_queue_limits(client, NULL, NULL));
    OK(qtask_set_queue_limits(client, queue, NULL));
    OK(qtask_pop(client, queue, 3.0, &msg));
    CHECK(msg != NULL, "no pop once the limits are removed");
    qtask_string_free(msg);
}

/* Periodic tasks: declare (cron in a zone, an interval), replace, list, remove; a tick
 * of a one-second interval reaches a worker; bad timings write nothing. */
static void test_schedules(qtask_client *client) {
    char *info = NULL;
    OK(qtask_schedule(client, "c nightly", "{\"kind\": \"report\"}",
                      "{\"queue\": \"C:SCHED\", \"cron\": \"0 9 * * *\", \"time_zone\": \"Asia/Shanghai\", "
                      "\"missed\": \"skip\", \"timeout\": 30}",
                      &info));
    CHECK(info && strstr(info, "\"time_zone\":\"Asia/Shanghai\"") && strstr(info, "\"missed\":\"skip\""),
          "schedule %s", info ? info : "NULL");
    /* 09:00 in Shanghai is 01:00 UTC. */
    CHECK(json_int(info, "next_at") % 86400000 == 3600000, "next_at of %s", info ? info : "NULL");
    qtask_string_free(info);
    OK(qtask_schedule(client, "c pulse", "{\"n\": 7}", "{\"queue\": \"C:SCHED\", \"every\": 1, \"priority\": 4}", NULL));

    char *list = NULL;
    OK(qtask_schedules(client, &list));
    CHECK(list && list[0] == '[' && strstr(list, "\"name\":\"c nightly\"") && strstr(list, "\"every_ms\":1000"),
          "schedules %s", list ? list : "NULL");
    qtask_string_free(list);

    /* The sweeper (every 0.2 s) makes the tick's task. */
    char *msg = NULL;
    OK(qtask_pop(client, "C:SCHED", 10.0, &msg));
    CHECK(msg && json_int(msg, "n") == 7, "tick message %s", msg ? msg : "NULL");
    if (msg) {
        char *task = NULL;
        OK(qtask_get(client, json_int(msg, "task_id"), &task));
        CHECK(task && json_int(task, "priority") == 4, "the tick's task has the schedule's priority: %s",
              task ? task : "NULL");
        qtask_string_free(task);
        OK(qtask_finish(client, json_int(msg, "task_id")));
    }
    qtask_string_free(msg);

    bool existed = false;
    OK(qtask_unschedule(client, "c pulse", &existed));
    CHECK(existed, "pulse did not exist");
    OK(qtask_unschedule(client, "c pulse", &existed));
    CHECK(!existed, "pulse removed twice");
    OK(qtask_unschedule(client, "c nightly", NULL));

    const char *bad[] = {
        "{\"queue\": \"C:SCHED\", \"cron\": \"61 * * * *\"}",
        "{\"queue\": \"C:SCHED\", \"cron\": \"* * * * *\", \"time_zone\": \"Mars/Olympus\"}",
        "{\"queue\": \"C:SCHED\", \"every\": 0}",
        "{\"queue\": \"C:SCHED\", \"every\": 5, \"cron\": \"* * * * *\"}",
        "{\"queue\": \"C:SCHED\"}",
        "{\"queue\": \"C:SCHED\", \"every\": 5, \"missed\": \"twice\"}",
        "{\"queue\": \"C:SCHED\", \"every\": 5, \"priority\": 1001}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        info = (char *)"sentinel";
        EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_schedule(client, "c bad", "{}", bad[i], &info));
        CHECK(info == NULL, "out not reset on failure");
    }
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_schedule(client, NULL, "{}", "{\"queue\": \"Q\", \"every\": 5}", NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_schedules(client, NULL));
    OK(qtask_schedules(client, &list));
    CHECK(list && strcmp(list, "[]") == 0, "bad schedules were written: %s", list ? list : "NULL");
    qtask_string_free(list);
}

struct worker_arg {
    qtask_client *client;
    int created, failed;
};

static void *create_many(void *p) {
    struct worker_arg *arg = p;
    for (int i = 0; i < 10; i++) {
        int64_t id = 0;
        if (qtask_create(arg->client, "threaded", "{}", 60, "C:THREADS", NULL, &id) == QTASK_RESULT_OK && id > 0) {
            arg->created++;
        } else {
            arg->failed++;
        }
    }
    return NULL;
}

/* One handle used from several threads at once. */
static void test_threads(qtask_client *client) {
    long long before = kept_tasks(client);
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){client, 0, 0};
        CHECK(pthread_create(&threads[i], NULL, create_many, &args[i]) == 0, "pthread_create");
    }
    int created = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        created += args[i].created;
        failed += args[i].failed;
    }
    CHECK(created == THREADS * 10 && failed == 0, "created %d failed %d", created, failed);
    CHECK(kept_tasks(client) == before + THREADS * 10, "tasks %lld", kept_tasks(client) - before);
    /* Drain them so the sweeper has nothing left to do. */
    int popped = 0;
    for (;;) {
        char *msg = NULL;
        if (qtask_pop(client, "C:THREADS", 0.5, &msg) != QTASK_RESULT_OK || msg == NULL) break;
        OK(qtask_finish(client, json_int(msg, "task_id")));
        qtask_string_free(msg);
        popped++;
    }
    CHECK(popped == THREADS * 10, "popped %d", popped);
}

struct pop_arg {
    qtask_client *client;
    qtask_cancel_token *token;
    qtask_result rc;
    char *msg;
};

static void *pop_for_an_hour(void *p) {
    struct pop_arg *arg = p;
    arg->rc = qtask_pop_cancellable(arg->client, "C:CANCEL", 3600, arg->token, &arg->msg);
    return NULL;
}

/* A pop blocked on one thread ends when another cancels its token; it claims nothing. */
static void test_cancel(qtask_client *client) {
    qtask_cancel_token *token = NULL;
    OK(qtask_cancel_token_new(&token));
    struct pop_arg arg = {client, token, QTASK_RESULT_INTERNAL, (char *)"sentinel"};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, pop_for_an_hour, &arg) == 0, "pthread_create");
    struct timespec blocked = {0, 200 * 1000 * 1000};
    nanosleep(&blocked, NULL);
    OK(qtask_cancel_token_cancel(token));
    pthread_join(thread, NULL); /* an hour, were the token not heard */
    CHECK(arg.rc == QTASK_RESULT_OK && arg.msg == NULL, "cancelled pop: %s %s", qtask_result_name(arg.rc),
          arg.msg ? arg.msg : "NULL");

    /* The task that arrives later is the next pop's, on its first attempt. */
    int64_t later = 0, waiting = 0;
    char *msg = NULL;
    OK(qtask_create(client, "later", "{}", 60, "C:CANCEL", NULL, &later));
    OK(qtask_pop(client, "C:CANCEL", 3.0, &msg));
    CHECK(msg && json_int(msg, "task_id") == later && json_int(msg, "attempt") == 1, "later: %s",
          msg ? msg : "NULL");
    OK(qtask_finish(client, later));
    qtask_string_free(msg);

    /* Already cancelled: at once, with a task waiting, and nothing claimed. */
    OK(qtask_create(client, "waiting", "{}", 60, "C:CANCEL", NULL, &waiting));
    msg = (char *)"sentinel";
    OK(qtask_pop_cancellable(client, "C:CANCEL", 3600, token, &msg));
    CHECK(msg == NULL, "a cancelled token claimed %s", msg ? msg : "NULL");
    char *task = NULL, *result = (char *)"sentinel";
    OK(qtask_get(client, waiting, &task));
    CHECK(task && json_int(task, "count") == 0, "claimed: %s", task ? task : "NULL");
    qtask_string_free(task);
    EXPECT(QTASK_RESULT_TIMEOUT, qtask_task_result_cancellable(client, waiting, 3600, token, &result));
    CHECK(result == NULL, "out not reset");
    OK(qtask_cancel_token_cancel(token)); /* twice is fine */
    qtask_cancel_token_free(token);
    EXPECT(QTASK_RESULT_CLOSED, qtask_cancel_token_cancel(token));
    qtask_cancel_token_free(token); /* twice: ignored */
    qtask_cancel_token_free(NULL);

    /* NULL: never cancelled. */
    OK(qtask_pop_cancellable(client, "C:CANCEL", 3.0, NULL, &msg));
    CHECK(msg && json_int(msg, "task_id") == waiting, "waiting: %s", msg ? msg : "NULL");
    OK(qtask_finish(client, waiting));
    qtask_string_free(msg);

    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_cancel_token_new(NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT,
           qtask_pop_cancellable(client, "C:CANCEL", 0, (qtask_cancel_token *)&later, &msg));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_pop_cancellable(client, "C:CANCEL", 0, NULL, NULL));
}

/* ---- the worker ---- */

/* Counts one more callback running and keeps the most seen at once in *most_running. */
static void note_running(atomic_int *running, atomic_int *most_running) {
    int now = atomic_fetch_add(running, 1) + 1;
    int most = atomic_load(most_running);
    while (now > most && !atomic_compare_exchange_weak(most_running, &most, now)) {
    }
}

struct drain {
    qtask_worker *worker;
    int want;
    atomic_int seen, running, most_running, bad_messages;
};

static int drain_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)outcome;
    struct drain *d = user_data;
    note_running(&d->running, &d->most_running);
    if (json_int(message_json, "task_id") <= 0 || json_int(message_json, "attempt") != 1 ||
        json_int(message_json, "n") < 0) {
        atomic_fetch_add(&d->bad_messages, 1);
    }
    atomic_fetch_sub(&d->running, 1);
    if (atomic_fetch_add(&d->seen, 1) + 1 == d->want) {
        qtask_worker_stop(d->worker); /* allowed from the worker's own callback */
    }
    return 0;
}

/* A worker with concurrency 4 drains N tasks, then its own callback stops it. */
static void test_worker_drain(qtask_client *client) {
    enum { N = 200 };
    long long before = kept_tasks(client);
    for (int i = 0; i < N; i++) {
        char input[64];
        snprintf(input, sizeof input, "{\"n\": %d}", i);
        OK(qtask_create(client, "drain", input, 60, "C:WORKER", NULL, NULL));
    }
    struct drain d = {.want = N};
    OK(qtask_worker_new(client, "C:WORKER", 4, drain_callback, &d, &d.worker));
    qtask_worker_report report = {9, 9, 9, 9, 9};
    OK(qtask_worker_run(d.worker, &report));
    CHECK(report.finished == N && report.failed == 0 && report.skipped == 0, "report %llu/%llu/%llu",
          (unsigned long long)report.finished, (unsigned long long)report.failed,
          (unsigned long long)report.skipped);
    CHECK(atomic_load(&d.seen) == N, "callback saw %d", atomic_load(&d.seen));
    CHECK(atomic_load(&d.most_running) <= 4, "%d callbacks at once", atomic_load(&d.most_running));
    CHECK(atomic_load(&d.bad_messages) == 0, "%d bad messages", atomic_load(&d.bad_messages));
    CHECK(kept_tasks(client) == before, "%lld tasks left", kept_tasks(client) - before);
    /* A stopped worker stays stopped: a second run returns at once. */
    OK(qtask_worker_run(d.worker, &report));
    CHECK(report.finished == 0, "second run finished %llu", (unsigned long long)report.finished);
    qtask_worker_free(d.worker);
    qtask_worker_free(d.worker); /* twice: only sets the last error */
    CHECK(strlen(qtask_last_error()) > 0, "no error for a freed worker");
    EXPECT(QTASK_RESULT_CLOSED, qtask_worker_run(d.worker, NULL));
}

struct together {
    qtask_worker *worker;
    pthread_t run_thread;
    atomic_int running, most_running, on_run_thread, done;
};

/* Waits (up to 10 s) until 4 callbacks run at once, so each needs a thread of its own. */
static int together_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    (void)outcome;
    struct together *t = user_data;
    if (pthread_equal(pthread_self(), t->run_thread)) {
        atomic_fetch_add(&t->on_run_thread, 1);
    }
    note_running(&t->running, &t->most_running);
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 10000 && atomic_load(&t->most_running) < 4; i++) nanosleep(&ms, NULL);
    atomic_fetch_sub(&t->running, 1);
    if (atomic_fetch_add(&t->done, 1) + 1 == 4) {
        qtask_worker_stop(t->worker);
    }
    return 0;
}

/* Callbacks that block run side by side, up to the concurrency, never on the run's thread. */
static void test_worker_callbacks_side_by_side(qtask_client *client) {
    for (int i = 0; i < 4; i++) {
        OK(qtask_create(client, "together", "{}", 60, "C:TOGETHER", NULL, NULL));
    }
    struct together t = {.run_thread = pthread_self()};
    OK(qtask_worker_new(client, "C:TOGETHER", 4, together_callback, &t, &t.worker));
    qtask_worker_report report;
    OK(qtask_worker_run(t.worker, &report));
    CHECK(report.finished == 4, "finished %llu", (unsigned long long)report.finished);
    CHECK(atomic_load(&t.most_running) == 4, "%d callbacks at once, not 4", atomic_load(&t.most_running));
    CHECK(atomic_load(&t.on_run_thread) == 0, "%d callbacks on the run's thread", atomic_load(&t.on_run_thread));
    qtask_worker_free(t.worker);
}

struct failing {
    qtask_worker *worker;
    atomic_int calls;
};

static int failing_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    struct failing *f = user_data;
    char text[128];
    snprintf(text, sizeof text, "disk full on attempt %lld", json_int(message_json, "attempt"));
    qtask_outcome_set_error(outcome, text);
    atomic_fetch_add(&f->calls, 1);
    qtask_worker_stop(f->worker);
    return 1;
}

static int silent_failing_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    (void)outcome;
    qtask_worker_stop(((struct failing *)user_data)->worker);
    return 7;
}

/* A callback that fails leaves its text as last_error; without a text, its code. */
static void test_worker_failure(qtask_client *client) {
    int64_t id = 0;
    OK(qtask_create(client, "flaky", "{}", 60, "C:WORKER_FAIL", "{\"max_count\": 1}", &id));
    struct failing f = {0};
    OK(qtask_worker_new(client, "C:WORKER_FAIL", 2, failing_callback, &f, &f.worker));
    qtask_worker_report report = {0};
    OK(qtask_worker_run(f.worker, &report));
    qtask_worker_free(f.worker);
    CHECK(report.failed == 1 && report.finished == 0, "report %llu failed", (unsigned long long)report.failed);
    char *task = NULL;
    OK(qtask_get(client, id, &task));
    CHECK(task && strstr(task, "\"last_error\":\"disk full on attempt 1\""), "last_error in %s", task);
    CHECK(task && strstr(task, "\"status\":\"failed\""), "status in %s", task);
    qtask_string_free(task);

    OK(qtask_create(client, "flaky", "{}", 60, "C:WORKER_FAIL", "{\"max_count\": 1}", &id));
    OK(qtask_worker_new(client, "C:WORKER_FAIL", 1, silent_failing_callback, &f, &f.worker));
    OK(qtask_worker_run(f.worker, &report));
    qtask_worker_free(f.worker);
    OK(qtask_get(client, id, &task));
    CHECK(task && strstr(task, "\"last_error\":\"callback returned 7\""), "last_error in %s", task);
    qtask_string_free(task);
}

struct outcomes {
    qtask_worker *worker;
    atomic_int calls, time_up_seen;
};

/* Ends each task the way its input's "do" says. */
static int outcome_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    struct outcomes *o = user_data;
    int code = QTASK_OUTCOME_CODE_FINISH;
    switch (json_int(message_json, "do")) {
    case 0:
        OK(qtask_outcome_set_result(outcome, "{\"sum\": 3, \"name\": \"\xe4\xbb\xbb\xe5\x8a\xa1\"}"));
        EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_outcome_set_result(outcome, "{not json"));
        break;
    case 1:
        qtask_outcome_set_error(outcome, "boom");
        code = QTASK_OUTCOME_CODE_RETRY;
        break;
    case 2:
        OK(qtask_outcome_set_delay(outcome, 3600.0));
        code = QTASK_OUTCOME_CODE_RETRY_AFTER;
        break;
    case 3:
        qtask_outcome_set_error(outcome, "no longer wanted");
        code = QTASK_OUTCOME_CODE_CANCEL;
        break;
    default:
        qtask_outcome_set_error(outcome, "bad input");
        code = QTASK_OUTCOME_CODE_FAIL_NOW;
    }
    if (atomic_fetch_add(&o->calls, 1) + 1 == 5) qtask_worker_stop(o->worker);
    return code;
}

static void expect_task(qtask_client *client, int64_t id, const char *status, const char *text) {
    char *task = NULL;
    OK(qtask_get(client, id, &task));
    CHECK(task && strstr(task, status), "%s in %s", status, task);
    CHECK(task && (!text || strstr(task, text)), "%s in %s", text, task);
    qtask_string_free(task);
}

/* Every outcome code, and results read back with qtask_task_result. */
static void test_worker_outcomes(qtask_client *client) {
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char input[32];
        snprintf(input, sizeof input, "{\"do\": %d}", i);
        /* The error is the last attempt: the test's backoff is short, and it must not run again. */
        const char *options = i == 1 ? "{\"delete_deadline\": 3600, \"max_count\": 1}"
                                     : "{\"delete_deadline\": 3600, \"max_count\": 3}";
        OK(qtask_create(client, "outcome", input, 60, "C:OUTCOMES", options, &ids[i]));
    }
    struct outcomes o = {0};
    OK(qtask_worker_new(client, "C:OUTCOMES", 2, outcome_callback, &o, &o.worker));
    qtask_worker_report report = {0};
    OK(qtask_worker_run(o.worker, &report));
    qtask_worker_free(o.worker);
    CHECK(report.finished == 1 && report.failed == 2 && report.snoozed == 1 && report.cancelled == 1 &&
              report.skipped == 0,
          "report %llu/%llu/%llu/%llu", (unsigned long long)report.finished, (unsigned long long)report.failed,
          (unsigned long long)report.snoozed, (unsigned long long)report.cancelled);
    expect_task(client, ids[0], "\"status\":\"finished\"", NULL);
    expect_task(client, ids[1], "\"status\":\"failed\"", "\"last_error\":\"boom\"");
    expect_task(client, ids[2], "\"status\":\"waiting\"", "\"max_count\":4");
    expect_task(client, ids[3], "\"status\":\"cancelled\"", "\"last_error\":\"no longer wanted\"");
    expect_task(client, ids[4], "\"status\":\"failed\"", "\"last_error\":\"bad input\"");

    char *result = NULL;
    OK(qtask_task_result(client, ids[0], 0, &result));
    CHECK(result && strstr(result, "\"sum\":3"), "result %s", result);
    qtask_string_free(result);
    EXPECT(QTASK_RESULT_INVALID_STATE, qtask_task_result(client, ids[3], 0, &result));
    CHECK(result == NULL && strstr(qtask_last_error(), "no longer wanted"), "error %s", qtask_last_error());
    EXPECT(QTASK_RESULT_TIMEOUT, qtask_task_result(client, ids[2], 0.05, &result));
    EXPECT(QTASK_RESULT_NOT_FOUND, qtask_task_result(client, ids[4] + 1000, 0, &result));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_task_result(client, ids[0], -1, &result));
    OK(qtask_cancel(client, ids[2]));
}

/* Polls qtask_outcome_time_up until the worker's time limit passes. */
static int slow_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    struct outcomes *o = user_data;
    atomic_fetch_add(&o->calls, 1);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 1000 && !qtask_outcome_time_up(outcome); i++) nanosleep(&tick, NULL);
    if (qtask_outcome_time_up(outcome)) atomic_fetch_add(&o->time_up_seen, 1);
    qtask_worker_stop(o->worker);
    return QTASK_OUTCOME_CODE_FINISH; /* ignored: the attempt already failed */
}

/* A time limit: the callback is told, and the attempt fails with the reason. */
static void test_worker_time_limit(qtask_client *client) {
    int64_t id = 0;
    OK(qtask_create(client, "slow", "{}", 60, "C:SLOW", "{\"max_count\": 1}", &id));
    struct outcomes o = {0};
    OK(qtask_worker_new(client, "C:SLOW", 1, slow_callback, &o, &o.worker));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_set_time_limit(o.worker, 0));
    OK(qtask_worker_set_time_limit(o.worker, 0.2));
    qtask_worker_report report = {0};
    OK(qtask_worker_run(o.worker, &report));
    qtask_worker_free(o.worker);
    CHECK(atomic_load(&o.time_up_seen) == 1, "time up seen %d", atomic_load(&o.time_up_seen));
    CHECK(report.failed == 1 && report.finished == 0, "report %llu/%llu", (unsigned long long)report.finished,
          (unsigned long long)report.failed);
    expect_task(client, id, "\"status\":\"failed\"", "\"last_error\":\"time limit of 0.2s exceeded\"");
    CHECK(!qtask_outcome_time_up(NULL), "NULL outcome");
}

/* Works 0.15 s; the sixth call stops the worker. */
static int serial_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    struct outcomes *o = user_data;
    struct timespec work = {0, 150 * 1000 * 1000};
    nanosleep(&work, NULL);
    if (qtask_outcome_time_up(outcome)) atomic_fetch_add(&o->time_up_seen, 1);
    if (atomic_fetch_add(&o->calls, 1) + 1 == 6) qtask_worker_stop(o->worker);
    return QTASK_OUTCOME_CODE_FINISH;
}

/* Tasks handed to the callback threads ahead of a free one keep their whole time
 * limit: six of 0.15 s on one thread under a limit of 0.4 s all finish. */
static void test_worker_time_limit_counts_from_the_call(qtask_client *client) {
    int64_t ids[6];
    for (int i = 0; i < 6; i++) {
        OK(qtask_create(client, "serial", "{}", 60, "C:SERIAL", "{\"delete_deadline\": 3600}", &ids[i]));
    }
    struct outcomes o = {0};
    OK(qtask_worker_new(client, "C:SERIAL", 1, serial_callback, &o, &o.worker));
    OK(qtask_worker_set_time_limit(o.worker, 0.4));
    qtask_worker_report report = {0};
    OK(qtask_worker_run(o.worker, &report));
    qtask_worker_free(o.worker);
    CHECK(report.finished == 6 && report.failed == 0 && atomic_load(&o.time_up_seen) == 0,
          "report %llu/%llu, time up seen %d", (unsigned long long)report.finished,
          (unsigned long long)report.failed, atomic_load(&o.time_up_seen));
    for (int i = 0; i < 6; i++) expect_task(client, ids[i], "\"status\":\"finished\"", NULL);
}

struct stale {
    qtask_worker *worker;
    qtask_client *client;
};

/* Cancels its own task (unfenced, as an operator would), then fails it now: that
 * outcome names an attempt that is no longer current. */
static int stale_callback(const char *message_json, qtask_outcome *outcome, void *user_data) {
    struct stale *s = user_data;
    OK(qtask_cancel(s->client, json_int(message_json, "task_id")));
    qtask_outcome_set_error(outcome, "too late");
    qtask_worker_stop(s->worker);
    return QTASK_OUTCOME_CODE_FAIL_NOW;
}

/* A stale outcome changes nothing and is counted as skipped. */
static void test_worker_stale_outcome(qtask_client *client) {
    int64_t id = 0;
    OK(qtask_create(client, "stale", "{}", 60, "C:STALE", NULL, &id));
    struct stale s = {NULL, client};
    OK(qtask_worker_new(client, "C:STALE", 1, stale_callback, &s, &s.worker));
    qtask_worker_report report = {0};
    OK(qtask_worker_run(s.worker, &report));
    qtask_worker_free(s.worker);
    CHECK(report.skipped == 1 && report.failed == 0, "report skipped %llu failed %llu",
          (unsigned long long)report.skipped, (unsigned long long)report.failed);
    expect_task(client, id, "\"status\":\"cancelled\"", "\"last_error\":null");
}

static int never_called(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    (void)outcome;
    atomic_fetch_add((atomic_int *)user_data, 1);
    return 0;
}

struct run_arg {
    qtask_worker *worker;
    qtask_result rc;
};

static void *run_worker(void *p) {
    struct run_arg *arg = p;
    arg->rc = qtask_worker_run(arg->worker, NULL);
    return NULL;
}

/* A worker running on one thread, idle on an empty queue, stopped from another. */
static void test_worker_stop_from_thread(qtask_client *client) {
    atomic_int calls = 0;
    struct run_arg arg = {NULL, QTASK_RESULT_INTERNAL};
    OK(qtask_worker_new(client, "C:WORKER_IDLE", 4, never_called, &calls, &arg.worker));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_worker, &arg) == 0, "pthread_create");
    qtask_worker_stop(arg.worker);
    pthread_join(thread, NULL);
    CHECK(arg.rc == QTASK_RESULT_OK, "run: %s", qtask_result_name(arg.rc));
    CHECK(atomic_load(&calls) == 0, "callback called %d times", atomic_load(&calls));
    qtask_worker_free(arg.worker);

    /* Bad arguments. */
    qtask_worker *worker = (qtask_worker *)&calls;
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_new(client, "C:W", 0, never_called, NULL, &worker));
    CHECK(worker == NULL, "out not reset");
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_new(client, "C:W", 1, NULL, NULL, &worker));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_new(client, NULL, 1, never_called, NULL, &worker));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_run((qtask_worker *)&calls, NULL));
    qtask_worker_stop((qtask_worker *)&calls); /* not a worker: ignored */
    qtask_worker_stop(NULL);
}

static qtask_worker *signalled_worker;

static void on_sigusr1(int signo) {
    (void)signo;
    qtask_worker_stop(signalled_worker); /* one atomic store: async-signal-safe */
}

struct signal_arg {
    pthread_t target;
};

static void *send_sigusr1(void *p) {
    pthread_kill(((struct signal_arg *)p)->target, SIGUSR1);
    return NULL;
}

/* SIGUSR1, delivered to the thread inside qtask_worker_run, stops the worker. */
static void test_worker_stop_from_signal(qtask_client *client) {
    atomic_int calls = 0;
    OK(qtask_worker_new(client, "C:WORKER_IDLE", 2, never_called, &calls, &signalled_worker));
    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigusr1;
    sigemptyset(&action.sa_mask);
    CHECK(sigaction(SIGUSR1, &action, &previous) == 0, "sigaction");
    struct signal_arg arg = {pthread_self()};
    pthread_t sender;
    CHECK(pthread_create(&sender, NULL, send_sigusr1, &arg) == 0, "pthread_create");
    OK(qtask_worker_run(signalled_worker, NULL));
    pthread_join(sender, NULL);
    sigaction(SIGUSR1, &previous, NULL);
    CHECK(atomic_load(&calls) == 0, "callback called %d times", atomic_load(&calls));
    qtask_worker_free(signalled_worker);
}

/* ---- the pull worker: qtask_worker_next / qtask_worker_complete ---- */

/* A pull worker of 4 on one thread, its tasks taken and completed in batches on
 * this one: every task once, with each outcome as a callback's return would give. */
static void test_worker_pull(qtask_client *client) {
    enum { N = 60 };
    long long before = kept_tasks(client);
    for (int i = 0; i < N; i++) {
        char input[64];
        snprintf(input, sizeof input, "{\"n\": %d}", i);
        OK(qtask_create(client, "pull", input, 60, "C:PULL", NULL, NULL));
    }
    struct run_arg arg = {NULL, QTASK_RESULT_INTERNAL};
    OK(qtask_worker_new_pull(client, "C:PULL", 4, &arg.worker));
    qtask_task tasks[8];
    size_t count = 99;
    /* Before the run: nothing yet, not an error. */
    OK(qtask_worker_next(arg.worker, tasks, 8, 0, &count));
    CHECK(count == 0, "%zu tasks before the run", count);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_worker, &arg) == 0, "pthread_create");
    int seen = 0, cancelled_id = -1;
    char *bad_result = NULL;
    while (seen < N) {
        OK(qtask_worker_next(arg.worker, tasks, 8, 5, &count));
        CHECK(count > 0, "no task within 5 s after %d", seen);
        CHECK(count <= 4, "%zu tasks out at once with concurrency 4", count);
        qtask_completion done[8];
        for (size_t k = 0; k < count; k++) {
            long long n = json_int(tasks[k].message_json, "n");
            CHECK(json_int(tasks[k].message_json, "task_id") > 0 && json_int(tasks[k].message_json, "attempt") == 1,
                  "message %s", tasks[k].message_json);
            CHECK(!qtask_worker_time_up(arg.worker, tasks[k].token), "time up without a limit");
            done[k] = (qtask_completion){.token = tasks[k].token, .code = QTASK_OUTCOME_CODE_FINISH};
            if (n == 0) {
                done[k].result_json = "{\"ok\": true}";
            } else if (n == 1) {
                done[k].code = QTASK_OUTCOME_CODE_CANCEL;
                done[k].error = "not wanted";
                cancelled_id = (int)json_int(tasks[k].message_json, "task_id");
            } else if (n == 2) {
                done[k].result_json = "{not json";
                bad_result = malloc(32);
                snprintf(bad_result, 32, "%lld", json_int(tasks[k].message_json, "task_id"));
            }
        }
        OK(qtask_worker_complete(arg.worker, done, count));
        /* A token completed twice is ignored. */
        OK(qtask_worker_complete(arg.worker, done, count));
        seen += (int)count;
    }
    qtask_worker_stop(arg.worker);
    EXPECT(QTASK_RESULT_CLOSED, qtask_worker_next(arg.worker, tasks, 8, 5, &count));
    pthread_join(thread, NULL);
    CHECK(arg.rc == QTASK_RESULT_OK, "run: %s", qtask_result_name(arg.rc));
    char *task = NULL;
    OK(qtask_get(client, cancelled_id, &task));
    CHECK(strstr(task, "\"status\":\"cancelled\"") && strstr(task, "not wanted"), "cancelled: %s", task);
    qtask_string_free(task);
    OK(qtask_get(client, atoll(bad_result), &task));
    CHECK(strstr(task, "\"status\":\"failed\"") && strstr(task, "result_json"), "bad result: %s", task);
    qtask_string_free(task);
    free(bad_result);
    CHECK(kept_tasks(client) == before + 2, "%lld tasks kept", kept_tasks(client) - before);

    /* A callback worker has no tasks to pull; bad arguments. */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_next(arg.worker, NULL, 8, 0, &count));
    qtask_worker_free(arg.worker);
    EXPECT(QTASK_RESULT_CLOSED, qtask_worker_next(arg.worker, tasks, 8, 0, &count));
    atomic_int calls = 0;
    qtask_worker *callback_worker;
    OK(qtask_worker_new(client, "C:PULL", 1, never_called, &calls, &callback_worker));
    EXPECT(QTASK_RESULT_INVALID_STATE, qtask_worker_next(callback_worker, tasks, 8, 0, &count));
    qtask_worker_free(callback_worker);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_new_pull(client, "C:PULL", 0, &callback_worker));
}

/* qtask_worker_complete_take on a pull worker of 1 with a time limit of 0.4 s: one
 * task out at a time though the engine hands more over, each taken with its whole
 * time limit still ahead, though six take 0.15 s each one after the other. */
static void test_worker_complete_take(qtask_client *client) {
    enum { N = 6 };
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        OK(qtask_create(client, "serial", "{}", 60, "C:CTAKE", "{\"delete_deadline\": 3600}", &ids[i]));
    }
    struct run_arg arg = {NULL, QTASK_RESULT_INTERNAL};
    OK(qtask_worker_new_pull(client, "C:CTAKE", 1, &arg.worker));
    OK(qtask_worker_set_time_limit(arg.worker, 0.4));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_worker, &arg) == 0, "pthread_create");
    qtask_taken_task tasks[4];
    size_t count = 0;
    OK(qtask_worker_take(arg.worker, tasks, 4, 5, &count));
    CHECK(count == 1, "%zu tasks out at once with concurrency 1", count);
    int done_count = 0;
    while (done_count < N) {
        CHECK(count == 1, "%zu tasks out at once with concurrency 1", count);
        CHECK(tasks[0].time_left_seconds > 0.35 && tasks[0].time_left_seconds <= 0.4, "time left %f when taken",
              tasks[0].time_left_seconds);
        size_t more = 9;
        OK(qtask_worker_take(arg.worker, tasks + 1, 3, 0, &more));
        CHECK(more == 0, "took %zu more while one is out", more);
        struct timespec work = {0, 150 * 1000 * 1000};
        nanosleep(&work, NULL);
        qtask_completion done = {.token = tasks[0].token, .code = QTASK_OUTCOME_CODE_FINISH};
        done_count++;
        OK(qtask_worker_complete_take(arg.worker, &done, 1, tasks, 4, &count));
        if (count == 0 && done_count < N) {
            OK(qtask_worker_take(arg.worker, tasks, 4, 5, &count));
        }
    }
    CHECK(count == 0, "%zu tasks after the last", count);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_complete_take(arg.worker, NULL, 1, tasks, 4, &count));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_complete_take(arg.worker, NULL, 0, NULL, 4, &count));
    qtask_worker_stop(arg.worker);
    qtask_result rc;
    while ((rc = qtask_worker_complete_take(arg.worker, NULL, 0, tasks, 4, &count)) == QTASK_RESULT_OK) {
        CHECK(count == 0, "%zu tasks after the stop", count);
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    EXPECT(QTASK_RESULT_CLOSED, rc);
    pthread_join(thread, NULL);
    CHECK(arg.rc == QTASK_RESULT_OK, "run: %s", qtask_result_name(arg.rc));
    for (int i = 0; i < N; i++) {
        char *task = NULL;
        OK(qtask_get(client, ids[i], &task));
        CHECK(strstr(task, "\"status\":\"finished\""), "task %d: %s", i, task);
        qtask_string_free(task);
    }
    qtask_worker_free(arg.worker);
}

/* qtask_worker_take with the wake pipe: ids, name and length without parsing, the
 * time left of a task with a time limit of its own (none for the other), time up
 * once the engine ended that attempt, and the pipe readable when the run ended. */
static int wait_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = poll(&p, 1, 5000);
    char buf[64];
    while (ready > 0 && read(fd, buf, sizeof buf) > 0) {
    }
    return ready;
}

static void test_worker_take(qtask_client *client) {
    char *created = NULL;
    OK(qtask_create_task(client,
                         "{\"name\": \"limited\", \"input\": {\"n\": 1}, \"queue\": \"C:TAKE\", "
                         "\"time_limit\": 0.3, \"max_count\": 1}",
                         &created));
    long long limited_id = json_int(created, "id");
    qtask_string_free(created);
    OK(qtask_create(client, "free", "{\"n\": 2}", 60, "C:TAKE", NULL, NULL));
    struct run_arg arg = {NULL, QTASK_RESULT_INTERNAL};
    OK(qtask_worker_new_pull(client, "C:TAKE", 2, &arg.worker));
    int fd = -1;
    OK(qtask_worker_wake_fd(arg.worker, &fd));
    CHECK(fd >= 0, "wake fd %d", fd);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_worker, &arg) == 0, "pthread_create");
    qtask_taken_task tasks[4], limited = {0};
    int have = 0;
    while (have < 2) {
        size_t count = 0;
        OK(qtask_worker_take(arg.worker, tasks, 4, 0, &count));
        if (count == 0) {
            CHECK(wait_readable(fd) > 0, "the wake pipe stayed quiet for 5 s");
            continue;
        }
        for (size_t k = 0; k < count; k++) {
            qtask_taken_task *t = &tasks[k];
            CHECK(t->message_len == strlen(t->message_json) && t->name_len == strlen(t->name), "lengths");
            CHECK(json_int(t->message_json, "task_id") == t->task_id && t->attempt == 1, "ids %s", t->message_json);
            if (strcmp(t->name, "limited") == 0) {
                CHECK(t->task_id == limited_id, "limited id");
                CHECK(t->time_left_seconds > 0 && t->time_left_seconds <= 0.3, "time left %f", t->time_left_seconds);
                limited = *t;
            } else {
                CHECK(strcmp(t->name, "free") == 0 && t->time_left_seconds < 0, "free: %s %f", t->name,
                      t->time_left_seconds);
                qtask_completion done = {.token = t->token, .code = QTASK_OUTCOME_CODE_FINISH};
                OK(qtask_worker_complete(arg.worker, &done, 1));
            }
            have++;
        }
    }
    /* The limited task is not completed: the engine ends its attempt. */
    for (int i = 0; i < 500 && !qtask_worker_time_up(arg.worker, limited.token); i++) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    CHECK(qtask_worker_time_up(arg.worker, limited.token), "time not up after 5 s");
    qtask_completion late = {.token = limited.token, .code = QTASK_OUTCOME_CODE_FINISH};
    OK(qtask_worker_complete(arg.worker, &late, 1));
    qtask_worker_stop(arg.worker);
    CHECK(wait_readable(fd) > 0, "the wake pipe stayed quiet after the stop");
    size_t count = 0;
    qtask_result rc;
    while ((rc = qtask_worker_take(arg.worker, tasks, 4, 0, &count)) == QTASK_RESULT_OK) {
        CHECK(count == 0, "%zu tasks after the stop", count);
        CHECK(wait_readable(fd) > 0, "the wake pipe stayed quiet after the stop");
    }
    EXPECT(QTASK_RESULT_CLOSED, rc);
    pthread_join(thread, NULL);
    CHECK(arg.rc == QTASK_RESULT_OK, "run: %s", qtask_result_name(arg.rc));
    char *task = NULL;
    OK(qtask_get(client, limited_id, &task));
    CHECK(strstr(task, "\"status\":\"failed\"") && strstr(task, "time limit of 0.3s exceeded"), "limited: %s", task);
    qtask_string_free(task);
    qtask_worker_free(arg.worker);
    /* A callback worker has no wake pipe. */
    atomic_int calls = 0;
    qtask_worker *callback_worker;
    OK(qtask_worker_new(client, "C:TAKE", 1, never_called, &calls, &callback_worker));
    EXPECT(QTASK_RESULT_INVALID_STATE, qtask_worker_wake_fd(callback_worker, &fd));
    CHECK(fd == -1, "fd %d", fd);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_take(callback_worker, NULL, 4, 0, &count));
    /* Kinds: a JSON array of names, or null; nothing else. */
    OK(qtask_worker_set_kinds(callback_worker, "[\"a\", \"b\"]"));
    OK(qtask_worker_set_kinds(callback_worker, "null"));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_set_kinds(callback_worker, "[]"));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_set_kinds(callback_worker, "\"a\""));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_worker_set_kinds(callback_worker, NULL));
    qtask_worker_free(callback_worker);
}

/* A worker with kinds: the callback gets the named kinds only; another name fails
 * its attempt ("no handler for task name") without reaching it. */
struct kinds_seen {
    qtask_worker *worker;
    atomic_int calls, wrong;
};

static int32_t on_kind(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)outcome;
    struct kinds_seen *seen = user_data;
    if (!strstr(message_json, "\"to\":\"email\"")) {
        atomic_fetch_add(&seen->wrong, 1);
    }
    atomic_fetch_add(&seen->calls, 1);
    return QTASK_OUTCOME_CODE_FINISH;
}

static void test_worker_kinds(qtask_client *client) {
    char *created = NULL;
    OK(qtask_create_task(client, "{\"name\": \"fax\", \"input\": {\"to\": \"fax\"}, \"queue\": \"C:KINDS\", \"max_count\": 1}",
                         &created));
    long long fax = json_int(created, "id");
    qtask_string_free(created);
    OK(qtask_create(client, "email", "{\"to\": \"email\"}", 60, "C:KINDS", NULL, NULL));
    struct kinds_seen seen = {NULL, 0, 0};
    OK(qtask_worker_new(client, "C:KINDS", 2, on_kind, &seen, &seen.worker));
    OK(qtask_worker_set_kinds(seen.worker, "[\"email\"]"));
    struct run_arg arg = {seen.worker, QTASK_RESULT_INTERNAL};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_worker, &arg) == 0, "pthread_create");
    char *task = NULL;
    for (int i = 0; i < 500; i++) {
        OK(qtask_get(client, fax, &task));
        int failed = strstr(task, "\"status\":\"failed\"") != NULL;
        if (failed && atomic_load(&seen.calls) >= 1) {
            break;
        }
        qtask_string_free(task);
        task = NULL;
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    qtask_worker_stop(seen.worker);
    pthread_join(thread, NULL);
    CHECK(arg.rc == QTASK_RESULT_OK, "run: %s", qtask_result_name(arg.rc));
    CHECK(task && strstr(task, "\"status\":\"failed\"") && strstr(task, "no handler for task name"), "fax: %s",
          task ? task : "(not failed within 5 s)");
    qtask_string_free(task);
    CHECK(atomic_load(&seen.calls) == 1 && atomic_load(&seen.wrong) == 0, "calls %d, wrong %d", atomic_load(&seen.calls),
          atomic_load(&seen.wrong));
    qtask_worker_free(seen.worker);
}

/* ---- the log callback ---- */

struct log_seen {
    pthread_mutex_t lock;
    int warnings, with_password;
    char first[512];
};

static void log_callback(int32_t level, const char *message, void *user_data) {
    struct log_seen *seen = user_data;
    pthread_mutex_lock(&seen->lock);
    if (level == 30) {
        if (seen->warnings++ == 0) snprintf(seen->first, sizeof seen->first, "%s", message);
    }
    if (strstr(message, "hunter2")) seen->with_password++;
    pthread_mutex_unlock(&seen->lock);
}

/* An unreachable Redis makes the engine warn; the warning reaches C without the password. */
static void test_log_callback(const char *dir) {
    struct log_seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    OK(qtask_set_log_callback(log_callback, &seen));
    char config[1024];
    snprintf(config, sizeof config,
             "{\"db\": \"sqlite://%s/logs.db\", \"queue\": \"redis://:hunter2@127.0.0.1:1/0\", \"sweeper\": false}",
             dir);
    qtask_client *client = NULL;
    OK(qtask_open(config, &client));
    if (client) {
        OK(qtask_install(client));
        OK(qtask_create(client, "logged", "{}", 60, "C:LOGS", NULL, NULL));
        qtask_close(client);
    }
    OK(qtask_set_log_callback(NULL, NULL));
    pthread_mutex_lock(&seen.lock);
    CHECK(seen.warnings > 0, "no warning reached the callback");
    CHECK(seen.with_password == 0, "%d lines show the password", seen.with_password);
    CHECK(strstr(seen.first, "Redis") || strstr(seen.first, "queue"), "first warning: %s", seen.first);
    pthread_mutex_unlock(&seen.lock);
}

/* Every bad input: its code, a message, out-parameters reset, nothing written. */
static void test_bad_input(qtask_client *client, const char *dir) {
    long long before = kept_tasks(client);
    int64_t id = 12345;
    qtask_client *other = (qtask_client *)0x1;

    /* qtask_open */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open(NULL, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"db\": ", &other));
    CHECK(other == NULL, "out not reset on failure");
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"no_such_key\": 1}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"db\": \"\xff\xfe\"}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"db\": \"ftp://nowhere\"}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"queue\": \"carrier-pigeon\"}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"sweep_interval\": -1}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"sweep_interval\": 0}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("[1, 2]", &other));
    EXPECT(QTASK_RESULT_DATABASE,
           qtask_open("{\"db\": \"postgres://postgres@127.0.0.1:1/x\", \"sweeper\": false}", &other));
    CHECK(other == NULL, "out not reset on failure");
    /* issue 10: a password never shows in an error; huge settings and key
       separators in namespaces are refused instead of panicking or colliding */
    EXPECT(QTASK_RESULT_DATABASE,
           qtask_open("{\"db\": \"postgres://u:s3cret-pw@127.0.0.1:1/x\", \"sweeper\": false, "
                      "\"connect_timeout\": 0.3}", &other));
    CHECK(strstr(qtask_last_error(), "s3cret-pw") == NULL, "password in error: %s", qtask_last_error());
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"db\": \"oracle://u:s3cret-pw@h/x\"}", &other));
    CHECK(strstr(qtask_last_error(), "s3cret-pw") == NULL, "password in error: %s", qtask_last_error());
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"sweep_interval\": 1e19}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"namespace\": \"a:b\"}", &other));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_open("{\"redis_prefix\": \"qtask:a\"}", &other));

    /* NULL pointers */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(NULL, "n", "{}", 60, "C:BAD", NULL, &id));
    CHECK(id == 0, "out_id not reset on failure: %lld", (long long)id);
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, NULL, "{}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", NULL, 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, NULL, NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_delay(client, NULL, "{}", 1, 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT,
           qtask_create_deferred(client, "n", "{}", 60, "C:BAD", NULL, &id, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_pop(client, "C:BAD", 0, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_pop(client, NULL, 0, &(char *){NULL}));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_processing(client, 1, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_get(client, 1, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_stats(client, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_fail(client, 1, NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_install(NULL));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_finish(NULL, 1));

    /* invalid UTF-8 */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "bad \xff\xfe name", "{}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{\"a\": \"\xc3\x28\"}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:\xe2\x82", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_fail(client, 1, "\xff"));

    /* malformed JSON, and JSON that is not an object */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{\"a\": ", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "[1, 2]", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{\"task_id\": 1}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"deadline\": ", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"retries\": 3}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"max_count\": 0}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"max_count\": -1}", &id));

    /* negative and zero durations */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 0, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", -5, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_delay(client, "n", "{}", -1, 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_delay(client, "n", "{}", 10, 0, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"deadline\": -1}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "C:BAD", "{\"deadline\": 0}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT,
           qtask_create(client, "n", "{}", 60, "C:BAD", "{\"delete_deadline\": -3}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_delay(client, "n", "{}", 100, 60, "C:BAD", "{\"deadline\": 50}", &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_pop(client, "C:BAD", -1, &(char *){NULL}));

    /* empty or oversized names and payloads */
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "", "{}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", "{}", 60, "has space", NULL, &id));
    char long_name[400];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, long_name, "{}", 60, "C:BAD", NULL, &id));
    size_t big = (1u << 20) + 64;
    char *payload = malloc(big + 16);
    CHECK(payload != NULL, "malloc");
    if (payload) {
        strcpy(payload, "{\"blob\": \"");
        size_t at = strlen(payload);
        memset(payload + at, 'x', big - at);
        strcpy(payload + big, "\"}");
        EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create(client, "n", payload, 60, "C:BAD", NULL, &id));
        EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_delay(client, "n", payload, 1, 60, "C:BAD", NULL, &id));
        free(payload);
    }

    /* handles qtask never issued */
    int local = 0;
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_create((qtask_client *)&local, "n", "{}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_stats((qtask_client *)&local, &(char *){NULL}));
    EXPECT(QTASK_RESULT_INVALID_ARGUMENT, qtask_invoke_run((qtask_invoke *)&local, NULL));
    qtask_close((qtask_client *)&local); /* ignored */
    qtask_invoke_free((qtask_invoke *)&local);

    /* a closed handle */
    qtask_client *closed = open_sqlite(dir, "closed.db");
    qtask_close(closed);
    EXPECT(QTASK_RESULT_CLOSED, qtask_create(closed, "n", "{}", 60, "C:BAD", NULL, &id));
    EXPECT(QTASK_RESULT_CLOSED, qtask_pop(closed, "C:BAD", 0, &(char *){NULL}));
    EXPECT(QTASK_RESULT_CLOSED, qtask_stats(closed, &(char *){NULL}));
    EXPECT(QTASK_RESULT_CLOSED, qtask_finish(closed, 1));
    qtask_close(closed); /* twice: ignored */
    qtask_close(NULL);   /* no-op */

    /* a deferred create whose client is closed before the invoke runs */
    qtask_client *short_lived = open_sqlite(dir, "short.db");
    qtask_invoke *invoke = NULL;
    OK(qtask_create_deferred(short_lived, "n", "{}", 60, "C:BAD", NULL, &id, &invoke));
    qtask_close(short_lived);
    bool dispatched = true;
    qtask_result rc = qtask_invoke_run(invoke, &dispatched);
    /* The db queue has nothing to push (OK); a Redis queue reports the closed client. */
    CHECK(rc == QTASK_RESULT_OK || rc == QTASK_RESULT_CLOSED, "invoke after close: %s", qtask_result_name(rc));

    CHECK(kept_tasks(client) == before, "bad input wrote %lld tasks", kept_tasks(client) - before);

    /* Success clears the last error. */
    char *stats = NULL;
    OK(qtask_stats(client, &stats));
    qtask_string_free(stats);
    CHECK(qtask_last_error()[0] == '\0', "last error after success: %s", qtask_last_error());
}

#define RUN(call)                                                                      \
    do {                                                                               \
        int failed_before = failures;                                                  \
        double t0 = now_s();                                                           \
        call;                                                                          \
        printf("%-4s %-32s %.2fs\n", failures == failed_before ? "ok" : "FAIL", #call, now_s() - t0); \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [cycle]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    bool cycle_only = argc > 2 && strcmp(argv[2], "cycle") == 0;
    printf("qtask %s\n", qtask_version());
    CHECK(strlen(qtask_version()) > 0, "empty version");
    CHECK(strcmp(qtask_result_name(QTASK_RESULT_NOT_FOUND), "QTASK_RESULT_NOT_FOUND") == 0, "result name");

    qtask_client *client = open_sqlite(dir, cycle_only ? "cycle.db" : "main.db");
    if (!client) return 1;
    RUN(test_cycle(client));
    if (!cycle_only) {
        RUN(test_log_callback(dir));
        RUN(test_delay(client));
        RUN(test_order_no(client));
        RUN(test_deferred(client));
        RUN(test_fail(client));
        RUN(test_admin(client));
        RUN(test_priority_and_limits(client));
        RUN(test_schedules(client));
        RUN(test_threads(client));
        RUN(test_cancel(client));
        RUN(test_bad_input(client, dir));
        RUN(test_worker_drain(client));
        RUN(test_worker_callbacks_side_by_side(client));
        RUN(test_worker_failure(client));
        RUN(test_worker_outcomes(client));
        RUN(test_worker_time_limit(client));
        RUN(test_worker_time_limit_counts_from_the_call(client));
        RUN(test_worker_stale_outcome(client));
        RUN(test_worker_stop_from_thread(client));
        RUN(test_worker_stop_from_signal(client));
        RUN(test_worker_pull(client));
        RUN(test_worker_take(client));
        RUN(test_worker_complete_take(client));
        RUN(test_worker_kinds(client));
    }
    qtask_close(client);
    printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
