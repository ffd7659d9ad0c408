/*
 * pg_state.c: the edge's state file, read without trusting the path, and
 * the kill overrides it keeps beside the snapshot.
 */

#include <errno.h>          /* errno, ENOENT, ELOOP */
#include <fcntl.h>          /* open, O_* */
#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <stdlib.h>         /* malloc, free, strtoull */
#include <string.h>         /* memcpy, strerror, strspn */
#include <sys/stat.h>       /* fstat, S_ISREG */
#include <unistd.h>         /* read, close */
#include "pg_state.h"       /* the API this file implements */


static pg_state_result_t pg_state_fail(pg_error_t *err,
    pg_state_result_t result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pg_override_err(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pg_override_text(const char *s, size_t len);
static pg_state_result_t pg_state_load(const char *path, size_t max,
    pg_state_t *state, pg_error_t *err);
static pg_state_result_t pg_state_parse(const char *path, size_t max,
    const char *text, size_t len, pg_state_t *state, pg_error_t *err);
static int pg_overrides_parse(const json_t *list, pg_state_t *state,
    pg_error_t *err);


static pg_state_result_t
pg_state_fail(pg_error_t *err, pg_state_result_t result, const char *fmt,
    ...)
{
    va_list  args;

    va_start(args, fmt);
    (void) vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    return result;
}


pg_state_result_t
pg_state_read(const char *path, size_t max, pg_state_t *state,
    pg_error_t *err)
{
    int                 on;
    pg_state_result_t   rc;

    on = pg_state_json_count_on();
    rc = pg_state_load(path, max, state, err);
    pg_state_json_count_off(on);

    return rc;
}


/* pg_state_read(), jansson's failures counted. */
static pg_state_result_t
pg_state_load(const char *path, size_t max, pg_state_t *state,
    pg_error_t *err)
{
    int                 fd, e;
    char               *text;
    size_t              len, got;
    ssize_t             n;
    struct stat         st;
    pg_state_result_t   rc;

    memset(state, 0, sizeof(pg_state_t));

    /* O_NONBLOCK: opening a FIFO with no writer would wait for one */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY
                    | O_CLOEXEC);

    if (fd == -1) {
        e = errno;

        if (e == ENOENT) {
            return pg_state_fail(err, PG_STATE_MISSING,
                                 "it does not exist yet");
        }

        if (e == ELOOP) {
            return pg_state_fail(err, PG_STATE_UNUSABLE,
                                 "it is a symbolic link");
        }

        return pg_state_fail(err, PG_STATE_UNUSABLE, "open() failed: %s",
                             strerror(e));
    }

    if (fstat(fd, &st) == -1) {
        e = errno;
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE, "fstat() failed: %s",
                             strerror(e));
    }

    if (!S_ISREG(st.st_mode)) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "it is not a regular file but a %s",
                             S_ISDIR(st.st_mode) ? "directory"
                             : S_ISFIFO(st.st_mode) ? "FIFO"
                             : S_ISSOCK(st.st_mode) ? "socket"
                             : S_ISCHR(st.st_mode) ? "character device"
                             : S_ISBLK(st.st_mode) ? "block device"
                             : "special file");
    }

    if (st.st_size < 0 || (unsigned long long) st.st_size > max) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "it has %lld bytes, more than the %zu a "
                             "snapshot for this zone can take",
                             (long long) st.st_size, max);
    }

    len = (size_t) st.st_size;

    text = malloc(len ? len : 1);
    if (text == NULL) {
        (void) close(fd);
        return pg_state_fail(err, PG_STATE_UNUSABLE,
                             "out of memory for its %zu bytes", len);
    }

    /* a file that grows meanwhile is read up to its size at fstat() */

    got = 0;

    while (got < len) {
        n = read(fd, text + got, len - got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1) {
            e = errno;
            free(text);
            (void) close(fd);
            return pg_state_fail(err, PG_STATE_UNUSABLE,
                                 "read() failed: %s", strerror(e));
        }

        if (n == 0) {
            break;
        }

        got += (size_t) n;
    }

    (void) close(fd);

    rc = pg_state_parse(path, max, text, got, state, err);

    if (rc != PG_STATE_LOADED) {
        /* the overrides, if they were read, outlive a bad snapshot */
        free(text);
        free(state->blob);
        state->blob = NULL;
        state->size = 0;
        return rc;
    }

    free(text);

    state->mtime = st.st_mtime;

    return PG_STATE_LOADED;
}


/*
 * The snapshot, as pg_snap_compile() takes it, plus "overrides" and
 * "journal"; then the journal's records replayed onto it.
 */

