/*
 * test_core.c: unit tests of the shared core (hash, names, snapshot
 * compile and JSON, evaluation, patches). Prints TAP; exits 1 if any test
 * failed.
 *
 *   cc -std=gnu99 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *      -fno-sanitize-recover=all -g -O1 -Iinclude include/pg_*.c \
 *      t/unit/test_core.c -ljansson -lm -o build/test-core
 */

#include <stdarg.h>         /* va_list */
#include <stdint.h>         /* uint32_t */
#include <stdio.h>          /* printf, snprintf */
#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* strlen, strstr, memcmp, memset */
#include "portal_gate.h"    /* the API under test */
#include "pg_blob.h"        /* the blob layout, to read a flag's bp */
#include "tap.h"          /* t_ok, t_diag, t_count, t_failed */


/* --- helpers ---------------------------------------------------------- */

/* A compiled snapshot and its view, freed with t_snap_free(). */
typedef struct {
    unsigned char  *blob;
    size_t          size;
    pg_snap_t       snap;
} t_snap_t;


static int
t_compile(const char *json, t_snap_t *s)
{
    pg_error_t  err;

    memset(s, 0, sizeof(t_snap_t));

    if (pg_snap_compile(json, strlen(json), &s->blob, &s->size, &err)
        != PG_OK)
    {
        t_diag("compile failed: %s", err.text);
        return 0;
    }

    if (pg_snap_open(&s->snap, s->blob, s->size, &err) != PG_OK) {
        t_diag("open failed: %s", err.text);
        free(s->blob);
        s->blob = NULL;
        return 0;
    }

    return 1;
}


static void
t_snap_free(t_snap_t *s)
{
    free(s->blob);
    s->blob = NULL;
}


/* {"revision":1,"environments":{"production":{FLAGS}}} in a static buffer */
static const char *
t_prod(const char *flags)
{
    static char  buf[65536];

    snprintf(buf, sizeof(buf),
             "{\"revision\":1,\"environments\":{\"production\":{%s}}}", flags);
    return buf;
}


/* Compiling json fails and the message contains expect. */
static void
t_refuses(const char *json, const char *expect, const char *desc)
{
    int             rc;
    size_t          size;
    pg_error_t      err;
    unsigned char  *blob;

    memset(&err, 0, sizeof(err));
    blob = NULL;
    rc = pg_snap_compile(json, strlen(json), &blob, &size, &err);

    if (!t_ok(rc == PG_ERR && strstr(err.text, expect) != NULL, "%s", desc)) {
        t_diag("rc %d, message: %s", rc, rc == PG_OK ? "(none)" : err.text);
        t_diag("expected a message containing: %s", expect);
    }

    if (rc == PG_OK) {
        free(blob);
    }
}


/* Compiling json fails with exactly this message. */
static void
t_refuses_exactly(const char *json, const char *expect, const char *desc)
{
    int             rc;
    size_t          size;
    pg_error_t      err;
    unsigned char  *blob;

    memset(&err, 0, sizeof(err));
    blob = NULL;
    rc = pg_snap_compile(json, strlen(json), &blob, &size, &err);

    if (!t_ok(rc == PG_ERR && strcmp(err.text, expect) == 0, "%s", desc)) {
        t_diag("rc %d, message: %s", rc, rc == PG_OK ? "(none)" : err.text);
        t_diag("expected: %s", expect);
    }

    if (rc == PG_OK) {
        free(blob);
    }
}


static pg_result_t
t_eval(const t_snap_t *s, const char *env, const char *flag,
    const char *company)
{
    pg_result_t  res;

    pg_eval(&s->snap, env, env ? strlen(env) : 0, flag,
            flag ? strlen(flag) : 0, company,
            company ? strlen(company) : 0, &res);
    return res;
}


/* The result is (on, reason, bucket); bucket -2 means "do not check". */
static void
t_expect(pg_result_t res, int on, pg_reason_t reason, int bucket,
    const char *desc)
{
    if (!t_ok(res.on == on && res.reason == reason
              && (bucket == -2 || res.bucket == bucket), "%s", desc))
    {
        t_diag("got %s/%s bucket %d, expected %s/%s bucket %d",
               res.on ? "on" : "off", pg_reason_name(res.reason), res.bucket,
               on ? "on" : "off", pg_reason_name(reason), bucket);
    }
}


/* The basis points of flag i of environment e, read from the blob. */
static uint32_t
t_flag_bp(const t_snap_t *s, size_t e, size_t i)
{
    const pg_blob_hdr_t   *hdr;
    const pg_blob_env_t   *env;
    const pg_blob_flag_t  *flags;

    hdr = (const pg_blob_hdr_t *) (const void *) s->blob;
    env = (const pg_blob_env_t *) (const void *) (s->blob + hdr->envs) + e;
    flags = (const pg_blob_flag_t *) (const void *) (s->blob + env->flags);

    return flags[i].bp;
}


/* A second, byte-by-byte MurmurHash3 x86_32 to check the first against. */
static uint32_t
t_murmur_ref(const unsigned char *data, size_t len, uint32_t seed)
{
    size_t    i;
    uint32_t  h, k;

    h = seed;

    for (i = 0; i + 4 <= len; i += 4) {
        k = (uint32_t) data[i] | (uint32_t) data[i + 1] << 8
            | (uint32_t) data[i + 2] << 16 | (uint32_t) data[i + 3] << 24;
        k *= 0xcc9e2d51;
        k = (k << 15) | (k >> 17);
        k *= 0x1b873593;
        h ^= k;
        h = (h << 13) | (h >> 19);
        h = h * 5 + 0xe6546b64;
    }

    k = 0;

    for (; i < len; i++) {
        k |= (uint32_t) data[i] << (8 * (i & 3));
    }

    if (len & 3) {
        k *= 0xcc9e2d51;
        k = (k << 15) | (k >> 17);
        k *= 0x1b873593;
        h ^= k;
    }

    h ^= (uint32_t) len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;

    return h;
}


/* --- hash and names --------------------------------------------------- */

static void
test_hash(void)
{
    int            i, bad;
    size_t         len, off;
    uint32_t       got, want;
    unsigned char  buf[80];

    static const struct {
        const char  *s;
        size_t       len;
        uint32_t     seed;
        uint32_t     hash;
    } known[] = {
        /* published test vectors of MurmurHash3_x86_32 */
        { "", 0, 1, 0x514e28b7 },
        { "", 0, 0xffffffff, 0x81f16f39 },
        { "\0\0\0\0", 4, 0, 0x2362f9de },
        { "a", 1, 0x9747b28c, 0x7fa09ea6 },
        { "ab", 2, 0x9747b28c, 0x74875592 },
        { "abc", 3, 0x9747b28c, 0xc84a62dd },
        { "abcd", 4, 0x9747b28c, 0xf0478627 },
        { "aaaa", 4, 0x9747b28c, 0x5a97808a },
        { "Hello, world!", 13, 0x9747b28c, 0x24884cba },
        { "The quick brown fox jumps over the lazy dog", 43, 0x9747b28c,
          0x2fa826cd },
    };

    t_ok(pg_murmur3_32("a", 1, 0) == 0x3c2569b2,
         "murmur3_x86_32(\"a\") is 0x3c2569b2");
    t_ok(pg_murmur3_32("abc", 3, 0) == 0xb3dd93fa,
         "murmur3_x86_32(\"abc\") is 0xb3dd93fa");
    t_ok(pg_murmur3_32("customer_portal:42", 18, 0) == 0xd4353805,
         "murmur3_x86_32(\"customer_portal:42\") is 0xd4353805");
    t_ok(pg_bucket("customer_portal", 15, "42", 2) == 7541,
         "bucket(\"customer_portal\", \"42\") is 7541");
    t_ok(pg_murmur3_32("", 0, 0) == 0,
         "murmur3_x86_32 of the empty string with seed 0 is 0");

    bad = 0;

    for (i = 0; i < (int) (sizeof(known) / sizeof(known[0])); i++) {
        got = pg_murmur3_32(known[i].s, known[i].len, known[i].seed);

        if (got != known[i].hash) {
            t_diag("\"%s\" seed 0x%08x: got 0x%08x, expected 0x%08x",
                   known[i].s, known[i].seed, got, known[i].hash);
            bad++;
        }
    }

    t_ok(bad == 0, "murmur3_x86_32 gives the published test vectors");

    /* tails of 1, 2 and 3 bytes against the byte-wise implementation */
    bad = 0;

    for (len = 1; len <= 3; len++) {
        got = pg_murmur3_32("abcd", len, 0);
        want = t_murmur_ref((const unsigned char *) "abcd", len, 0);

        if (got != want) {
            t_diag("tail %zu: got 0x%08x, expected 0x%08x", len, got, want);
            bad++;
        }
    }

    t_ok(bad == 0 && pg_murmur3_32("ab", 2, 0)
                     == t_murmur_ref((const unsigned char *) "ab", 2, 0)
         && pg_murmur3_32("abcd", 4, 0)
            == t_murmur_ref((const unsigned char *) "abcd", 4, 0),
         "tail lengths 1, 2 and 3 (\"a\", \"ab\", \"abc\", \"abcd\") match "
         "a byte-wise implementation");

    /* every length 0..64 at every alignment, several seeds */
    for (i = 0; i < (int) sizeof(buf); i++) {
        buf[i] = (unsigned char) (i * 37 + 11);
    }

    bad = 0;

    for (off = 0; off < 4; off++) {
        for (len = 0; len <= 64; len++) {
            for (i = 0; i < 3; i++) {
                want = t_murmur_ref(buf + off, len, (uint32_t) i * 0x9e3779b9);
                got = pg_murmur3_32(buf + off, len, (uint32_t) i * 0x9e3779b9);
                bad += got != want;
            }
        }
    }

    t_ok(bad == 0, "murmur3_x86_32 matches a byte-wise implementation for "
         "lengths 0..64 at unaligned addresses");

    t_ok(pg_bucket("s", 1, "", 0)
         == (int) (pg_murmur3_32("s:", 2, 0) % 10000)
         && pg_bucket("x", 1,
                      "12345678901234567890123456789012345678901234567890"
                      "123456789012345", 65) == -1,
         "bucket hashes salt \":\" company and refuses a 65-byte id");
}


static void
test_names(void)
{
    char  long65[66];

    memset(long65, 'a', 65);
    long65[65] = '\0';

    t_ok(pg_valid_name("customer_portal", 15) && pg_valid_name("a", 1)
         && pg_valid_name("0_9", 3) && pg_valid_name(long65, 64),
         "valid names are accepted");
    t_ok(!pg_valid_name("", 0) && !pg_valid_name("Customer", 8)
         && !pg_valid_name("a-b", 3) && !pg_valid_name(long65, 65)
         && !pg_valid_name("a b", 3) && !pg_valid_name(NULL, 0),
         "invalid names are refused");
    t_ok(pg_valid_company("Acme-1.eu_2", 11) && pg_valid_company("42", 2)
         && pg_valid_company(long65, 64),
         "valid company ids are accepted");
    t_ok(!pg_valid_company("", 0) && !pg_valid_company(long65, 65)
         && !pg_valid_company("a b", 3) && !pg_valid_company("\xc3\xa9", 2)
         && !pg_valid_company("a/b", 3) && !pg_valid_company(NULL, 0),
         "invalid company ids are refused");
    t_ok(strcmp(pg_reason_name(PG_REASON_UNKNOWN), "unknown") == 0
         && strcmp(pg_reason_name(PG_REASON_KILLED), "killed") == 0
         && strcmp(pg_reason_name(PG_REASON_REQUIRES), "requires") == 0
         && strcmp(pg_reason_name(PG_REASON_NO_COMPANY), "no_company") == 0
         && strcmp(pg_reason_name(PG_REASON_DENIED), "denied") == 0
         && strcmp(pg_reason_name(PG_REASON_ALLOWED), "allowed") == 0
         && strcmp(pg_reason_name(PG_REASON_ROLLOUT), "rollout") == 0
         && strcmp(pg_reason_name((pg_reason_t) 99), "unknown") == 0,
         "every reason has its name");
}


