/* The C worker beside the others (bench/c/run.sh builds and runs it): the idle RSS of
 * a worker of 8 on an empty queue, then the drain rate of a worker of CONCURRENCY on
 * N queued no-op tasks, timed like bench/run.sh's drain rows (first callback to the
 * N-th). One JSON line per figure. A program, not a test: nothing asserts a speed.
 *
 *   worker_bench DB_URL QUEUE_URL TABLE_PREFIX N CONCURRENCY [pull]
 *
 * With `pull` the drain uses the pull mode instead of a callback: one thread takes
 * batches (qtask_worker_take), runs the no-op on each and completes them in one call.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "qtask.h"

static void check(qtask_result rc, const char *what) {
    if (rc != QTASK_RESULT_OK) {
        fprintf(stderr, "worker_bench: %s: %d %s\n", what, (int)rc, qtask_last_error());
        exit(1);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time (user + system) of this process so far, in seconds. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double rss_mb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    size_t len = strlen(field);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, field, len) == 0) {
            kb = atof(line + len);
        }
    }
    if (f) {
        fclose(f);
    }
    return kb / 1024.0;
}

/* Profiles only the drain: with QTASK_BENCH_PERF_CTL naming the control fifo of
 * `perf record --control fifo:PATH -D -1`, writes "enable" as the drain starts and
 * "disable" as it ends (as qtask-bench does). */
static void perf_control(const char *command) {
    const char *path = getenv("QTASK_BENCH_PERF_CTL");
    FILE *fifo = path ? fopen(path, "w") : NULL;
    if (fifo) {
        fprintf(fifo, "%s\n", command);
        fclose(fifo);
    }
}

struct drain {
    qtask_worker *worker;
    long target;
    atomic_long calls;
    double first, nth;
};

static int32_t on_task(const char *message_json, qtask_outcome *outcome, void *user_data) {
    (void)message_json;
    (void)outcome;
    struct drain *d = user_data;
    double t = now_s();
    long n = atomic_fetch_add(&d->calls, 1) + 1;
    if (n == 1) {
        d->first = t;
    }
    if (n == d->target) {
        d->nth = t;
        qtask_worker_stop(d->worker);
    }
    return QTASK_OUTCOME_CODE_FINISH;
}

/* The pull mode's loop: take, handle, complete, until the run has returned. */
static void pull_loop(struct drain *d, unsigned concurrency) {
    qtask_taken_task *tasks = calloc(concurrency, sizeof *tasks);
    qtask_completion *done = calloc(concurrency, sizeof *done);
    size_t count;
    while (qtask_worker_take(d->worker, tasks, concurrency, 1.0, &count) == QTASK_RESULT_OK) {
        for (size_t k = 0; k < count; k++) {
            on_task(tasks[k].message_json, NULL, d);
            done[k] = (qtask_completion){.token = tasks[k].token, .code = QTASK_OUTCOME_CODE_FINISH};
        }
        qtask_worker_complete(d->worker, done, count);
    }
    free(tasks);
    free(done);
}

static void *run_worker(void *p) {
    struct drain *d = p;
    check(qtask_worker_run(d->worker, NULL), "worker run");
    return NULL;
}

struct run_arg {
    qtask_worker *worker;
    qtask_result rc;
    qtask_worker_report report;
};

static void *run_worker_report(void *p) {
    struct run_arg *run = p;
    run->rc = qtask_worker_run(run->worker, &run->report);
    return NULL;
}

struct producer {
    qtask_client *client;
    const char *queue;
    long from, to;
};

static void *produce(void *p) {
    struct producer *pr = p;
    char input[64];
    for (long i = pr->from; i < pr->to; i++) {
        snprintf(input, sizeof input, "{\"i\": %ld}", i);
        check(qtask_create(pr->client, "bench", input, 300, pr->queue, NULL, NULL), "create");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6 && !(argc == 7 && strcmp(argv[6], "pull") == 0)) {
        fprintf(stderr, "usage: worker_bench DB_URL QUEUE_URL TABLE_PREFIX N CONCURRENCY [pull]\n");
        return 2;
    }
    const char *db = argv[1], *queue_url = argv[2], *prefix = argv[3];
    long n = atol(argv[4]);
    unsigned concurrency = (unsigned)atoi(argv[5]);
    printf("{\"row\": \"rss_start\", \"value\": %.1f}\n", rss_mb("VmRSS:"));

    char config[1024];
    snprintf(config, sizeof config,
             "{\"db\": \"%s\", \"queue\": \"%s\", \"table_prefix\": \"%s\", \"redis_prefix\": \"qtask-bench-%s\", "
             "\"max_connections\": %u}",
             db, queue_url, prefix, prefix, concurrency + 8);
    qtask_client *client;
    check(qtask_open(config, &client), "open");
    check(qtask_install(client), "install");

    /* Idle: a worker of 8 on an empty queue, before anything else grew the heap. */
    struct drain idle = {.target = -1};
    check(qtask_worker_new(client, "idle", 8, on_task, &idle, &idle.worker), "worker");
    pthread_t thread;
    pthread_create(&thread, NULL, run_worker, &idle);
    struct timespec second = {1, 0};
    nanosleep(&second, NULL);
    printf("{\"row\": \"rss_idle\", \"value\": %.1f}\n", rss_mb("VmRSS:"));
    fflush(stdout);
    qtask_worker_stop(idle.worker);
    pthread_join(thread, NULL);
    qtask_worker_free(idle.worker);

    char queue[32];
    snprintf(queue, sizeof queue, "drain%u", concurrency);
    enum { PRODUCERS = 8 };
    pthread_t producers[PRODUCERS];
    struct producer parts[PRODUCERS];
    for (int k = 0; k < PRODUCERS; k++) {
        parts[k] = (struct producer){client, queue, n * k / PRODUCERS, n * (k + 1) / PRODUCERS};
        pthread_create(&producers[k], NULL, produce, &parts[k]);
    }
    for (int k = 0; k < PRODUCERS; k++) {
        pthread_join(producers[k], NULL);
    }

    struct drain d = {.target = n};
    int pull = argc == 7;
    if (pull) {
        check(qtask_worker_new_pull(client, queue, concurrency, &d.worker), "worker");
    } else {
        check(qtask_worker_new(client, queue, concurrency, on_task, &d, &d.worker), "worker");
    }
    qtask_worker_report report;
    perf_control("enable");
    double cpu = cpu_s();
    if (pull) {
        struct run_arg run = {d.worker, QTASK_RESULT_INTERNAL, {0}};
        pthread_create(&thread, NULL, run_worker_report, &run);
        pull_loop(&d, concurrency);
        pthread_join(thread, NULL);
        check(run.rc, "worker run");
        report = run.report;
    } else {
        check(qtask_worker_run(d.worker, &report), "worker run");
    }
    cpu = cpu_s() - cpu;
    perf_control("disable");
    qtask_worker_free(d.worker);
    if (report.finished != (uint64_t)n) {
        fprintf(stderr, "worker_bench: %llu of %ld finished\n", (unsigned long long)report.finished, n);
        return 1;
    }
    printf("{\"row\": \"drain_c%u\", \"value\": %.0f}\n", concurrency, (double)n / (d.nth - d.first));
    printf("{\"row\": \"drain_c%u_cpu_us\", \"value\": %.1f}\n", concurrency, cpu * 1e6 / (double)n);
    printf("{\"row\": \"rss_busy\", \"value\": %.1f}\n", rss_mb("VmHWM:"));
    qtask_close(client);
    return 0;
}
