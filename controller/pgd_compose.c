/*
 * pgd_compose.c: from whatever the store holds, the snapshot the edges
 * get (see pgd.h). Pure: JSON in, JSON out; no Redis, no edge, no log.
 *
 * A store can hold what no edge accepts: a value that is not JSON, an
 * unknown key, more flags in an environment than PG_FLAGS_MAX, a
 * `requires` of a missing flag, a cycle. The daemon must still push every
 * change that compiles, a kill above all, so instead of refusing the whole
 * revision it decides, flag by flag and without trial and error, what the
 * edges get. "Good" is what the edges hold (the last snapshot made, or an
 * edge's own); each rule below that departs from the store leaves a note.
 * Per environment, in this order:
 *
 *   1. A flag that is not valid on its own (pg_flag_check_json(), done by
 *      pg_store_snapshot()):
 *        a. when its value is a JSON object that says "enabled": false,
 *           it goes out killed: {"enabled": false} with each of its
 *           other fields that is valid on its own, without requires (as
 *           `portal-gatectl kill` salvages such a value). Whoever wrote
 *           that value meant the flag off; a typo beside the kill must
 *           not keep an older, enabled, version at the edges;
 *        b. otherwise it keeps its good version; without one it is left
 *           out.
 *   2. More than PG_FLAGS_MAX flags: the flags the edges hold come first,
 *      then new ones in name order; the excess new ones are held back.
 *   3. Then `requires`, until every flag resolves and no cycle is left.
 *      For a flag F that requires a missing flag R:
 *        a. F is killed (enabled false): it goes out without its
 *           requires. Rule 2 of the evaluation (killed) comes before rule
 *           3 (requires), so it evaluates exactly as the store means it,
 *           off, and a kill is never held back by what it requires;
 *        b. R has a good version (it was deleted from the store): R keeps
 *           it, and so does each flag R's good version requires in turn
 *           that was deleted too, in one pass however long the chain (a
 *           flag restored for one requirer serves every other). The flags
 *           the edges hold come first: at PG_FLAGS_MAX, R takes the place
 *           of the last new flag in rule 2's order, which is held back;
 *        c. F has a good version other than the store's: F keeps it;
 *        d. otherwise F is left out (off: the safe side of a gate), and
 *           the flags that require F are looked at in the next round.
 *      For a cycle: its killed flags lose their requires (as a.); else
 *      the flags whose `requires` differs from their good version keep
 *      their good version (a cycle always has a new edge, since the good
 *      snapshot compiled); else its flags without a good version are left
 *      out; else all of it is.
 *      Each flag is restored, reverted or left out at most once, so the
 *      rounds end.
 *
 * A good version is used only if it is valid on its own: one from an
 * edge's snapshot (the seed) may hold what this core refuses (a newer or
 * broken module, a hostile endpoint), and restoring it would make nothing
 * compile; such a flag counts as having no good version.
 *
 * An environment whose key the read could not read at all (bad holds
 * "env" -> {"why"}: a key of another type) keeps what the edges hold of
 * it, or is left out when that is not known; the others are composed as
 * above (a broken staging must not hold back a kill in production).
 *
 * If the result still does not compile (it should not), the edges get
 * the good snapshot with the store's kills applied to it, so that a kill
 * goes out even then; if even that does not compile (a revision out of
 * range), nothing is pushed.
 *
 * Deltas (a change read flag by flag, issue 14): pgd_compose_fast() tells,
 * from the changed flags alone, when a store that composed as it was still
 * does after the change, so that the daemon skips compiling the whole;
 * pgd_patch_of() finds the patch from what an edge holds to the new
 * snapshot.
 */

#include <stdarg.h>         /* va_list: the notes */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <stdlib.h>         /* qsort, bsearch, calloc, free */
#include <string.h>         /* strcmp, strchr, strdup, strlen */
#include "pgd.h"            /* pgd_compose, PG_FLAGS_MAX */


#define PGD_HELD_SHOWN   12         /* held-back flags a note names */
#define PGD_CYCLE_SHOWN  8          /* names of a cycle a note shows */
#define PGD_CYCLE_TEXT   (PGD_CYCLE_SHOWN * (PG_NAME_MAX + 4) + 64)
#define PGD_NOTE_MAX     900        /* bytes of a note, within a log line */

/* What rules 1 to 3 did to a flag of the environment being composed. */
#define PGD_AS_STORED    0          /* as the store has it */
#define PGD_RESTORED     1          /* its good version: the store's is
                                       not valid, or is gone */
#define PGD_REVERTED     2          /* its good version: the store's
                                       breaks the environment */
#define PGD_LEFT_OUT     3          /* not pushed */
#define PGD_UNREQUIRED   4          /* killed: pushed without requires */
#define PGD_SALVAGED     5          /* not valid, killed: its valid fields */


typedef struct {
    const char    *env;
    json_t        *flags;       /* being composed: new */
    const json_t  *good;        /* the env's flags at the edges: borrowed,
                                   NULL when unknown */
    json_t        *done;        /* name -> PGD_* (integer): new */
    json_t        *valid;       /* name -> whether its good version is
                                   valid on its own (memo): new */
    json_t        *notes;       /* borrowed */
    int           *wanted;

    /* rule 3's round under way, so that a flag held back to make room is
     * known gone in it; NULL between rounds */
    char         **names;
    size_t         n;
    unsigned char *gone;
} pgd_env_t;