/* --- evaluation ------------------------------------------------------- */

static const char  *t_table_json =
    "{\"revision\": 42, \"environments\": {"
    " \"production\": {"
    "  \"customer_portal\": {\"enabled\": true, \"rollout\": 12.5,"
    "                        \"allow\": [\"12\", \"57\"], \"deny\": [\"99\"]},"
    "  \"customer_portal_calls\": {\"enabled\": true,"
    "                        \"requires\": \"customer_portal\","
    "                        \"rollout\": 0, \"allow\": [\"12\"]},"
    "  \"killed\": {\"enabled\": false, \"rollout\": 100, \"allow\": [\"12\"]},"
    "  \"full\": {\"rollout\": 100},"
    "  \"half\": {\"rollout\": 50},"
    "  \"both\": {\"allow\": [\"7\"], \"deny\": [\"7\"]},"
    "  \"chain_a\": {\"requires\": \"chain_b\", \"rollout\": 100},"
    "  \"chain_b\": {\"requires\": \"chain_c\", \"rollout\": 100},"
    "  \"chain_c\": {\"enabled\": false, \"rollout\": 100},"
    "  \"ok_a\": {\"requires\": \"ok_b\", \"rollout\": 100},"
    "  \"ok_b\": {\"requires\": \"ok_c\", \"allow\": [\"5\"]},"
    "  \"ok_c\": {\"rollout\": 100, \"deny\": [\"6\"]},"
    "  \"full_req\": {\"requires\": \"full\", \"rollout\": 100}"
    " },"
    " \"staging\": {"
    "  \"customer_portal\": {\"enabled\": true, \"rollout\": 100}"
    " }"
    "}}";


static void
test_eval(void)
{
    int          i, found;
    char         id[16], long65[66];
    t_snap_t     s;
    pg_snap_t    empty;
    pg_error_t   err;
    pg_result_t  res;

    static const char  *no_company[] = {
        NULL, "", NULL /* long65 */, "a b", "\xc3\xa9", "a/b"
    };

    memset(long65, '1', 65);
    long65[65] = '\0';
    no_company[2] = long65;

    if (!t_ok(t_compile(t_table_json, &s), "the evaluation table compiles")) {
        return;
    }

    t_expect(t_eval(&s, "production", "nope", "12"), 0, PG_REASON_UNKNOWN, -1,
             "rule 1: an unknown flag is off/unknown");
    t_expect(t_eval(&s, "qa", "customer_portal", "12"), 0, PG_REASON_UNKNOWN,
             -1, "rule 1: an unknown environment is off/unknown");
    t_expect(t_eval(&s, NULL, NULL, "12"), 0, PG_REASON_UNKNOWN, -1,
             "rule 1: no environment and no flag is off/unknown");

    t_ok(pg_snap_open(&empty, NULL, 0, &err) == PG_OK
         && pg_snap_revision(&empty) == 0 && pg_snap_env_count(&empty) == 0,
         "the empty snapshot opens with revision 0 and no environments");
    pg_eval(&empty, "production", 10, "customer_portal", 15, "12", 2, &res);
    t_expect(res, 0, PG_REASON_UNKNOWN, -1,
             "rule 1: the empty snapshot is off/unknown");

    t_expect(t_eval(&s, "production", "killed", "12"), 0, PG_REASON_KILLED,
             pg_bucket("killed", 6, "12", 2),
             "rule 2: enabled false is off/killed, even for an allowed "
             "company, with its bucket");
    t_expect(t_eval(&s, "production", "killed", NULL), 0, PG_REASON_KILLED,
             -1, "rule 2: killed without a company has bucket -1");

    t_expect(t_eval(&s, "production", "customer_portal_calls", "99"), 0,
             PG_REASON_REQUIRES,
             pg_bucket("customer_portal_calls", 21, "99", 2),
             "rule 3: the required flag off (denied) is off/requires");
    t_expect(t_eval(&s, "production", "customer_portal_calls", "12"), 1,
             PG_REASON_ALLOWED, -2,
             "rule 3: the required flag on lets the flag's own rules decide");
    t_expect(t_eval(&s, "production", "customer_portal_calls", NULL), 0,
             PG_REASON_REQUIRES, -1,
             "rule 3: no company, required flag below 100% is off/requires");
    t_expect(t_eval(&s, "production", "full_req", NULL), 1,
             PG_REASON_ROLLOUT, -1,
             "rule 3: no company, required flag at 100% holds");

    t_expect(t_eval(&s, "production", "full", NULL), 1, PG_REASON_ROLLOUT,
             -1, "rule 4: no company at rollout 100 is on/rollout");
    t_expect(t_eval(&s, "production", "half", NULL), 0,
             PG_REASON_NO_COMPANY, -1,
             "rule 4: no company at rollout 50 is off/no_company");

    found = 0;

    for (i = 0; i < 6; i++) {
        res = t_eval(&s, "production", "half", no_company[i]);
        found += res.on == 0 && res.reason == PG_REASON_NO_COMPANY
                 && res.bucket == -1;
        res = t_eval(&s, "production", "full", no_company[i]);
        found += res.on == 1 && res.reason == PG_REASON_ROLLOUT
                 && res.bucket == -1;
        res = t_eval(&s, "production", "customer_portal", no_company[i]);
        found += res.on == 0 && res.reason == PG_REASON_NO_COMPANY;
    }

    t_ok(found == 18, "rule 4: NULL, empty, 65 chars, \"a b\", \"\xc3\xa9\" "
         "and \"a/b\" are no company");

    t_expect(t_eval(&s, "production", "customer_portal", "99"), 0,
             PG_REASON_DENIED, pg_bucket("customer_portal", 15, "99", 2),
             "rule 5: a company in deny is off/denied");
    t_expect(t_eval(&s, "production", "both", "7"), 0, PG_REASON_DENIED,
             pg_bucket("both", 4, "7", 1),
             "rule 5: deny wins over allow");
    t_expect(t_eval(&s, "production", "customer_portal", "57"), 1,
             PG_REASON_ALLOWED, pg_bucket("customer_portal", 15, "57", 2),
             "rule 6: a company in allow is on/allowed");
    t_expect(t_eval(&s, "production", "customer_portal", "42"), 0,
             PG_REASON_ROLLOUT, 7541,
             "rule 7: bucket 7541 >= 1250 is off/rollout");
    t_expect(t_eval(&s, "staging", "customer_portal", "42"), 1,
             PG_REASON_ROLLOUT, 7541,
             "rule 7: the same flag at 100% in staging is on/rollout");

    /* a company below 12.5% that is in no list */
    for (i = 100; i < 100000; i++) {
        snprintf(id, sizeof(id), "%d", i);

        if (pg_bucket("customer_portal", 15, id, strlen(id)) < 1250) {
            break;
        }
    }

    t_expect(t_eval(&s, "production", "customer_portal", id), 1,
             PG_REASON_ROLLOUT, pg_bucket("customer_portal", 15, id,
                                          strlen(id)),
             "rule 7: a bucket below 1250 is on/rollout");

    t_expect(t_eval(&s, "production", "chain_a", "x"), 0, PG_REASON_REQUIRES,
             pg_bucket("chain_a", 7, "x", 1),
             "requires chain: a requires b requires c, c killed: a is "
             "off/requires");
    t_expect(t_eval(&s, "production", "chain_b", "x"), 0, PG_REASON_REQUIRES,
             -2, "requires chain: b is off/requires too");
    t_expect(t_eval(&s, "production", "ok_a", "5"), 1, PG_REASON_ROLLOUT,
             pg_bucket("ok_a", 4, "5", 1),
             "requires chain: every flag on makes a on");
    t_expect(t_eval(&s, "production", "ok_a", "4"), 0, PG_REASON_REQUIRES,
             -2, "requires chain: b off (rollout 0, not allowed) makes a off");
    t_expect(t_eval(&s, "production", "ok_a", "6"), 0, PG_REASON_REQUIRES,
             -2, "requires chain: c denies, so a is off/requires");

    t_snap_free(&s);
}


static void
test_requires_refused(void)
{
    t_refuses_exactly(
        t_prod("\"customer_portal_calls\": {\"requires\": \"nope\"}"),
        "environments.production.customer_portal_calls: requires unknown "
        "flag \"nope\"",
        "requires naming a missing flag is refused");
    t_refuses_exactly(t_prod("\"a\": {\"requires\": \"a\"}"),
        "environments.production: requires cycle: a -> a",
        "a flag requiring itself is a cycle");
    t_refuses_exactly(
        t_prod("\"a\": {\"requires\": \"b\"}, \"b\": {\"requires\": \"a\"}"),
        "environments.production: requires cycle: a -> b -> a",
        "a 2-cycle is refused with the cycle in the message");
    t_refuses_exactly(
        t_prod("\"c\": {\"requires\": \"a\"}, \"b\": {\"requires\": \"c\"},"
               "\"a\": {\"requires\": \"b\"}"),
        "environments.production: requires cycle: a -> b -> c -> a",
        "a 3-cycle is refused with the cycle in the message");
    t_refuses_exactly(
        t_prod("\"a\": {\"requires\": \"b\"}, \"b\": {\"requires\": \"c\"},"
               "\"c\": {\"requires\": \"b\"}"),
        "environments.production: requires cycle: b -> c -> b",
        "a cycle entered from outside names only the cycle");
    t_refuses("{\"revision\":1,\"environments\":{\"a\":{\"x\":{}},"
              "\"b\":{\"y\":{\"requires\":\"x\"}}}}",
              "environments.b.y: requires unknown flag \"x\"",
              "requires does not cross environments");
}


static void
test_monotonic(void)
{
    int          i, k, bad_subset, bad_share;
    char         id[16];
    t_snap_t     s;
    pg_result_t  res;

    static const struct {
        const char  *name;
        int          bp;
    } steps[] = {
        { "p0", 0 }, { "p1", 1 }, { "p2", 2 }, { "p3", 3 }, { "p4", 100 },
        { "p5", 500 }, { "p6", 1250 }, { "p7", 3333 }, { "p8", 5000 },
        { "p9", 9999 }, { "pa", 10000 }
    };

    static unsigned char  on[11][5000];

    if (!t_ok(t_compile(t_prod(
            "\"p0\": {\"salt\": \"mono\", \"rollout\": 0},"
            "\"p1\": {\"salt\": \"mono\", \"rollout\": 0.01},"
            "\"p2\": {\"salt\": \"mono\", \"rollout\": 0.02},"
            "\"p3\": {\"salt\": \"mono\", \"rollout\": 0.03},"
            "\"p4\": {\"salt\": \"mono\", \"rollout\": 1},"
            "\"p5\": {\"salt\": \"mono\", \"rollout\": 5},"
            "\"p6\": {\"salt\": \"mono\", \"rollout\": 12.5},"
            "\"p7\": {\"salt\": \"mono\", \"rollout\": 33.33},"
            "\"p8\": {\"salt\": \"mono\", \"rollout\": 50},"
            "\"p9\": {\"salt\": \"mono\", \"rollout\": 99.99},"
            "\"pa\": {\"salt\": \"mono\", \"rollout\": 100}"), &s),
            "the rollout steps compile"))
    {
        return;
    }

    for (k = 0; k < 11; k++) {
        for (i = 0; i < 5000; i++) {
            snprintf(id, sizeof(id), "co%d", i);
            res = t_eval(&s, "production", steps[k].name, id);
            on[k][i] = (unsigned char) res.on;
        }
    }

    bad_subset = 0;
    bad_share = 0;

    for (k = 0; k < 11; k++) {
        int     n = 0;
        double  want, sd;

        for (i = 0; i < 5000; i++) {
            n += on[k][i];

            if (k > 0 && on[k - 1][i] && !on[k][i]) {
                bad_subset++;
            }
        }

        /* within 5 standard deviations of the binomial, plus one */
        want = 5000.0 * steps[k].bp / 10000;
        sd = 5000.0 * steps[k].bp / 10000 * (10000 - steps[k].bp) / 10000;
        sd = sd > 0 ? __builtin_sqrt(sd) : 0;

        if (n < want - 5 * sd - 1 || n > want + 5 * sd + 1) {
            t_diag("rollout %d bp: %d of 5000 on, expected about %.0f",
                   steps[k].bp, n, want);
            bad_share++;
        }
    }

    t_ok(bad_subset == 0, "raising the rollout only adds companies (0, "
         "0.01, 0.02, 0.03, 1, 5, 12.5, 33.33, 50, 99.99, 100)");
    t_ok(bad_share == 0, "about p%% of 5000 companies are on at rollout p");

    t_snap_free(&s);
}


