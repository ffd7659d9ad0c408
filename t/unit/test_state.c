/*
 * test_state.c: the edge's state-file reader (include/pg_state.c) against
 * what a broken or hostile folder can hold at the state file's path.
 */

#include <fcntl.h>          /* open */
#include <signal.h>         /* alarm: a hang fails the test */
#include <stdio.h>          /* snprintf, sprintf */
#include <stdlib.h>         /* mkdtemp, free */
#include <string.h>         /* strstr, strlen, memcpy */
#include <sys/stat.h>       /* mkfifo, mkdir */
#include <unistd.h>         /* symlink, unlink, rmdir, ftruncate, alarm */
#include "pg_state.h"       /* what is tested */
#include "tap.h"            /* t_ok */


#define T_SNAPSHOT  "{\"revision\":7,\"environments\":{\"production\":" \
                    "{\"customer_portal\":{\"rollout\":12.5}}}}"


static char  t_dir[64];


static void
t_write(const char *path, const char *text)
{
    int  fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
    {
        t_diag("cannot write %s", path);
    }

    if (fd != -1) {
        (void) close(fd);
    }
}


static void
t_expect(const char *path, size_t max, pg_state_result_t want,
    const char *text, const char *desc)
{
    pg_state_t          st;
    pg_error_t          err;
    pg_state_result_t   rc;

    err.text[0] = '\0';

    rc = pg_state_read(path, max, &st, &err);

    if (!t_ok(rc == want && (rc == PG_STATE_LOADED || st.blob == NULL)
              && (text == NULL || strstr(err.text, text) != NULL), "%s",
              desc))
    {
        t_diag("result %d (want %d), error: %s", (int) rc, (int) want,
               err.text);
    }

    free(st.blob);
}


/* A journal record for body, appended to the text at *p. */
static void
t_record(char **p, const char *body)
{
    char  head[PG_JOURNAL_HEAD_LEN + 1];

    pg_journal_record_head(head, body, strlen(body));
    *p += sprintf(*p, "%s%s\n", head, body);
}


/* The revision a read of path restores, and its journal's fields. */
static int64_t
t_restored(const char *path, pg_state_t *st)
{
    int64_t     rev;
    pg_snap_t   snap;
    pg_error_t  err;

    if (pg_state_read(path, 1 << 20, st, &err) != PG_STATE_LOADED) {
        t_diag("not loaded: %s", err.text);
        return -1;
    }

    rev = pg_snap_open(&snap, st->blob, st->size, &err) == PG_OK
          ? pg_snap_revision(&snap) : -1;
    free(st->blob);

    return rev;
}


