/*
 * test_compose.c: unit tests of pgd_compose() (controller/pgd_compose.c),
 * the rules by which portal-gated turns whatever the store holds into a
 * snapshot the edges take. No Redis, no edge: each test feeds a store read
 * (with the flags that are not valid on their own in bad) and what the
 * edges hold (good), then compiles what the edges would get and asks the
 * core's evaluation what each flag answers, as an edge would. Prints TAP;
 * exits 1 if any test failed.
 *
 *   cc -std=gnu99 -Wall -Wextra -Wno-unused-parameter -Werror -g -O1 \
 *      -fno-omit-frame-pointer -fsanitize=address,undefined \
 *      -fno-sanitize-recover=all -Iinclude -Icontroller include/pg_*.c \
 *      controller/pgd_compose.c t/unit/test_compose.c -ljansson -lm \
 *      -o build/test-compose
 */

#include <stdarg.h>         /* va_list: t_note */
#include <stdio.h>          /* printf, snprintf */
#include <stdlib.h>         /* free, rand_r */
#include <string.h>         /* strcmp, strstr, strlen */
#include <time.h>           /* clock_gettime: what the long chains cost */
#include "pgd.h"            /* pgd_compose, PG_LOG_*, PG_FLAGS_MAX */
#include "tap.h"            /* t_ok, t_diag, t_count, t_failed */


#define T_ENV   "production"


/* One run of pgd_compose(): what went in is the caller's, the rest is
 * freed by t_done(). */
typedef struct {
    int          rc;
    int          wanted;
    json_t      *out;           /* the snapshot the edges get */
    json_t      *notes;         /* key -> [level, text] */
    pg_error_t   err;
    char         answer[64];    /* of the last t_eval() */
} t_run_t;


/* --- helpers ---------------------------------------------------------- */

/* JSON text (single quotes for double, to keep the tests readable): new. */
static json_t *
t_json(const char *text)
{
    char          buf[4096];
    size_t        i;
    json_t       *j;
    json_error_t  jerr;

    for (i = 0; text[i] != '\0' && i < sizeof(buf) - 1; i++) {
        buf[i] = text[i] == '\'' ? '"' : text[i];
    }

    buf[i] = '\0';
    j = json_loads(buf, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL) {
        t_diag("bad test JSON at %d: %s: %s", jerr.position, jerr.text, buf);
        exit(1);
    }

    return j;
}


/* {"revision": rev, "environments": {"production": flags}}: new; flags
 * is stolen. */
static json_t *
t_snap(long long rev, json_t *flags)
{
    return json_pack("{s:I,s:{s:o}}", "revision", (json_int_t) rev,
                     "environments", T_ENV, flags);
}


static void
t_compose(t_run_t *run, const json_t *store, const json_t *bad,
    const json_t *good)
{
    memset(run, 0, sizeof(t_run_t));
    run->notes = json_object();
    run->rc = pgd_compose(store, bad, good, &run->out, run->notes,
                          &run->wanted, &run->err);
}


static void
t_done(t_run_t *run)
{
    json_decref(run->out);
    json_decref(run->notes);
}


/*
 * What an edge that took run->out answers for flag and company:
 * "decision/reason" ("on/allowed", "off/killed", "off/unknown"), or
 * "refused: why" when the edge would refuse it.
 */
static const char *
t_eval(t_run_t *run, const char *flag, const char *company)
{
    size_t          size;
    pg_snap_t       snap;
    pg_error_t      err;
    pg_result_t     res;
    unsigned char  *blob;

    if (run->out == NULL) {
        return "nothing pushed";
    }

    if (pg_snap_compile_json(run->out, &blob, &size, &err) != PG_OK
        || pg_snap_open(&snap, blob, size, &err) != PG_OK)
    {
        snprintf(run->answer, sizeof(run->answer), "refused: %.40s",
                 err.text);
        return run->answer;
    }

    pg_eval(&snap, T_ENV, strlen(T_ENV), flag, strlen(flag), company,
            company ? strlen(company) : 0, &res);
    snprintf(run->answer, sizeof(run->answer), "%s/%s",
             res.on ? "on" : "off", pg_reason_name(res.reason));
    free(blob);

    return run->answer;
}


static int
t_is(const char *got, const char *want, const char *name)
{
    if (!t_ok(strcmp(got, want) == 0, "%s: %s", name, want)) {
        t_diag("got %s", got);
        return 0;
    }

    return 1;
}


/* The flag as the edges get it (borrowed), or NULL. */
static json_t *
t_flag(t_run_t *run, const char *flag)
{
    return json_object_get(json_object_get(json_object_get(run->out,
                               "environments"), T_ENV), flag);
}


static size_t
t_nflags(t_run_t *run)
{
    return json_object_size(json_object_get(json_object_get(run->out,
                                "environments"), T_ENV));
}


/* A note under key, at level, whose text holds each of the NULL-ended
 * strings. */