static void
test_refused(void)
{
    int    i;
    char  *big;
    size_t n;

    t_refuses_exactly(t_prod("\"Customer\": {}"),
        "environments.production: invalid flag name \"Customer\"",
        "flag name \"Customer\" is refused");
    t_refuses_exactly(t_prod("\"a-b\": {}"),
        "environments.production: invalid flag name \"a-b\"",
        "flag name \"a-b\" is refused");
    {
        char  flag[80];

        memset(flag, 0, sizeof(flag));
        flag[0] = '"';
        memset(flag + 1, 'a', 65);
        strcpy(flag + 66, "\": {}");
        t_refuses(t_prod(flag),
                  "environments.production: invalid flag name \"aaaa",
                  "a 65-character flag name is refused");
    }
    t_refuses_exactly(
        "{\"revision\":1,\"environments\":{\"Prod\":{}}}",
        "environments: invalid environment name \"Prod\"",
        "environment name \"Prod\" is refused");
    t_refuses_exactly(
        t_prod("\"customer_portal\": {\"allow\": [\"1\", \"2\", \"3\", "
               "\"a b\"]}"),
        "environments.production.customer_portal.allow[3]: invalid company "
        "id \"a b\"",
        "a bad company id in allow is refused with its index");
    t_refuses_exactly(
        t_prod("\"customer_portal\": {\"deny\": [\"ok\", \"a/b\"]}"),
        "environments.production.customer_portal.deny[1]: invalid company "
        "id \"a/b\"",
        "a bad company id in deny is refused with its index");
    t_refuses_exactly(
        t_prod("\"customer_portal\": {\"allow\": [\"12\", 12.5]}"),
        "environments.production.customer_portal.allow[1]: company id must "
        "be a string or an integer",
        "a real number as company id is refused");
    t_refuses(t_prod("\"customer_portal\": {\"allow\": \"12\"}"),
              "customer_portal: allow must be an array",
              "allow that is not an array is refused");

    /* 100,001 ids */
    n = 100001;
    big = malloc(n * 10 + 256);

    if (big != NULL) {
        size_t  off;

        off = (size_t) sprintf(big, "{\"revision\":1,\"environments\":"
                               "{\"production\":{\"f\":{\"allow\":[");
        for (i = 0; i < (int) n; i++) {
            off += (size_t) sprintf(big + off, "%s\"c%d\"", i ? "," : "", i);
        }

        strcpy(big + off, "]}}}}");
        t_refuses(big, "environments.production.f: allow holds 100001 "
                  "companies, at most 100000",
                  "an allow list of 100,001 ids is refused");
        free(big);
    }

    t_refuses_exactly(t_prod("\"customer_portal\": {\"rolout\": 10}"),
        "environments.production.customer_portal: unknown key \"rolout\"",
        "the unknown key \"rolout\" is refused");
    t_refuses(t_prod("\"f\": {\"rollout\": 0.001}"),
              "environments.production.f: rollout must be a multiple of 0.01",
              "rollout 0.001 is refused");
    t_refuses(t_prod("\"f\": {\"rollout\": 100.01}"),
              "environments.production.f: rollout must be a number from 0 "
              "to 100", "rollout 100.01 is refused");
    t_refuses_exactly(t_prod("\"f\": {\"rollout\": 100.0000001}"),
              "environments.production.f: rollout must be a number from 0 "
              "to 100, not 100.0000001",
              "rollout 100.0000001 is refused naming 100.0000001, not 100");
    t_refuses(t_prod("\"f\": {\"rollout\": -1}"),
              "environments.production.f: rollout must be a number from 0 "
              "to 100", "rollout -1 is refused");
    t_refuses_exactly(t_prod("\"f\": {\"rollout\": \"12\"}"),
              "environments.production.f: rollout must be a number from 0 "
              "to 100", "rollout \"12\" (a string) is refused");
    t_refuses_exactly(t_prod("\"f\": {\"enabled\": \"yes\"}"),
              "environments.production.f: enabled must be true or false",
              "enabled \"yes\" is refused");
    t_refuses(t_prod("\"f\": {\"rollout\": 1, \"rollout\": 2}"),
              "invalid JSON at line 1 column",
              "a duplicate JSON key is refused");
    t_refuses("{\"revision\": 1, \"revision\": 2, \"environments\": {}}",
              "duplicate object key",
              "a duplicate top-level key is refused as duplicate");
    t_refuses_exactly("{\"environments\": {}}", "revision is required",
                      "a missing revision is refused");
    t_refuses_exactly("{\"revision\": -1, \"environments\": {}}",
                      "revision must be an integer from 0 to "
                      "9007199254740991",
                      "a negative revision is refused");
    t_refuses_exactly("{\"revision\": 1.5, \"environments\": {}}",
                      "revision must be an integer from 0 to "
                      "9007199254740991",
                      "a real revision is refused");
    t_refuses_exactly("{\"revision\": 9007199254740992, "
                      "\"environments\": {}}",
                      "revision must be an integer from 0 to "
                      "9007199254740991",
                      "a revision above 2^53 - 1 is refused: it would pin "
                      "the edge where the store cannot pass it");
    {
        t_snap_t  top;

        t_ok(t_compile("{\"revision\": 9007199254740991, "
                       "\"environments\": {}}", &top)
             && pg_snap_revision(&top.snap) == PG_REVISION_MAX,
             "revision 2^53 - 1 is accepted and kept");
        t_snap_free(&top);
    }
    t_refuses_exactly("{\"revision\": 1}", "environments is required",
                      "missing environments are refused");
    t_refuses_exactly("{\"revision\": 1, \"environments\": []}",
                      "environments must be an object",
                      "environments that are not an object are refused");
    t_refuses_exactly("{\"revision\": 1, \"environments\": {}, \"x\": 1}",
                      "unknown top-level key \"x\"",
                      "an unknown top-level key is refused");
    t_refuses_exactly("[1, 2]", "a snapshot must be a JSON object",
                      "a snapshot that is not an object is refused");
    t_refuses_exactly(
        "{\n  \"revision\": 1,\n  \"environments\": {\n    \"p\": {,}\n"
        "  }\n}",
        "invalid JSON at line 4 column 11: string or '}' expected near ','",
        "a syntax error reports its line and column");
    t_refuses("{\"revision\":1,\"environments\":{\"p\":[]}}",
              "environments.p: an environment must be an object of flags",
              "an environment that is not an object is refused");
    t_refuses(t_prod("\"f\": true"),
              "environments.production.f: a flag must be an object",
              "a flag that is not an object is refused");
    t_refuses(t_prod("\"f\": {\"salt\": \"a b\"}"),
              "environments.production.f: salt must be a string of 1 to 64 "
              "printable ASCII characters",
              "a salt with a space is refused");
    t_refuses(t_prod("\"f\": {\"salt\": \"\"}"),
              "environments.production.f: salt must be a string of 1 to 64",
              "an empty salt is refused");
    t_refuses(t_prod("\"f\": {\"requires\": 3}"),
              "environments.production.f: requires must be a flag name",
              "requires that is not a string is refused");
    t_refuses(t_prod("\"f\": {\"version\": 1.5}"),
              "environments.production.f: version must be an integer",
              "a real version is refused");
    t_refuses(t_prod("\"f\": {\"updated_by\": 7}"),
              "environments.production.f: updated_by must be a string of at "
              "most 1024 bytes", "a non-string updated_by is refused");

    big = malloc(2048);

    if (big != NULL) {
        memset(big, 'x', 1025);
        big[1025] = '\0';
        {
            char  flag[1100];

            snprintf(flag, sizeof(flag), "\"f\": {\"description\": \"%s\"}",
                     big);
            t_refuses(t_prod(flag), "environments.production.f: description "
                      "must be a string of at most 1024 bytes",
                      "a description of 1025 bytes is refused");
        }
        free(big);
    }

    /* 65 environments */
    big = malloc(65 * 16 + 64);

    if (big != NULL) {
        size_t  off;

        off = (size_t) sprintf(big, "{\"revision\":1,\"environments\":{");

        for (i = 0; i < 65; i++) {
            off += (size_t) sprintf(big + off, "%s\"e%d\":{}", i ? "," : "",
                                    i);
        }

        strcpy(big + off, "}}");
        t_refuses(big, "environments: 65 environments, at most 64",
                  "65 environments are refused");
        free(big);
    }
}


static void
test_accepted(void)
{
    int        good;
    t_snap_t   s;
    json_t    *root, *f;

    if (!t_ok(t_compile(t_prod("\"a\": {\"rollout\": 0.07},"
                               "\"b\": {\"rollout\": 12.5},"
                               "\"c\": {\"rollout\": 33.33},"
                               "\"d\": {\"rollout\": 100},"
                               "\"e\": {\"rollout\": 0},"
                               "\"f\": {}"), &s),
              "rollouts 0.07, 12.5, 33.33, 100, 0 and a default compile"))
    {
        return;
    }

    good = t_flag_bp(&s, 0, 0) == 7 && t_flag_bp(&s, 0, 1) == 1250
           && t_flag_bp(&s, 0, 2) == 3333 && t_flag_bp(&s, 0, 3) == 10000
           && t_flag_bp(&s, 0, 4) == 0 && t_flag_bp(&s, 0, 5) == 0;

    if (!t_ok(good, "0.07, 12.5 and 33.33 are 7, 1250 and 3333 basis points"))
    {
        t_diag("bp: %u %u %u %u %u %u", t_flag_bp(&s, 0, 0),
               t_flag_bp(&s, 0, 1), t_flag_bp(&s, 0, 2), t_flag_bp(&s, 0, 3),
               t_flag_bp(&s, 0, 4), t_flag_bp(&s, 0, 5));
    }

    root = pg_snap_to_json(&s.snap);
    f = json_object_get(json_object_get(json_object_get(root,
            "environments"), "production"), "b");

    t_ok(json_is_real(json_object_get(f, "rollout"))
         && json_real_value(json_object_get(f, "rollout")) == 12.5
         && json_is_integer(json_object_get(json_object_get(
                json_object_get(json_object_get(root, "environments"),
                                "production"), "d"), "rollout"))
         && json_real_value(json_object_get(json_object_get(
                json_object_get(json_object_get(root, "environments"),
                                "production"), "a"), "rollout")) == 0.07,
         "rollout is returned as 12.5, 0.07 and the integer 100");

    {
        char  *text;

        text = json_dumps(json_object_get(json_object_get(
                   json_object_get(root, "environments"), "production"),
                   "a"), JSON_COMPACT | PG_JSON_REAL);
        t_ok(text != NULL && strstr(text, "\"rollout\":0.07,") != NULL,
             "rollout 0.07 prints as 0.07, not 0.070000000000000007");
        free(text);
    }

    json_decref(root);
    t_snap_free(&s);
}