/* The journal of patches beside the state file, replayed at start. */
static void
test_journal(const char *path)
{
    char         jpath[160], text[4096], head[PG_JOURNAL_HEADER_LEN + 1];
    char        *p;
    size_t       good;
    pg_state_t   st;

    snprintf(jpath, sizeof(jpath), "%s" PG_JOURNAL_SUFFIX, path);

    t_write(path, "{\"revision\":7,\"journal\":\"00000000000000ab\","
                  "\"environments\":{\"production\":"
                  "{\"f\":{\"rollout\":1}}}}");

    /* no journal yet: no patch since the state file; the next creates it */
    (void) unlink(jpath);
    t_ok(t_restored(path, &st) == 7 && st.journal_clean
         && st.journal_bytes == 0 && st.journal_note[0] == '\0'
         && st.journal_id == 0xab,
         "journal: a missing journal restores the state file, quietly");

    pg_journal_header(head, 0xab);
    p = text + sprintf(text, "%s", head);
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 7 && st.journal_clean
         && st.journal_records == 0
         && st.journal_bytes == PG_JOURNAL_HEADER_LEN,
         "journal: an empty journal is clean");

    t_record(&p, "{\"base_revision\":7,\"revision\":8,\"environments\":"
                 "{\"production\":{\"f\":{\"rollout\":2}}}}");
    t_record(&p, "{\"base_revision\":8,\"revision\":9,\"environments\":"
                 "{\"production\":{\"g\":{\"rollout\":3}}}}");
    good = (size_t) (p - text);
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 9 && st.journal_clean
         && st.journal_records == 2 && st.journal_bytes == good,
         "journal: two records replay in order, to revision 9");

    /* a torn last record: never acknowledged, ignored with a note */
    p += sprintf(p, "R 0000000099 0000abcd\n{\"base_revi");
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 9 && !st.journal_clean
         && st.journal_records == 2 && st.journal_bytes == good
         && strstr(st.journal_note, "record 3 at byte") != NULL
         && strstr(st.journal_note, "torn") != NULL,
         "journal: a torn last record is ignored, and said");

    /* a record whose checksum does not match */
    text[good] = '\0';
    p = text + good;
    t_record(&p, "{\"base_revision\":9,\"revision\":10,\"environments\":{}}");
    p[-3] = ' ';
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 9 && !st.journal_clean
         && strstr(st.journal_note, "corrupt") != NULL,
         "journal: a record that does not check is ignored");

    /* a record that does not apply on the one before */
    text[good] = '\0';
    p = text + good;
    t_record(&p, "{\"base_revision\":3,\"revision\":10,\"environments\":{}}");
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 9 && !st.journal_clean
         && strstr(st.journal_note, "does not apply") != NULL,
         "journal: a record on another base ends the replay");

    /* a journal of another state file (a crash between the renames) */
    pg_journal_header(head, 0xac);
    memcpy(text, head, PG_JOURNAL_HEADER_LEN);
    text[good] = '\0';
    t_write(jpath, text);
    t_ok(t_restored(path, &st) == 7 && !st.journal_clean
         && strstr(st.journal_note, "does not follow") != NULL,
         "journal: another state file's journal is not replayed");

    t_write(path, "{\"revision\":7,\"journal\":\"xyz\",\"environments\":{}}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "16 hex digits",
             "journal: a state file with a bad journal id is CORRUPT");

    (void) unlink(jpath);
}


/* jansson's allocations in this process, the t_fail_at-th from 0 failing
 * (-1: none fails): how a test runs out of memory at a chosen point. */
static long  t_allocs, t_fail_at = -1;


static void *
t_malloc(size_t size)
{
    if (t_allocs++ == t_fail_at) {
        return NULL;
    }

    return malloc(size);
}


/*
 * Out of memory while the state file is read and its journal replayed, at
 * each of jansson's allocations in turn: the read fails whole (UNUSABLE,
 * saying out of memory: not CORRUPT, which keeps the file aside), or,
 * past the last allocation, restores both records. Never the state file
 * alone or one record: a good record dropped is a state the edge never
 * acknowledged.
 */