static int
t_note(t_run_t *run, const char *key, int level, ...)
{
    int          ok;
    json_t      *note;
    va_list      args;
    const char  *text, *want;

    note = json_object_get(run->notes, key);
    text = json_string_value(json_array_get(note, 1));
    ok = note != NULL
         && json_integer_value(json_array_get(note, 0)) == level;

    va_start(args, level);

    while (ok && (want = va_arg(args, const char *)) != NULL) {
        ok = text != NULL && strstr(text, want) != NULL;
    }

    va_end(args);

    if (!t_ok(ok, "a note on %s", key)) {
        t_diag("notes: %s", json_dumps(run->notes, JSON_COMPACT));
    }

    return ok;
}


/* "fNNNN": the name of the i-th flag of the big cases. */
static const char *
t_name(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "f%04zu", i);
    return buf;
}


/* n flags f0000.. as an object, each allowing company "1"; f(i) requires
 * f(i+1) when chain is set, and the last one requires last_requires. */
static json_t *
t_many(size_t n, int chain, const char *last_requires)
{
    char     name[24], next[24];
    size_t   i;
    json_t  *flags, *flag;

    flags = json_object();

    for (i = 0; i < n; i++) {
        flag = json_pack("{s:b,s:i,s:[s]}", "enabled", 1, "rollout", 0,
                         "allow", "1");

        if (chain && i + 1 < n) {
            json_object_set_new(flag, "requires",
                                json_string(t_name(next, sizeof(next),
                                                   i + 1)));
        } else if (chain && last_requires) {
            json_object_set_new(flag, "requires",
                                json_string(last_requires));
        }

        json_object_set_new(flags, t_name(name, sizeof(name), i), flag);
    }

    return flags;
}


static double
t_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


/* --- a store that compiles -------------------------------------------- */

static void
t_as_stored(void)
{
    json_t   *store;
    t_run_t   run;

    store = t_snap(7, t_json("{'customer_portal': {'rollout': 100},"
                             " 'calls': {'requires': 'customer_portal',"
                             "           'allow': ['1']},"
                             " 'billing': {'enabled': false}}"));
    t_compose(&run, store, NULL, NULL);

    t_ok(run.rc == PG_OK, "a store that compiles: PG_OK");
    t_ok(json_equal(run.out, store), "the edges get it as it is");
    t_ok(json_object_size(run.notes) == 0, "with no note");
    t_ok(run.wanted == 0, "without asking what the edges hold");
    t_is(t_eval(&run, "calls", "1"), "on/allowed", "calls for 1");
    t_is(t_eval(&run, "billing", "1"), "off/killed", "billing");

    t_done(&run);
    json_decref(store);
}


/* --- rule 1: values that are not valid -------------------------------- */

static void
t_broken(void)
{
    json_t   *store, *good, *bad;
    t_run_t   run;

    store = t_snap(8, t_json("{'customer_portal': {'rollout': 100}}"));
    good = t_snap(7, t_json("{'customer_portal': {'rollout': 100},"
                            " 'calls': {'allow': ['1']}}"));
    bad = t_json("{'production/calls': {'why': 'invalid: unknown key "
                 "\\\"rolout\\\"', 'value': {'rolout': 5}}}");

    t_compose(&run, store, bad, good);
    t_ok(run.rc == PG_OK, "broken, with a good version: PG_OK");
    t_ok(json_equal(t_flag(&run, "calls"),
                    json_object_get(json_object_get(json_object_get(good,
                        "environments"), T_ENV), "calls")),
         "broken, with a good version: the edges keep it");
    t_is(t_eval(&run, "calls", "1"), "on/allowed", "broken: calls for 1");
    t_ok(run.wanted == 1, "broken: the good version was asked for");
    t_note(&run, "production/calls", PG_LOG_ERROR, "rolout",
           "keep its last good version", NULL);
    t_done(&run);

    t_compose(&run, store, bad, NULL);
    t_ok(run.rc == PG_OK && t_flag(&run, "calls") == NULL,
         "broken, no good version: left out");
    t_is(t_eval(&run, "calls", "1"), "off/unknown", "left out: calls for 1");
    t_is(t_eval(&run, "customer_portal", "1"), "on/rollout",
         "left out: the other flag goes out");
    t_note(&run, "production/calls", PG_LOG_ERROR, "left out",
           "no good version", NULL);
    t_done(&run);

    /* not a JSON object at all: no value */
    json_decref(bad);
    bad = t_json("{'production/calls': {'why': 'not JSON: x'}}");
    t_compose(&run, store, bad, good);
    t_is(t_eval(&run, "calls", "1"), "on/allowed",
         "not JSON: the good version");
    t_done(&run);

    /* neither "enabled": "false" nor a false elsewhere is a kill */
    json_decref(bad);
    bad = t_json("{'production/calls': {'why': 'invalid', 'value':"
                 " {'enabled': 'false', 'x': {'enabled': false}}}}");
    t_compose(&run, store, bad, good);
    t_is(t_eval(&run, "calls", "1"), "on/allowed",
         "\"enabled\": \"false\" is no kill: the good version");
    t_done(&run);

    json_decref(store);
    json_decref(good);
    json_decref(bad);
}