static void
test_ids(void)
{
    t_snap_t     s;
    json_t      *root, *allow;

    if (!t_ok(t_compile(t_prod("\"f\": {\"allow\": [12, \"57\", -5, \"57\","
                               " 12, \"a\"]}"), &s),
              "a list with JSON integers and duplicates compiles"))
    {
        return;
    }

    t_expect(t_eval(&s, "production", "f", "12"), 1, PG_REASON_ALLOWED, -2,
             "the JSON number 12 in allow matches company \"12\"");
    t_expect(t_eval(&s, "production", "f", "57"), 1, PG_REASON_ALLOWED, -2,
             "the string \"57\" in allow matches company \"57\"");
    t_expect(t_eval(&s, "production", "f", "-5"), 1, PG_REASON_ALLOWED, -2,
             "the JSON number -5 matches company \"-5\"");
    t_expect(t_eval(&s, "production", "f", "A"), 0, PG_REASON_ROLLOUT, -2,
             "company ids are case-sensitive");

    root = pg_snap_to_json(&s.snap);
    allow = json_object_get(json_object_get(json_object_get(
                json_object_get(root, "environments"), "production"), "f"),
                "allow");

    t_ok(json_array_size(allow) == 4
         && strcmp(json_string_value(json_array_get(allow, 0)), "12") == 0
         && strcmp(json_string_value(json_array_get(allow, 1)), "57") == 0
         && strcmp(json_string_value(json_array_get(allow, 2)), "-5") == 0
         && strcmp(json_string_value(json_array_get(allow, 3)), "a") == 0,
         "duplicates collapse and the list keeps its order as strings");

    json_decref(root);
    t_snap_free(&s);
}


static void
test_metadata_and_salt(void)
{
    int          i, same, differ;
    char         id[16];
    t_snap_t     s, s2;
    json_t      *root, *f, *g;
    pg_result_t  a, b, c;

    if (!t_ok(t_compile(t_prod(
            "\"f\": {\"version\": 7, \"description\": \"the \\\"new\\\" "
            "portal\", \"updated_at\": \"2024-05-01T10:00:00Z\","
            " \"updated_by\": \"alice\"},"
            "\"g\": {\"rollout\": 50},"
            "\"h\": {\"rollout\": 50, \"salt\": \"other\"},"
            "\"i\": {\"rollout\": 50, \"salt\": \"other\"},"
            "\"j\": {\"rollout\": 50, \"salt\": \"j\"}"), &s),
            "flags with metadata and salts compile"))
    {
        return;
    }

    root = pg_snap_to_json(&s.snap);
    f = json_object_get(json_object_get(json_object_get(root,
            "environments"), "production"), "f");
    g = json_object_get(json_object_get(json_object_get(root,
            "environments"), "production"), "g");

    t_ok(json_integer_value(json_object_get(f, "version")) == 7
         && strcmp(json_string_value(json_object_get(f, "description")),
                   "the \"new\" portal") == 0
         && strcmp(json_string_value(json_object_get(f, "updated_at")),
                   "2024-05-01T10:00:00Z") == 0
         && strcmp(json_string_value(json_object_get(f, "updated_by")),
                   "alice") == 0,
         "version, description, updated_at and updated_by are returned");

    t_ok(json_object_get(g, "version") == NULL
         && json_object_get(g, "description") == NULL
         && json_object_get(g, "salt") == NULL
         && json_object_get(g, "requires") == NULL
         && json_object_size(g) == 4,
         "a flag without metadata returns enabled, rollout, allow and deny "
         "only");

    t_ok(strcmp(json_string_value(json_object_get(json_object_get(
             json_object_get(json_object_get(root, "environments"),
                             "production"), "h"), "salt")), "other") == 0
         && json_object_get(json_object_get(json_object_get(
             json_object_get(root, "environments"), "production"), "j"),
             "salt") == NULL,
         "a custom salt is returned, a salt equal to the name is not");

    json_decref(root);

    same = 0;
    differ = 0;

    for (i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        a = t_eval(&s, "production", "g", id);
        b = t_eval(&s, "production", "h", id);
        c = t_eval(&s, "production", "i", id);
        same += b.bucket == c.bucket && b.on == c.on
                && b.bucket == pg_bucket("other", 5, id, strlen(id))
                && a.bucket == pg_bucket("g", 1, id, strlen(id));
        differ += a.bucket != b.bucket;
    }

    t_ok(differ > 190, "a custom salt changes the bucket");
    t_ok(same == 200, "two flags with the same salt give the same bucket");

    /* salt equal to the name compiles to the same bytes as no salt */
    if (t_compile(t_prod("\"j\": {\"rollout\": 50, \"salt\": \"j\"}"), &s2)) {
        t_snap_free(&s);

        if (t_compile(t_prod("\"j\": {\"rollout\": 50}"), &s)) {
            t_ok(s.size == s2.size && memcmp(s.blob, s2.blob, s.size) == 0,
                 "salt equal to the flag name is the default");
        }

        t_snap_free(&s2);
    }

    t_snap_free(&s);

    /* pg_flag_check_json on a lone flag */
    {
        json_error_t  jerr;
        pg_error_t    err;
        json_t       *flag;

        flag = json_loads("{\"rollout\": 5, \"requires\": \"other\"}", 0,
                          &jerr);
        t_ok(pg_flag_check_json("customer_portal", flag, &err) == PG_OK,
             "pg_flag_check_json accepts a valid flag, requires unresolved");
        json_decref(flag);

        flag = json_loads("{\"rolout\": 5}", 0, &jerr);
        t_ok(pg_flag_check_json("customer_portal", flag, &err) == PG_ERR
             && strcmp(err.text, "customer_portal: unknown key \"rolout\"")
                == 0,
             "pg_flag_check_json refuses an unknown key naming the flag");
        json_decref(flag);

        flag = json_loads("{\"allow\": [\"a\", \"b c\"]}", 0, &jerr);
        t_ok(pg_flag_check_json("f", flag, &err) == PG_ERR
             && strcmp(err.text, "f.allow[1]: invalid company id \"b c\"")
                == 0,
             "pg_flag_check_json refuses a bad company id");
        json_decref(flag);

        flag = json_loads("{}", 0, &jerr);
        t_ok(pg_flag_check_json("Bad", flag, &err) == PG_ERR
             && strcmp(err.text, "invalid flag name \"Bad\"") == 0,
             "pg_flag_check_json refuses a bad flag name");
        json_decref(flag);
    }

}


static void
test_round_trip(void)
{
    char          *text;
    size_t         size2, len;
    t_snap_t       s, s2;
    json_t        *root;
    pg_error_t     err;
    pg_snap_t      view;
    const char    *name;
    unsigned char *blob2, *copy;

    if (!t_ok(t_compile(
            "{\"revision\": 9007199254740991, \"environments\": {"
            " \"staging\": {\"customer_portal\": {\"rollout\": 100}},"
            " \"production\": {"
            "  \"z\": {\"enabled\": false, \"rollout\": 33.33,"
            "         \"allow\": [3, \"b\", \"a\", \"b\"], \"deny\": [\"x\"],"
            "         \"salt\": \"s!~\", \"requires\": \"a\","
            "         \"version\": -4, \"description\": \"\","
            "         \"updated_at\": \"t\", \"updated_by\": \"\\u00e9\"},"
            "  \"a\": {\"rollout\": 0.07, \"requires\": \"m\"},"
            "  \"m\": {}"
            " },"
            " \"empty\": {}"
            "}}", &s),
            "a snapshot using every field compiles"))
    {
        return;
    }

    root = pg_snap_to_json(&s.snap);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (t_ok(text != NULL
             && pg_snap_compile(text, strlen(text), &blob2, &size2, &err)
                == PG_OK,
             "pg_snap_to_json's text compiles again"))
    {
        t_ok(size2 == s.size && memcmp(blob2, s.blob, s.size) == 0,
             "compile(to_json(compile(x))) is byte-identical");
        free(blob2);
    } else {
        t_diag("%s", text ? err.text : "json_dumps failed");
    }

    free(text);

    t_ok(pg_snap_revision(&s.snap) == 9007199254740991LL,
         "a 64-bit revision is kept");
    t_ok(pg_snap_env_count(&s.snap) == 3, "env_count counts environments");

    name = pg_snap_env_name(&s.snap, 0, &len);
    t_ok(name && len == 5 && memcmp(name, "empty", 5) == 0
         && (name = pg_snap_env_name(&s.snap, 1, &len)) != NULL
         && len == 10 && strcmp(name, "production") == 0
         && (name = pg_snap_env_name(&s.snap, 2, &len)) != NULL
         && len == 7 && strcmp(name, "staging") == 0
         && pg_snap_env_name(&s.snap, 3, &len) == NULL && len == 0,
         "env_name lists environments in name order, NUL-terminated");
    t_ok(pg_snap_env_flag_count(&s.snap, 0) == 0
         && pg_snap_env_flag_count(&s.snap, 1) == 3
         && pg_snap_env_flag_count(&s.snap, 2) == 1
         && pg_snap_env_flag_count(&s.snap, 3) == 0,
         "env_flag_count counts each environment's flags");

    /* the blob is position-independent: a copy elsewhere evaluates alike */
    copy = malloc(s.size);

    if (copy != NULL) {
        pg_result_t  r1, r2;

        memcpy(copy, s.blob, s.size);
        t_snap_free(&s);

        t_ok(pg_snap_open(&view, copy, s.size, &err) == PG_OK,
             "a copy of the blob opens");
        pg_eval(&view, "staging", 7, "customer_portal", 15, "42", 2, &r1);
        pg_eval(&view, "production", 10, "z", 1, "3", 1, &r2);
        t_ok(r1.on && r1.reason == PG_REASON_ROLLOUT && r1.bucket == 7541
             && !r2.on && r2.reason == PG_REASON_KILLED
             && r2.bucket == pg_bucket("s!~", 3, "3", 1),
             "a copy of the blob evaluates after the original is freed");

        /* bad headers */
        ((pg_blob_hdr_t *) (void *) copy)->magic ^= 1;
        t_ok(pg_snap_open(&view, copy, s.size, &err) == PG_ERR
             && strstr(err.text, "bad magic") != NULL
             && view.base == NULL,
             "pg_snap_open refuses a bad magic");
        ((pg_blob_hdr_t *) (void *) copy)->magic ^= 1;

        ((pg_blob_hdr_t *) (void *) copy)->layout = PG_SNAP_LAYOUT + 1;
        t_ok(pg_snap_open(&view, copy, s.size, &err) == PG_ERR
             && strstr(err.text, "layout") != NULL,
             "pg_snap_open refuses another layout");
        ((pg_blob_hdr_t *) (void *) copy)->layout = PG_SNAP_LAYOUT;

        t_ok(pg_snap_open(&view, copy, s.size - 4, &err) == PG_ERR
             && strstr(err.text, "bytes") != NULL
             && pg_snap_open(&view, copy, 16, &err) == PG_ERR
             && pg_snap_open(&view, NULL, 16, &err) == PG_ERR,
             "pg_snap_open refuses a size that is not the header's");

        t_ok(pg_snap_open(&view, copy + 2, s.size, &err) == PG_ERR
             && strstr(err.text, "aligned") != NULL,
             "pg_snap_open refuses a blob that is not 4-byte aligned");

        t_ok(pg_snap_open(&view, copy, s.size, &err) == PG_OK,
             "the restored header opens again");
        free(copy);
    }

    /* the empty snapshot's JSON compiles */
    view.base = NULL;
    view.size = 0;
    root = pg_snap_to_json(&view);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    t_ok(text != NULL
         && strcmp(text, "{\"revision\":0,\"environments\":{}}") == 0,
         "the empty snapshot's JSON is {\"revision\":0,\"environments\":{}}");

    if (text != NULL && t_compile(text, &s2)) {
        t_ok(pg_snap_env_count(&s2.snap) == 0
             && pg_snap_revision(&s2.snap) == 0,
             "and it compiles to a snapshot without environments");
        t_snap_free(&s2);
    }

    free(text);
}


