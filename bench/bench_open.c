/*
 * bench_open.c: what pg_snap_open() costs now that it checks the whole
 * blob, next to what a worker already pays when the generation moves (the
 * memcpy out of the zone, into a warm buffer and into a new one) and to
 * compiling the same snapshot. One line
 * per figure, "name value"; the best of BENCH_ROUNDS rounds.
 *
 *   cc -O2 -Iinclude include/pg_*.c bench/bench_open.c -ljansson -lm \
 *      -o build/bench-open
 */

#include <stdio.h>          /* printf, snprintf, fprintf */
#include <stdlib.h>         /* malloc, realloc, free, exit */
#include <string.h>         /* memcpy, strlen */
#include <time.h>           /* clock_gettime */
#include "portal_gate.h"    /* the API measured */


#define BENCH_IDS       100000      /* companies in the one allow list */
#define BENCH_ROUNDS    20


/* Read by nobody, written by every loop: the loops cannot vanish. */
static volatile long  bench_sink;


static double
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
bench_die(const char *what, const char *why)
{
    fprintf(stderr, "bench-open: %s: %s\n", what, why);
    exit(1);
}


int
main(void)
{
    int             i, r;
    char           *json;
    size_t          len, size;
    double          t0, t, best_copy, best_fresh, best_open, best_compile;
    pg_snap_t       snap;
    pg_error_t      err;
    unsigned char  *blob, *copy, *again, *fresh;

    /* one flag that allows 100,000 companies, as bench_eval's "big" */
    json = malloc(64 + (size_t) BENCH_IDS * 10);

    if (json == NULL) {
        bench_die("malloc", "out of memory");
    }

    len = (size_t) sprintf(json, "{\"revision\":1,\"environments\":"
                           "{\"production\":{\"big\":{\"rollout\":10,"
                           "\"allow\":[");

    for (i = 0; i < BENCH_IDS; i++) {
        len += (size_t) sprintf(json + len, "%s\"c%05d\"", i ? "," : "", i);
    }

    len += (size_t) sprintf(json + len, "]}}}}");

    if (pg_snap_compile(json, len, &blob, &size, &err) != PG_OK) {
        bench_die("compile", err.text);
    }

    copy = malloc(size);

    if (copy == NULL) {
        bench_die("malloc", "out of memory");
    }

    best_copy = 1e9;
    best_fresh = 1e9;
    best_open = 1e9;
    best_compile = 1e9;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        t0 = bench_now();
        memcpy(copy, blob, size);
        t = bench_now() - t0;
        best_copy = t < best_copy ? t : best_copy;
        bench_sink += copy[size / 2];

        /* as a worker does it: a new buffer each generation */
        t0 = bench_now();
        fresh = malloc(size);

        if (fresh == NULL) {
            bench_die("malloc", "out of memory");
        }

        memcpy(fresh, blob, size);
        t = bench_now() - t0;
        best_fresh = t < best_fresh ? t : best_fresh;
        bench_sink += fresh[size / 3];
        free(fresh);

        t0 = bench_now();

        if (pg_snap_open(&snap, copy, size, &err) != PG_OK) {
            bench_die("open", err.text);
        }

        t = bench_now() - t0;
        best_open = t < best_open ? t : best_open;
        bench_sink += (long) pg_snap_env_count(&snap);

        if (r < 5) {
            t0 = bench_now();

            if (pg_snap_compile(json, len, &again, &size, &err) != PG_OK) {
                bench_die("compile", err.text);
            }

            t = bench_now() - t0;
            best_compile = t < best_compile ? t : best_compile;
            free(again);
        }
    }

    printf("blob_100k_bytes %zu\n", size);
    printf("copy_100k_ms %.3f\n", best_copy * 1e3);
    printf("alloc_copy_100k_ms %.3f\n", best_fresh * 1e3);
    printf("open_100k_ms %.3f\n", best_open * 1e3);
    printf("compile_100k_ms %.2f\n", best_compile * 1e3);
    printf("open_over_copy %.1f\n", best_open / best_copy);
    printf("open_over_alloc_copy %.1f\n", best_open / best_fresh);
    printf("open_over_compile %.3f\n", best_open / best_compile);

    free(copy);
    free(blob);
    free(json);

    return 0;
}