static void
t_broken_killed(void)
{
    json_t   *store, *good, *bad, *want;
    t_run_t   run;

    /* calls requires customer_portal; its broken value kills it */
    store = t_snap(8, t_json("{'customer_portal': {'rollout': 100},"
                             " 'chat': {'requires': 'calls',"
                             "          'allow': ['1']}}"));
    good = t_snap(7, t_json("{'customer_portal': {'rollout': 100},"
                            " 'calls': {'requires': 'customer_portal',"
                            "           'allow': ['1']},"
                            " 'chat': {'requires': 'calls',"
                            "          'allow': ['1']}}"));
    bad = t_json("{'production/calls': {'why': 'invalid: unknown key "
                 "\\\"rolout\\\"', 'value': {'enabled': false,"
                 " 'rolout': 5, 'requires': 'gone', 'allow': ['1'],"
                 " 'deny': 'not a list', 'description': 'calls v2'}}}");
    want = t_json("{'enabled': false, 'allow': ['1'],"
                  " 'description': 'calls v2'}");

    t_compose(&run, store, bad, good);
    t_ok(run.rc == PG_OK, "broken, killed: PG_OK");
    t_ok(json_equal(t_flag(&run, "calls"), want),
         "broken, killed: the edges get it killed, with its valid fields");
    t_is(t_eval(&run, "calls", "1"), "off/killed", "broken, killed: calls");
    t_is(t_eval(&run, "chat", "1"), "off/requires",
         "broken, killed: a flag that requires it");
    t_note(&run, "production/calls", PG_LOG_ERROR, "rolout",
           "goes out killed, without \"rolout\", \"requires\", \"deny\"",
           NULL);
    t_ok(json_object_get(run.notes, "production/gone") == NULL,
         "broken, killed: nothing said of what it required");
    t_done(&run);

    /* with no good version known: killed all the same, nothing asked */
    t_compose(&run, store, bad, NULL);
    t_is(t_eval(&run, "calls", "1"), "off/killed",
         "broken, killed, no good version: killed");
    t_is(t_eval(&run, "chat", "1"), "off/requires",
         "broken, killed, no good version: chat");
    t_ok(run.wanted == 0, "broken, killed: the edges were not asked");
    t_done(&run);

    /* the value holds nothing else */
    json_decref(bad);
    bad = t_json("{'production/calls': {'why': 'invalid', 'value':"
                 " {'enabled': false, 'rolout': 1}}}");
    t_compose(&run, store, bad, good);
    json_decref(want);
    want = t_json("{'enabled': false}");
    t_ok(json_equal(t_flag(&run, "calls"), want),
         "{\"enabled\": false, \"rolout\": 1}: {\"enabled\": false}");
    t_done(&run);

    /* a name no flag may have: not even the kill compiles, left out */
    json_decref(bad);
    bad = t_json("{'production/Calls': {'why': 'invalid name', 'value':"
                 " {'enabled': false}}}");
    t_compose(&run, store, bad, NULL);
    t_ok(run.rc == PG_OK && t_flag(&run, "Calls") == NULL,
         "a bad name, killed: left out");
    t_is(t_eval(&run, "customer_portal", "1"), "on/rollout",
         "a bad name: the rest goes out");
    t_done(&run);

    json_decref(store);
    json_decref(good);
    json_decref(bad);
    json_decref(want);
}


/* --- rule 2: at most PG_FLAGS_MAX flags --------------------------------- */

static void
t_over_limit(void)
{
    char      name[24];
    json_t   *store, *good, *flags;
    t_run_t   run;

    /* the edges hold f0000..f4095; the store adds a_new and kills f4095 */
    good = t_snap(7, t_many(PG_FLAGS_MAX, 0, NULL));
    flags = t_many(PG_FLAGS_MAX, 0, NULL);
    json_object_set_new(flags, "a_new", t_json("{'rollout': 100}"));
    json_object_set_new(json_object_get(flags, "f4095"), "enabled",
                        json_false());
    store = t_snap(8, flags);

    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK, "4097 flags: PG_OK");
    t_ok(t_nflags(&run) == PG_FLAGS_MAX, "4097 flags: the edges get %d",
         PG_FLAGS_MAX);
    t_is(t_eval(&run, "a_new", "1"), "off/unknown",
         "4097 flags: the new one is held back");
    t_is(t_eval(&run, "f4095", "1"), "off/killed",
         "4097 flags: the kill of a flag the edges hold goes out");
    t_is(t_eval(&run, "f0000", "1"), "on/allowed", "4097 flags: f0000");
    t_note(&run, T_ENV, PG_LOG_ERROR, "holds 4097 flags, at most 4096",
           "1 new flags are held back (a_new)", NULL);
    t_done(&run);

    /* no good version: the first 4096 in name order */
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "4097 flags, nothing known: %d go out", PG_FLAGS_MAX);
    t_is(t_eval(&run, "a_new", "1"), "on/rollout",
         "nothing known: a_new comes first in name order");
    t_is(t_eval(&run, t_name(name, sizeof(name), PG_FLAGS_MAX - 1), "1"),
         "off/unknown", "nothing known: the last in name order is held");
    t_done(&run);
    json_decref(store);

    /* 20 new ones: the note names 12, then how many more */
    flags = t_many(PG_FLAGS_MAX + 20, 0, NULL);
    store = t_snap(8, flags);
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "4116 flags: %d go out", PG_FLAGS_MAX);
    t_is(t_eval(&run, "f4100", "1"), "off/unknown", "f4100 is held back");
    t_note(&run, T_ENV, PG_LOG_ERROR, "20 new flags are held back (f4096, ",
           "f4107 and 8 more)", NULL);
    t_done(&run);

    json_decref(store);
    json_decref(good);
}