static void
test_many_flags(void)
{
    int          i, found;
    char        *json, name[16];
    size_t       off;
    t_snap_t     s;
    pg_result_t  res;

    json = malloc(4096 * 40 + 256);

    if (json == NULL) {
        return;
    }

    /* 4096 flags in a scrambled order, each with its own rollout */
    off = (size_t) sprintf(json, "{\"revision\":1,\"environments\":"
                           "{\"production\":{");

    for (i = 0; i < 4096; i++) {
        off += (size_t) sprintf(json + off, "%s\"f%d\":{\"rollout\":%d}",
                                i ? "," : "", (i * 2654435761u) % 4096,
                                ((i * 2654435761u) % 4096) % 2 ? 100 : 0);
    }

    strcpy(json + off, "}}}");

    if (!t_ok(t_compile(json, &s), "4096 flags in one environment compile")) {
        free(json);
        return;
    }

    found = 0;

    for (i = 0; i < 4096; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        res = t_eval(&s, "production", name, "c1");
        found += res.reason == PG_REASON_ROLLOUT && res.on == (i % 2);
    }

    t_ok(found == 4096, "each of 4096 flags is found by binary search");

    t_snap_free(&s);

    /* 4097 flags are refused */
    off = (size_t) sprintf(json, "{\"revision\":1,\"environments\":"
                           "{\"production\":{");

    for (i = 0; i < 4097; i++) {
        off += (size_t) sprintf(json + off, "%s\"f%d\":{}", i ? "," : "", i);
    }

    strcpy(json + off, "}}}");
    t_refuses(json, "environments.production: 4097 flags, at most 4096",
              "4097 flags in one environment are refused");

    free(json);
}


static void
test_big_list(void)
{
    int          i, found;
    char        *json, id[16];
    size_t       off;
    t_snap_t     s;
    pg_result_t  res;

    json = malloc(100000 * 9 + 256);

    if (json == NULL) {
        return;
    }

    off = (size_t) sprintf(json, "{\"revision\":1,\"environments\":"
                           "{\"production\":{\"big\":{\"rollout\":0,"
                           "\"allow\":[");

    for (i = 0; i < 100000; i++) {
        off += (size_t) sprintf(json + off, "%s\"c%05d\"", i ? "," : "", i);
    }

    strcpy(json + off, "]}}}}");

    if (!t_ok(t_compile(json, &s),
              "an allow list of 100,000 six-character ids compiles"))
    {
        free(json);
        return;
    }

    free(json);

    t_diag("blob size for 100,000 six-character ids: %zu bytes", s.size);
    t_ok(s.size < 2200000, "its blob is under 2.2 MB (%zu bytes)", s.size);

    found = 0;

    for (i = 0; i < 100000; i++) {
        snprintf(id, sizeof(id), "c%05d", i);
        res = t_eval(&s, "production", "big", id);
        found += res.on && res.reason == PG_REASON_ALLOWED;
    }

    t_ok(found == 100000, "every one of the 100,000 ids is allowed");

    res = t_eval(&s, "production", "big", "c100000");
    found = !res.on && res.reason == PG_REASON_ROLLOUT;
    res = t_eval(&s, "production", "big", "d00001");
    found += !res.on && res.reason == PG_REASON_ROLLOUT;

    t_ok(found == 2, "a company not in the list is not allowed");

    t_snap_free(&s);
}


/* --- blobs that pg_snap_open() must refuse ------------------------------
 *
 * Each corrupts one field of a compiled blob the way fuzz_blob's findings
 * did (fuzz/corpus/blob/ holds the inputs). pg_snap_open() used to check
 * the header only, and every reader then followed the bad offset: each of
 * these was an out-of-bounds read (or, for a full table, an endless probe)
 * under ASan before the blob was checked whole.
 */

static const char  t_blob_json[] =
    "{\"revision\": 5, \"environments\": {"
    " \"production\": {"
    "  \"a\": {\"rollout\": 50, \"allow\": [\"1001\", \"1002\", \"1003\"],"
    "         \"deny\": [\"9\"], \"description\": \"d\"},"
    "  \"b\": {\"requires\": \"a\", \"salt\": \"s\"},"
    "  \"c\": {}},"
    " \"staging\": {\"a\": {}}}}";


static pg_blob_env_t *
t_blob_env(unsigned char *blob, size_t i)
{
    return (pg_blob_env_t *) (void *) (blob + sizeof(pg_blob_hdr_t)) + i;
}


static pg_blob_flag_t *
t_blob_flag(unsigned char *blob, size_t e, size_t i)
{
    return (pg_blob_flag_t *) (void *) (blob + t_blob_env(blob, e)->flags)
           + i;
}


/* The reference of a flag's list in a packed blob, and its piece. */
static pg_blob_ref_t *
t_blob_ref(unsigned char *blob, const pg_blob_list_t *bl)
{
    return (pg_blob_ref_t *) (void *) (blob
               + ((pg_blob_hdr_t *) (void *) blob)->lists)
           + bl->piece - 1;
}


static unsigned char *
t_blob_piece(unsigned char *blob, const pg_blob_list_t *bl)
{
    return blob + t_blob_ref(blob, bl)->off;
}


/* A copy of the good blob for one corruption; NULL ends the test. */
static unsigned char *
t_blob_copy(const t_snap_t *s)
{
    unsigned char  *copy;

    copy = malloc(s->size);

    if (copy != NULL) {
        memcpy(copy, s->blob, s->size);
    }

    return copy;
}


/* pg_snap_open() refuses copy, with a message; frees copy. */
static void
t_blob_refused(unsigned char *copy, size_t size, const char *expect,
    const char *desc)
{
    int         rc;
    pg_snap_t   view;
    pg_error_t  err;

    memset(&err, 0, sizeof(err));
    view.base = (const unsigned char *) "x";

    rc = pg_snap_open(&view, copy, size, &err);

    if (!t_ok(rc == PG_ERR && view.base == NULL
              && strstr(err.text, expect) != NULL, "%s", desc))
    {
        t_diag("rc %d, error \"%s\", expected \"%s\"", rc, err.text, expect);
    }

    free(copy);
}


static void
test_blob_refused(void)
{
    uint32_t         j, *slots;
    t_snap_t         s;
    pg_blob_flag_t  *a;
    unsigned char   *c;

    if (!t_ok(t_compile(t_blob_json, &s), "the blob to corrupt compiles")) {
        return;
    }

#define T_CORRUPT(edit, expect, desc)                                        \
    if ((c = t_blob_copy(&s)) == NULL) {                                     \
        goto done;                                                           \
    }                                                                        \
    a = t_blob_flag(c, 0, 0);                                                \
    (void) a;                                                                \
    edit;                                                                    \
    t_blob_refused(c, s.size, expect, desc)

    T_CORRUPT(t_blob_env(c, 0)->name.off = (uint32_t) s.size + 64,
              "environment 0's name is out of place",
              "blob: an environment name past the end is refused "
              "(pg_find_env read it)");

    T_CORRUPT(t_blob_env(c, 0)->flag_count = 4000, "flag table",
              "blob: a flag count past the end is refused (pg_find_flag "
              "read past the table)");

    T_CORRUPT(t_blob_env(c, 1)->flags += 2, "flag table",
              "blob: a misaligned flag table is refused");

    T_CORRUPT(t_blob_ref(c, &a->allow)->off = (uint32_t) s.size - 4,
              "piece 0's reference",
              "blob: an allow piece past the end is refused (pg_list_has "
              "read it)");

    T_CORRUPT(a->allow.piece = 2, "names another piece",
              "blob: a list naming another list's piece is refused");

    T_CORRUPT(a->deny.count = 0, "empty list with a piece",
              "blob: an empty list naming a piece is refused");

    T_CORRUPT(a->allow.count = 2, "not the one the index names",
              "blob: a list whose count is not its piece's is refused "
              "(pg_list_to_json walked by the index's count)");

    T_CORRUPT(t_blob_ref(c, &a->allow)->id_lo ^= 2,
              "not the one the index names",
              "blob: a piece whose id is not its reference's is refused");

    T_CORRUPT(slots = (uint32_t *) (void *) (t_blob_piece(c, &a->allow)
                                             + sizeof(pg_blob_piece_t));
              for (j = 0; slots[j] == 0; j++) { /* void */ }
              slots[j] = (uint32_t) s.size + 100,
              "a slot outside its entries",
              "blob: a slot pointing past the entries is refused "
              "(pg_list_has read the entry)");

    T_CORRUPT(((pg_blob_piece_t *) (void *) t_blob_piece(c, &a->allow))
                  ->count = 1000,
              "table of the wrong size",
              "blob: a piece's count past its entries is refused "
              "(pg_list_to_json walked past the end)");

    T_CORRUPT(t_blob_piece(c, &a->allow)[pg_blob_entries(
                  t_blob_piece(c, &a->allow)) + PG_BLOB_ENTRY_HEAD + 3] = '9',
              "wrong hash",
              "blob: an id that no longer matches its hash is refused "
              "(its table would not find it)");

    T_CORRUPT(slots = (uint32_t *) (void *) (t_blob_piece(c, &a->allow)
                                             + sizeof(pg_blob_piece_t));
              for (j = 0;
                   j <= ((pg_blob_piece_t *) (void *)
                         t_blob_piece(c, &a->allow))->mask;
                   j++)
              {
                  slots[j] = slots[j] ? slots[j]
                                      : (uint32_t) pg_blob_entries(
                                            t_blob_piece(c, &a->allow)) + 1;
              },
              "a table that does not hold its entries",
              "blob: a table without an empty slot is refused (a probe "
              "for another id never ended)");

    T_CORRUPT(a->description.off = (uint32_t) s.size + 10, "out of place",
              "blob: a description past the end is refused (pg_set_text "
              "read it)");

    T_CORRUPT(t_blob_flag(c, 0, 1)->salt.off = (uint32_t) s.size + 10,
              "out of place",
              "blob: a salt past the end is refused (pg_flag_to_json and "
              "pg_bucket read it)");

    T_CORRUPT(t_blob_flag(c, 0, 1)->requires = 99, "requires out of range",
              "blob: requires past the flag table is refused "
              "(pg_flag_to_json read flags[98])");

    T_CORRUPT(a->requires = 2, "requires cycle",
              "blob: a requires cycle is refused");

    T_CORRUPT(c[t_blob_env(c, 0)->name.off + 10] = 'x', "NUL-terminated",
              "blob: a name without its NUL is refused");

    T_CORRUPT(c[t_blob_flag(c, 0, 2)->name.off] = 'A', "not a valid name",
              "blob: an invalid flag name is refused");

    T_CORRUPT(a->bp = 10001, "out of range",
              "blob: a rollout over 100% is refused");

    T_CORRUPT(a->meta |= 0x10, "unknown metadata",
              "blob: unknown metadata bits are refused");

done:
#undef T_CORRUPT

    t_snap_free(&s);
}


/*
 * Every byte of a blob changed in turn (three ways): each copy is refused,
 * or it opens into a snapshot that prints as JSON and compiles again. Run
 * under ASan, a read outside the copy fails the test run.
 */
static void
test_blob_every_byte(void)
{
    int             v;
    char           *text;
    size_t          i, size2, bad;
    json_t         *root;
    t_snap_t        s;
    pg_snap_t       view;
    pg_error_t      err;
    unsigned char  *copy, *blob2;

    static const unsigned char  how[] = { 0x01, 0x80, 0xff };

    if (!t_compile(t_blob_json, &s)) {
        t_ok(0, "the blob to corrupt compiles");
        return;
    }

    bad = 0;

    for (i = 0; i < s.size; i++) {
        for (v = 0; v < 3; v++) {
            copy = t_blob_copy(&s);

            if (copy == NULL) {
                break;
            }

            copy[i] ^= how[v];

            if (pg_snap_open(&view, copy, s.size, &err) == PG_OK) {
                root = pg_snap_to_json(&view);
                text = root ? json_dumps(root, JSON_COMPACT | PG_JSON_REAL)
                            : NULL;

                if (text == NULL
                    || pg_snap_compile(text, strlen(text), &blob2, &size2,
                                       &err)
                       != PG_OK)
                {
                    t_diag("byte %zu ^ 0x%02x opens but does not compile "
                           "again", i, how[v]);
                    bad++;

                } else {
                    free(blob2);
                }

                free(text);
                json_decref(root);
            }

            free(copy);
        }
    }

    t_ok(bad == 0, "blob: each of %zu bytes changed three ways is refused "
         "or still a valid snapshot", s.size);

    t_snap_free(&s);
}


/* --- patches (pg_snap_patch_json) --------------------------------------- */

