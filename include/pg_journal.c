/*
 * pg_journal.c: the journal of patches beside the state file (its format
 * is in pg_state.h): the header and record heads the module writes, and
 * the replay at start, which trusts nothing about the file.
 */

#include <errno.h>          /* errno, ENOENT */
#include <fcntl.h>          /* open, O_* */
#include <stdarg.h>         /* va_list */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <stdlib.h>         /* malloc, free, strtoull */
#include <string.h>         /* memcmp, strerror */
#include <sys/stat.h>       /* fstat, S_ISREG */
#include <unistd.h>         /* read, close */
#include "pg_state.h"       /* the API this file implements */


static void pg_journal_note(pg_state_t *state, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *pg_journal_load(const char *path, size_t max, size_t *len,
    int *missing, int *fault, pg_state_t *state);
static int pg_journal_digits(const char *p, size_t n, int hex,
    unsigned long long *v);
static int pg_journal_apply(const char *path, size_t max, uint64_t id,
    json_t **doc, pg_state_t *state);
static void *pg_journal_malloc(size_t size);


/*
 * jansson's allocations that fail during a read, counted: jansson says an
 * allocation that failed mid-parse as a syntax error ("string or '}'
 * expected"), and neither the state file nor a record must be taken for
 * a bad one because memory ran out. pg_state_json_count_on() puts the
 * counter in front of jansson's allocator for a read only, and _off()
 * puts it back (the module's is then no part of jansson's state once
 * nginx runs). Not for threads: the reads run in nginx's master.
 */
static json_malloc_t  pg_journal_malloc_next;
static json_free_t    pg_journal_free;
static size_t         pg_journal_malloc_failed;


void
pg_journal_header(char *buf, uint64_t id)
{
    snprintf(buf, PG_JOURNAL_HEADER_LEN + 1, "PGJ1 %016llx\n",
             (unsigned long long) id);
}


void
pg_journal_record_head(char *buf, const char *body, size_t len)
{
    snprintf(buf, PG_JOURNAL_HEAD_LEN + 1, "R %010zu %08x\n", len,
             (unsigned) pg_murmur3_32(body, len, PG_JOURNAL_SEED));
}


static void
pg_journal_note(pg_state_t *state, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    (void) vsnprintf(state->journal_note, sizeof(state->journal_note), fmt,
                     args);
    va_end(args);
}


/* Exactly n digits, decimal or hex, into *v. */
static int
pg_journal_digits(const char *p, size_t n, int hex, unsigned long long *v)
{
    size_t  i;
    int     d;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            d = p[i] - '0';

        } else if (hex && p[i] >= 'a' && p[i] <= 'f') {
            d = p[i] - 'a' + 10;

        } else {
            return 0;
        }

        *v = *v * (hex ? 16 : 10) + (unsigned long long) d;
    }

    return 1;
}


/* The journal's bytes, read as the state file is read; NULL when there
 * is none to read (a note says why, unless the file is simply missing:
 * *missing is then 1) or out of memory (*fault is then 1: the journal is
 * there, and must not be taken for absent). */
static char *
pg_journal_load(const char *path, size_t max, size_t *len, int *missing,
    int *fault, pg_state_t *state)
{
    int           fd, e;
    char         *text;
    size_t        got;
    ssize_t       n;
    struct stat   st;

    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY
                    | O_CLOEXEC);

    if (fd == -1) {
        e = errno;

        if (e == ENOENT) {
            *missing = 1;

        } else {
            pg_journal_note(state, "journal \"%s\" cannot be opened: %s",
                            path, strerror(e));
        }

        return NULL;
    }

    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)
        || st.st_size < 0 || (unsigned long long) st.st_size > max)
    {
        (void) close(fd);
        pg_journal_note(state, "journal \"%s\" is not a regular file of at "
                        "most %zu bytes: ignored", path, max);
        return NULL;
    }

    text = malloc((size_t) st.st_size + 1);

    if (text == NULL) {
        (void) close(fd);
        pg_journal_note(state, "journal \"%s\": out of memory for its "
                        "%lld bytes", path, (long long) st.st_size);
        *fault = 1;
        return NULL;
    }

    got = 0;

    while (got < (size_t) st.st_size) {
        n = read(fd, text + got, (size_t) st.st_size - got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            break;
        }

        got += (size_t) n;
    }

    (void) close(fd);

    *len = got;

    return text;
}


static void *
pg_journal_malloc(size_t size)
{
    void  *p;

    p = pg_journal_malloc_next(size);

    if (p == NULL) {
        pg_journal_malloc_failed++;
    }

    return p;
}


int
pg_state_json_count_on(void)
{
    json_free_t    free_fn;
    json_malloc_t  malloc_fn;

    json_get_alloc_funcs(&malloc_fn, &free_fn);

    if (malloc_fn == pg_journal_malloc) {
        return 0;                   /* counted already: a read's replay */
    }

    pg_journal_malloc_next = malloc_fn;
    pg_journal_free = free_fn;
    json_set_alloc_funcs(pg_journal_malloc, free_fn);

    return 1;
}


