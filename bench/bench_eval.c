/*
 * bench_eval.c: how fast the shared core evaluates, compiles and
 * serialises. One line per figure, "name value".
 *
 *   cc -O2 -Iinclude include/pg_*.c bench/bench_eval.c -ljansson -lm \
 *      -o build/bench-eval
 */

#include <stdint.h>         /* uint64_t */
#include <stdio.h>          /* printf, snprintf, fprintf */
#include <stdlib.h>         /* realloc, free, exit */
#include <string.h>         /* strlen, memcpy */
#include <time.h>           /* clock_gettime */
#include "portal_gate.h"    /* the API measured */


#define BENCH_EVALS     2000000     /* evaluations per timed round */
#define BENCH_IDS       1024        /* companies cycled through */
#define BENCH_ALLOW     10000       /* the big flag's allow list */
#define BENCH_BIG       100000      /* the single-flag snapshot */
#define BENCH_ROUNDS    5           /* timed rounds; the best one counts,
                                       the others absorb noise */


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
    fprintf(stderr, "bench-eval: %s: %s\n", what, why);
    exit(1);
}


/* ns per pg_eval of flag for the companies ids[0..BENCH_IDS): the best of
 * BENCH_ROUNDS rounds of BENCH_EVALS calls. */
static double
bench_eval(const pg_snap_t *snap, const char *flag, char ids[][24],
    int expect_on)
{
    int          r;
    long         i, sum, on;
    size_t       flag_len, lens[BENCH_IDS];
    double       t0, t, best;
    pg_result_t  res;

    flag_len = strlen(flag);

    for (i = 0; i < BENCH_IDS; i++) {
        lens[i] = strlen(ids[i]);
    }

    /* warm up and check that the path measured is the one meant */
    on = 0;

    for (i = 0; i < BENCH_IDS; i++) {
        pg_eval(snap, "production", 10, flag, flag_len, ids[i], lens[i],
                &res);
        on += res.on;
    }

    if (expect_on >= 0 && on != (expect_on ? BENCH_IDS : 0)) {
        fprintf(stderr, "bench-eval: %s: %ld of %d on, expected %s\n",
                flag, on, BENCH_IDS, expect_on ? "all" : "none");
    }

    best = 1e9;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        sum = 0;
        t0 = bench_now();

        for (i = 0; i < BENCH_EVALS; i++) {
            pg_eval(snap, "production", 10, flag, flag_len,
                    ids[i & (BENCH_IDS - 1)], lens[i & (BENCH_IDS - 1)],
                    &res);
            sum += res.on + res.bucket + res.reason;
        }

        t = bench_now() - t0;
        best = t < best ? t : best;
        bench_sink += sum;
    }

    return best * 1e9 / BENCH_EVALS;
}


/* A growing text buffer for the JSON documents. */
static char *
bench_append(char *buf, size_t *len, size_t *cap, const char *s)
{
    size_t  n;

    n = strlen(s);

    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        buf = realloc(buf, *cap);

        if (buf == NULL) {
            bench_die("realloc", "out of memory");
        }
    }

    memcpy(buf + *len, s, n + 1);
    *len += n;

    return buf;
}