static const char  t_patch_base[] =
    "{\"revision\": 5, \"environments\": {"
    " \"production\": {"
    "  \"a\": {\"rollout\": 0, \"allow\": [\"12\"]},"
    "  \"b\": {\"requires\": \"a\", \"rollout\": 100}},"
    " \"staging\": {\"a\": {\"rollout\": 100}}}}";


/* Parsed JSON text, duplicate keys refused; NULL (and a diagnostic) if bad */
static json_t *
t_json(const char *text)
{
    json_t        *json;
    json_error_t   jerr;

    json = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (json == NULL) {
        t_diag("bad test JSON at line %d: %s", jerr.line, jerr.text);
    }

    return json;
}


/* The document as canonical text, to compare documents; malloc()ed. */
static char *
t_dump(const json_t *json)
{
    return json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS | PG_JSON_REAL);
}


/* Patching t_patch_base with patch fails with rc, and a message with expect */
static void
t_patch_refused(const char *patch, int rc_expected, const char *expect,
    const char *desc)
{
    int          rc;
    json_t      *snap, *p, *result;
    pg_error_t   err;

    snap = t_json(t_patch_base);
    p = t_json(patch);

    memset(&err, 0, sizeof(err));
    result = (json_t *) 1;
    rc = pg_snap_patch_json(snap, p, &result, &err);

    if (!t_ok(rc == rc_expected && result == NULL
              && strstr(err.text, expect) != NULL, "patch: %s", desc))
    {
        t_diag("rc %d, message: %s", rc, rc == PG_OK ? "(none)" : err.text);
        t_diag("expected rc %d and a message containing: %s", rc_expected,
               expect);
    }

    if (rc == PG_OK) {
        json_decref(result);
    }

    json_decref(p);
    json_decref(snap);
}


/* Compile a document and evaluate one flag for one company. */
static pg_result_t
t_patched_eval(const json_t *doc, const char *env, const char *flag,
    const char *company)
{
    t_snap_t     s;
    pg_error_t   err;
    pg_result_t  res;

    memset(&res, 0, sizeof(res));
    res.reason = PG_REASON_UNKNOWN;

    if (pg_snap_compile_json(doc, &s.blob, &s.size, &err) != PG_OK
        || pg_snap_open(&s.snap, s.blob, s.size, &err) != PG_OK)
    {
        t_diag("the patched snapshot does not compile: %s", err.text);
        return res;
    }

    res = t_eval(&s, env, flag, company);
    t_snap_free(&s);

    return res;
}


static void
test_patch_applied(void)
{
    int             rc;
    char           *before_snap, *before_patch, *text;
    json_t         *snap, *p1, *p2, *r1, *r2, *whole, *f;
    size_t          size1, size2;
    pg_error_t      err;
    pg_result_t     res;
    unsigned char  *blob1, *blob2;

    snap = t_json(t_patch_base);
    p1 = t_json("{\"base_revision\": 5, \"revision\": 6, \"environments\": {"
                " \"production\": {\"a\": {\"rollout\": 0,"
                "                          \"allow\": [\"12\", \"57\"]},"
                "                  \"c\": {\"rollout\": 100}}}}");
    p2 = t_json("{\"base_revision\": 6, \"revision\": 9, \"environments\": {"
                " \"production\": {\"c\": null, \"gone\": null},"
                " \"qa\": {\"a\": {\"rollout\": 50}}, \"empty\": {}}}");

    if (snap == NULL || p1 == NULL || p2 == NULL) {
        t_ok(0, "patch: test documents parse");
        return;
    }

    before_snap = t_dump(snap);
    before_patch = t_dump(p1);

    res = t_patched_eval(snap, "production", "b", "57");
    t_ok(!res.on && res.reason == PG_REASON_REQUIRES,
         "patch: before it, b is off for 57 (requires a)");

    rc = pg_snap_patch_json(snap, p1, &r1, &err);

    if (!t_ok(rc == PG_OK && r1 != NULL, "patch: 5 -> 6 applies")) {
        t_diag("%s", err.text);
        return;
    }

    t_ok(json_integer_value(json_object_get(r1, "revision")) == 6,
         "patch: the result has the patch's revision");

    res = t_patched_eval(r1, "production", "a", "57");
    t_ok(res.on && res.reason == PG_REASON_ALLOWED,
         "patch: a flag given is replaced (57 now allowed)");
    res = t_patched_eval(r1, "production", "b", "57");
    t_ok(res.on && res.reason == PG_REASON_ROLLOUT,
         "patch: a flag not named stays, and sees the new a");
    res = t_patched_eval(r1, "production", "c", "1");
    t_ok(res.on, "patch: a new flag is added");
    res = t_patched_eval(r1, "staging", "a", "57");
    t_ok(res.on && res.reason == PG_REASON_ROLLOUT,
         "patch: an environment not named stays");

    text = t_dump(snap);
    t_ok(strcmp(text, before_snap) == 0, "patch: the snapshot is unchanged");
    free(text);
    text = t_dump(p1);
    t_ok(strcmp(text, before_patch) == 0, "patch: the patch is unchanged");
    free(text);

    /* the next patch, on the result of the first */

    rc = pg_snap_patch_json(r1, p2, &r2, &err);

    if (!t_ok(rc == PG_OK, "patch: 6 -> 9 applies on the result")) {
        t_diag("%s", err.text);
        json_decref(r1);
        return;
    }

    f = json_object_get(json_object_get(r2, "environments"), "production");
    t_ok(json_object_get(f, "c") == NULL && json_object_size(f) == 2,
         "patch: null deletes a flag, and an absent one is no error");
    res = t_patched_eval(r2, "production", "c", "1");
    t_ok(!res.on && res.reason == PG_REASON_UNKNOWN,
         "patch: the deleted flag evaluates unknown");
    res = t_patched_eval(r2, "qa", "a", "42");
    t_ok(res.bucket >= 0, "patch: a new environment is created with its flag");
    f = json_object_get(json_object_get(r2, "environments"), "empty");
    t_ok(json_is_object(f) && json_object_size(f) == 0,
         "patch: an environment named with no flag is created empty");
    f = json_object_get(json_object_get(r1, "environments"), "production");
    t_ok(json_object_get(f, "c") != NULL,
         "patch: the first result is unchanged by the second patch");

    /* the same store PUT whole compiles to the same blob */

    whole = t_json("{\"revision\": 9, \"environments\": {"
                   " \"production\": {"
                   "  \"a\": {\"rollout\": 0, \"allow\": [\"12\", \"57\"]},"
                   "  \"b\": {\"requires\": \"a\", \"rollout\": 100}},"
                   " \"staging\": {\"a\": {\"rollout\": 100}},"
                   " \"qa\": {\"a\": {\"rollout\": 50}}, \"empty\": {}}}");

    blob1 = NULL;
    blob2 = NULL;

    t_ok(whole != NULL
         && pg_snap_compile_json(r2, &blob1, &size1, &err) == PG_OK
         && pg_snap_compile_json(whole, &blob2, &size2, &err) == PG_OK
         && size1 == size2 && memcmp(blob1, blob2, size1) == 0,
         "patch: the patched snapshot compiles to the blob of the same "
         "snapshot given whole");

    free(blob1);
    free(blob2);
    free(before_snap);
    free(before_patch);
    json_decref(whole);
    json_decref(r2);
    json_decref(r1);
    json_decref(p2);
    json_decref(p1);
    json_decref(snap);
}


static void
test_patch_result_checked_by_compile(void)
{
    int             rc;
    json_t         *snap, *p, *r;
    size_t          size;
    pg_error_t      err;
    unsigned char  *blob;

    /* the patch is well formed; its result is not a valid snapshot */

    snap = t_json(t_patch_base);
    p = t_json("{\"base_revision\": 5, \"revision\": 6, \"environments\":"
               " {\"production\": {\"a\": null}}}");

    rc = pg_snap_patch_json(snap, p, &r, &err);
    t_ok(rc == PG_OK, "patch: deleting a required flag is a well-formed "
         "patch");

    blob = NULL;
    rc = rc == PG_OK ? pg_snap_compile_json(r, &blob, &size, &err) : PG_OK;

    if (!t_ok(rc == PG_ERR
              && strstr(err.text, "environments.production.b: requires "
                        "unknown flag \"a\"") != NULL,
              "patch: its result does not compile, naming the requirer "
              "and the flag"))
    {
        t_diag("rc %d: %s", rc, rc == PG_OK ? "(none)" : err.text);
    }

    free(blob);
    json_decref(r);
    json_decref(p);

    p = t_json("{\"base_revision\": 5, \"revision\": 6, \"environments\":"
               " {\"production\": {\"a\": {\"requires\": \"b\"}}}}");
    r = NULL;
    rc = pg_snap_patch_json(snap, p, &r, &err);
    blob = NULL;
    rc = rc == PG_OK ? pg_snap_compile_json(r, &blob, &size, &err) : PG_OK;
    t_ok(rc == PG_ERR && strstr(err.text, "requires cycle") != NULL,
         "patch: a result with a cycle does not compile");

    free(blob);
    json_decref(r);
    json_decref(p);

    p = t_json("{\"base_revision\": 5, \"revision\": 6, \"environments\":"
               " {\"production\": {\"a\": {\"rolout\": 5}}}}");
    r = NULL;
    rc = pg_snap_patch_json(snap, p, &r, &err);
    blob = NULL;
    t_ok(rc == PG_ERR && r == NULL
         && strstr(err.text, "environments.production.a: unknown key "
                   "\"rolout\"") != NULL,
         "patch: a flag's fields are checked with the patch's form");

    free(blob);
    json_decref(r);
    json_decref(p);
    json_decref(snap);
}


static void
test_patch_refused(void)
{
    char  buf[256];

    t_patch_refused("[1]", PG_ERR, "a patch must be a JSON object",
                    "not an object");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {}, \"extra\": 1}", PG_ERR,
                    "unknown top-level key \"extra\"", "an unknown key");
    t_patch_refused("{\"revision\": 6, \"environments\": {}}", PG_ERR,
                    "base_revision is required", "no base_revision");
    t_patch_refused("{\"base_revision\": 5, \"environments\": {}}", PG_ERR,
                    "revision is required", "no revision");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6}", PG_ERR,
                    "environments is required", "no environments");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 5,"
                    " \"environments\": {}}", PG_ERR,
                    "revision 5 must be above base_revision 5",
                    "revision equal to base_revision");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 4,"
                    " \"environments\": {}}", PG_ERR,
                    "revision 4 must be above base_revision 5",
                    "revision below base_revision");
    t_patch_refused("{\"base_revision\": \"5\", \"revision\": 6,"
                    " \"environments\": {}}", PG_ERR,
                    "base_revision must be an integer from 0 to "
                    "9007199254740991", "a base_revision that is a string");
    t_patch_refused("{\"base_revision\": -1, \"revision\": 6,"
                    " \"environments\": {}}", PG_ERR,
                    "base_revision must be an integer", "a negative base");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6.0,"
                    " \"environments\": {}}", PG_ERR,
                    "revision must be an integer", "a revision that is real");

    snprintf(buf, sizeof(buf), "{\"base_revision\": 5, \"revision\": %lld,"
             " \"environments\": {}}", PG_REVISION_MAX + 1);
    t_patch_refused(buf, PG_ERR, "revision must be an integer from 0 to "
                    "9007199254740991", "a revision above 2^53 - 1");

    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": []}", PG_ERR,
                    "environments must be an object",
                    "environments that is not an object");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\": null}}", PG_ERR,
                    "environments.production: a patch cannot delete an "
                    "environment", "an environment given null");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\": [1]}}", PG_ERR,
                    "environments.production: an environment must be an "
                    "object of flags", "an environment that is an array");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"Prod\": {}}}", PG_ERR,
                    "environments: invalid environment name \"Prod\"",
                    "a bad environment name");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\":"
                    " {\"a b\\n\": null}}}", PG_ERR,
                    "environments.production: invalid flag name "
                    "\"a b\\x0a\"", "a bad flag name, quoted");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\": {\"a\": false}}}",
                    PG_ERR, "environments.production.a: a flag must be an "
                    "object, or null to delete it", "a flag given false");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\": {\"a\": 1}}}",
                    PG_ERR, "environments.production.a: a flag must be",
                    "a flag given a number");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\": {\"a\": []}}}",
                    PG_ERR, "environments.production.a: a flag must be",
                    "a flag given an array");

    /* the base, once the form is right: a conflict, not an error */

    t_patch_refused("{\"base_revision\": 4, \"revision\": 6,"
                    " \"environments\": {}}", PG_CONFLICT,
                    "base_revision 4 is not the snapshot's revision 5",
                    "a base below the snapshot's revision is a conflict");
    t_patch_refused("{\"base_revision\": 6, \"revision\": 7,"
                    " \"environments\": {\"production\": {\"a\": null}}}",
                    PG_CONFLICT,
                    "base_revision 6 is not the snapshot's revision 5",
                    "a base above the snapshot's revision is a conflict");
    t_patch_refused("{\"base_revision\": 4, \"revision\": 6,"
                    " \"environments\": {}, \"x\": 1}", PG_ERR,
                    "unknown top-level key \"x\"",
                    "a bad form is an error whatever the base");
    t_patch_refused("{\"base_revision\": 4, \"revision\": 6,"
                    " \"environments\": {\"production\":"
                    " {\"a\": {\"rolout\": 5}}}}", PG_ERR,
                    "environments.production.a: unknown key \"rolout\"",
                    "a malformed flag is an error off the base too");
    t_patch_refused("{\"base_revision\": 5, \"revision\": 6,"
                    " \"environments\": {\"production\":"
                    " {\"a\": {\"rolout\": 5}}}}", PG_ERR,
                    "environments.production.a: unknown key \"rolout\"",
                    "a malformed flag is an error on the base");
    t_patch_refused("{\"base_revision\": 4, \"revision\": 6,"
                    " \"environments\": {\"production\":"
                    " {\"a\": {\"rollout\": \"x\"}}}}", PG_ERR,
                    "environments.production.a",
                    "a flag's bad rollout is an error off the base");
}