/* A flag name and whether the edges hold it, for rule 2's order. */
typedef struct {
    char   *name;
    int     held_by_edges;
} pgd_rank_t;


static void pgd_note(json_t *notes, const char *key, int level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void pgd_note_flag(pgd_env_t *ce, const char *flag, int level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static const json_t *pgd_good_flag(pgd_env_t *ce, const char *name);
static int pgd_done_get(pgd_env_t *ce, const char *name);
static void pgd_done_set(pgd_env_t *ce, const char *name, int what);
static const char *pgd_requires(const json_t *flag);
static int pgd_killed(const json_t *flag);
static int pgd_same_requires(const json_t *a, const json_t *b);
static int pgd_name_cmp(const void *a, const void *b);
static int pgd_rank_cmp(const void *a, const void *b);
static char **pgd_names(const json_t *obj, size_t *n);
static void pgd_names_free(char **names, size_t n);
static int pgd_unrequire(pgd_env_t *ce, const char *name, const char *why);
static int pgd_salvage(pgd_env_t *ce, const char *name, const json_t *value,
    const char *why);
static int pgd_env_bad(pgd_env_t *ce, const json_t *bad);
static int pgd_env_limit(pgd_env_t *ce);
static int pgd_fix_missing(pgd_env_t *ce, const char *f, const char *r);
static int pgd_restore(pgd_env_t *ce, const char *f, const char *r);
static int pgd_make_room(pgd_env_t *ce, const char *f, const char *r,
    const char *requirer);
static int pgd_fix_cycle(pgd_env_t *ce, char **names, size_t *req,
    size_t start, const char *text, int *changed);
static void pgd_cycle_text(char **names, const size_t *req, size_t start,
    char *text, size_t size);
static int pgd_env_resolve(pgd_env_t *ce);
static int pgd_env_unread(json_t *envs, const json_t *bad,
    const json_t *good, json_t *notes, int *wanted);


/* --- notes ------------------------------------------------------------ */

static void
pgd_note(json_t *notes, const char *key, int level, const char *fmt, ...)
{
    char     text[PGD_NOTE_MAX];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);

    json_object_set_new(notes, key, json_pack("[is]", level, text));
}


static void
pgd_note_flag(pgd_env_t *ce, const char *flag, int level, const char *fmt,
    ...)
{
    char     key[2 * PG_NAME_MAX + 8], text[PGD_NOTE_MAX];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);

    snprintf(key, sizeof(key), "%s/%s", ce->env, flag);
    pgd_note(ce->notes, key, level, "flag \"%s\" in %s %s", flag, ce->env,
             text);
}


/* --- small helpers ---------------------------------------------------- */

/* The flag's version at the edges (borrowed), or NULL: also when that
 * version is not valid on its own (see the top of this file). */
static const json_t *
pgd_good_flag(pgd_env_t *ce, const char *name)
{
    json_t      *flag, *valid;
    pg_error_t   err;

    *ce->wanted = 1;
    flag = json_object_get(ce->good, name);

    if (flag == NULL) {
        return NULL;
    }

    valid = json_object_get(ce->valid, name);

    if (valid == NULL) {
        valid = json_boolean(pg_flag_check_json(name, flag, &err) == PG_OK);
        json_object_set_new(ce->valid, name, valid);
    }

    return json_is_true(valid) ? flag : NULL;
}


static int
pgd_done_get(pgd_env_t *ce, const char *name)
{
    return (int) json_integer_value(json_object_get(ce->done, name));
}


static void
pgd_done_set(pgd_env_t *ce, const char *name, int what)
{
    json_object_set_new(ce->done, name, json_integer(what));
}


/* The flag's `requires` (borrowed), or NULL. The flag is valid alone. */
static const char *
pgd_requires(const json_t *flag)
{
    return json_string_value(json_object_get(flag, "requires"));
}


static int
pgd_killed(const json_t *flag)
{
    return json_is_false(json_object_get(flag, "enabled"));
}


static int
pgd_same_requires(const json_t *a, const json_t *b)
{
    const char  *ra, *rb;

    ra = pgd_requires(a);
    rb = pgd_requires(b);

    return (ra == NULL && rb == NULL)
           || (ra != NULL && rb != NULL && strcmp(ra, rb) == 0);
}


static int
pgd_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* The flags the edges hold first, then in name order. */
static int
pgd_rank_cmp(const void *a, const void *b)
{
    const pgd_rank_t  *ra = a, *rb = b;

    if (ra->held_by_edges != rb->held_by_edges) {
        return rb->held_by_edges - ra->held_by_edges;
    }

    return strcmp(ra->name, rb->name);
}