/* --- rule 3: requires --------------------------------------------------- */

static void
t_missing(void)
{
    json_t   *store, *good;
    t_run_t   run;

    /* 3a: killed, requires a missing flag: out killed, without requires */
    store = t_snap(8, t_json("{'calls': {'enabled': false,"
                             " 'requires': 'gone', 'allow': ['1']}}"));
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK && json_object_get(t_flag(&run, "calls"),
                                            "requires") == NULL,
         "killed, requires a missing flag: without its requires");
    t_is(t_eval(&run, "calls", "1"), "off/killed", "killed: calls");
    t_note(&run, "production/calls", PG_LOG_WARN, "is killed and requires "
           "unknown flag \"gone\"", NULL);
    t_done(&run);
    json_decref(store);

    /* 3b: the required flag was deleted: it keeps its good version */
    store = t_snap(8, t_json("{'calls': {'requires': 'customer_portal',"
                             " 'allow': ['1']}}"));
    good = t_snap(7, t_json("{'customer_portal': {'rollout': 100},"
                            " 'calls': {'requires': 'customer_portal',"
                            " 'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_is(t_eval(&run, "customer_portal", "1"), "on/rollout",
         "a required flag deleted: it keeps its good version");
    t_is(t_eval(&run, "calls", "1"), "on/allowed",
         "a required flag deleted: calls");
    t_note(&run, "production/customer_portal", PG_LOG_ERROR,
           "no longer in the store, but \"calls\" requires it", NULL);
    t_done(&run);
    json_decref(store);
    json_decref(good);

    /* 3c: a new requires of a missing flag: the good version */
    store = t_snap(8, t_json("{'calls': {'requires': 'typo',"
                             " 'allow': ['1']}}"));
    good = t_snap(7, t_json("{'calls': {'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_ok(json_object_get(t_flag(&run, "calls"), "requires") == NULL,
         "a new requires of a missing flag: the good version");
    t_is(t_eval(&run, "calls", "1"), "on/allowed",
         "reverted: calls for 1");
    t_note(&run, "production/calls", PG_LOG_ERROR, "requires unknown flag "
           "\"typo\"; the edges keep its last good version", NULL);
    t_done(&run);
    json_decref(good);

    /* 3d: no good version: left out, and what requires it after it */
    json_decref(store);
    store = t_snap(8, t_json("{'calls': {'requires': 'typo',"
                             " 'allow': ['1']},"
                             " 'chat': {'requires': 'calls', 'allow': ['1']},"
                             " 'video': {'requires': 'chat',"
                             "           'enabled': false},"
                             " 'other': {'allow': ['1']}}"));
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK, "a chain onto a missing flag: PG_OK");
    t_is(t_eval(&run, "calls", "1"), "off/unknown", "calls: left out");
    t_is(t_eval(&run, "chat", "1"), "off/unknown",
         "chat, which requires it: left out");
    t_is(t_eval(&run, "video", "1"), "off/killed",
         "video, killed, which requires chat: out killed");
    t_is(t_eval(&run, "other", "1"), "on/allowed", "other: as stored");
    t_note(&run, "production/chat", PG_LOG_ERROR,
           "requires unknown flag \"calls\"", NULL);
    t_done(&run);
    json_decref(store);
}