/* The snapshot document a patch is applied to is the caller's: one that
 * is no snapshot is PG_FAULT, not the patch's PG_ERR. */
static void
test_patch_bad_snapshot(void)
{
    size_t       i;
    json_t      *snap, *p, *r;
    pg_error_t   err;

    static const char  *bad[] = {
        "[]",
        "{\"environments\": {}}",
        "{\"revision\": 5}",
        "{\"revision\": 5, \"environments\": {\"production\": 1}}",
    };

    p = t_json("{\"base_revision\": 5, \"revision\": 6, \"environments\":"
               " {\"production\": {\"a\": {\"rollout\": 100}}}}");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snap = t_json(bad[i]);
        r = NULL;
        memset(&err, 0, sizeof(err));

        t_ok(pg_snap_patch_json(snap, p, &r, &err) == PG_FAULT
             && r == NULL && err.text[0] != '\0',
             "patch: a snapshot that is none is the caller's fault: %s",
             bad[i]);

        json_decref(snap);
    }

    json_decref(p);
}


static void
test_patch_empty_edge(void)
{
    int          rc;
    json_t      *snap, *p, *r;
    pg_error_t   err;
    pg_result_t  res;

    /* an edge with no snapshot yet: the empty snapshot, revision 0 */

    snap = pg_snap_to_json(&(pg_snap_t) { NULL, 0, NULL });
    p = t_json("{\"base_revision\": 0, \"revision\": 1, \"environments\":"
               " {\"production\": {\"a\": {\"rollout\": 100}}}}");

    rc = pg_snap_patch_json(snap, p, &r, &err);
    t_ok(rc == PG_OK, "patch: base 0 applies to the empty snapshot");

    res = rc == PG_OK ? t_patched_eval(r, "production", "a", "1")
                      : (pg_result_t) { 0, PG_REASON_UNKNOWN, -1 };
    t_ok(res.on, "patch: and creates its environment and flag");

    if (rc == PG_OK) {
        json_decref(r);
    }

    json_decref(p);
    json_decref(snap);
}


/* --- the pieces form and a patch of an index (pg_build.c) ------------- */

/* A build's pieces as a view needs them: the new ones, and for each kept
 * one the old build's piece of that position. Freed by the caller. */
static const unsigned char **
t_build_pieces(const pg_build_t *b, const unsigned char *const *old)
{
    size_t                 i;
    const unsigned char  **p;

    p = calloc(b->count ? b->count : 1, sizeof(unsigned char *));

    for (i = 0; p != NULL && i < b->count; i++) {
        p[i] = b->kept[i] ? old[b->kept[i] - 1] : b->pieces[i];
    }

    return p;
}


/* The text of a view, for comparisons; malloc()ed. */
static char *
t_view_text(const pg_snap_t *snap)
{
    char    *text;
    json_t  *root;

    root = pg_snap_to_json(snap);
    text = root ? t_dump(root) : NULL;
    json_decref(root);

    return text;
}


static void
test_pieces_form(void)
{
    int                    same;
    char                  *a, *b;
    size_t                 i;
    json_t                *root;
    t_snap_t               s;
    pg_snap_t              view;
    pg_build_t             build;
    pg_error_t             err;
    pg_result_t            r1, r2;
    const char            *ids[] = { "1001", "1002", "9", "x", "" };
    const unsigned char   *swapped[2];

    if (!t_ok(t_compile(t_blob_json, &s), "pieces: the packed form opens")) {
        return;
    }

    root = t_json(t_blob_json);

    if (!t_ok(pg_snap_build_json(root, 1000, &build, &err) == PG_OK,
              "pieces: a snapshot builds in the pieces form"))
    {
        t_diag("%s", err.text);
        json_decref(root);
        t_snap_free(&s);
        return;
    }

    json_decref(root);

    t_ok(build.count == 2 && build.ids[0] == 1000 && build.ids[1] == 1001
         && build.kept[0] == 0 && build.kept[1] == 0,
         "pieces: one new piece per non-empty list, numbered from first_id");

    t_ok(pg_piece_check(build.pieces[0], build.sizes[0], &err) == PG_OK
         && pg_piece_check(build.pieces[1], build.sizes[1], &err) == PG_OK
         && pg_piece_id(build.pieces[1]) == 1001,
         "pieces: each piece checks on its own");

    t_ok(pg_snap_open_pieces(&view, build.index, build.index_size,
                             (const unsigned char *const *) build.pieces,
                             build.count, &err) == PG_OK,
         "pieces: the index opens with its pieces");

    same = 1;

    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        pg_eval(&s.snap, "production", 10, "a", 1, ids[i], strlen(ids[i]),
                &r1);
        pg_eval(&view, "production", 10, "a", 1, ids[i], strlen(ids[i]),
                &r2);
        same &= r1.on == r2.on && r1.reason == r2.reason
                && r1.bucket == r2.bucket;
    }

    t_ok(same, "pieces: evaluation is the packed form's");

    a = t_view_text(&s.snap);
    b = t_view_text(&view);
    t_ok(a && b && strcmp(a, b) == 0, "pieces: JSON is the packed form's");
    free(a);
    free(b);

    t_ok(pg_snap_piece_count(&view) == 2
         && pg_snap_piece_id(&view, 1, &i) == 1001 && i == build.sizes[1]
         && pg_snap_piece(&view, 1) == build.pieces[1]
         && pg_snap_index_size(&view) == build.index_size,
         "pieces: the accessors name each piece");

    swapped[0] = build.pieces[1];
    swapped[1] = build.pieces[0];

    t_ok(pg_snap_open_pieces(&view, build.index, build.index_size,
                             swapped, 2, &err) == PG_ERR
         && strstr(err.text, "not the one the index names") != NULL,
         "pieces: a piece in another's place is refused");

    t_ok(pg_snap_open_pieces(&view, build.index, build.index_size, NULL,
                             0, &err) == PG_ERR,
         "pieces: an index without its pieces is refused");

    t_ok(pg_snap_open_pieces(&view, build.index, build.index_size,
                             (const unsigned char *const *) build.pieces,
                             build.count - 1, &err) == PG_ERR
         && strstr(err.text, "pieces, 1 given") != NULL,
         "pieces: fewer pieces than the index names are refused, none read");

    build.pieces[0][sizeof(pg_blob_piece_t) - 4] = 1;
    t_ok(pg_piece_check(build.pieces[0], build.sizes[0], &err) == PG_ERR,
         "pieces: a piece with a corrupt header is refused");

    pg_build_free(&build);
    t_snap_free(&s);
}


static const char  t_build_base[] =
    "{\"revision\": 7, \"environments\": {"
    " \"production\": {"
    "  \"big\": {\"rollout\": 5, \"allow\": [\"b1\", \"b2\", \"b3\", \"b4\"],"
    "           \"deny\": [\"d1\"], \"salt\": \"s\", \"version\": 3,"
    "           \"description\": \"big one\", \"updated_by\": \"ops\"},"
    "  \"small\": {\"rollout\": 100, \"allow\": [\"s1\"]},"
    "  \"child\": {\"requires\": \"big\", \"rollout\": 100}},"
    " \"staging\": {\"x\": {\"rollout\": 50, \"deny\": [\"q\"]}}}}";


/* t_patch_both(): the two ways disagree */
#define T_BOTH_DIFFER  -99


/*
 * Apply patch both ways, to old (a build, and its JSON doc): the index
 * way (pg_snap_build_patch) and the document way (pg_snap_patch_json,
 * compiled). The same rc and error text, and on PG_OK the same JSON.
 * On PG_OK *next is the index way's build and *next_doc the document.
 */
static int
t_patch_both(const pg_build_t *old, const unsigned char *const *old_pieces,
    const json_t *old_doc, const char *patch, pg_build_t *next,
    const unsigned char ***next_pieces, json_t **next_doc, char *why,
    size_t why_len)
{
    int              rc1, rc2, ok;
    char            *a, *b;
    size_t           size;
    json_t          *p, *r;
    pg_snap_t        view;
    pg_error_t       e1, e2;
    unsigned char   *blob;

    p = t_json(patch);
    memset(&e1, 0, sizeof(e1));
    memset(&e2, 0, sizeof(e2));

    rc1 = pg_snap_build_patch(old->index, old->index_size, p, 1000000,
                              next, &e1);

    r = NULL;
    rc2 = pg_snap_patch_json(old_doc, p, &r, &e2);

    b = NULL;

    if (rc2 == PG_OK) {
        rc2 = pg_snap_compile_json(r, &blob, &size, &e2);

        if (rc2 == PG_OK) {
            (void) pg_snap_open(&view, blob, size, &e2);
            b = t_view_text(&view);
            free(blob);
        }
    }

    json_decref(p);

    ok = rc1 == rc2 && (rc1 == PG_OK || strcmp(e1.text, e2.text) == 0);
    snprintf(why, why_len, "index way %d \"%s\", document way %d \"%s\"",
             rc1, rc1 == PG_OK ? "" : e1.text, rc2,
             rc2 == PG_OK ? "" : e2.text);

    if (rc1 != PG_OK || !ok) {
        json_decref(r);

        if (rc1 == PG_OK) {
            pg_build_free(next);
        }

        free(b);

        return rc1 == PG_OK ? T_BOTH_DIFFER : (ok ? rc1 : T_BOTH_DIFFER);
    }

    *next_pieces = t_build_pieces(next, old_pieces);

    if (pg_snap_open_pieces(&view, next->index, next->index_size,
                            *next_pieces, next->count, &e1) != PG_OK)
    {
        snprintf(why, why_len, "the patched index does not open: %s",
                 e1.text);
        free(*next_pieces);
        pg_build_free(next);
        json_decref(r);
        free(b);
        return T_BOTH_DIFFER;
    }

    a = t_view_text(&view);
    ok = a && b && strcmp(a, b) == 0;

    if (!ok) {
        snprintf(why, why_len, "index way %.100s, document way %.100s",
                 a ? a : "", b ? b : "");
    }

    free(a);
    free(b);

    if (!ok) {
        free(*next_pieces);
        pg_build_free(next);
        json_decref(r);
        return T_BOTH_DIFFER;
    }

    *next_doc = r;

    return PG_OK;
}