int
main(void)
{
    int             i, r;
    char            tmp[128], *json, *text;
    size_t          len, cap, size;
    double          t0, best_compile, best_json, best_dump, t;
    json_t         *root;
    pg_snap_t       snap;
    pg_error_t      err;
    unsigned char  *blob;

    static char  in_allow[BENCH_IDS][24], not_in[BENCH_IDS][24];

    /* 20 flags in production; "portal" allows 10,000 companies */
    json = NULL;
    len = 0;
    cap = 0;
    json = bench_append(json, &len, &cap, "{\"revision\":1,\"environments\":"
                        "{\"production\":{\"portal\":{\"rollout\":25,"
                        "\"deny\":[\"blocked\"],\"allow\":[");

    for (i = 0; i < BENCH_ALLOW; i++) {
        snprintf(tmp, sizeof(tmp), "%s\"company-%d\"", i ? "," : "",
                 i * 7 + 1000);
        json = bench_append(json, &len, &cap, tmp);
    }

    json = bench_append(json, &len, &cap, "]},"
        "\"chain_a\":{\"requires\":\"chain_b\",\"rollout\":100,"
        "\"deny\":[\"x1\",\"x2\"]},"
        "\"chain_b\":{\"requires\":\"portal\",\"rollout\":100,"
        "\"allow\":[\"y1\"],\"deny\":[\"y2\"]}");

    for (i = 0; i < 17; i++) {
        snprintf(tmp, sizeof(tmp), ",\"flag_%02d\":{\"rollout\":%d,"
                 "\"allow\":[\"a%d\",\"b%d\"]}", i, i * 5, i, i);
        json = bench_append(json, &len, &cap, tmp);
    }

    json = bench_append(json, &len, &cap, "}}}");

    if (pg_snap_compile(json, len, &blob, &size, &err) != PG_OK) {
        bench_die("compile", err.text);
    }

    free(json);

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        bench_die("open", err.text);
    }

    for (i = 0; i < BENCH_IDS; i++) {
        snprintf(in_allow[i], sizeof(in_allow[i]), "company-%d",
                 (i * 9 % BENCH_ALLOW) * 7 + 1000);
        snprintf(not_in[i], sizeof(not_in[i]), "other-%d", i);
    }

    printf("snapshot_20_flags_bytes %zu\n", size);
    printf("eval_allow_10k_ns %.1f\n", bench_eval(&snap, "portal", in_allow,
                                                  1));
    printf("eval_rollout_10k_ns %.1f\n", bench_eval(&snap, "portal", not_in,
                                                    -1));
    printf("eval_requires_chain_ns %.1f\n", bench_eval(&snap, "chain_a",
                                                       in_allow, 1));
    printf("eval_unknown_flag_ns %.1f\n", bench_eval(&snap, "nope", not_in,
                                                     0));
    free(blob);

    /* one flag, 100,000 allowed companies */
    json = NULL;
    len = 0;
    cap = 0;
    json = bench_append(json, &len, &cap, "{\"revision\":1,\"environments\":"
                        "{\"production\":{\"big\":{\"rollout\":10,"
                        "\"allow\":[");

    for (i = 0; i < BENCH_BIG; i++) {
        snprintf(tmp, sizeof(tmp), "%s\"c%05d\"", i ? "," : "", i);
        json = bench_append(json, &len, &cap, tmp);
    }

    json = bench_append(json, &len, &cap, "]}}}}");

    best_compile = 1e9;
    best_json = 1e9;
    best_dump = 1e9;
    blob = NULL;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        free(blob);

        t0 = bench_now();

        if (pg_snap_compile(json, len, &blob, &size, &err) != PG_OK) {
            bench_die("compile 100k", err.text);
        }

        t = bench_now() - t0;
        best_compile = t < best_compile ? t : best_compile;
    }

    free(json);

    if (pg_snap_open(&snap, blob, size, &err) != PG_OK) {
        bench_die("open 100k", err.text);
    }

    for (r = 0; r < BENCH_ROUNDS; r++) {
        t0 = bench_now();
        root = pg_snap_to_json(&snap);

        if (root == NULL) {
            bench_die("pg_snap_to_json", "out of memory");
        }

        t = bench_now() - t0;
        best_json = t < best_json ? t : best_json;

        text = json_dumps(root, JSON_COMPACT);

        if (text == NULL) {
            bench_die("json_dumps", "out of memory");
        }

        t = bench_now() - t0;
        best_dump = t < best_dump ? t : best_dump;

        bench_sink += (long) strlen(text);
        free(text);
        json_decref(root);
    }

    printf("compile_100k_ms %.2f\n", best_compile * 1e3);
    printf("blob_100k_bytes %zu\n", size);
    printf("to_json_100k_ms %.2f\n", best_json * 1e3);
    printf("to_json_dumps_100k_ms %.2f\n", best_dump * 1e3);

    free(blob);

    return 0;
}
