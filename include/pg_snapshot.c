/*
 * pg_snapshot.c: a snapshot's JSON form validated and compiled into a blob,
 * a blob checked whole before anything reads it (pg_snap_open), and a blob
 * turned back into JSON. The blob's layout is in pg_blob.h.
 *
 * Compiling runs in three steps, and nothing is allocated for the blob
 * before the first two have passed:
 *
 *   1. parse: every key, name, value and company id is checked, and each
 *      allow/deny list is deduplicated (pg_csnap_t, borrowing the JSON);
 *   2. resolve: `requires` becomes an index, and cycles are refused;
 *   3. write: the blob is sized, then written in one calloc()ed buffer.
 */

#include <math.h>           /* floor, fabs */
#include <stdarg.h>         /* va_list */
#include <stdint.h>         /* uint32_t, uint64_t, uintptr_t */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <stdlib.h>         /* malloc, calloc, free, qsort */
#include <string.h>         /* memcpy, memset, strlen */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_blob.h"        /* the blob's layout */


/* Room for "environments." ENV "." FLAG and a NUL. */
#define PG_PATH_LEN   (sizeof("environments..") + PG_NAME_MAX * 2)

/* Room for a quoted value in a message: 48 bytes escaped, "...", NUL. */
#define PG_QUOTE_LEN  (48 * 4 + 4)

/* Bigger than any decimal json_int_t, sign and NUL included. */
#define PG_INT_LEN    24


typedef struct {
    const char  *p;
    size_t       len;
    int          set;
} pg_text_t;


typedef struct {
    uint32_t  index;            /* position in the JSON array */
    uint32_t  hash;             /* set hash of the id */
    uint32_t  len;              /* length of the id */
} pg_citem_t;


typedef struct {
    const json_t  *array;       /* borrowed */
    pg_citem_t    *items;       /* the distinct ids, in input order */
    uint32_t       count;
    uint64_t       bytes;       /* the entries' size in the blob */
} pg_clist_t;


typedef struct {
    const char  *name;          /* borrowed from the JSON */
    size_t       name_len;
    pg_text_t    salt;          /* set only when it differs from the name */
    int          enabled;
    uint32_t     bp;
    pg_text_t    requires;
    uint32_t     requires_idx;  /* index + 1 once resolved; 0: none */
    int          has_version;
    int64_t      version;
    pg_text_t    description;
    pg_text_t    updated_at;
    pg_text_t    updated_by;
    pg_clist_t   allow;
    pg_clist_t   deny;
} pg_cflag_t;


typedef struct {
    const char  *name;          /* borrowed from the JSON */
    size_t       name_len;
    pg_cflag_t  *flags;         /* sorted by name once parsed */
    size_t       count;
} pg_cenv_t;


typedef struct {
    int64_t      revision;
    pg_cenv_t   *envs;          /* sorted by name once parsed */
    size_t       count;
} pg_csnap_t;


/* A blob as pg_blob_check() walks it, in the writer's order. */
typedef struct {
    const unsigned char  *base;
    uint64_t              size;
    uint64_t              fixed;        /* next slot table */
    uint64_t              fixed_end;    /* where the byte area starts */
    uint64_t              bytes;        /* next string or list entry */
} pg_check_t;


typedef struct {
    unsigned char  *buf;        /* NULL while sizing */
    uint64_t        fixed;      /* next offset in the aligned records */
    uint64_t        bytes;      /* next offset in the byte area */
} pg_writer_t;


static int pg_fail(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *pg_quote(char *buf, const char *s, size_t len);
static int pg_key_is(const char *key, size_t key_len, const char *name);
static int pg_id_get(const json_t *v, char *buf, const char **p,
    size_t *len);
static int pg_list_parse(const char *path, const char *field,
    const json_t *array, pg_clist_t *list, pg_error_t *err);
static int pg_text_parse(const char *path, const char *field,
    const json_t *v, pg_text_t *text, pg_error_t *err);
static int pg_flag_parse(const char *path, const char *name,
    size_t name_len, const json_t *obj, pg_cflag_t *f, pg_error_t *err);
static void pg_flag_free(pg_cflag_t *f);
static int pg_cflag_cmp(const void *a, const void *b);
static int pg_cenv_cmp(const void *a, const void *b);
static int pg_env_parse(const char *name, size_t name_len,
    const json_t *obj, pg_cenv_t *env, pg_error_t *err);
static int pg_csnap_parse(const json_t *root, pg_csnap_t *cs,
    pg_error_t *err);
static int pg_env_resolve(pg_cenv_t *env, pg_error_t *err);
static void pg_csnap_free(pg_csnap_t *cs);
static uint32_t pg_slot_count(uint32_t count);
static void pg_write_text(pg_writer_t *w, const char *p, size_t len,
    pg_blob_str_t *str);
static void pg_write_list(pg_writer_t *w, const pg_clist_t *list,
    pg_blob_list_t *bl);
static int pg_csnap_write(const pg_csnap_t *cs, unsigned char **blob,
    size_t *size, pg_error_t *err);
static int pg_utf8_valid(const unsigned char *p, size_t len);
static const char *pg_check_str(pg_check_t *c, const pg_blob_str_t *str,
    size_t max);
static const char *pg_check_name(pg_check_t *c, const pg_blob_str_t *str);
static const char *pg_check_text(pg_check_t *c, uint32_t meta, uint32_t bit,
    const pg_blob_str_t *str);
static const char *pg_check_list(pg_check_t *c, const pg_blob_list_t *bl);
static const char *pg_check_flag(pg_check_t *c, const pg_blob_flag_t *f,
    uint32_t index, uint32_t n);
static int pg_check_acyclic(const pg_blob_flag_t *flags, uint32_t n);
static int pg_blob_check(const unsigned char *base, size_t size,
    pg_error_t *err);
static json_t *pg_list_to_json(const pg_snap_t *snap,
    const pg_blob_list_t *bl);
static json_t *pg_flag_to_json(const pg_snap_t *snap,
    const pg_blob_flag_t *flags, const pg_blob_flag_t *f);
static int pg_set_text(json_t *obj, const char *key, const pg_snap_t *snap,
    const pg_blob_str_t *str);


static int
pg_fail(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    if (err != NULL) {
        va_start(args, fmt);
        vsnprintf(err->text, sizeof(err->text), fmt, args);
        va_end(args);
    }

    return PG_ERR;
}


/* A value from the input, shortened and escaped to sit in a message. */
static const char *
pg_quote(char *buf, const char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    n = 0;

    for (i = 0; i < len && i < 48; i++) {
        c = (unsigned char) s[i];

        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char) c;

        } else if (c >= 0x20 && c < 0x7f) {
            buf[n++] = (char) c;

        } else {
            n += (size_t) snprintf(buf + n, 5, "\\x%02x", c);
        }
    }

    if (i < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }

    buf[n] = '\0';

    return buf;
}