static void
test_journal_oom(const char *path)
{
    int                 bad, failed, same, lost;
    char                jpath[160], text[4096], *p;
    size_t              ref_size;
    unsigned char      *ref;
    long                k;
    int64_t             rev;
    pg_snap_t           snap;
    pg_error_t          err;
    pg_state_t          st;
    pg_state_result_t   rc;

    snprintf(jpath, sizeof(jpath), "%s" PG_JOURNAL_SUFFIX, path);

    t_write(path, "{\"revision\":7,\"journal\":\"00000000000000ab\","
                  "\"environments\":{\"production\":"
                  "{\"f\":{\"rollout\":1}}},\"overrides\":["
                  "{\"env\":\"production\",\"flag\":\"f\","
                  "\"since\":1700000000,\"by\":\"alice\","
                  "\"reason\":\"INC-42\"}]}");

    json_set_alloc_funcs(t_malloc, free);

    pg_journal_header(text, 0xab);
    p = text + PG_JOURNAL_HEADER_LEN;
    t_record(&p, "{\"base_revision\":7,\"revision\":8,\"environments\":"
                 "{\"production\":{\"f\":{\"rollout\":2}}}}");
    t_record(&p, "{\"base_revision\":8,\"revision\":9,\"environments\":"
                 "{\"production\":{\"g\":{\"rollout\":3}}}}");
    t_write(jpath, text);

    /* what a read restores with memory enough */
    t_fail_at = -1;
    ref = NULL;
    ref_size = 0;

    if (pg_state_read(path, 1 << 20, &st, &err) == PG_STATE_LOADED) {
        ref = st.blob;
        ref_size = st.size;
    }

    bad = 0;
    failed = 0;
    lost = 0;

    for (k = 0; k < 10000; k++) {
        t_allocs = 0;
        t_fail_at = k;
        err.text[0] = '\0';

        rc = pg_state_read(path, 1 << 20, &st, &err);

        rev = -1;
        same = 0;

        if (rc == PG_STATE_LOADED) {
            rev = pg_snap_open(&snap, st.blob, st.size, &err) == PG_OK
                  ? pg_snap_revision(&snap) : -1;
            same = ref != NULL && st.size == ref_size
                   && memcmp(st.blob, ref, ref_size) == 0;
        }

        free(st.blob);

        /* once read, the overrides outlive a replay out of memory: the
         * module restores them, an on-call kill kept */
        if (rc == PG_STATE_UNUSABLE
            && strstr(err.text, "parsing its") == NULL
            && strstr(err.text, "reading its overrides") == NULL
            && !(st.noverrides == 1 && strcmp(st.overrides[0].by, "alice")
                                       == 0)
            && lost++ == 0)
        {
            t_diag("allocation %ld failing: UNUSABLE with %zu overrides: "
                   "%s", k, st.noverrides, err.text);
        }

        if (t_allocs <= k) {
            /* nothing failed: the whole journal */
            if (!t_ok(rev == 9 && same && st.journal_records == 2
                      && st.journal_clean,
                      "journal: with memory enough, both records replay"))
            {
                t_diag("result %d, revision %lld: %s", (int) rc,
                       (long long) rev, err.text);
            }

            break;
        }

        failed++;

        /* a failure jansson gets over (a table not grown) may leave the
         * read whole: then it must restore exactly what it does without */
        if (!(rc == PG_STATE_UNUSABLE
              && strstr(err.text, "out of memory") != NULL)
            && !(same && st.journal_records == 2)
            && bad++ == 0)
        {
            t_diag("allocation %ld failing: result %d, revision %lld, "
                   "records %zu: %s %s", k, (int) rc,
                   (long long) rev, st.journal_records, err.text,
                   st.journal_note);
        }
    }

    t_fail_at = -1;
    json_set_alloc_funcs(malloc, free);
    (void) unlink(jpath);
    free(ref);

    t_ok(failed > 0 && bad == 0, "journal: out of memory at any of the "
         "read's %d allocations fails it whole (UNUSABLE, out of memory), "
         "never restores a record less", failed);
    t_ok(failed > 0 && lost == 0, "journal: out of memory after the state "
         "file was parsed is UNUSABLE with its kill overrides, for the "
         "module to restore");
}