static void
t_cycles(void)
{
    json_t   *store, *good;
    t_run_t   run;

    /* a new requires closes a cycle: that flag keeps its good version */
    store = t_snap(8, t_json("{'a': {'requires': 'b', 'allow': ['1']},"
                             " 'b': {'requires': 'a', 'allow': ['1']}}"));
    good = t_snap(7, t_json("{'a': {'allow': ['1']},"
                            " 'b': {'requires': 'a', 'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK, "a cycle: PG_OK");
    t_ok(json_object_get(t_flag(&run, "a"), "requires") == NULL,
         "a cycle: the flag whose requires is new keeps its good version");
    t_is(t_eval(&run, "b", "1"), "on/allowed", "a cycle: b");
    t_note(&run, "production/a", PG_LOG_ERROR, "requires cycle (a -> b -> a)",
           NULL);
    t_done(&run);

    /* nothing known: all of it left out */
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK && t_nflags(&run) == 0,
         "a cycle, nothing known: left out");
    t_is(t_eval(&run, "a", "1"), "off/unknown", "a cycle: a is unknown");
    t_done(&run);
    json_decref(store);

    /* a killed flag in the cycle: it loses its requires, all go out */
    store = t_snap(8, t_json("{'a': {'requires': 'b', 'allow': ['1']},"
                             " 'b': {'requires': 'c', 'enabled': false},"
                             " 'c': {'requires': 'a', 'allow': ['1']}}"));
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK && t_nflags(&run) == 3,
         "a cycle with a killed flag: all go out");
    t_is(t_eval(&run, "b", "1"), "off/killed", "b: killed");
    t_is(t_eval(&run, "a", "1"), "off/requires", "a: requires b");
    t_is(t_eval(&run, "c", "1"), "off/requires", "c: requires a");
    t_done(&run);
    json_decref(store);

    /* a flag that requires itself */
    store = t_snap(8, t_json("{'a': {'requires': 'a', 'allow': ['1']},"
                             " 'b': {'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_ok(json_object_get(t_flag(&run, "a"), "requires") == NULL,
         "a flag that requires itself: its good version");
    t_is(t_eval(&run, "a", "1"), "on/allowed", "a: on");
    t_done(&run);
    json_decref(store);
    json_decref(good);
}


/* --- 4,096-long chains ------------------------------------------------- */

static void
t_chains(void)
{
    char      name[24];
    double    start;
    json_t   *store, *good, *flags;
    t_run_t   run;

    /* f0000 -> ... -> f4095 -> missing, nothing known: all left out */
    store = t_snap(8, t_many(PG_FLAGS_MAX, 1, "missing"));
    start = t_ms();
    t_compose(&run, store, NULL, NULL);
    t_diag("a chain of %d onto a missing flag: %.1f ms", PG_FLAGS_MAX,
           t_ms() - start);
    t_ok(run.rc == PG_OK, "a chain of 4096 onto a missing flag: PG_OK");
    t_ok(t_nflags(&run) == 0, "a chain onto a missing flag: all left out");
    t_is(t_eval(&run, "f0000", "1"), "off/unknown", "f0000");
    t_done(&run);

    /* the same with the edges holding the chain as it was: f4095 is
     * reverted, the rest goes out as stored */
    good = t_snap(7, t_many(PG_FLAGS_MAX, 1, NULL));
    start = t_ms();
    t_compose(&run, store, NULL, good);
    t_diag("the same, reverted: %.1f ms", t_ms() - start);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "a chain onto a missing flag, known: all go out");
    t_ok(json_object_get(t_flag(&run, "f4095"), "requires") == NULL,
         "f4095 keeps its good version");
    t_is(t_eval(&run, "f0000", "1"), "on/allowed", "f0000 is on");
    t_done(&run);
    json_decref(store);

    /* its last flag killed: every flag goes out, each off by requires */
    flags = t_many(PG_FLAGS_MAX, 1, "missing");
    json_object_set_new(json_object_get(flags, "f4095"), "enabled",
                        json_false());
    store = t_snap(8, flags);
    t_compose(&run, store, NULL, NULL);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "a chain onto a killed flag: all go out");
    t_is(t_eval(&run, "f0000", "1"), "off/requires", "f0000: off, requires");
    t_is(t_eval(&run, "f4095", "1"), "off/killed", "f4095: killed");
    t_done(&run);
    json_decref(store);

    /* a cycle of 4096: f4095 -> f0000 */
    store = t_snap(8, t_many(PG_FLAGS_MAX, 1, "f0000"));
    start = t_ms();
    t_compose(&run, store, NULL, NULL);
    t_diag("a cycle of %d: %.1f ms", PG_FLAGS_MAX, t_ms() - start);
    t_ok(run.rc == PG_OK && t_nflags(&run) == 0,
         "a cycle of 4096, nothing known: left out");
    t_note(&run, "production/f0000", PG_LOG_ERROR,
           "f0000 -> f0001 -> ", "... (4096 flags) -> f0000", NULL);
    t_done(&run);

    /* the same, known: the flag whose requires is new is reverted */
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "a cycle of 4096, known: all go out");
    t_ok(json_object_get(t_flag(&run, "f4095"), "requires") == NULL,
         "f4095 keeps its good version");
    t_is(t_eval(&run, t_name(name, sizeof(name), 2048), "1"), "on/allowed",
         "f2048 is on");
    t_done(&run);
    json_decref(store);

    /* a broken flag in the middle of the chain, killed by hand */
    flags = t_many(PG_FLAGS_MAX, 1, NULL);
    json_object_del(flags, "f2048");
    store = t_snap(8, flags);
    flags = t_json("{'production/f2048': {'why': 'invalid', 'value':"
                   " {'enabled': false, 'requires': 'f2049',"
                   "  'rolout': 1}}}");
    t_compose(&run, store, flags, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "a chain with a broken, killed flag: all go out");
    t_is(t_eval(&run, "f2048", "1"), "off/killed", "f2048: killed");
    t_is(t_eval(&run, "f0000", "1"), "off/requires", "f0000: requires");
    t_is(t_eval(&run, "f2049", "1"), "on/allowed", "f2049: on");
    t_done(&run);
    json_decref(flags);
    json_decref(store);
    json_decref(good);
}


/* --- deleted flags that others require ---------------------------------- */