static int
pg_key_is(const char *key, size_t key_len, const char *name)
{
    return key_len == strlen(name) && memcmp(key, name, key_len) == 0;
}


/* A company id as a string: a JSON string, or an integer in decimal. */
static int
pg_id_get(const json_t *v, char *buf, const char **p, size_t *len)
{
    int  n;

    if (json_is_string(v)) {
        *p = json_string_value(v);
        *len = json_string_length(v);
        return PG_OK;
    }

    if (json_is_integer(v)) {
        n = snprintf(buf, PG_INT_LEN, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        *p = buf;
        *len = (size_t) n;
        return PG_OK;
    }

    return PG_ERR;
}


/*
 * Check an allow or deny array and note its distinct ids in input order.
 * A scratch hash table (index + 1 per slot) finds the duplicates.
 */
static int
pg_list_parse(const char *path, const char *field, const json_t *array,
    pg_clist_t *list, pg_error_t *err)
{
    int          rc;
    char         buf[PG_INT_LEN], dup[PG_INT_LEN], q[PG_QUOTE_LEN];
    size_t       i, n, len, dup_len;
    uint32_t     hash, mask, j, s, *table;
    pg_citem_t  *item;
    const char  *id, *dup_id;

    list->array = array;

    if (!json_is_array(array)) {
        return pg_fail(err, "%s: %s must be an array of company ids",
                       path, field);
    }

    n = json_array_size(array);

    if (n > PG_LIST_MAX) {
        return pg_fail(err, "%s: %s holds %zu companies, at most %d",
                       path, field, n, PG_LIST_MAX);
    }

    if (n == 0) {
        return PG_OK;
    }

    list->items = malloc(n * sizeof(pg_citem_t));
    mask = pg_slot_count((uint32_t) n) - 1;
    table = calloc((size_t) mask + 1, sizeof(uint32_t));

    if (list->items == NULL || table == NULL) {
        free(table);
        return pg_fail(err, "%s: out of memory for %s", path, field);
    }

    rc = PG_OK;

    for (i = 0; i < n; i++) {
        if (pg_id_get(json_array_get(array, i), buf, &id, &len) != PG_OK) {
            rc = pg_fail(err, "%s.%s[%zu]: company id must be a string "
                         "or an integer", path, field, i);
            break;
        }

        if (!pg_valid_company(id, len)) {
            rc = pg_fail(err, "%s.%s[%zu]: invalid company id \"%s\"",
                         path, field, i, pg_quote(q, id, len));
            break;
        }

        hash = pg_murmur3_32(id, len, PG_BLOB_SET_SEED);

        for (j = hash & mask; (s = table[j]) != 0; j = (j + 1) & mask) {
            item = &list->items[s - 1];

            if (item->hash != hash || item->len != len) {
                continue;
            }

            (void) pg_id_get(json_array_get(array, item->index), dup,
                             &dup_id, &dup_len);

            if (memcmp(dup_id, id, len) == 0) {
                break;
            }
        }

        if (s != 0) {
            continue;       /* a duplicate: collapsed */
        }

        item = &list->items[list->count++];
        item->index = (uint32_t) i;
        item->hash = hash;
        item->len = (uint32_t) len;
        table[j] = list->count;
        list->bytes += PG_BLOB_ENTRY_HEAD + len;
    }

    free(table);

    return rc;
}


static int
pg_text_parse(const char *path, const char *field, const json_t *v,
    pg_text_t *text, pg_error_t *err)
{
    if (!json_is_string(v) || json_string_length(v) > PG_TEXT_MAX) {
        return pg_fail(err, "%s: %s must be a string of at most %d bytes",
                       path, field, PG_TEXT_MAX);
    }

    text->p = json_string_value(v);
    text->len = json_string_length(v);
    text->set = 1;

    return PG_OK;
}


/* Check one flag object; f is zeroed first and freed by the caller. */
static int
pg_flag_parse(const char *path, const char *name, size_t name_len,
    const json_t *obj, pg_cflag_t *f, pg_error_t *err)
{
    char         q[PG_QUOTE_LEN];
    double       d, x;
    size_t       i, len, key_len;
    json_t      *v;
    const char  *key, *s;

    memset(f, 0, sizeof(pg_cflag_t));
    f->name = name;
    f->name_len = name_len;
    f->enabled = 1;

    if (!json_is_object(obj)) {
        return pg_fail(err, "%s: a flag must be an object", path);
    }

    json_object_keylen_foreach((json_t *) obj, key, key_len, v) {

        if (pg_key_is(key, key_len, "enabled")) {
            if (!json_is_boolean(v)) {
                return pg_fail(err, "%s: enabled must be true or false",
                               path);
            }

            f->enabled = json_is_true(v);

        } else if (pg_key_is(key, key_len, "rollout")) {
            if (!json_is_number(v)) {
                return pg_fail(err, "%s: rollout must be a number "
                               "from 0 to 100", path);
            }

            d = json_number_value(v);

            if (!(d >= 0 && d <= 100)) {
                return pg_fail(err, "%s: rollout must be a number "
                               "from 0 to 100, not %.15g", path, d);
            }

            /* compare in integer basis points: 0.07 * 100 is 7.000...01 */
            x = d * 100;
            f->bp = (uint32_t) floor(x + 0.5);

            if (fabs(x - (double) f->bp) > 1e-4) {
                return pg_fail(err, "%s: rollout must be a multiple of "
                               "0.01, not %.15g", path, d);
            }

        } else if (pg_key_is(key, key_len, "allow")) {
            if (pg_list_parse(path, "allow", v, &f->allow, err) != PG_OK) {
                return PG_ERR;
            }

        } else if (pg_key_is(key, key_len, "deny")) {
            if (pg_list_parse(path, "deny", v, &f->deny, err) != PG_OK) {
                return PG_ERR;
            }

        } else if (pg_key_is(key, key_len, "salt")) {
            s = json_string_value(v);
            len = json_string_length(v);

            if (s == NULL || len == 0 || len > PG_SALT_MAX) {
                return pg_fail(err, "%s: salt must be a string of 1 to %d "
                               "printable ASCII characters", path,
                               PG_SALT_MAX);
            }

            for (i = 0; i < len; i++) {
                if (s[i] < 0x21 || s[i] > 0x7e) {
                    return pg_fail(err, "%s: salt must be a string of 1 to "
                                   "%d printable ASCII characters, not "
                                   "\"%s\"", path, PG_SALT_MAX,
                                   pg_quote(q, s, len));
                }
            }

            /* a salt equal to the name is the default: one blob for both */
            if (len != name_len || memcmp(s, name, len) != 0) {
                f->salt.p = s;
                f->salt.len = len;
                f->salt.set = 1;
            }

        } else if (pg_key_is(key, key_len, "requires")) {
            s = json_string_value(v);
            len = json_string_length(v);

            if (s == NULL) {
                return pg_fail(err, "%s: requires must be a flag name",
                               path);
            }

            if (!pg_valid_name(s, len)) {
                return pg_fail(err, "%s: requires must be a flag name, "
                               "not \"%s\"", path, pg_quote(q, s, len));
            }

            f->requires.p = s;
            f->requires.len = len;
            f->requires.set = 1;

        } else if (pg_key_is(key, key_len, "version")) {
            if (!json_is_integer(v)) {
                return pg_fail(err, "%s: version must be an integer", path);
            }

            f->version = json_integer_value(v);
            f->has_version = 1;

        } else if (pg_key_is(key, key_len, "description")) {
            if (pg_text_parse(path, "description", v, &f->description, err)
                != PG_OK)
            {
                return PG_ERR;
            }

        } else if (pg_key_is(key, key_len, "updated_at")) {
            if (pg_text_parse(path, "updated_at", v, &f->updated_at, err)
                != PG_OK)
            {
                return PG_ERR;
            }

        } else if (pg_key_is(key, key_len, "updated_by")) {
            if (pg_text_parse(path, "updated_by", v, &f->updated_by, err)
                != PG_OK)
            {
                return PG_ERR;
            }

        } else {
            return pg_fail(err, "%s: unknown key \"%s\"", path,
                           pg_quote(q, key, key_len));
        }
    }

    return PG_OK;
}


static void
pg_flag_free(pg_cflag_t *f)
{
    free(f->allow.items);
    free(f->deny.items);
    f->allow.items = NULL;
    f->deny.items = NULL;
}


static int
pg_cflag_cmp(const void *a, const void *b)
{
    const pg_cflag_t  *fa = a, *fb = b;

    return pg_blob_namecmp(fa->name, fa->name_len, fb->name, fb->name_len);
}


static int
pg_cenv_cmp(const void *a, const void *b)
{
    const pg_cenv_t  *ea = a, *eb = b;

    return pg_blob_namecmp(ea->name, ea->name_len, eb->name, eb->name_len);
}


static int
pg_env_parse(const char *name, size_t name_len, const json_t *obj,
    pg_cenv_t *env, pg_error_t *err)
{
    char         path[PG_PATH_LEN], q[PG_QUOTE_LEN];
    size_t       n, key_len;
    json_t      *v;
    const char  *key;

    env->name = name;
    env->name_len = name_len;

    if (!json_is_object(obj)) {
        return pg_fail(err, "environments.%.*s: an environment must be an "
                       "object of flags", (int) name_len, name);
    }

    n = json_object_size(obj);

    if (n > PG_FLAGS_MAX) {
        return pg_fail(err, "environments.%.*s: %zu flags, at most %d",
                       (int) name_len, name, n, PG_FLAGS_MAX);
    }

    env->flags = calloc(n ? n : 1, sizeof(pg_cflag_t));

    if (env->flags == NULL) {
        return pg_fail(err, "environments.%.*s: out of memory",
                       (int) name_len, name);
    }

    json_object_keylen_foreach((json_t *) obj, key, key_len, v) {

        if (!pg_valid_name(key, key_len)) {
            return pg_fail(err, "environments.%.*s: invalid flag name "
                           "\"%s\"", (int) name_len, name,
                           pg_quote(q, key, key_len));
        }

        snprintf(path, sizeof(path), "environments.%.*s.%.*s",
                 (int) name_len, name, (int) key_len, key);

        /* counted first, so that a failed flag's lists are freed too */
        env->count++;

        if (pg_flag_parse(path, key, key_len, v, &env->flags[env->count - 1],
                          err)
            != PG_OK)
        {
            return PG_ERR;
        }
    }

    qsort(env->flags, env->count, sizeof(pg_cflag_t), pg_cflag_cmp);

    return PG_OK;
}


static int
pg_csnap_parse(const json_t *root, pg_csnap_t *cs, pg_error_t *err)
{
    char           q[PG_QUOTE_LEN];
    size_t         n, key_len;
    json_t        *v, *revision, *envs;
    const char    *key;

    if (!json_is_object(root)) {
        return pg_fail(err, "a snapshot must be a JSON object");
    }

    revision = NULL;
    envs = NULL;

    json_object_keylen_foreach((json_t *) root, key, key_len, v) {

        if (pg_key_is(key, key_len, "revision")) {
            revision = v;

        } else if (pg_key_is(key, key_len, "environments")) {
            envs = v;

        } else {
            return pg_fail(err, "unknown top-level key \"%s\"",
                           pg_quote(q, key, key_len));
        }
    }

    if (revision == NULL) {
        return pg_fail(err, "revision is required");
    }

    if (!json_is_integer(revision) || json_integer_value(revision) < 0
        || json_integer_value(revision) > PG_REVISION_MAX)
    {
        return pg_fail(err, "revision must be an integer from 0 to %lld",
                       (long long) PG_REVISION_MAX);
    }

    cs->revision = json_integer_value(revision);

    if (envs == NULL) {
        return pg_fail(err, "environments is required");
    }

    if (!json_is_object(envs)) {
        return pg_fail(err, "environments must be an object");
    }

    n = json_object_size(envs);

    if (n > PG_ENVS_MAX) {
        return pg_fail(err, "environments: %zu environments, at most %d",
                       n, PG_ENVS_MAX);
    }

    cs->envs = calloc(n ? n : 1, sizeof(pg_cenv_t));

    if (cs->envs == NULL) {
        return pg_fail(err, "environments: out of memory");
    }

    json_object_keylen_foreach(envs, key, key_len, v) {

        if (!pg_valid_name(key, key_len)) {
            return pg_fail(err, "environments: invalid environment name "
                           "\"%s\"", pg_quote(q, key, key_len));
        }

        cs->count++;

        if (pg_env_parse(key, key_len, v, &cs->envs[cs->count - 1], err)
            != PG_OK)
        {
            return PG_ERR;
        }
    }

    qsort(cs->envs, cs->count, sizeof(pg_cenv_t), pg_cenv_cmp);

    return PG_OK;
}


/* Turn each `requires` into an index and refuse missing flags and cycles. */
static int
pg_env_resolve(pg_cenv_t *env, pg_error_t *err)
{
    int            cmp;
    char           msg[PG_ERROR_LEN], q[PG_QUOTE_LEN];
    size_t         i, j, lo, hi, mid, n;
    uint32_t       r;
    pg_cflag_t    *f;
    unsigned char  *state;

    for (i = 0; i < env->count; i++) {
        f = &env->flags[i];

        if (!f->requires.set) {
            continue;
        }

        lo = 0;
        hi = env->count;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            cmp = pg_blob_namecmp(f->requires.p, f->requires.len,
                                  env->flags[mid].name,
                                  env->flags[mid].name_len);
            if (cmp == 0) {
                f->requires_idx = (uint32_t) mid + 1;
                break;
            }

            if (cmp < 0) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }

        if (f->requires_idx == 0) {
            return pg_fail(err, "environments.%.*s.%.*s: requires unknown "
                           "flag \"%s\"", (int) env->name_len, env->name,
                           (int) f->name_len, f->name,
                           pg_quote(q, f->requires.p, f->requires.len));
        }
    }

    /* 0: not seen, 1: on the current walk, 2: known to end without a cycle */
    state = calloc(env->count ? env->count : 1, 1);

    if (state == NULL) {
        return pg_fail(err, "environments.%.*s: out of memory",
                       (int) env->name_len, env->name);
    }

    for (i = 0; i < env->count; i++) {
        r = (uint32_t) i + 1;

        while (r != 0 && state[r - 1] == 0) {
            state[r - 1] = 1;
            r = env->flags[r - 1].requires_idx;
        }

        if (r != 0 && state[r - 1] == 1) {
            /* the walk came back to flag r - 1: print the cycle from there */
            n = 0;
            j = r - 1;

            do {
                n += (size_t) snprintf(msg + n, sizeof(msg) - n, "%.*s -> ",
                                       (int) env->flags[j].name_len,
                                       env->flags[j].name);
                j = env->flags[j].requires_idx - 1;
            } while (j != r - 1 && n < sizeof(msg));

            if (n < sizeof(msg)) {
                snprintf(msg + n, sizeof(msg) - n, "%.*s",
                         (int) env->flags[j].name_len, env->flags[j].name);
            }

            free(state);

            return pg_fail(err, "environments.%.*s: requires cycle: %s",
                           (int) env->name_len, env->name, msg);
        }

        for (r = (uint32_t) i + 1; r != 0 && state[r - 1] == 1;
             r = env->flags[r - 1].requires_idx)
        {
            state[r - 1] = 2;
        }
    }

    free(state);

    return PG_OK;
}