/* obj's keys, copied and in name order: new, for pgd_names_free(). */
static char **
pgd_names(const json_t *obj, size_t *n)
{
    char        **names;
    size_t        i;
    json_t       *v;
    const char   *key;

    *n = json_object_size(obj);
    names = calloc(*n ? *n : 1, sizeof(char *));

    if (names == NULL) {
        return NULL;
    }

    i = 0;

    json_object_foreach((json_t *) obj, key, v) {
        names[i] = strdup(key);

        if (names[i] == NULL) {
            pgd_names_free(names, i);
            return NULL;
        }

        i++;
    }

    qsort(names, *n, sizeof(char *), pgd_name_cmp);

    return names;
}


static void
pgd_names_free(char **names, size_t n)
{
    size_t  i;

    for (i = 0; names != NULL && i < n; i++) {
        free(names[i]);
    }

    free(names);
}


/* Rule 3a: a killed flag goes out without its requires. */
static int
pgd_unrequire(pgd_env_t *ce, const char *name, const char *why)
{
    json_t  *copy;

    /* a copy: the flag object is shared with the store's snapshot */
    copy = json_copy(json_object_get(ce->flags, name));

    if (copy == NULL || json_object_del(copy, "requires") != 0) {
        json_decref(copy);
        return PG_ERR;
    }

    json_object_set_new(ce->flags, name, copy);
    pgd_done_set(ce, name, PGD_UNREQUIRED);
    pgd_note_flag(ce, name, PG_LOG_WARN, "is killed and %s: it goes out "
                  "killed, without its requires (a killed flag is off "
                  "whatever it requires)", why);

    return PG_OK;
}


/* --- rule 1: not valid on its own --------------------------------------- */

/*
 * Rule 1a: value (borrowed) is not a valid flag but says "enabled": false.
 * Returns 1 when the flag goes out killed, 0 when not even
 * {"enabled": false} is a valid flag of that name, PG_ERR.
 */
static int
pgd_salvage(pgd_env_t *ce, const char *name, const json_t *value,
    const char *why)
{
    char         dropped[PGD_NOTE_MAX / 2];
    size_t       n;
    json_t      *flag, *v;
    pg_error_t   check;
    const char  *key;

    flag = json_pack("{s:b}", "enabled", 0);
    if (flag == NULL) {
        return PG_ERR;
    }

    if (pg_flag_check_json(name, flag, &check) != PG_OK) {
        json_decref(flag);
        return 0;
    }

    n = 0;
    dropped[0] = '\0';

    json_object_foreach((json_t *) value, key, v) {
        if (strcmp(key, "enabled") == 0) {
            continue;
        }

        if (json_object_set(flag, key, v) != 0) {
            json_decref(flag);
            return PG_ERR;
        }

        /* requires may name a flag that is gone, or close a cycle: a
         * killed flag is off whatever it requires */
        if (strcmp(key, "requires") == 0
            || pg_flag_check_json(name, flag, &check) != PG_OK)
        {
            json_object_del(flag, key);

            if (n < sizeof(dropped)) {
                n += (size_t) snprintf(dropped + n, sizeof(dropped) - n,
                                       "%s\"%.64s\"", n ? ", " : "", key);
            }
        }
    }

    json_object_set_new(ce->flags, name, flag);
    pgd_done_set(ce, name, PGD_SALVAGED);
    pgd_note_flag(ce, name, PG_LOG_ERROR, "is %s; it says \"enabled\": "
                  "false, so it goes out killed, %s%s", why,
                  n ? "without " : "with all its other fields",
                  n ? dropped : "");

    return 1;
}


/* bad: "env/flag" -> {"why": text, "value": the value when it is a JSON
 * object}; see pgd_compose(). */
static int
pgd_env_bad(pgd_env_t *ce, const json_t *bad)
{
    int            rc;
    size_t         len;
    json_t        *entry;
    const char    *key, *flag, *why;
    const json_t  *good, *value;

    len = strlen(ce->env);

    json_object_foreach((json_t *) bad, key, entry) {
        flag = strchr(key, '/');

        if (flag == NULL || (size_t) (flag - key) != len
            || strncmp(key, ce->env, len) != 0)
        {
            continue;
        }

        flag++;
        why = json_string_value(json_object_get(entry, "why"));
        why = why ? why : "not valid";
        value = json_object_get(entry, "value");

        if (json_is_object(value) && pgd_killed(value)) {
            rc = pgd_salvage(ce, flag, value, why);

            if (rc == PG_ERR) {
                return PG_ERR;
            }

            if (rc == 1) {
                continue;
            }
        }

        good = pgd_good_flag(ce, flag);

        if (good != NULL) {
            json_object_set(ce->flags, flag, (json_t *) good);
            pgd_done_set(ce, flag, PGD_RESTORED);
            pgd_note_flag(ce, flag, PG_LOG_ERROR, "is %s; the edges keep "
                          "its last good version", why);

        } else {
            pgd_done_set(ce, flag, PGD_LEFT_OUT);
            pgd_note_flag(ce, flag, PG_LOG_ERROR, "is %s; it is left out: "
                          "%s", why, json_object_get(ce->good, flag)
                          ? "the version the edges hold is not valid "
                            "either" : "no good version of it is known");
        }
    }

    return PG_OK;
}


/* --- rule 2: at most PG_FLAGS_MAX flags ---------------------------------- */