static void
t_deleted_required(void)
{
    char      name[24];
    size_t    i;
    double    start;
    json_t   *store, *good, *sf, *gf;
    t_run_t   run;

    /* r deleted from the store; a, b and c require it: each stays on */
    good = t_snap(7, t_json("{'r': {'rollout': 100},"
                            " 'a': {'requires': 'r', 'allow': ['1']},"
                            " 'b': {'requires': 'r', 'allow': ['1']},"
                            " 'c': {'requires': 'r', 'allow': ['1']}}"));
    store = t_snap(8, t_json("{'a': {'requires': 'r', 'allow': ['1']},"
                             " 'b': {'requires': 'r', 'allow': ['1']},"
                             " 'c': {'requires': 'r', 'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == 4,
         "three flags require a deleted flag: all four go out");
    t_is(t_eval(&run, "a", "1"), "on/allowed", "the first requirer: a");
    t_is(t_eval(&run, "b", "1"), "on/allowed", "the second requirer: b");
    t_is(t_eval(&run, "c", "1"), "on/allowed", "the third requirer: c");
    t_ok(json_object_get(run.notes, "production/b") == NULL
         && json_object_get(run.notes, "production/c") == NULL,
         "nothing said of b and c: they go out as stored");
    t_note(&run, "production/r", PG_LOG_ERROR, "no longer in the store", NULL);
    t_done(&run);
    json_decref(store);
    json_decref(good);

    /* at the limit: r deleted and x_new created, f requires r; the edges
     * hold f and r, so they come before x_new */
    gf = json_object();

    for (i = 0; i < PG_FLAGS_MAX - 2; i++) {
        json_object_set_new(gf, t_name(name, sizeof(name), i),
                            json_pack("{s:i}", "rollout", 100));
    }

    json_object_set_new(gf, "r", t_json("{'rollout': 100}"));
    json_object_set_new(gf, "f", t_json("{'requires': 'r',"
                                        " 'allow': ['1']}"));
    sf = json_deep_copy(gf);
    json_object_del(sf, "r");
    json_object_set_new(sf, "x_new", t_json("{'rollout': 100}"));
    good = t_snap(7, gf);
    store = t_snap(8, sf);

    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "at the limit, a deleted flag required: %d go out", PG_FLAGS_MAX);
    t_is(t_eval(&run, "f", "1"), "on/allowed",
         "at the limit: f, which the edges hold, stays on");
    t_is(t_eval(&run, "r", "1"), "on/rollout",
         "at the limit: r keeps its good version");
    t_is(t_eval(&run, "x_new", "1"), "off/unknown",
         "at the limit: the new flag is held back");
    t_note(&run, "production/x_new", PG_LOG_ERROR, "held back",
           "4096", NULL);
    t_done(&run);
    json_decref(store);

    /* the same, but the new flag is the one that requires r */
    sf = json_deep_copy(json_object_get(json_object_get(good,
                                        "environments"), T_ENV));
    json_object_del(sf, "r");
    json_object_set_new(sf, "x_new", t_json("{'requires': 'r',"
                                            " 'allow': ['1']}"));
    json_object_set_new(sf, "a_new", t_json("{'rollout': 100}"));
    store = t_snap(8, sf);
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "at the limit, a new flag requires a deleted one: %d go out",
         PG_FLAGS_MAX);
    t_is(t_eval(&run, "f", "1"), "on/allowed", "f stays on");
    t_is(t_eval(&run, "a_new", "1"), "off/unknown",
         "a_new: held back by the limit");
    t_is(t_eval(&run, "x_new", "1"), "off/unknown", "x_new: held back");
    t_done(&run);
    json_decref(store);
    json_decref(good);

    /* a chain of 4096 deleted by hand but its first flag: all restored */
    good = t_snap(7, t_many(PG_FLAGS_MAX, 1, NULL));
    sf = json_object();
    json_object_set(sf, "f0000", json_object_get(json_object_get(
                        json_object_get(good, "environments"), T_ENV),
                        "f0000"));
    store = t_snap(8, sf);
    start = t_ms();
    t_compose(&run, store, NULL, good);
    t_diag("a chain of %d deleted flags restored: %.1f ms", PG_FLAGS_MAX,
           t_ms() - start);
    t_ok(run.rc == PG_OK && t_nflags(&run) == PG_FLAGS_MAX,
         "a chain of 4096 deleted flags: all keep their good versions");
    t_is(t_eval(&run, "f0000", "1"), "on/allowed", "f0000 is on");
    t_note(&run, "production/f4095", PG_LOG_ERROR, "no longer in the store",
           "\"f4094\" requires it", NULL);
    t_done(&run);
    json_decref(store);
    json_decref(good);
}


/* --- a good version the core refuses ------------------------------------ */