static void
pg_csnap_free(pg_csnap_t *cs)
{
    size_t  i, j;

    for (i = 0; i < cs->count; i++) {
        for (j = 0; j < cs->envs[i].count; j++) {
            pg_flag_free(&cs->envs[i].flags[j]);
        }

        free(cs->envs[i].flags);
    }

    free(cs->envs);
    cs->envs = NULL;
    cs->count = 0;
}


/* The table's slots: the smallest power of two >= 2 * count. */
static uint32_t
pg_slot_count(uint32_t count)
{
    uint32_t  n;

    for (n = 1; n < 2 * count; n <<= 1) {
        /* void */
    }

    return n;
}


/* A string in the byte area, followed by a NUL. */
static void
pg_write_text(pg_writer_t *w, const char *p, size_t len, pg_blob_str_t *str)
{
    if (w->buf != NULL) {
        str->off = (uint32_t) w->bytes;
        str->len = (uint32_t) len;

        if (len) {
            memcpy(w->buf + w->bytes, p, len);
        }

        w->buf[w->bytes + len] = '\0';
    }

    w->bytes += len + 1;
}


/* A list's slots in the aligned records, its entries in the byte area. */
static void
pg_write_list(pg_writer_t *w, const pg_clist_t *list, pg_blob_list_t *bl)
{
    char            buf[PG_INT_LEN];
    size_t          len;
    uint32_t        i, j, mask, *slots;
    const char     *id;
    unsigned char  *e;

    if (list->count == 0) {
        return;
    }

    mask = pg_slot_count(list->count) - 1;

    if (w->buf == NULL) {
        w->fixed += ((uint64_t) mask + 1) * sizeof(uint32_t);
        w->bytes += list->bytes;
        return;
    }

    bl->count = list->count;
    bl->mask = mask;
    bl->slots = (uint32_t) w->fixed;
    bl->entries = (uint32_t) w->bytes;

    slots = (uint32_t *) (void *) (w->buf + w->fixed);
    w->fixed += ((uint64_t) mask + 1) * sizeof(uint32_t);

    for (i = 0; i < list->count; i++) {
        (void) pg_id_get(json_array_get(list->array, list->items[i].index),
                         buf, &id, &len);

        e = w->buf + w->bytes;
        memcpy(e, &list->items[i].hash, sizeof(uint32_t));
        e[4] = (unsigned char) len;
        memcpy(e + PG_BLOB_ENTRY_HEAD, id, len);

        for (j = list->items[i].hash & mask; slots[j] != 0;
             j = (j + 1) & mask)
        {
            /* void */
        }

        slots[j] = (uint32_t) w->bytes + 1;
        w->bytes += PG_BLOB_ENTRY_HEAD + len;
    }
}