static int
pgd_env_limit(pgd_env_t *ce)
{
    char         **names, list[PGD_NOTE_MAX - 300];
    size_t         n, i, len;
    pgd_rank_t    *rank;

    n = json_object_size(ce->flags);

    if (n <= PG_FLAGS_MAX) {
        return PG_OK;
    }

    names = pgd_names(ce->flags, &n);
    rank = calloc(n, sizeof(pgd_rank_t));

    if (names == NULL || rank == NULL) {
        pgd_names_free(names, n);
        free(rank);
        return PG_ERR;
    }

    for (i = 0; i < n; i++) {
        rank[i].name = names[i];
        rank[i].held_by_edges = pgd_good_flag(ce, names[i]) != NULL;
    }

    qsort(rank, n, sizeof(pgd_rank_t), pgd_rank_cmp);

    list[0] = '\0';
    len = 0;

    for (i = PG_FLAGS_MAX; i < n; i++) {
        json_object_del(ce->flags, rank[i].name);
        pgd_done_set(ce, rank[i].name, PGD_LEFT_OUT);

        if (i - PG_FLAGS_MAX < PGD_HELD_SHOWN && len < sizeof(list)) {
            len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s",
                                     len ? ", " : "", rank[i].name);
        }
    }

    if (n - PG_FLAGS_MAX > PGD_HELD_SHOWN && len < sizeof(list)) {
        snprintf(list + len, sizeof(list) - len, " and %zu more",
                 n - PG_FLAGS_MAX - PGD_HELD_SHOWN);
    }

    pgd_note(ce->notes, ce->env, PG_LOG_ERROR, "environment %s holds %zu "
             "flags, at most %d: %zu new flags are held back (%s); the "
             "edges keep the flags they have, then take new ones in name "
             "order", ce->env, n, PG_FLAGS_MAX, n - PG_FLAGS_MAX, list);

    pgd_names_free(names, n);
    free(rank);

    return PG_OK;
}


/* --- rule 3: requires ------------------------------------------------- */

/*
 * Flag f requires r, which is not among the flags: rules 3a to 3d.
 * Returns what was done (PGD_UNREQUIRED, PGD_RESTORED: r was, PGD_REVERTED,
 * PGD_LEFT_OUT), or PG_ERR.
 */
static int
pgd_fix_missing(pgd_env_t *ce, const char *f, const char *r)
{
    char           why[PG_NAME_MAX + 32];
    json_t        *flag;
    const json_t  *good_r, *good_f;

    flag = json_object_get(ce->flags, f);
    snprintf(why, sizeof(why), "requires unknown flag \"%.64s\"", r);

    if (pgd_killed(flag)) {
        return pgd_unrequire(ce, f, why) == PG_OK ? PGD_UNREQUIRED : PG_ERR;
    }

    /* restored in this round already, for another flag that requires it */
    if (json_object_get(ce->flags, r) != NULL) {
        return PGD_RESTORED;
    }

    good_r = pgd_good_flag(ce, r);

    if (good_r != NULL && pgd_done_get(ce, r) == PGD_AS_STORED) {
        return pgd_restore(ce, f, r);
    }

    good_f = pgd_good_flag(ce, f);

    if (good_f != NULL && pgd_done_get(ce, f) == PGD_AS_STORED
        && !json_equal((json_t *) good_f, flag))
    {
        json_object_set(ce->flags, f, (json_t *) good_f);
        pgd_done_set(ce, f, PGD_REVERTED);
        pgd_note_flag(ce, f, PG_LOG_ERROR, "%s; the edges keep its last "
                      "good version", why);
        return PGD_REVERTED;
    }

    json_object_del(ce->flags, f);
    pgd_done_set(ce, f, PGD_LEFT_OUT);
    pgd_note_flag(ce, f, PG_LOG_ERROR, "%s; it is left out%s", why,
                  good_f ? "" : ": no good version of it is known");

    return PGD_LEFT_OUT;
}


/*
 * Rule 3b: f requires r, deleted from the store, whose good version is
 * valid: r keeps it, and so does each flag it requires in turn that was
 * deleted too. Returns PGD_RESTORED, or PGD_LEFT_OUT when f itself had to
 * give up its place (a new flag, last in rule 2's order), or PG_ERR.
 */
static int
pgd_restore(pgd_env_t *ce, const char *f, const char *r)
{
    int            rc;
    const char    *requirer, *name;
    const json_t  *good;

    requirer = f;
    name = r;

    while (name != NULL && json_object_get(ce->flags, name) == NULL
           && pgd_done_get(ce, name) == PGD_AS_STORED
           && (good = pgd_good_flag(ce, name)) != NULL)
    {
        if (json_object_size(ce->flags) >= PG_FLAGS_MAX) {
            rc = pgd_make_room(ce, f, name, requirer);

            if (rc != PGD_RESTORED) {
                return (rc == PGD_LEFT_OUT && name != r) ? PGD_RESTORED : rc;
            }
        }

        if (json_object_set(ce->flags, name, (json_t *) good) != 0) {
            return PG_ERR;
        }

        pgd_done_set(ce, name, PGD_RESTORED);
        pgd_note_flag(ce, name, PG_LOG_ERROR, "is no longer in the store, "
                      "but \"%s\" requires it: the edges keep its last good "
                      "version", requirer);

        /* a killed flag is off whatever it requires: rule 3a, next round */
        if (pgd_killed(good)) {
            break;
        }

        requirer = name;
        name = pgd_requires(good);
    }

    return PGD_RESTORED;
}