static void
t_good_refused(void)
{
    json_t   *store, *good, *bad;
    t_run_t   run;

    /* an edge's snapshot (the seed) holds a flag with a key this core does
     * not know; the store holds that flag broken and kills another */
    good = t_snap(1, t_json("{'billing': {'enabled': true, 'newkey': 1},"
                            " 'customer_portal': {'allow': ['1']}}"));
    store = t_snap(9, t_json("{'customer_portal': {'enabled': false,"
                             " 'allow': ['1']}}"));
    bad = t_json("{'production/billing': {'why': 'invalid: unknown key "
                 "\\\"rolout\\\"', 'value': {'rolout': 1}}}");

    t_compose(&run, store, bad, good);
    t_ok(run.rc == PG_OK, "a good version the core refuses: PG_OK");
    t_is(t_eval(&run, "customer_portal", "1"), "off/killed",
         "a good version the core refuses: the kill goes out");
    t_is(t_eval(&run, "billing", "1"), "off/unknown",
         "the flag whose only good version is refused: left out");
    t_note(&run, "production/billing", PG_LOG_ERROR, "left out", NULL);
    t_done(&run);
    json_decref(store);

    /* it is required by a flag whose store version was deleted */
    store = t_snap(9, t_json("{'calls': {'requires': 'billing',"
                             " 'allow': ['1']}}"));
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_OK, "a refused good version required: PG_OK");
    t_is(t_eval(&run, "calls", "1"), "off/unknown",
         "a refused good version is not restored: calls left out");
    t_done(&run);
    json_decref(store);

    /* the last resort keeps only what the core takes */
    store = json_pack("{s:I,s:{s:o,s:{}}}", "revision", (json_int_t) 9,
                      "environments", T_ENV,
                      t_json("{'customer_portal': {'enabled': false}}"),
                      "Not-An-Env");
    t_compose(&run, store, bad, good);
    t_ok(run.rc == PG_OK, "the last resort, a refused good version: PG_OK");
    t_is(t_eval(&run, "customer_portal", "1"), "off/killed",
         "the last resort: the kill goes out");
    t_is(t_eval(&run, "billing", "1"), "off/unknown",
         "the last resort: the refused flag is left out");
    t_done(&run);

    json_decref(store);
    json_decref(good);
    json_decref(bad);
}


/* --- when nothing else compiles ----------------------------------------- */

static void
t_last_resort(void)
{
    json_t   *store, *good, *bad;
    t_run_t   run;

    /* an environment no edge takes: the good snapshot, with the kills */
    store = json_pack("{s:I,s:{s:o,s:{}}}", "revision", (json_int_t) 9,
                      "environments", T_ENV,
                      t_json("{'a': {'enabled': false},"
                             " 'b': {'allow': ['1']}}"),
                      "Not-An-Env");
    good = t_snap(7, t_json("{'a': {'allow': ['1']},"
                            " 'b': {'allow': ['1']},"
                            " 'c': {'allow': ['1']}}"));
    bad = t_json("{'production/c': {'why': 'invalid', 'value':"
                 " {'enabled': false, 'x': 1}}}");

    t_compose(&run, store, bad, good);
    t_ok(run.rc == PG_OK, "a store that does not compile: PG_OK");
    t_ok(json_integer_value(json_object_get(run.out, "revision")) == 9,
         "the store's revision");
    t_is(t_eval(&run, "a", "1"), "off/killed", "a store kill goes out");
    t_is(t_eval(&run, "c", "1"), "off/killed",
         "a broken value's kill goes out");
    t_is(t_eval(&run, "b", "1"), "on/allowed", "b as the edges hold it");
    t_note(&run, "*", PG_LOG_ERROR, "only its kills", NULL);
    t_done(&run);

    /* and without a good snapshot: nothing */
    t_compose(&run, store, bad, NULL);
    t_ok(run.rc == PG_ERR && run.out == NULL,
         "nothing compiles, nothing known: PG_ERR, nothing pushed");
    t_done(&run);
    json_decref(store);

    /* a revision no edge takes: nothing, whatever is known */
    store = t_snap(9007199254740992LL, t_json("{'a': {}}"));
    t_compose(&run, store, NULL, good);
    t_ok(run.rc == PG_ERR && run.out == NULL && run.err.text[0] != '\0',
         "a revision above 2^53 - 1: PG_ERR (%s)", run.err.text);
    t_done(&run);

    json_decref(store);
    json_decref(good);
    json_decref(bad);
}


/* --- deltas: pgd_compose_fast() and pgd_patch_of() ----------------------- */

/* A random flag valid on its own: on or killed, a rollout, an allow list,
 * and now and then a requires of one of the first nnames flags (which
 * may be missing, or close a cycle). New. */
static json_t *
t_random_flag(unsigned *seed, size_t nnames)
{
    char     name[24];
    json_t  *flag;

    flag = json_pack("{s:b,s:i,s:[s]}", "enabled", rand_r(seed) % 5 != 0,
                     "rollout", rand_r(seed) % 101, "allow", "1");

    if (rand_r(seed) % 3 == 0) {
        json_object_set_new(flag, "requires",
                            json_string(t_name(name, sizeof(name),
                                               (size_t) rand_r(seed)
                                               % nnames)));
    }

    return flag;
}


/*
 * A long random series of one-flag changes (set or delete) to a store
 * that composes as it is: pgd_compose_fast() must say 1 exactly when
 * pgd_compose() gives the store itself with no note, and the patch that
 * pgd_patch_of() finds from the edges' snapshot to the new one must make,
 * applied as an edge applies it, exactly the new one.
 */