/*
 * Lay the blob out twice: once with w.buf == NULL to size it, once to
 * write it. Both passes walk the same code, so they cannot disagree.
 */
static int
pg_csnap_write(const pg_csnap_t *cs, unsigned char **blob, size_t *size,
    pg_error_t *err)
{
    int                pass;
    size_t             i, j, flag_total;
    uint64_t           total, fixed_end;
    pg_writer_t        w;
    pg_blob_hdr_t     *hdr;
    pg_blob_env_t     *be, env_scratch;
    pg_blob_flag_t    *bf, *o, flag_scratch;
    const pg_cenv_t   *e;
    const pg_cflag_t  *f;

    flag_total = 0;

    for (i = 0; i < cs->count; i++) {
        flag_total += cs->envs[i].count;
    }

    memset(&w, 0, sizeof(w));
    /* pass 0 writes into these instead of the blob it is sizing */
    memset(&env_scratch, 0, sizeof(env_scratch));
    memset(&flag_scratch, 0, sizeof(flag_scratch));
    total = 0;
    fixed_end = 0;

    for (pass = 0; pass < 2; pass++) {

        /* the records: header, environments, then flags, all aligned */
        w.fixed = sizeof(pg_blob_hdr_t) + cs->count * sizeof(pg_blob_env_t)
                  + flag_total * sizeof(pg_blob_flag_t);

        /* the slots follow the records; pass 0 learns where they end */
        w.bytes = fixed_end;

        if (w.buf != NULL) {
            hdr = (pg_blob_hdr_t *) (void *) w.buf;
            hdr->magic = PG_SNAP_MAGIC;
            hdr->layout = PG_SNAP_LAYOUT;
            hdr->size = (uint32_t) total;
            hdr->env_count = (uint32_t) cs->count;
            hdr->revision_lo = (uint32_t) ((uint64_t) cs->revision);
            hdr->revision_hi = (uint32_t) ((uint64_t) cs->revision >> 32);
            hdr->envs = sizeof(pg_blob_hdr_t);
        }

        bf = w.buf ? (pg_blob_flag_t *) (void *) (w.buf
                     + sizeof(pg_blob_hdr_t)
                     + cs->count * sizeof(pg_blob_env_t))
                   : NULL;

        for (i = 0; i < cs->count; i++) {
            e = &cs->envs[i];
            be = w.buf ? (pg_blob_env_t *) (void *) (w.buf
                         + sizeof(pg_blob_hdr_t))
                         + i
                       : &env_scratch;

            pg_write_text(&w, e->name, e->name_len, &be->name);
            be->flag_count = (uint32_t) e->count;
            be->flags = w.buf ? (uint32_t) ((unsigned char *) bf - w.buf) : 0;

            for (j = 0; j < e->count; j++) {
                f = &e->flags[j];
                o = bf ? bf++ : &flag_scratch;

                pg_write_text(&w, f->name, f->name_len, &o->name);

                if (f->salt.set) {
                    pg_write_text(&w, f->salt.p, f->salt.len, &o->salt);
                } else {
                    o->salt = o->name;
                }

                o->enabled = (uint32_t) f->enabled;
                o->bp = f->bp;
                o->requires = f->requires_idx;
                o->meta = 0;

                if (f->has_version) {
                    o->meta |= PG_BLOB_META_VERSION;
                    o->version_lo = (uint32_t) ((uint64_t) f->version);
                    o->version_hi = (uint32_t) ((uint64_t) f->version >> 32);
                }

                if (f->description.set) {
                    o->meta |= PG_BLOB_META_DESCRIPTION;
                    pg_write_text(&w, f->description.p, f->description.len,
                                  &o->description);
                }

                if (f->updated_at.set) {
                    o->meta |= PG_BLOB_META_UPDATED_AT;
                    pg_write_text(&w, f->updated_at.p, f->updated_at.len,
                                  &o->updated_at);
                }

                if (f->updated_by.set) {
                    o->meta |= PG_BLOB_META_UPDATED_BY;
                    pg_write_text(&w, f->updated_by.p, f->updated_by.len,
                                  &o->updated_by);
                }

                pg_write_list(&w, &f->allow, &o->allow);
                pg_write_list(&w, &f->deny, &o->deny);
            }
        }

        if (pass == 0) {
            /* the byte area starts where the records and slots end */
            fixed_end = w.fixed;
            total = (w.fixed + w.bytes + 3) & ~(uint64_t) 3;

            if (total > UINT32_MAX) {
                return pg_fail(err, "the snapshot is too large: %llu bytes",
                               (unsigned long long) total);
            }

            w.buf = calloc(1, (size_t) total);

            if (w.buf == NULL) {
                return pg_fail(err, "out of memory for a snapshot of %llu "
                               "bytes", (unsigned long long) total);
            }
        }
    }

    *blob = w.buf;
    *size = (size_t) total;

    return PG_OK;
}


