/*
 * bench_token.c: what a company token costs the edge. One line per
 * figure, "name value":
 *
 *   verify_es256_first_us   the first ES256 verification in the process
 *                           (OpenSSL fetches its algorithms then)
 *   verify_es256_cold_us    an ES256 token the edge has not seen: what a
 *                           cache miss costs a worker, best of rounds
 *   verify_hs256_cold_us    the same for HS256
 *   cache_hit_ns            a hit in a worker's cache: the token's hash
 *                           (pg_token_cache_hash) and the compare with the
 *                           entry, as ngx_http_portal_gate_token.c does
 *   token_es256_bytes       the size of the token measured
 *
 *   build/bench-token                  the figures
 *   build/bench-token keygen hs256|es256 KID
 *                                      a new key, a JWK with its private part
 *   build/bench-token mint JWKS KID N [TTL [FIRST]]
 *                                      N tokens, one a line, for companies
 *                                      FIRST, FIRST + 1, ... (default 1),
 *                                      valid for TTL s (default 3600)
 *
 *   cc -O2 -Iinclude include/pg_*.c bench/bench_token.c -ljansson -lm \
 *      -lcrypto -o build/bench-token
 */

#include <stdint.h>         /* uint32_t */
#include <stdio.h>          /* printf, snprintf, fprintf */
#include <stdlib.h>         /* atol, exit, free */
#include <string.h>         /* strlen, memcmp */
#include <time.h>           /* clock_gettime, time */
#include "pg_token.h"       /* the API measured */


#define BENCH_ROUNDS     5          /* the best round counts */
#define BENCH_VERIFIES   400        /* ES256 verifications per round */
#define BENCH_HITS       2000000    /* cache hits per round */

#define BENCH_JWKS  "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"" \
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hc" \
    "gUuTwjAzZr1Z9CAow\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"es\"," \
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9" \
    "m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\",\"d\":\"jpsQnnGQmL-YBIffH1136csp" \
    "YG6-0iY7X1fCE9-E9LI\"}]}"


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
    fprintf(stderr, "bench-token: %s: %s\n", what, why);
    exit(1);
}


/* N tokens of key kid for companies first, first + 1, ..., valid for ttl
 * seconds. */
static int
bench_mint(const char *path, const char *kid, long n, long ttl, long first)
{
    long              i;
    char              company[32], *tok;
    pg_error_t        err;
    pg_token_keys_t  *keys;

    if (pg_token_keys_load(path, PG_TOKEN_KEYS_SIGN, &keys, &err) != PG_OK) {
        bench_die(path, err.text);
    }

    for (i = 0; i < n; i++) {
        snprintf(company, sizeof(company), "%ld", first + i);

        if (pg_token_issue(keys, kid, NULL, company, time(NULL), ttl, &tok,
                           &err) != PG_OK)
        {
            bench_die("mint", err.text);
        }

        printf("%s\n", tok);
        free(tok);
    }

    pg_token_keys_free(keys);

    return 0;
}


/* Microseconds per verification of tok, best of BENCH_ROUNDS rounds. */
static double
bench_verify(pg_token_keys_t *keys, const char *tok, int n)
{
    int                i, r;
    double             t0, t, best;
    size_t             len;
    pg_error_t         err;
    pg_token_result_t  res;

    len = strlen(tok);
    best = 1e9;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        t0 = bench_now();

        for (i = 0; i < n; i++) {
            if (pg_token_verify(keys, tok, len, NULL, time(NULL), 0, &res,
                                &err) != PG_OK)
            {
                bench_die("verify", err.text);
            }

            bench_sink += res.company_len;
        }

        t = bench_now() - t0;
        best = t < best ? t : best;
    }

    return best * 1e6 / n;
}


int
main(int argc, char **argv)
{
    int                i, r;
    char              *es, *hs, copy[PG_TOKEN_MAX];
    long               sum;
    double             t0, t, best, first;
    json_t            *jwk;
    size_t             len;
    uint32_t           hash;
    pg_error_t         err;
    pg_token_keys_t   *keys;
    pg_token_result_t  res;

    if (argc >= 5 && strcmp(argv[1], "mint") == 0) {
        return bench_mint(argv[2], argv[3], atol(argv[4]),
                          argc > 5 ? atol(argv[5]) : 3600,
                          argc > 6 ? atol(argv[6]) : 1);
    }

    if (argc == 4 && strcmp(argv[1], "keygen") == 0) {
        jwk = pg_token_jwk_new(strcmp(argv[2], "es256") == 0
                               ? PG_TOKEN_ES256 : PG_TOKEN_HS256,
                               argv[3], &err);
        if (jwk == NULL) {
            bench_die("keygen", err.text);
        }

        es = json_dumps(jwk, JSON_COMPACT);
        printf("%s\n", es);
        free(es);
        json_decref(jwk);

        return 0;
    }

    if (pg_token_keys_parse(BENCH_JWKS, strlen(BENCH_JWKS),
                            PG_TOKEN_KEYS_SIGN, &keys, &err) != PG_OK)
    {
        bench_die("keys", err.text);
    }

    if (pg_token_issue(keys, "es", NULL, "1001", time(NULL), 3600, &es, &err)
        != PG_OK
        || pg_token_issue(keys, "hs", NULL, "1001", time(NULL), 3600, &hs,
                          &err) != PG_OK)
    {
        bench_die("issue", err.text);
    }

    len = strlen(es);

    t0 = bench_now();

    if (pg_token_verify(keys, es, len, NULL, time(NULL), 0, &res, &err)
        != PG_OK)
    {
        bench_die("verify", err.text);
    }

    first = (bench_now() - t0) * 1e6;

    printf("verify_es256_first_us %.1f\n", first);
    printf("verify_es256_cold_us %.1f\n",
           bench_verify(keys, es, BENCH_VERIFIES));
    printf("verify_hs256_cold_us %.2f\n",
           bench_verify(keys, hs, 10 * BENCH_VERIFIES));

    /* a hit: hash the request's token, compare it with the entry's copy
     * (another buffer, as the entry is) */
    memcpy(copy, es, len);
    best = 1e9;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        sum = 0;
        t0 = bench_now();

        for (i = 0; i < BENCH_HITS; i++) {
            hash = pg_token_cache_hash(es, len, (uint32_t) i & 7);
            sum += hash + (memcmp(copy, es, len) == 0);
        }

        t = bench_now() - t0;
        best = t < best ? t : best;
        bench_sink += sum;
    }

    printf("cache_hit_ns %.1f\n", best * 1e9 / BENCH_HITS);
    printf("token_es256_bytes %zu\n", len);

    free(es);
    free(hs);
    pg_token_keys_free(keys);

    return 0;
}