static void
t_deltas(void)
{
    int           fast, same, bad_fast, bad_patch, nfast, nslow;
    char          name[24];
    size_t        i, nflags, changes;
    json_t       *store, *next, *patch, *envs, *flags, *applied;
    unsigned      seed;
    t_run_t       run;
    pg_error_t    err;

    seed = 14;
    store = t_snap(1, t_many(8, 0, NULL));
    bad_fast = 0;
    bad_patch = 0;
    nfast = 0;
    nslow = 0;

    for (i = 0; i < 3000; i++) {
        t_name(name, sizeof(name), (size_t) rand_r(&seed) % 12);
        flags = json_object();

        if (rand_r(&seed) % 4 == 0) {
            json_object_set_new(flags, name, json_null());
        } else {
            json_object_set_new(flags, name, t_random_flag(&seed, 12));
        }

        envs = json_pack("{s:o}", T_ENV, flags);
        patch = json_pack("{s:O,s:I,s:O}", "base_revision",
                          json_object_get(store, "revision"), "revision",
                          json_integer_value(json_object_get(store,
                                                             "revision"))
                          + 1, "environments", envs);

        if (pg_snap_patch_json(store, patch, &next, &err) != PG_OK) {
            t_diag("cannot apply change %zu: %s", i, err.text);
            bad_fast++;
            json_decref(patch);
            json_decref(envs);
            break;
        }

        fast = pgd_compose_fast(next, envs);
        t_compose(&run, next, NULL, store);
        same = run.rc == PG_OK && json_equal(run.out, next)
               && json_object_size(run.notes) == 0;

        if (fast != same) {
            bad_fast++;
            t_diag("change %zu: fast %d, compose as stored %d: %s", i, fast,
                   same, json_dumps(envs, JSON_COMPACT));
        }

        nfast += fast;
        nslow += !fast;

        /* the edges held store; they get run.out by a patch */
        json_decref(patch);
        patch = NULL;

        if (run.rc == PG_OK) {
            json_t  *pe = pgd_patch_of(store, run.out, &nflags);

            patch = pe ? json_pack("{s:O,s:O,s:o}", "base_revision",
                                   json_object_get(store, "revision"),
                                   "revision",
                                   json_object_get(run.out, "revision"),
                                   "environments", pe)
                       : NULL;
            applied = NULL;

            if (patch == NULL
                || pg_snap_patch_json(store, patch, &applied, &err) != PG_OK
                || !json_equal(applied, run.out))
            {
                bad_patch++;
                t_diag("change %zu: the patch does not make the snapshot",
                       i);
            }

            json_decref(applied);
        }

        /* go on from what composed as it is, to keep fast's premise */
        if (same) {
            json_decref(store);
            store = next;
        } else {
            json_decref(next);
            json_object_set_new(store, "revision",
                                json_integer(json_integer_value(
                                    json_object_get(store, "revision"))
                                    + 1));
        }

        json_decref(patch);
        json_decref(envs);
        t_done(&run);
    }

    changes = i;
    t_ok(bad_fast == 0, "%zu random changes: pgd_compose_fast() says 1 "
         "exactly when pgd_compose() gives the store as it is (%d fast, "
         "%d not)", changes, nfast, nslow);
    t_ok(nfast > 100 && nslow > 100, "both kinds were seen");
    t_ok(bad_patch == 0, "each patch from the last snapshot, applied as an "
         "edge applies it, makes the new one");

    json_decref(store);
}


/* pgd_patch_of(): flags shared, changed, deleted, environments new and
 * gone. */
static void
t_patch_of(void)
{
    size_t   n;
    json_t  *from, *to, *envs;

    from = t_json("{'revision': 4, 'environments': {'production': "
                  "{'a': {'rollout': 1}, 'b': {'rollout': 2}}}}");
    to = json_deep_copy(from);

    json_object_set_new(to, "revision", json_integer(5));
    envs = pgd_patch_of(from, to, &n);
    t_ok(envs != NULL && json_object_size(envs) == 0 && n == 0,
         "an equal snapshot: a revision bump, \"environments\": {}");
    json_decref(envs);

    json_object_del(json_object_get(json_object_get(to, "environments"),
                                    "production"), "a");
    json_object_set_new(json_object_get(json_object_get(to, "environments"),
                                        "production"), "c",
                        t_json("{'enabled': false}"));
    json_object_set_new(json_object_get(to, "environments"), "staging",
                        json_object());
    envs = pgd_patch_of(from, to, &n);
    t_ok(envs != NULL && n == 2
         && json_is_null(json_object_get(json_object_get(envs, "production"),
                                         "a"))
         && json_object_get(json_object_get(envs, "production"), "c")
         && !json_object_get(json_object_get(envs, "production"), "b")
         && json_is_object(json_object_get(envs, "staging")),
         "a flag deleted is null, one added is given, one the same is not "
         "named, a new environment is named (empty: the patch creates it)");
    json_decref(envs);

    envs = pgd_patch_of(to, from, &n);
    t_ok(envs == NULL, "an environment gone: no patch says it");

    json_decref(from);
    json_decref(to);
}


int
main(void)
{
    t_as_stored();
    t_broken();
    t_broken_killed();
    t_over_limit();
    t_missing();
    t_cycles();
    t_chains();
    t_deleted_required();
    t_good_refused();
    t_last_resort();
    t_deltas();
    t_patch_of();

    printf("1..%d\n", t_count);

    if (t_failed) {
        printf("# failed %d of %d tests\n", t_failed, t_count);
        return 1;
    }

    return 0;
}