/*
 * The environment is full and r (required by requirer, for f) is to keep
 * its good version: the flags the edges hold come first, so the last new
 * flag in rule 2's order (the greatest name without a good version) is
 * held back. Returns PGD_RESTORED (there is room now), PGD_LEFT_OUT (that
 * flag was f), or PG_ERR (no new flag: cannot be, the edges' snapshot
 * held no more than PG_FLAGS_MAX).
 */
static int
pgd_make_room(pgd_env_t *ce, const char *f, const char *r,
    const char *requirer)
{
    char           last[PG_NAME_MAX + 1], **hit;
    json_t        *v;
    const char    *key, *name;

    name = NULL;

    json_object_foreach(ce->flags, key, v) {
        if ((name == NULL || strcmp(key, name) > 0)
            && pgd_good_flag(ce, key) == NULL)
        {
            name = key;
        }
    }

    if (name == NULL) {
        return PG_ERR;
    }

    /* the key goes with the flag */
    snprintf(last, sizeof(last), "%s", name);
    name = last;

    if (ce->names != NULL) {
        hit = bsearch(&name, ce->names, ce->n, sizeof(char *), pgd_name_cmp);

        if (hit != NULL) {
            ce->gone[hit - ce->names] = 1;
        }
    }

    json_object_del(ce->flags, last);
    pgd_done_set(ce, last, PGD_LEFT_OUT);
    pgd_note_flag(ce, last, PG_LOG_ERROR, "is held back: %s holds at most "
                  "%d flags, and the edges keep those they have first: flag "
                  "\"%s\", deleted from the store but required by \"%s\", "
                  "keeps its place", ce->env, PG_FLAGS_MAX, r, requirer);

    return strcmp(last, f) == 0 ? PGD_LEFT_OUT : PGD_RESTORED;
}


/*
 * The cycle through names[start] (req: index + 1 of what each name
 * requires): rules for a cycle, see the top of this file. text is the
 * cycle as the notes print it. *changed is set when a flag was reverted or
 * left out (the graph must be looked at again).
 */
static int
pgd_fix_cycle(pgd_env_t *ce, char **names, size_t *req, size_t start,
    const char *text, int *changed)
{
    int            acted, all;
    char           why[PGD_NOTE_MAX - 200];
    size_t         j, next;
    json_t        *flag;
    const json_t  *good;

    snprintf(why, sizeof(why), "is in a requires cycle (%s)", text);
    acted = 0;

    /* its killed flags go out without their requires */
    j = start;

    do {
        next = req[j] - 1;

        if (pgd_killed(json_object_get(ce->flags, names[j]))) {
            if (pgd_unrequire(ce, names[j], why + 3) != PG_OK) {
                return PG_ERR;
            }
            req[j] = 0;
            acted = 1;
        }

        j = next;
    } while (j != start);

    if (acted) {
        return PG_OK;
    }

    /* the flags whose requires is new keep their good version */
    do {
        flag = json_object_get(ce->flags, names[j]);
        good = pgd_good_flag(ce, names[j]);

        if (good != NULL && pgd_done_get(ce, names[j]) == PGD_AS_STORED
            && !pgd_same_requires(good, flag))
        {
            json_object_set(ce->flags, names[j], (json_t *) good);
            pgd_done_set(ce, names[j], PGD_REVERTED);
            pgd_note_flag(ce, names[j], PG_LOG_ERROR, "%s; the edges keep "
                          "its last good version", why);
            acted = 1;
        }

        j = req[j] - 1;
    } while (j != start);

    /* then those the edges do not have; then all of it */
    for (all = 0; all < 2 && !acted; all++) {
        do {
            good = pgd_good_flag(ce, names[j]);

            if (all || good == NULL) {
                json_object_del(ce->flags, names[j]);
                pgd_done_set(ce, names[j], PGD_LEFT_OUT);
                pgd_note_flag(ce, names[j], PG_LOG_ERROR, "%s; it is left "
                              "out%s", why, good ? ""
                              : ": no good version of it is known");
                acted = 1;
            }

            j = req[j] - 1;
        } while (j != start);
    }

    *changed = 1;

    return PG_OK;
}


/* The cycle through names[start] for the notes, from its first name in
 * name order, so that it reads the same every time; at most
 * PGD_CYCLE_SHOWN names, then how many there are. */
static void
pgd_cycle_text(char **names, const size_t *req, size_t start, char *text,
    size_t size)
{
    size_t  j, first, len, n, shown;

    first = start;
    n = 0;
    j = start;

    do {
        first = j < first ? j : first;
        n++;
        j = req[j] - 1;
    } while (j != start);

    len = 0;
    shown = 0;
    j = first;

    do {
        len += (size_t) snprintf(text + len, size - len, "%s -> ", names[j]);
        shown++;
        j = req[j] - 1;
    } while (j != first && shown < PGD_CYCLE_SHOWN && len < size);

    if (len >= size) {
        return;
    }

    if (j != first) {
        snprintf(text + len, size - len, "... (%zu flags) -> %s", n,
                 names[first]);
    } else {
        snprintf(text + len, size - len, "%s", names[first]);
    }
}