int
pg_snap_compile_json(const json_t *root, unsigned char **blob,
    size_t *size, pg_error_t *err)
{
    int         rc;
    size_t      i;
    pg_csnap_t  cs;

    memset(&cs, 0, sizeof(cs));

    rc = pg_csnap_parse(root, &cs, err);

    for (i = 0; rc == PG_OK && i < cs.count; i++) {
        rc = pg_env_resolve(&cs.envs[i], err);
    }

    if (rc == PG_OK) {
        rc = pg_csnap_write(&cs, blob, size, err);
    }

    pg_csnap_free(&cs);

    return rc;
}


int
pg_snap_compile(const char *json, size_t len, unsigned char **blob,
    size_t *size, pg_error_t *err)
{
    int           rc;
    json_t       *root;
    json_error_t  jerr;

    if (json == NULL) {
        return pg_fail(err, "no JSON given");
    }

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        return pg_fail(err, "invalid JSON at line %d column %d: %s",
                       jerr.line, jerr.column, jerr.text);
    }

    rc = pg_snap_compile_json(root, blob, size, err);

    json_decref(root);

    return rc;
}


int
pg_flag_check_json(const char *name, const json_t *flag, pg_error_t *err)
{
    int          rc;
    char         q[PG_QUOTE_LEN];
    size_t       len;
    pg_cflag_t   f;

    len = name ? strlen(name) : 0;

    if (!pg_valid_name(name, len)) {
        return pg_fail(err, "invalid flag name \"%s\"",
                       name ? pg_quote(q, name, len) : "");
    }

    rc = pg_flag_parse(name, name, len, flag, &f, err);

    pg_flag_free(&f);

    return rc;
}


/* --- blob validation ----------------------------------------------------
 *
 * pg_snap_open() accepts a blob only if it is laid out exactly as
 * pg_csnap_write() lays one out, so that a reader may follow every offset
 * in it without a check of its own: a worker opens what it copied out of
 * shared memory, which any worker (or a stray write) could have damaged.
 *
 * The check replays the writer: two cursors walk the aligned records
 * (then the slot tables) and the byte area in the writer's order, and
 * every offset must be the cursor's. So no two parts overlap, nothing lies
 * outside the blob, and the whole check costs one pass over the blob; only
 * the hash tables cost more, as many probes as the compiler made building
 * them. On top of the layout: names are valid, sorted and NUL-terminated,
 * texts are UTF-8, `requires` is in range and without cycles, each hash
 * set holds its ids exactly once where a probe finds them, and every
 * field the compiler leaves zero is zero. What opens is a snapshot the
 * compiler could have written.
 */

/* Valid UTF-8 without NUL: what jansson holds and json_stringn() takes. */
static int
pg_utf8_valid(const unsigned char *p, size_t len)
{
    size_t    i, k, n;
    uint32_t  cp;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            if (p[i] == 0) {
                return 0;
            }

            n = 1;
            continue;
        }

        if (p[i] >= 0xc2 && p[i] <= 0xdf) {
            n = 2;
            cp = p[i] & 0x1f;

        } else if (p[i] >= 0xe0 && p[i] <= 0xef) {
            n = 3;
            cp = p[i] & 0x0f;

        } else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
            n = 4;
            cp = p[i] & 0x07;

        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
            || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The next string of the byte area: at the cursor, at most max bytes,
 * followed by a NUL. NULL when it is, or what is wrong.
 */