static void
test_build_patch(void)
{
    int                    rc;
    char                   why[512];
    size_t                 i, big_allow;
    json_t                *doc, *doc2, *doc3;
    pg_snap_t              view;
    pg_build_t             old, next, next2;
    pg_error_t             err;
    pg_result_t            res;
    const unsigned char  **np, **np2;

    doc = t_json(t_build_base);

    if (!t_ok(doc && pg_snap_build_json(doc, 1, &old, &err) == PG_OK,
              "build patch: the base builds"))
    {
        json_decref(doc);
        return;
    }

    /* a kill of "small": big's pieces kept, small's new */

    rc = t_patch_both(&old, (const unsigned char *const *) old.pieces, doc,
                      "{\"base_revision\": 7, \"revision\": 8,"
                      " \"environments\": {\"production\": {\"small\":"
                      " {\"enabled\": false, \"rollout\": 100,"
                      " \"allow\": [\"s1\"]}}}}",
                      &next, &np, &doc2, why, sizeof(why));

    if (!t_ok(rc == PG_OK, "build patch: a kill applies, and gives the "
              "document way's snapshot"))
    {
        t_diag("%s", why);
        pg_build_free(&old);
        json_decref(doc);
        return;
    }

    /* big: allow and deny are the first two lists of both indexes */
    big_allow = 0;

    t_ok(next.count == 4 && next.pieces[big_allow] == NULL
         && next.kept[0] == 1 && next.kept[1] == 2
         && next.ids[0] == old.ids[0] && next.ids[1] == old.ids[1]
         && next.pieces[2] != NULL && next.kept[2] == 0
         && next.ids[2] >= 1000000 && next.kept[3] == 4,
         "build patch: only the patched flag's list is a new piece");

    t_ok(next.new_bytes == next.index_size + next.sizes[2]
         && next.bytes > next.new_bytes,
         "build patch: new bytes are the index and that piece");

    (void) pg_snap_open_pieces(&view, next.index, next.index_size, np,
                               next.count, &err);
    pg_eval(&view, "production", 10, "small", 5, "s1", 2, &res);
    t_ok(!res.on && res.reason == PG_REASON_KILLED,
         "build patch: the kill is in the new index");
    pg_eval(&view, "production", 10, "big", 3, "b3", 2, &res);
    t_ok(res.on && res.reason == PG_REASON_ALLOWED,
         "build patch: a kept piece still answers");

    /* a second patch on the first: delete small, add a flag in a new
     * environment, change big's deny */

    rc = t_patch_both(&next, np, doc2,
                      "{\"base_revision\": 8, \"revision\": 10,"
                      " \"environments\": {\"production\": {\"small\": null,"
                      " \"big\": {\"rollout\": 5, \"allow\": [\"b1\"],"
                      " \"deny\": [\"d2\", \"d3\"]}},"
                      " \"qa\": {\"n\": {\"requires\": \"m\"},"
                      " \"m\": {\"rollout\": 1}}}}",
                      &next2, &np2, &doc3, why, sizeof(why));

    if (t_ok(rc == PG_OK, "build patch: a patch on a patched index "
             "(delete, replace, a new environment)"))
    {
        t_ok(next2.count == 3 && next2.kept[2] == 4,
             "build patch: staging's piece is kept through two patches");
        free(np2);
        pg_build_free(&next2);
        json_decref(doc3);

    } else {
        t_diag("%s", why);
    }

    /* refusals: the same answer and text as the document way */

    static const char  *refused[] = {
        "{\"base_revision\": 7, \"revision\": 9, \"environments\": {}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environments\":"
        " {\"production\": {\"big\": null}}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environments\":"
        " {\"production\": {\"big\": {\"requires\": \"child\"}}}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environments\":"
        " {\"production\": {\"small\": {\"requires\": \"nope\"}}}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environments\":"
        " {\"production\": {\"small\": {\"rolout\": 1}}}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environments\":"
        " {\"production\": {\"small\": {\"allow\": [\"a b\"]}}}}",
        "{\"base_revision\": 8, \"revision\": 8, \"environments\": {}}",
        "{\"base_revision\": 8, \"revision\": 9, \"environment\": {}}",
    };

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        rc = t_patch_both(&next, np, doc2, refused[i], &next2, &np2, &doc3,
                          why, sizeof(why));

        if (!t_ok(rc == PG_ERR || rc == PG_CONFLICT, "build patch: refusal "
                  "%zu as the document way refuses it", i))
        {
            t_diag("%s", why);

            if (rc == PG_OK) {
                free(np2);
                pg_build_free(&next2);
                json_decref(doc3);
            }
        }
    }

    /* a corrupt old index is refused, never read past; it is the
     * caller's memory, not the patch: PG_FAULT (an edge's 500), not
     * PG_ERR (its 400). The patch is one that applies to the index
     * intact. */

    doc3 = t_json("{\"base_revision\": 8, \"revision\": 9, \"environments\":"
                  " {\"production\": {\"small\": {\"rollout\": 1}}}}");
    rc = pg_snap_build_patch(next.index, next.index_size, doc3, 1, &next2,
                             &err);
    t_ok(rc == PG_OK, "build patch: a patch on revision 8 applies to it");

    if (rc == PG_OK) {
        pg_build_free(&next2);
    }

    memset(&err, 0, sizeof(err));
    t_ok(pg_snap_build_patch(next.index, next.index_size - 4,
                             doc3, 1, &next2, &err) == PG_FAULT
         && err.text[0] != '\0',
         "build patch: but to that index cut short, it is the caller's "
         "fault");

    next.index[0] ^= 0x40;
    memset(&err, 0, sizeof(err));
    rc = pg_snap_build_patch(next.index, next.index_size, doc3, 1, &next2,
                             &err);
    t_ok(rc == PG_FAULT && strstr(err.text, "bad magic") != NULL,
         "build patch: to that index with a bad magic, the caller's fault, "
         "saying why");
    next.index[0] ^= 0x40;

    next.index[sizeof(pg_blob_hdr_t)] ^= 0x40;
    t_ok(pg_snap_build_patch(next.index, next.index_size,
                             doc3, 1, &next2, &err) == PG_FAULT,
         "build patch: to that index corrupt, the caller's fault");

    /* a bad patch is still the patch's error, whatever the index */
    t_ok(pg_snap_build_patch(next.index, next.index_size,
                             doc2, 1, &next2, &err) == PG_ERR,
         "build patch: a snapshot given as a patch is refused first");

    json_decref(doc3);

    /* a malformed flag off the base: an error, not a conflict */

    doc3 = t_json("{\"base_revision\": 3, \"revision\": 4, \"environments\":"
                  " {\"production\": {\"a\": {\"rolout\": 5}}}}");
    memset(&err, 0, sizeof(err));
    rc = pg_snap_build_patch(NULL, 0, doc3, 5, &next2, &err);
    t_ok(rc == PG_ERR && strstr(err.text, "environments.production.a: "
                                "unknown key \"rolout\"") != NULL,
         "build patch: a malformed flag is an error whatever the base");

    if (rc == PG_OK) {
        pg_build_free(&next2);
    }

    json_decref(doc3);

    /* the empty snapshot: base 0 */

    doc3 = t_json("{\"base_revision\": 0, \"revision\": 1, \"environments\":"
                  " {\"production\": {\"a\": {\"allow\": [\"1\"]}}}}");
    rc = pg_snap_build_patch(NULL, 0, doc3, 5, &next2, &err);
    t_ok(rc == PG_OK && next2.count == 1 && next2.ids[0] == 5
         && next2.kept[0] == 0,
         "build patch: base 0 applies to the empty snapshot");

    if (rc == PG_OK) {
        pg_build_free(&next2);
    }

    json_decref(doc3);
    free(np);
    pg_build_free(&next);
    pg_build_free(&old);
    json_decref(doc2);
    json_decref(doc);
}


/* A long series of random patches, both ways, from one base. */
static void
test_build_patch_series(void)
{
    int                    rc, ok;
    char                   why[512], patch[2048], flag[512];
    size_t                 i, k, n, npool;
    json_t                *doc, *doc2;
    pg_build_t             cur, next;
    unsigned char        **pool;
    pg_error_t             err;
    unsigned int           seed;
    const unsigned char  **pieces, **np;
    static const char     *names[] = { "a", "b", "c", "d", "e" };

    doc = t_json(t_build_base);

    if (doc == NULL || pg_snap_build_json(doc, 1, &cur, &err) != PG_OK) {
        t_ok(0, "series: the base builds");
        json_decref(doc);
        return;
    }

    pieces = t_build_pieces(&cur, NULL);
    pool = calloc(2 * 300 * 3 + cur.count + 1, sizeof(unsigned char *));
    npool = 0;

    for (k = 0; pool != NULL && k < cur.count; k++) {
        pool[npool++] = cur.pieces[k];
        cur.pieces[k] = NULL;
    }

    seed = 12345;
    ok = 1;

    for (i = 0; i < 300 && ok; i++) {
        n = 0;
        n += (size_t) snprintf(patch + n, sizeof(patch) - n,
                               "{\"base_revision\": %zu, \"revision\": %zu,"
                               " \"environments\": {\"%s\": {",
                               i == 0 ? (size_t) 7 : 7 + i, 8 + i,
                               (seed = seed * 1103515245 + 12345) % 3
                               ? "production" : "staging");

        for (k = 0; k < 1 + (seed >> 16) % 3; k++) {
            seed = seed * 1103515245 + 12345;

            if ((seed >> 8) % 5 == 0) {
                snprintf(flag, sizeof(flag), "null");
            } else {
                snprintf(flag, sizeof(flag), "{\"rollout\": %u,"
                         " \"enabled\": %s, \"allow\": [\"%u\", \"%u\"]%s}",
                         (seed >> 4) % 101, (seed >> 3) % 2 ? "true"
                                                            : "false",
                         (seed >> 5) % 50, (seed >> 7) % 50,
                         (seed >> 9) % 4 == 0 ? ", \"requires\": \"a\"" : "");
            }

            n += (size_t) snprintf(patch + n, sizeof(patch) - n,
                                   "%s\"%s\": %s", k ? ", " : "",
                                   names[(i + k) % 5], flag);
        }

        snprintf(patch + n, sizeof(patch) - n, "}}}");

        rc = t_patch_both(&cur, pieces, doc, patch, &next, &np, &doc2, why,
                          sizeof(why));

        if (rc == PG_OK) {
            /* every piece lives in the pool until the end: kept ones are
             * shared by the builds that follow */
            for (k = 0; k < next.count; k++) {
                if (next.pieces[k] != NULL) {
                    pool[npool++] = next.pieces[k];
                    next.pieces[k] = NULL;
                }
            }

            free(pieces);
            pieces = np;
            pg_build_free(&cur);
            cur = next;
            json_decref(doc);
            doc = doc2;

        } else if (rc == T_BOTH_DIFFER) {
            ok = 0;
            t_diag("patch %zu: %s: %s", i, patch, why);

        } else {
            /* refused both ways alike: the next patch keeps this base */
            i--;
            seed += 7;
        }
    }

    t_ok(ok, "series: 300 random patches give the document way's snapshot");

    for (k = 0; k < npool; k++) {
        free(pool[k]);
    }

    free(pool);
    free(pieces);
    pg_build_free(&cur);
    json_decref(doc);
}


int
main(void)
{
    test_hash();
    test_names();
    test_eval();
    test_requires_refused();
    test_monotonic();
    test_refused();
    test_accepted();
    test_ids();
    test_metadata_and_salt();
    test_round_trip();
    test_many_flags();
    test_big_list();
    test_blob_refused();
    test_blob_every_byte();
    test_patch_applied();
    test_patch_result_checked_by_compile();
    test_patch_refused();
    test_patch_bad_snapshot();
    test_patch_empty_edge();
    test_pieces_form();
    test_build_patch();
    test_build_patch_series();

    printf("1..%d\n", t_count);

    if (t_failed) {
        t_diag("failed %d of %d tests", t_failed, t_count);
        return 1;
    }

    return 0;
}