/*
 * Rule 3. Each round indexes the flags in name order and handles every
 * flag whose requires is missing, with a worklist: a flag left out puts
 * the flags that require it on the list, so a chain of any length takes
 * one round. Then the cycles. A round that restored, reverted or left out
 * a flag where the index cannot follow (a restored flag, a reverted
 * flag's new requires, a cycle) is followed by another; each flag is
 * restored, reverted or left out at most once, which bounds the rounds.
 */
static int
pgd_env_resolve(pgd_env_t *ce)
{
    int             rc, again, what;
    char          **names, **hit, text[PGD_CYCLE_TEXT];
    size_t          n, i, j, top, rounds, max_rounds, cycle;
    size_t         *req, *rev, *first, *work;
    unsigned char  *state, *gone;
    const char     *r;

    max_rounds = 3 * (json_object_size(ce->flags) + PG_FLAGS_MAX) + 8;

    for (rounds = 0; rounds < max_rounds; rounds++) {
        names = pgd_names(ce->flags, &n);
        req = calloc(n + 1, sizeof(size_t));
        first = calloc(n + 2, sizeof(size_t));
        rev = calloc(n + 1, sizeof(size_t));
        work = calloc(3 * n + 1, sizeof(size_t));
        state = calloc(n + 1, 1);
        gone = calloc(n + 1, 1);
        rc = PG_ERR;
        again = 0;
        top = 0;

        if (names == NULL || req == NULL || first == NULL || rev == NULL
            || work == NULL || state == NULL || gone == NULL)
        {
            goto done;
        }

        ce->names = names;
        ce->n = n;
        ce->gone = gone;

        /* req[i]: index + 1 of what names[i] requires; 0: none or missing */
        for (i = 0; i < n; i++) {
            r = pgd_requires(json_object_get(ce->flags, names[i]));

            if (r == NULL) {
                continue;
            }

            hit = bsearch(&r, names, n, sizeof(char *), pgd_name_cmp);

            if (hit != NULL) {
                req[i] = (size_t) (hit - names) + 1;
                first[hit - names + 1]++;
            } else {
                work[top++] = i;
            }
        }

        /* who requires names[j]: rev[first[j] .. first[j + 1]) */
        for (j = 0; j < n; j++) {
            first[j + 1] += first[j];
        }

        for (i = 0; i < n; i++) {
            if (req[i] != 0) {
                rev[first[req[i] - 1]++] = i;
            }
        }

        for (j = n; j > 0; j--) {
            first[j] = first[j - 1];
        }

        first[0] = 0;

        /* the missing requires, and what leaving a flag out brings */
        while (top > 0) {
            i = work[--top];

            if (gone[i]) {
                continue;
            }

            r = pgd_requires(json_object_get(ce->flags, names[i]));

            if (r == NULL) {
                continue;
            }

            hit = bsearch(&r, names, n, sizeof(char *), pgd_name_cmp);

            if (hit != NULL && !gone[hit - names]) {
                req[i] = (size_t) (hit - names) + 1;
                /* a reverted flag's new requires: not in rev[] */
                again = 1;
                continue;
            }

            req[i] = 0;
            what = pgd_fix_missing(ce, names[i], r);

            if (what == PG_ERR) {
                goto done;
            }

            if (what == PGD_RESTORED) {
                again = 1;

            } else if (what == PGD_REVERTED) {
                work[top++] = i;

            } else if (what == PGD_LEFT_OUT) {
                gone[i] = 1;

                for (j = first[i]; j < first[i + 1]; j++) {
                    if (!gone[rev[j]]) {
                        work[top++] = rev[j];
                    }
                }
            }
        }

        /* cycles, as pg_snapshot.c finds them; 0: not seen, 1: on the
         * current walk, 2: known to end */
        for (i = 0; i < n; i++) {
            if (gone[i]) {
                continue;
            }

            j = i + 1;

            while (j != 0 && state[j - 1] == 0 && !gone[j - 1]) {
                state[j - 1] = 1;
                j = req[j - 1];
            }

            cycle = (j != 0 && state[j - 1] == 1) ? j : 0;

            if (cycle) {
                pgd_cycle_text(names, req, cycle - 1, text, sizeof(text));
            }

            /* marked before the fix, which may cut the walk short */
            for (j = i + 1; j != 0 && state[j - 1] == 1; j = req[j - 1]) {
                state[j - 1] = 2;
            }

            if (cycle
                && pgd_fix_cycle(ce, names, req, cycle - 1, text, &again)
                   != PG_OK)
            {
                goto done;
            }
        }

        rc = PG_OK;

    done:

        ce->names = NULL;
        ce->gone = NULL;
        pgd_names_free(names, n);
        free(req);
        free(first);
        free(rev);
        free(work);
        free(state);
        free(gone);

        if (rc != PG_OK || !again) {
            return rc;
        }
    }

    return PG_ERR;
}