static const char *
pg_check_str(pg_check_t *c, const pg_blob_str_t *str, size_t max)
{
    if (str->off != c->bytes) {
        return "out of place";
    }

    if (str->len > max || c->bytes + str->len + 1 > c->size) {
        return "too long";
    }

    if (c->base[c->bytes + str->len] != '\0') {
        return "not NUL-terminated";
    }

    c->bytes += (uint64_t) str->len + 1;

    return NULL;
}


/* A name: pg_check_str() and [a-z0-9_]{1,64}. */
static const char *
pg_check_name(pg_check_t *c, const pg_blob_str_t *str)
{
    const char  *why;

    why = pg_check_str(c, str, PG_NAME_MAX);

    if (why == NULL
        && !pg_valid_name((const char *) c->base + str->off, str->len))
    {
        why = "not a valid name";
    }

    return why;
}


/* description, updated_at or updated_by: a text when meta has bit, else
 * nothing at all. */
static const char *
pg_check_text(pg_check_t *c, uint32_t meta, uint32_t bit,
    const pg_blob_str_t *str)
{
    const char  *why;

    if (!(meta & bit)) {
        return (str->off | str->len) ? "unknown metadata" : NULL;
    }

    why = pg_check_str(c, str, PG_TEXT_MAX);

    if (why == NULL && !pg_utf8_valid(c->base + str->off, str->len)) {
        why = "a text that is not UTF-8";
    }

    return why;
}


/*
 * An allow or deny list: its slots at the records' cursor, its entries at
 * the byte cursor, each a valid id under its own hash; every id in exactly
 * one slot, where a probe from its hash finds it, and no id twice.
 */
static const char *
pg_check_list(pg_check_t *c, const pg_blob_list_t *bl)
{
    uint32_t              i, j, s, used, len, hash;
    uint64_t              off, end, t;
    const uint32_t       *slots;
    const unsigned char  *e;

    if (bl->count == 0) {
        return (bl->mask | bl->slots | bl->entries) ? "an empty list with "
                                                      "a table" : NULL;
    }

    if (bl->count > PG_LIST_MAX || bl->mask != pg_slot_count(bl->count) - 1)
    {
        return "a table of the wrong size";
    }

    if (bl->slots != c->fixed
        || c->fixed + ((uint64_t) bl->mask + 1) * 4 > c->fixed_end)
    {
        return "a table out of place";
    }

    c->fixed += ((uint64_t) bl->mask + 1) * 4;

    if (bl->entries != c->bytes) {
        return "entries out of place";
    }

    /* the entries, one after the other */

    for (i = 0; i < bl->count; i++) {
        e = c->base + c->bytes;

        if (c->bytes + PG_BLOB_ENTRY_HEAD > c->size
            || c->bytes + PG_BLOB_ENTRY_HEAD + e[4] > c->size)
        {
            return "an entry past the end";
        }

        len = e[4];

        if (!pg_valid_company((const char *) e + PG_BLOB_ENTRY_HEAD, len)) {
            return "an invalid company id";
        }

        if (pg_blob_rd32(e) != pg_murmur3_32(e + PG_BLOB_ENTRY_HEAD, len,
                                             PG_BLOB_SET_SEED))
        {
            return "an entry with a wrong hash";
        }

        c->bytes += PG_BLOB_ENTRY_HEAD + len;
    }

    /* every used slot points inside the entries, so a probe reads safely;
     * count of them, so at least half the slots are empty and every probe
     * ends */

    slots = (const uint32_t *) (const void *) (c->base + bl->slots);
    end = c->bytes;
    used = 0;

    for (j = 0; j <= bl->mask; j++) {
        if (slots[j] == 0) {
            continue;
        }

        t = (uint64_t) slots[j] - 1;

        if (t < bl->entries || t + PG_BLOB_ENTRY_HEAD > end
            || t + PG_BLOB_ENTRY_HEAD + c->base[t + 4] > end)
        {
            return "a slot outside its entries";
        }

        used++;
    }

    if (used != bl->count) {
        return "a table that does not hold its entries";
    }

    /* each entry is found by the probe that pg_eval() makes, in a slot of
     * its own (count slots for count entries), and no other id is equal */

    for (off = bl->entries; off < end; off += PG_BLOB_ENTRY_HEAD + len) {
        e = c->base + off;
        hash = pg_blob_rd32(e);
        len = e[4];

        for (j = hash & bl->mask; (s = slots[j]) != 0; j = (j + 1) & bl->mask)
        {
            if (s - 1 == off) {
                break;
            }

            t = (uint64_t) s - 1;

            if (pg_blob_rd32(c->base + t) == hash && c->base[t + 4] == len
                && memcmp(c->base + t + PG_BLOB_ENTRY_HEAD,
                          e + PG_BLOB_ENTRY_HEAD, len) == 0)
            {
                return "a company id twice";
            }
        }

        if (s == 0) {
            return "an entry its table does not find";
        }
    }

    return NULL;
}


/* One flag record; flags and n are its environment's, for `requires`. */
static const char *
pg_check_flag(pg_check_t *c, const pg_blob_flag_t *f, uint32_t index,
    uint32_t n)
{
    size_t          i;
    const char     *why;
    const uint8_t  *s;

    why = pg_check_name(c, &f->name);

    if (why != NULL) {
        return why;
    }

    if (f->salt.off == f->name.off) {
        if (f->salt.len != f->name.len) {
            return "a salt that is part of the name";
        }

    } else {
        why = pg_check_str(c, &f->salt, PG_SALT_MAX);

        if (why != NULL) {
            return why;
        }

        s = c->base + f->salt.off;

        for (i = 0; i < f->salt.len; i++) {
            if (s[i] < 0x21 || s[i] > 0x7e) {
                return "a salt that is not printable ASCII";
            }
        }

        /* the compiler writes a salt equal to the name as the default */
        if (f->salt.len == 0
            || (f->salt.len == f->name.len
                && memcmp(s, c->base + f->name.off, f->salt.len) == 0))
        {
            return "a salt that is empty or the name again";
        }
    }

    if (f->enabled > 1 || f->bp > PG_BP_MAX) {
        return "enabled or rollout out of range";
    }

    if (f->requires > n || f->requires == index + 1) {
        return "requires out of range";
    }

    if ((f->meta & ~(PG_BLOB_META_VERSION | PG_BLOB_META_DESCRIPTION
                     | PG_BLOB_META_UPDATED_AT | PG_BLOB_META_UPDATED_BY))
        || (!(f->meta & PG_BLOB_META_VERSION)
            && (f->version_lo | f->version_hi)))
    {
        return "unknown metadata";
    }

    why = pg_check_text(c, f->meta, PG_BLOB_META_DESCRIPTION,
                        &f->description);

    if (why == NULL) {
        why = pg_check_text(c, f->meta, PG_BLOB_META_UPDATED_AT,
                            &f->updated_at);
    }

    if (why == NULL) {
        why = pg_check_text(c, f->meta, PG_BLOB_META_UPDATED_BY,
                            &f->updated_by);
    }

    if (why == NULL) {
        why = pg_check_list(c, &f->allow);
    }

    if (why == NULL) {
        why = pg_check_list(c, &f->deny);
    }

    return why;
}