void
pg_state_json_count_off(int on)
{
    if (on) {
        json_set_alloc_funcs(pg_journal_malloc_next, pg_journal_free);
    }
}


size_t
pg_state_json_failures(void)
{
    return pg_journal_malloc_failed;
}


int
pg_journal_replay(const char *path, size_t max, uint64_t id, json_t **doc,
    pg_state_t *state)
{
    int  rc, on;

    on = pg_state_json_count_on();
    rc = pg_journal_apply(path, max, id, doc, state);
    pg_state_json_count_off(on);

    return rc;
}


/* pg_journal_replay(), jansson's failures counted. */
static int
pg_journal_apply(const char *path, size_t max, uint64_t id, json_t **doc,
    pg_state_t *state)
{
    int                  rc, missing, fault;
    char                 head[PG_JOURNAL_HEADER_LEN + 1], *text;
    size_t               len, off, n, valid, failed;
    json_t              *patch, *result;
    pg_error_t           err;
    json_error_t         jerr;
    unsigned long long   body_len, sum;

    state->journal_records = 0;
    state->journal_bytes = 0;
    state->journal_clean = 0;

    missing = 0;
    fault = 0;
    text = pg_journal_load(path, max, &len, &missing, &fault, state);

    if (fault) {
        return PG_FAULT;
    }

    if (text == NULL) {
        /* no patch since the state file was written: the first one
         * creates the journal */
        state->journal_clean = missing;
        return PG_OK;
    }

    pg_journal_header(head, id);

    if (len < PG_JOURNAL_HEADER_LEN
        || memcmp(text, head, PG_JOURNAL_HEADER_LEN) != 0)
    {
        /* a crash between the state file's rename and its journal's
         * leaves the older journal: the state file alone is right */
        pg_journal_note(state, "journal \"%s\" does not follow the state "
                        "file (another header): ignored", path);
        free(text);
        return PG_OK;
    }

    off = PG_JOURNAL_HEADER_LEN;
    valid = off;

    while (off < len) {
        n = state->journal_records + 1;

        if (len - off < PG_JOURNAL_HEAD_LEN
            || text[off] != 'R' || text[off + 1] != ' '
            || !pg_journal_digits(text + off + 2, 10, 0, &body_len)
            || text[off + 12] != ' '
            || !pg_journal_digits(text + off + 13, 8, 1, &sum)
            || text[off + 21] != '\n'
            || body_len + 1 > len - off - PG_JOURNAL_HEAD_LEN)
        {
            pg_journal_note(state, "journal \"%s\": record %zu at byte %zu "
                            "is torn: ignored (it was never acknowledged)",
                            path, n, off);
            goto done;
        }

        off += PG_JOURNAL_HEAD_LEN;

        if (text[off + body_len] != '\n'
            || pg_murmur3_32(text + off, (size_t) body_len, PG_JOURNAL_SEED)
               != (uint32_t) sum)
        {
            pg_journal_note(state, "journal \"%s\": record %zu at byte %zu "
                            "is corrupt (its checksum): ignored with what "
                            "follows", path, n,
                            off - PG_JOURNAL_HEAD_LEN);
            goto done;
        }

        /*
         * Out of memory (here or in the patch) says nothing of the
         * record, which may be a good one: dropping it would restore a
         * state never acknowledged, so the restore fails whole (the zone
         * starts empty) and the caller says why.
         */
        failed = pg_journal_malloc_failed;
        patch = json_loadb(text + off, (size_t) body_len,
                           JSON_REJECT_DUPLICATES, &jerr);

        result = NULL;

        rc = patch ? pg_snap_patch_json(*doc, patch, &result, &err) : PG_ERR;

        json_decref(patch);

        /* even a parse that succeeds may have run out of memory: jansson's
         * lexer cuts a string short when it cannot grow it. A PG_FAULT
         * without a failed allocation is a state file that is no
         * snapshot (its compile says CORRUPT then) */
        if (pg_journal_malloc_failed != failed) {
            json_decref(result);
            pg_journal_note(state, "journal \"%s\": out of memory reading "
                            "record %zu", path, n);
            free(text);
            return PG_FAULT;
        }

        if (rc != PG_OK) {
            pg_journal_note(state, "journal \"%s\": record %zu does not "
                            "apply (%s): ignored with what follows", path, n,
                            patch ? err.text : jerr.text);
            goto done;
        }

        json_decref(*doc);
        *doc = result;

        off += (size_t) body_len + 1;
        valid = off;
        state->journal_records = n;
    }

    state->journal_clean = 1;

done:

    state->journal_bytes = valid;
    free(text);

    return PG_OK;
}