/* --- environments that could not be read -------------------------------- */

/* Each "env" of bad (no '/': the read could not read its key) gets what the
 * edges hold of it (good), or is left out; a note says which. */
static int
pgd_env_unread(json_t *envs, const json_t *bad, const json_t *good,
    json_t *notes, int *wanted)
{
    char           key[PG_NAME_MAX + 16];
    json_t        *entry, *held;
    const char    *env, *why;

    json_object_foreach((json_t *) bad, env, entry) {
        if (strchr(env, '/') != NULL) {
            continue;
        }

        *wanted = 1;
        why = json_string_value(json_object_get(entry, "why"));
        held = json_object_get(json_object_get(good, "environments"), env);
        snprintf(key, sizeof(key), "%s%s", PGD_NOTE_UNREAD, env);

        if (held != NULL) {
            if (json_object_set(envs, env, held) != 0) {
                return PG_ERR;
            }

            pgd_note(notes, key, PG_LOG_ERROR, "environment %s cannot be "
                     "read from the store (%.300s): the edges keep what they "
                     "hold of it; the other environments are pushed", env,
                     why ? why : "?");

        } else {
            pgd_note(notes, key, PG_LOG_ERROR, "environment %s cannot be "
                     "read from the store (%.300s): it is left out, nothing "
                     "of it is known; the other environments are pushed",
                     env, why ? why : "?");
        }
    }

    return PG_OK;
}


/* --- the last resort ---------------------------------------------------- */

/*
 * The good snapshot with the store's revision and the store's kills (a
 * flag killed in the store, or a value that is not valid but says
 * "enabled": false): what the edges get when nothing else compiles. Of the
 * good snapshot, only what this core takes: an edge's (the seed) may hold
 * a flag or an environment it refuses. New, or NULL.
 */
json_t *
pgd_kills_only(const json_t *store, const json_t *bad, const json_t *good)
{
    char          key[2 * PG_NAME_MAX + 8];
    void         *tmp;
    json_t       *snap, *envs, *flags, *copy, *flag, *killed, *stored;
    pg_error_t    err;
    const char   *env, *name;

    if (good == NULL) {
        return NULL;
    }

    envs = json_object();
    snap = json_pack("{s:O,s:o}", "revision",
                     json_object_get(store, "revision"), "environments",
                     envs);

    if (snap == NULL) {
        return NULL;
    }

    json_object_foreach(json_object_get(good, "environments"), env, flags) {
        if (!pg_valid_name(env, strlen(env))) {
            continue;
        }

        copy = json_copy(flags);

        if (copy == NULL || json_object_set_new(envs, env, copy) != 0) {
            json_decref(snap);
            return NULL;
        }

        json_object_foreach_safe(copy, tmp, name, flag) {
            if (pg_flag_check_json(name, flag, &err) != PG_OK) {
                json_object_del(copy, name);
            }
        }

        json_object_foreach(flags, name, flag) {
            if (json_object_get(copy, name) == NULL) {
                continue;           /* not valid: left out above */
            }

            stored = json_object_get(json_object_get(json_object_get(store,
                                         "environments"), env), name);

            if (stored == NULL) {
                snprintf(key, sizeof(key), "%s/%s", env, name);
                stored = json_object_get(json_object_get(bad, key), "value");
            }

            if (stored != NULL && pgd_killed(stored) && !pgd_killed(flag)) {
                killed = json_copy(flag);

                if (killed == NULL
                    || json_object_set_new(killed, "enabled", json_false())
                       != 0
                    || json_object_set_new(copy, name, killed) != 0)
                {
                    json_decref(snap);
                    return NULL;
                }
            }
        }
    }

    return snap;
}


/* --- the API ------------------------------------------------------------ */