/* No `requires` chain of one environment comes back to where it began. */
static int
pg_check_acyclic(const pg_blob_flag_t *flags, uint32_t n)
{
    uint32_t       i, r;
    unsigned char  state[PG_FLAGS_MAX];     /* as in pg_env_resolve() */

    memset(state, 0, n);

    for (i = 0; i < n; i++) {
        for (r = i + 1; r != 0 && state[r - 1] == 0; r = flags[r - 1].requires)
        {
            state[r - 1] = 1;
        }

        if (r != 0 && state[r - 1] == 1) {
            return 0;
        }

        for (r = i + 1; r != 0 && state[r - 1] == 1;
             r = flags[r - 1].requires)
        {
            state[r - 1] = 2;
        }
    }

    return 1;
}


/*
 * The whole blob past a header pg_snap_open() has checked (magic, layout,
 * size). PG_OK, or PG_ERR with err naming the first thing out of place.
 */
static int
pg_blob_check(const unsigned char *base, size_t size, pg_error_t *err)
{
    int                    rev_ok;
    uint32_t               i, j, n;
    uint64_t               total, records, start, revision;
    pg_check_t             c;
    const char            *why;
    const pg_blob_hdr_t   *hdr;
    const pg_blob_env_t   *envs, *e;
    const pg_blob_flag_t  *flags;

    hdr = (const pg_blob_hdr_t *) (const void *) base;

    revision = ((uint64_t) hdr->revision_hi << 32) | hdr->revision_lo;
    rev_ok = revision <= (uint64_t) PG_REVISION_MAX;

    if (size % 4 != 0 || hdr->reserved != 0 || !rev_ok) {
        return pg_fail(err, "snapshot blob has a corrupt header");
    }

    if (hdr->envs != sizeof(pg_blob_hdr_t) || hdr->env_count > PG_ENVS_MAX
        || sizeof(pg_blob_hdr_t)
           + (uint64_t) hdr->env_count * sizeof(pg_blob_env_t) > size)
    {
        return pg_fail(err, "snapshot blob has a corrupt environment table");
    }

    /* the records: environments, then every environment's flags */

    envs = (const pg_blob_env_t *) (const void *) (base + hdr->envs);
    records = sizeof(pg_blob_hdr_t)
              + (uint64_t) hdr->env_count * sizeof(pg_blob_env_t);

    for (i = 0; i < hdr->env_count; i++) {
        if (envs[i].flag_count > PG_FLAGS_MAX || envs[i].flags != records) {
            return pg_fail(err, "snapshot blob has a corrupt flag table in "
                           "environment %u", (unsigned) i);
        }

        records += (uint64_t) envs[i].flag_count * sizeof(pg_blob_flag_t);
    }

    /* the byte area starts with the first name, after the slot tables */
    start = hdr->env_count ? envs[0].name.off : records;

    if (records > size) {
        return pg_fail(err, "snapshot blob has a corrupt flag table");
    }

    if (start < records || start > size) {
        return pg_fail(err, "snapshot blob is corrupt: environment 0's name "
                       "is out of place");
    }

    c.base = base;
    c.size = size;
    c.fixed = records;
    c.fixed_end = start;
    c.bytes = start;

    for (i = 0; i < hdr->env_count; i++) {
        e = &envs[i];

        why = pg_check_name(&c, &e->name);

        if (why == NULL && i > 0
            && pg_blob_namecmp((const char *) base + envs[i - 1].name.off,
                               envs[i - 1].name.len,
                               (const char *) base + e->name.off,
                               e->name.len) >= 0)
        {
            why = "out of order";
        }

        if (why != NULL) {
            return pg_fail(err, "snapshot blob is corrupt: environment %u's "
                           "name is %s", (unsigned) i, why);
        }

        flags = (const pg_blob_flag_t *) (const void *) (base + e->flags);
        n = e->flag_count;

        for (j = 0; j < n; j++) {
            why = pg_check_flag(&c, &flags[j], j, n);

            if (why == NULL && j > 0
                && pg_blob_namecmp((const char *) base + flags[j - 1].name.off,
                                   flags[j - 1].name.len,
                                   (const char *) base + flags[j].name.off,
                                   flags[j].name.len) >= 0)
            {
                why = "a name out of order";
            }

            if (why != NULL) {
                return pg_fail(err, "snapshot blob is corrupt: environment "
                               "%u, flag %u: %s", (unsigned) i,
                               (unsigned) j, why);
            }
        }

        if (!pg_check_acyclic(flags, n)) {
            return pg_fail(err, "snapshot blob is corrupt: environment %u: "
                           "a requires cycle", (unsigned) i);
        }
    }

    /* the slot tables fill the gap to the byte area, which fills the blob
     * up to zero padding */

    total = (c.bytes + 3) & ~(uint64_t) 3;

    if (c.fixed != start || total != size) {
        return pg_fail(err, "snapshot blob is corrupt: its parts do not "
                       "fill it");
    }

    while (c.bytes < size) {
        if (base[c.bytes++] != 0) {
            return pg_fail(err, "snapshot blob is corrupt: padding is not "
                           "zero");
        }
    }

    return PG_OK;
}