static pg_state_result_t
pg_state_parse(const char *path, size_t max, const char *text, size_t len,
    pg_state_t *state, pg_error_t *err)
{
    int                  rc;
    char                *jpath;
    size_t               n, failed;
    json_t              *root, *list, *journal, *replayed;
    const char          *id;
    json_error_t         jerr;
    unsigned long long   v;

    failed = pg_state_json_failures();
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    /* a parse that ran out of memory may even succeed, with a string cut
     * short (jansson's lexer does not check every append) */
    if (pg_state_json_failures() != failed) {
        json_decref(root);
        return pg_state_fail(err, PG_STATE_UNUSABLE, "out of memory "
                             "parsing its %zu bytes", len);
    }

    if (root == NULL) {
        return pg_state_fail(err, PG_STATE_CORRUPT,
                             "invalid JSON at line %d column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    }

    list = json_is_object(root) ? json_object_get(root, "overrides") : NULL;

    if (list != NULL) {
        failed = pg_state_json_failures();

        if (pg_overrides_parse(list, state, err) != PG_OK) {
            state->noverrides = 0;
            json_decref(root);

            /* the texts' UTF-8 probe (json_stringn()) out of memory says
             * nothing of the file: not CORRUPT, which keeps it aside and
             * whose next write drops the overrides */
            if (pg_state_json_failures() != failed) {
                return pg_state_fail(err, PG_STATE_UNUSABLE, "out of "
                                     "memory reading its overrides");
            }

            return PG_STATE_CORRUPT;
        }

        /* the rest is a snapshot as the API takes it */
        (void) json_object_del(root, "overrides");
    }

    journal = json_is_object(root) ? json_object_get(root, "journal")
                                   : NULL;

    if (journal != NULL) {
        id = json_string_value(journal);
        v = 0;

        if (id == NULL || json_string_length(journal) != 16
            || strspn(id, "0123456789abcdef") != 16
            || (v = strtoull(id, NULL, 16)) == 0)
        {
            json_decref(root);
            return pg_state_fail(err, PG_STATE_CORRUPT,
                                 "journal must be 16 hex digits");
        }

        state->journal_id = (uint64_t) v;
        (void) json_object_del(root, "journal");
    }

    /*
     * the journal's records on top; if the result does not compile (it
     * cannot: each record was a patch the edge accepted), the snapshot
     * alone. Out of memory anywhere in that is no such case: the state
     * restored would not be the one the edge acknowledged (a good record
     * dropped), so the whole read fails, as for the file's own bytes.
     */

    replayed = NULL;

    if (state->journal_id) {
        n = strlen(path);
        jpath = malloc(n + sizeof(PG_JOURNAL_SUFFIX));

        if (jpath == NULL) {
            json_decref(root);
            return pg_state_fail(err, PG_STATE_UNUSABLE, "out of memory "
                                 "for its journal's path");
        }

        memcpy(jpath, path, n);
        memcpy(jpath + n, PG_JOURNAL_SUFFIX, sizeof(PG_JOURNAL_SUFFIX));

        replayed = json_incref(root);
        rc = pg_journal_replay(jpath, max, state->journal_id, &replayed,
                               state);
        free(jpath);

        if (rc != PG_OK) {
            json_decref(replayed);
            json_decref(root);
            state->journal_records = 0;
            state->journal_clean = 0;
            return pg_state_fail(err, PG_STATE_UNUSABLE, "%s",
                                 state->journal_note);
        }
    }

    if (replayed != NULL && state->journal_records != 0) {
        rc = pg_snap_compile_json(replayed, &state->blob, &state->size,
                                  err);

        if (rc == PG_FAULT) {
            json_decref(replayed);
            json_decref(root);
            state->journal_records = 0;
            state->journal_clean = 0;
            return PG_STATE_UNUSABLE;       /* err says out of memory */
        }

        if (rc != PG_OK) {
            snprintf(state->journal_note, sizeof(state->journal_note),
                     "the journal's records make no valid snapshot (%.160s):"
                     " the state file alone is restored", err->text);
            state->journal_records = 0;
            state->journal_clean = 0;
        }

    } else {
        rc = PG_ERR;
    }

    json_decref(replayed);

    if (rc != PG_OK) {
        rc = pg_snap_compile_json(root, &state->blob, &state->size, err);
    }

    json_decref(root);

    /* out of memory says nothing of the file: not kept aside as corrupt */
    return rc == PG_OK ? PG_STATE_LOADED
           : rc == PG_FAULT ? PG_STATE_UNUSABLE : PG_STATE_CORRUPT;
}


static int
pg_overrides_parse(const json_t *list, pg_state_t *state, pg_error_t *err)
{
    size_t          i, j;
    json_t         *o, *env, *flag, *since, *by, *reason;
    pg_override_t  *ov;

    if (!json_is_array(list)) {
        return pg_override_err(err, "overrides must be an array");
    }

    if (json_array_size(list) > PG_OVERRIDES_MAX) {
        return pg_override_err(err, "overrides: %zu, at most %d",
                               json_array_size(list), PG_OVERRIDES_MAX);
    }

    json_array_foreach(list, i, o) {
        ov = &state->overrides[i];

        env = json_object_get(o, "env");
        flag = json_object_get(o, "flag");
        since = json_object_get(o, "since");
        by = json_object_get(o, "by");
        reason = json_object_get(o, "reason");

        if (!json_is_object(o) || json_object_size(o) != 5
            || !json_is_string(env) || !json_is_string(flag)
            || !json_is_integer(since) || !json_is_string(by)
            || !json_is_string(reason))
        {
            return pg_override_err(err, "overrides[%zu] must be an object "
                                   "of env, flag, since, by and reason", i);
        }

        if (pg_override_set(ov, json_string_value(env),
                            json_string_length(env),
                            json_string_value(flag),
                            json_string_length(flag),
                            json_integer_value(since),
                            json_string_value(by), json_string_length(by),
                            json_string_value(reason),
                            json_string_length(reason), err)
            != PG_OK)
        {
            return PG_ERR;
        }

        for (j = 0; j < i; j++) {
            if (strcmp(state->overrides[j].env, ov->env) == 0
                && strcmp(state->overrides[j].flag, ov->flag) == 0)
            {
                return pg_override_err(err, "overrides: %s in %s is there "
                                       "twice", ov->flag, ov->env);
            }
        }
    }

    state->noverrides = json_array_size(list);

    return PG_OK;
}


char *
pg_state_dump(const pg_snap_t *snap, const pg_override_t *overrides,
    size_t n)
{
    return pg_state_dump_journal(snap, overrides, n, 0);
}


char *
pg_state_dump_journal(const pg_snap_t *snap, const pg_override_t *overrides,
    size_t n, uint64_t journal_id)
{
    char    *text, id[17];
    size_t   i;
    json_t  *root, *list;

    root = pg_snap_to_json(snap);
    if (root == NULL) {
        return NULL;
    }

    if (journal_id != 0) {
        snprintf(id, sizeof(id), "%016llx", (unsigned long long) journal_id);

        if (json_object_set_new(root, "journal", json_string(id)) != 0) {
            json_decref(root);
            return NULL;
        }
    }

    if (n) {
        list = json_array();

        if (json_object_set_new(root, "overrides", list) != 0) {
            json_decref(root);
            return NULL;
        }

        for (i = 0; i < n; i++) {
            if (json_array_append_new(list,
                                      pg_override_to_json(&overrides[i]))
                != 0)
            {
                json_decref(root);
                return NULL;
            }
        }
    }

    text = json_dumps(root, JSON_COMPACT | PG_JSON_REAL);
    json_decref(root);

    return text;
}


int
pg_override_set(pg_override_t *o, const char *env, size_t env_len,
    const char *flag, size_t flag_len, int64_t since, const char *by,
    size_t by_len, const char *reason, size_t reason_len, pg_error_t *err)
{
    memset(o, 0, sizeof(pg_override_t));

    if (!pg_valid_name(env, env_len)) {
        return pg_override_err(err, "invalid environment name: expected "
                               "[a-z0-9_]{1,64}");
    }

    if (!pg_valid_name(flag, flag_len)) {
        return pg_override_err(err, "invalid flag name: expected "
                               "[a-z0-9_]{1,64}");
    }

    if (since < 0) {
        return pg_override_err(err, "since must be a time, in seconds");
    }

    if (by_len > PG_OVERRIDE_BY_MAX || !pg_override_text(by, by_len)) {
        return pg_override_err(err, "by must be UTF-8 text without control "
                               "characters, at most %d bytes",
                               PG_OVERRIDE_BY_MAX);
    }

    if (reason_len > PG_OVERRIDE_REASON_MAX
        || !pg_override_text(reason, reason_len))
    {
        return pg_override_err(err, "reason must be UTF-8 text without "
                               "control characters, at most %d bytes",
                               PG_OVERRIDE_REASON_MAX);
    }

    memcpy(o->env, env, env_len);
    memcpy(o->flag, flag, flag_len);
    o->since = since;

    if (by_len) {
        memcpy(o->by, by, by_len);
    }

    if (reason_len) {
        memcpy(o->reason, reason, reason_len);
    }

    return PG_OK;
}


json_t *
pg_override_to_json(const pg_override_t *o)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "env", o->env, "flag",
                     o->flag, "since", (json_int_t) o->since, "by", o->by,
                     "reason", o->reason);
}


/* UTF-8 (as jansson checks it: json_stringn) without control characters */

static int
pg_override_text(const char *s, size_t len)
{
    size_t   i;
    json_t  *probe;

    if (len == 0) {
        return 1;
    }

    if (s == NULL) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }

    probe = json_stringn(s, len);

    if (probe == NULL) {
        return 0;
    }

    json_decref(probe);

    return 1;
}


static int
pg_override_err(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    (void) vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    return PG_ERR;
}