int
main(void)
{
    int             fd;
    char            path[128], link[128], *text;
    pg_snap_t       snap;
    pg_state_t      st;
    pg_error_t      err;

    /* a reader that blocks fails the whole program, not just one test */
    alarm(20);

    snprintf(t_dir, sizeof(t_dir), "/tmp/pg-state-XXXXXX");

    if (mkdtemp(t_dir) == NULL) {
        printf("Bail out! mkdtemp failed\n");
        return 1;
    }

    snprintf(path, sizeof(path), "%s/state.json", t_dir);
    snprintf(link, sizeof(link), "%s/link.json", t_dir);

    t_expect(path, 1 << 20, PG_STATE_MISSING, "does not exist yet",
             "a missing file is MISSING: a first start");

    test_journal(path);
    test_journal_oom(path);

    t_write(path, T_SNAPSHOT);

    if (t_ok(pg_state_read(path, 1 << 20, &st, &err) == PG_STATE_LOADED,
             "a valid snapshot is LOADED"))
    {
        t_ok(pg_snap_open(&snap, st.blob, st.size, &err) == PG_OK
             && pg_snap_revision(&snap) == 7 && st.mtime > 0
             && st.noverrides == 0,
             "the loaded blob opens with the file's revision and mtime, "
             "and no override");
        free(st.blob);
    }

    /* overrides: read back as pg_state_dump() writes them */
    t_write(path, "{\"revision\":7,\"environments\":{},\"overrides\":["
                  "{\"env\":\"production\",\"flag\":\"customer_portal\","
                  "\"since\":1700000000,\"by\":\"alice\","
                  "\"reason\":\"INC-42 \\u00e9\"}]}");

    if (t_ok(pg_state_read(path, 1 << 20, &st, &err) == PG_STATE_LOADED,
             "a snapshot with an override is LOADED"))
    {
        t_ok(st.noverrides == 1
             && strcmp(st.overrides[0].env, "production") == 0
             && strcmp(st.overrides[0].flag, "customer_portal") == 0
             && st.overrides[0].since == 1700000000
             && strcmp(st.overrides[0].by, "alice") == 0
             && strcmp(st.overrides[0].reason, "INC-42 \xc3\xa9") == 0,
             "the override's fields are read back");

        (void) pg_snap_open(&snap, st.blob, st.size, &err);
        text = pg_state_dump(&snap, st.overrides, st.noverrides);
        t_ok(text != NULL && strstr(text, "\"overrides\":[{\"env\":"
                                    "\"production\",\"flag\":"
                                    "\"customer_portal\",\"since\":"
                                    "1700000000,") != NULL,
             "pg_state_dump() writes the override back");
        free(text);
        free(st.blob);
    }

    t_write(path, "{\"revision\":7,\"environments\":{},\"overrides\":["
                  "{\"env\":\"Production\",\"flag\":\"f\",\"since\":1,"
                  "\"by\":\"\",\"reason\":\"\"}]}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "invalid environment name",
             "an override with a bad environment name is CORRUPT");
    t_write(path, "{\"revision\":7,\"environments\":{},\"overrides\":["
                  "{\"env\":\"p\",\"flag\":\"f\",\"since\":1,"
                  "\"by\":\"\",\"reason\":\"a\\nb\"}]}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "control characters",
             "an override whose reason has a newline is CORRUPT");
    t_write(path, "{\"revision\":7,\"environments\":{},\"overrides\":["
                  "{\"env\":\"p\",\"flag\":\"f\",\"since\":1,"
                  "\"by\":\"\",\"reason\":\"\"},"
                  "{\"env\":\"p\",\"flag\":\"f\",\"since\":2,"
                  "\"by\":\"\",\"reason\":\"\"}]}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "twice",
             "the same override twice is CORRUPT");
    t_write(path, "{\"revision\":7,\"environments\":{\"p\":{\"f\":"
                  "{\"rolout\":1}}},\"overrides\":["
                  "{\"env\":\"p\",\"flag\":\"f\",\"since\":1,"
                  "\"by\":\"\",\"reason\":\"\"}]}");
    t_ok(pg_state_read(path, 1 << 20, &st, &err) == PG_STATE_CORRUPT
         && st.blob == NULL && st.noverrides == 1
         && strcmp(st.overrides[0].flag, "f") == 0,
         "a refused snapshot is CORRUPT, but its overrides are read: a "
         "break-glass kill outlives it");

    t_write(path, "{\"revision\":7,\"environments\":{},\"overrides\":{}}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "must be an array",
             "overrides that are not an array are CORRUPT");

    t_write(path, T_SNAPSHOT);
    t_expect(path, strlen(T_SNAPSHOT) - 1, PG_STATE_UNUSABLE,
             "more than the", "a file one byte over max is UNUSABLE");
    t_expect(path, strlen(T_SNAPSHOT), PG_STATE_LOADED, NULL,
             "a file of exactly max bytes is LOADED");

    t_write(path, "{\"revision\":7,");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "invalid JSON",
             "truncated JSON is CORRUPT, with the parser's message");

    t_write(path, "{\"revision\":7,\"environments\":{\"production\":"
                  "{\"f\":{\"rolout\":1}}}}");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, "rolout",
             "a snapshot the core refuses is CORRUPT and names the key");

    t_write(path, "");
    t_expect(path, 1 << 20, PG_STATE_CORRUPT, NULL,
             "an empty file is CORRUPT");

    /* a FIFO with no writer: open() would block without O_NONBLOCK */
    (void) unlink(path);
    if (mkfifo(path, 0600) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "FIFO",
                 "a FIFO is UNUSABLE at once, it does not hang");
    } else {
        t_ok(0, "mkfifo");
    }
    (void) unlink(path);

    if (mkdir(path, 0700) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "directory",
                 "a directory is UNUSABLE and said to be one, not "
                 "\"invalid JSON\"");
        (void) rmdir(path);
    } else {
        t_ok(0, "mkdir");
    }

    /* a 200 GB sparse file: refused by size, nothing is allocated */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != -1 && ftruncate(fd, 200LL * 1024 * 1024 * 1024) == 0) {
        t_expect(path, 16 << 20, PG_STATE_UNUSABLE, "214748364800 bytes",
                 "a 200 GB sparse file is UNUSABLE, not a malloc failure");
    } else {
        t_ok(0, "ftruncate to 200 GB");
    }
    if (fd != -1) {
        (void) close(fd);
    }
    (void) unlink(path);

    /* the master reads as root: it must not follow a planted link */
    t_write(link, T_SNAPSHOT);
    if (symlink(link, path) == 0) {
        t_expect(path, 1 << 20, PG_STATE_UNUSABLE, "symbolic link",
                 "a symbolic link is UNUSABLE, never followed");
    } else {
        t_ok(0, "symlink");
    }
    (void) unlink(path);
    (void) unlink(link);

    t_expect("/dev/null", 1 << 20, PG_STATE_UNUSABLE, "character device",
             "a character device is UNUSABLE and said to be one");

    (void) rmdir(t_dir);

    /* a kill override on a worker's copy: the flag and its dependents */
    {
        size_t          size;
        pg_result_t     res;
        unsigned char  *blob;
        const char     *json = "{\"revision\":1,\"environments\":{"
            "\"production\":{\"customer_portal\":{\"allow\":[\"12\"]},"
            "\"customer_portal_calls\":{\"requires\":\"customer_portal\","
            "\"allow\":[\"12\"]},\"other\":{\"rollout\":100}}}}";

        if (pg_snap_compile(json, strlen(json), &blob, &size, &err) == PG_OK
            && pg_snap_open(&snap, blob, size, &err) == PG_OK)
        {
            t_ok(pg_snap_kill(&snap, blob, "production", 10,
                              "customer_portal", 15) == 1,
                 "pg_snap_kill finds customer_portal");
            pg_eval(&snap, "production", 10, "customer_portal", 15, "12", 2,
                    &res);
            t_ok(!res.on && res.reason == PG_REASON_KILLED,
                 "the killed flag is off for an allowed company: killed");
            pg_eval(&snap, "production", 10, "customer_portal_calls", 21,
                    "12", 2, &res);
            t_ok(!res.on && res.reason == PG_REASON_REQUIRES,
                 "a flag that requires it is off: requires");
            pg_eval(&snap, "production", 10, "other", 5, "12", 2, &res);
            t_ok(res.on, "another flag is untouched");
            t_ok(pg_snap_kill(&snap, blob, "staging", 7, "customer_portal",
                              15) == 0
                 && pg_snap_kill(&snap, blob, "production", 10, "nope", 4)
                    == 0,
                 "an unknown environment or flag is not found");
            free(blob);

        } else {
            t_ok(0, "compile: %s", err.text);
        }
    }

    printf("1..%d\n", t_count);

    if (t_failed) {
        printf("# failed %d of %d tests\n", t_failed, t_count);
    }

    return t_failed ? 1 : 0;
}