int
pg_snap_open(pg_snap_t *snap, const void *blob, size_t size,
    pg_error_t *err)
{
    const pg_blob_hdr_t  *hdr;

    snap->base = NULL;
    snap->size = 0;

    if (size == 0) {
        return PG_OK;       /* the empty snapshot */
    }

    if (blob == NULL) {
        return pg_fail(err, "snapshot blob is missing");
    }

    if ((uintptr_t) blob % sizeof(uint32_t) != 0) {
        return pg_fail(err, "snapshot blob is not aligned to 4 bytes");
    }

    if (size < sizeof(pg_blob_hdr_t)) {
        return pg_fail(err, "snapshot blob is too small: %zu bytes", size);
    }

    hdr = blob;

    if (hdr->magic != PG_SNAP_MAGIC) {
        return pg_fail(err, "snapshot blob has a bad magic 0x%08x",
                       (unsigned) hdr->magic);
    }

    if (hdr->layout != PG_SNAP_LAYOUT) {
        return pg_fail(err, "snapshot blob has layout %u, expected %d",
                       (unsigned) hdr->layout, PG_SNAP_LAYOUT);
    }

    if (hdr->size != size) {
        return pg_fail(err, "snapshot blob says %u bytes, but has %zu",
                       (unsigned) hdr->size, size);
    }

    if (pg_blob_check(blob, size, err) != PG_OK) {
        return PG_ERR;
    }

    snap->base = blob;
    snap->size = size;

    return PG_OK;
}


int64_t
pg_snap_revision(const pg_snap_t *snap)
{
    const pg_blob_hdr_t  *hdr;

    if (snap == NULL || snap->base == NULL) {
        return 0;
    }

    hdr = pg_blob_hdr(snap);

    return (int64_t) (((uint64_t) hdr->revision_hi << 32) | hdr->revision_lo);
}


size_t
pg_snap_env_count(const pg_snap_t *snap)
{
    if (snap == NULL || snap->base == NULL) {
        return 0;
    }

    return pg_blob_hdr(snap)->env_count;
}


const char *
pg_snap_env_name(const pg_snap_t *snap, size_t i, size_t *len)
{
    const pg_blob_env_t  *env;

    if (i >= pg_snap_env_count(snap)) {
        if (len != NULL) {
            *len = 0;
        }

        return NULL;
    }

    env = pg_blob_at(snap, pg_blob_env_t, pg_blob_hdr(snap)->envs) + i;

    if (len != NULL) {
        *len = env->name.len;
    }

    return (const char *) snap->base + env->name.off;
}


size_t
pg_snap_env_flag_count(const pg_snap_t *snap, size_t i)
{
    if (i >= pg_snap_env_count(snap)) {
        return 0;
    }

    return (pg_blob_at(snap, pg_blob_env_t, pg_blob_hdr(snap)->envs) + i)
           ->flag_count;
}


static json_t *
pg_list_to_json(const pg_snap_t *snap, const pg_blob_list_t *bl)
{
    uint32_t              i;
    json_t               *array;
    const unsigned char  *e;

    array = json_array();

    if (array == NULL) {
        return NULL;
    }

    e = snap->base + bl->entries;

    for (i = 0; i < bl->count; i++) {
        if (json_array_append_new(array,
                json_stringn_nocheck((const char *) e + PG_BLOB_ENTRY_HEAD,
                                     e[4]))
            != 0)
        {
            json_decref(array);
            return NULL;
        }

        e += PG_BLOB_ENTRY_HEAD + e[4];
    }

    return array;
}


static int
pg_set_text(json_t *obj, const char *key, const pg_snap_t *snap,
    const pg_blob_str_t *str)
{
    return json_object_set_new(obj, key,
               json_stringn((const char *) snap->base + str->off, str->len));
}


/* The canonical form of one flag; optional keys only when set. */
static json_t *
pg_flag_to_json(const pg_snap_t *snap, const pg_blob_flag_t *flags,
    const pg_blob_flag_t *f)
{
    int                    rc;
    json_t                *obj;
    const pg_blob_flag_t  *req;

    obj = json_object();

    if (obj == NULL) {
        return NULL;
    }

    rc = json_object_set_new(obj, "enabled", json_boolean(f->enabled));

    rc |= json_object_set_new(obj, "rollout",
              f->bp % 100 == 0 ? json_integer(f->bp / 100)
                               : json_real(f->bp / 100.0));

    rc |= json_object_set_new(obj, "allow", pg_list_to_json(snap, &f->allow));
    rc |= json_object_set_new(obj, "deny", pg_list_to_json(snap, &f->deny));

    if (f->salt.off != f->name.off) {
        rc |= json_object_set_new(obj, "salt",
                  json_stringn_nocheck((const char *) snap->base + f->salt.off,
                                       f->salt.len));
    }

    if (f->requires != 0) {
        req = &flags[f->requires - 1];
        rc |= json_object_set_new(obj, "requires",
                  json_stringn_nocheck((const char *) snap->base
                                       + req->name.off, req->name.len));
    }

    if (f->meta & PG_BLOB_META_VERSION) {
        rc |= json_object_set_new(obj, "version",
                  json_integer((json_int_t) (((uint64_t) f->version_hi << 32)
                                             | f->version_lo)));
    }

    if (f->meta & PG_BLOB_META_DESCRIPTION) {
        rc |= pg_set_text(obj, "description", snap, &f->description);
    }

    if (f->meta & PG_BLOB_META_UPDATED_AT) {
        rc |= pg_set_text(obj, "updated_at", snap, &f->updated_at);
    }

    if (f->meta & PG_BLOB_META_UPDATED_BY) {
        rc |= pg_set_text(obj, "updated_by", snap, &f->updated_by);
    }

    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }

    return obj;
}


json_t *
pg_snap_to_json(const pg_snap_t *snap)
{
    size_t                i, j;
    json_t               *root, *envs, *env, *flag;
    const pg_blob_env_t  *be;
    const pg_blob_flag_t *bf;

    root = json_object();
    envs = json_object();

    if (root == NULL || envs == NULL
        || json_object_set_new(root, "revision",
                               json_integer(pg_snap_revision(snap))) != 0)
    {
        json_decref(envs);
        json_decref(root);
        return NULL;
    }

    if (json_object_set_new(root, "environments", envs) != 0) {
        json_decref(root);
        return NULL;
    }

    for (i = 0; i < pg_snap_env_count(snap); i++) {
        be = pg_blob_at(snap, pg_blob_env_t, pg_blob_hdr(snap)->envs) + i;
        bf = pg_blob_at(snap, pg_blob_flag_t, be->flags);

        env = json_object();

        if (json_object_setn_new(envs,
                                 (const char *) snap->base + be->name.off,
                                 be->name.len, env)
            != 0)
        {
            json_decref(root);
            return NULL;
        }

        for (j = 0; j < be->flag_count; j++) {
            flag = pg_flag_to_json(snap, bf, &bf[j]);

            if (json_object_setn_new(env,
                                     (const char *) snap->base
                                     + bf[j].name.off,
                                     bf[j].name.len, flag)
                != 0)
            {
                json_decref(root);
                return NULL;
            }
        }
    }

    return root;
}