int
pgd_compose(const json_t *store, const json_t *bad, const json_t *good,
    json_t **out, json_t *notes, int *wanted, pg_error_t *err)
{
    int             rc;
    size_t          size;
    json_t         *snap, *envs, *flags;
    pgd_env_t       ce;
    pg_error_t      again;
    const char     *env;
    unsigned char  *blob;

    *wanted = 0;
    *out = NULL;

    envs = json_object();
    snap = json_pack("{s:O,s:o}", "revision",
                     json_object_get(store, "revision"), "environments",
                     envs);

    if (snap == NULL) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return PG_ERR;
    }

    rc = PG_OK;

    json_object_foreach(json_object_get(store, "environments"), env, flags) {
        memset(&ce, 0, sizeof(pgd_env_t));
        ce.env = env;
        ce.good = json_object_get(json_object_get(good, "environments"),
                                  env);
        ce.notes = notes;
        ce.wanted = wanted;

        /* shallow: the flags are shared, and replaced, never changed */
        ce.flags = json_copy(flags);
        ce.done = json_object();
        ce.valid = json_object();

        if (ce.flags == NULL || ce.done == NULL || ce.valid == NULL
            || json_object_set(envs, env, ce.flags) != 0
            || pgd_env_bad(&ce, bad) != PG_OK
            || pgd_env_limit(&ce) != PG_OK
            || pgd_env_resolve(&ce) != PG_OK)
        {
            rc = PG_ERR;
        }

        json_decref(ce.flags);
        json_decref(ce.done);
        json_decref(ce.valid);

        if (rc != PG_OK) {
            break;
        }
    }

    if (rc == PG_OK) {
        rc = pgd_env_unread(envs, bad, good, notes, wanted);
    }

    if (rc == PG_OK
        && pg_snap_compile_json(snap, &blob, &size, err) == PG_OK)
    {
        free(blob);
        *out = snap;
        return PG_OK;
    }

    if (rc != PG_OK) {
        snprintf(err->text, sizeof(err->text), "the daemon could not work "
                 "around the store's flags (out of memory?)");
    }

    json_decref(snap);

    /* it should not come to this: then at least the kills go out */
    snap = pgd_kills_only(store, bad, good);
    *wanted = 1;

    if (snap == NULL || pg_snap_compile_json(snap, &blob, &size, &again)
                        != PG_OK)
    {
        json_decref(snap);
        return PG_ERR;
    }

    free(blob);
    pgd_note(notes, "*", PG_LOG_ERROR, "the store does not compile even "
             "where the daemon works around its flags (%s): the edges get "
             "only its kills, over what they hold", err->text);
    *out = snap;

    return PG_OK;
}


/* --- deltas ------------------------------------------------------------- */

int
pgd_compose_fast(const json_t *store, const json_t *changed)
{
    size_t         n, steps;
    json_t        *flags, *flag, *other, *value;
    json_int_t     revision;
    const char    *env, *name, *r, *key;
    const json_t  *revision_json;

    revision_json = json_object_get(store, "revision");
    revision = json_integer_value(revision_json);

    if (!json_is_integer(revision_json) || revision < 0
        || revision > PG_REVISION_MAX)
    {
        return 0;
    }

    json_object_foreach((json_t *) changed, env, value) {
        flags = json_object_get(json_object_get(store, "environments"),
                                env);
        n = json_object_size(flags);

        if (!json_is_object(flags) || n > PG_FLAGS_MAX) {
            return 0;
        }

        json_object_foreach(value, name, flag) {

            if (json_is_null(flag)) {
                /* deleted: no flag may still require it */
                json_object_foreach(flags, key, other) {
                    r = pgd_requires(other);

                    if (r != NULL && strcmp(r, name) == 0) {
                        return 0;
                    }
                }

                continue;
            }

            /*
             * Its chain of requires must end, in flags that exist, without
             * coming back to it: the store before compiled, so a cycle now
             * passes through a changed flag, and is found from there.
             */
            r = pgd_requires(flag);

            for (steps = 0; r != NULL; steps++) {
                if (strcmp(r, name) == 0 || steps > n) {
                    return 0;
                }

                other = json_object_get(flags, r);

                if (other == NULL) {
                    return 0;
                }

                r = pgd_requires(other);
            }
        }
    }

    /*
     * Every flag is valid on its own (the unchanged ones were, the changed
     * ones were checked when read), so this compiles. The only limit not
     * looked at is the blob's 4 GiB: a store past it holds no edge.
     */
    return 1;
}


json_t *
pgd_patch_of(const json_t *from, const json_t *to, size_t *nflags)
{
    json_t       *out, *fenvs, *tenvs, *fe, *te, *f, *t, *diff;
    const char   *env, *name;

    *nflags = 0;
    fenvs = json_object_get(from, "environments");
    tenvs = json_object_get(to, "environments");

    if (!json_is_object(fenvs) || !json_is_object(tenvs)) {
        return NULL;
    }

    json_object_foreach(fenvs, env, fe) {
        if (json_object_get(tenvs, env) == NULL) {
            return NULL;
        }
    }

    out = json_object();
    if (out == NULL) {
        return NULL;
    }

    json_object_foreach(tenvs, env, te) {
        fe = json_object_get(fenvs, env);

        if (fe == te) {
            continue;
        }

        if (!json_is_object(te) || (fe != NULL && !json_is_object(fe))) {
            json_decref(out);
            return NULL;
        }

        if (fe == NULL) {
            /* created by the patch, with all its flags (or none) */
            if (json_object_set(out, env, te) != 0) {
                json_decref(out);
                return NULL;
            }

            *nflags += json_object_size(te);
            continue;
        }

        diff = json_object();

        if (diff == NULL || json_object_set_new(out, env, diff) != 0) {
            json_decref(out);
            return NULL;
        }

        json_object_foreach(te, name, t) {
            f = json_object_get(fe, name);

            if (f == t || (f != NULL && json_equal(f, t))) {
                continue;
            }

            if (json_object_set(diff, name, t) != 0) {
                json_decref(out);
                return NULL;
            }
        }

        json_object_foreach(fe, name, f) {
            if (json_object_get(te, name) == NULL
                && json_object_set_new(diff, name, json_null()) != 0)
            {
                json_decref(out);
                return NULL;
            }
        }

        *nflags += json_object_size(diff);

        if (json_object_size(diff) == 0) {
            json_object_del(out, env);
        }
    }

    return out;
}
