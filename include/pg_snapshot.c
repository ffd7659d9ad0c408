/*
 * pg_snapshot.c: a snapshot's JSON form validated and compiled into an
 * index and its pieces (pg_blob.h), the packed form of both, and a
 * snapshot turned back into JSON. The checks of a compiled snapshot are
 * in pg_blob_check.c; a patch of an index in pg_build.c.
 *
 * Compiling runs in three steps, and nothing is allocated for the result
 * before the first two have passed:
 *
 *   1. parse: every key, name, value and company id is checked, and each
 *      allow/deny list is deduplicated (pg_csnap_t, borrowing the JSON);
 *   2. resolve: `requires` becomes an index, and cycles are refused;
 *   3. write: the index is sized, then written in one calloc()ed buffer,
 *      and each non-empty list in a piece of its own.
 */

#include <math.h>           /* floor, fabs */
#include <stdarg.h>         /* va_list */
#include <stdint.h>         /* uint32_t, uint64_t */
#include <stdio.h>          /* snprintf, vsnprintf */
#include <stdlib.h>         /* malloc, calloc, free, qsort */
#include <string.h>         /* memcpy, memset, strlen */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_blob.h"        /* the layout */
#include "pg_compile.h"     /* the parsed form, shared with pg_build.c */


typedef struct {
    unsigned char  *buf;        /* NULL while sizing */
    unsigned char  *pack;       /* the packed form's buffer, or NULL */
    uint64_t        refs;       /* offset of the references */
    uint64_t        bytes;      /* next offset in the byte area */
    size_t          pieces;     /* lists written so far */
    uint64_t        next_id;    /* of the next new piece */
    uint64_t        packed;     /* the next piece's offset, packed */
} pg_writer_t;


static void pg_error_vset(pg_error_t *err, const char *fmt,
    va_list args);
static int pg_id_get(const json_t *v, char *buf, const char **p,
    size_t *len);
static int pg_list_parse(const char *path, const char *field,
    const json_t *array, pg_clist_t *list, pg_error_t *err);
static int pg_text_parse(const char *path, const char *field,
    const json_t *v, pg_text_t *text, pg_error_t *err);
static int pg_env_parse(const char *name, size_t name_len,
    const json_t *obj, pg_cenv_t *env, pg_error_t *err);
static int pg_csnap_parse(const json_t *root, pg_csnap_t *cs,
    pg_error_t *err);
static void pg_write_text(pg_writer_t *w, const char *p, size_t len,
    pg_blob_str_t *str);
static uint64_t pg_piece_size(const pg_clist_t *list);
static void pg_piece_write(const pg_clist_t *list, uint64_t id,
    size_t size, unsigned char *piece);
static int pg_write_list(pg_writer_t *w, const pg_clist_t *list,
    pg_blob_list_t *bl, pg_build_t *out, pg_error_t *err);
static json_t *pg_list_to_json(const pg_snap_t *snap,
    const pg_blob_list_t *bl);
static json_t *pg_flag_to_json(const pg_snap_t *snap,
    const pg_blob_flag_t *flags, const pg_blob_flag_t *f);
static int pg_set_text(json_t *obj, const char *key, const pg_snap_t *snap,
    const pg_blob_str_t *str);


int
pg_fail(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    pg_error_vset(err, fmt, args);
    va_end(args);

    return PG_ERR;
}


int
pg_fault(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    pg_error_vset(err, fmt, args);
    va_end(args);

    return PG_FAULT;
}


static void
pg_error_vset(pg_error_t *err, const char *fmt, va_list args)
{
    if (err != NULL) {
        vsnprintf(err->text, sizeof(err->text), fmt, args);
    }
}


/* A value from the input, shortened and escaped to sit in a message. */
const char *
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


/* Is the object key (key, key_len) exactly name? */
int
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
        return pg_fault(err, "%s: out of memory for %s", path, field);
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
int
pg_flag_parse(const char *path, const char *name, size_t name_len,
    const json_t *obj, pg_cflag_t *f, pg_error_t *err)
{
    int          rc;
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
            rc = pg_list_parse(path, "allow", v, &f->allow, err);

            if (rc != PG_OK) {
                return rc;
            }

        } else if (pg_key_is(key, key_len, "deny")) {
            rc = pg_list_parse(path, "deny", v, &f->deny, err);

            if (rc != PG_OK) {
                return rc;
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


void
pg_flag_free(pg_cflag_t *f)
{
    free(f->allow.items);
    free(f->deny.items);
    f->allow.items = NULL;
    f->deny.items = NULL;
}


int
pg_cflag_cmp(const void *a, const void *b)
{
    const pg_cflag_t  *fa = a, *fb = b;

    return pg_blob_namecmp(fa->name, fa->name_len, fb->name, fb->name_len);
}


int
pg_cenv_cmp(const void *a, const void *b)
{
    const pg_cenv_t  *ea = a, *eb = b;

    return pg_blob_namecmp(ea->name, ea->name_len, eb->name, eb->name_len);
}


static int
pg_env_parse(const char *name, size_t name_len, const json_t *obj,
    pg_cenv_t *env, pg_error_t *err)
{
    int          rc;
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
        return pg_fault(err, "environments.%.*s: out of memory",
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

        rc = pg_flag_parse(path, key, key_len, v,
                           &env->flags[env->count - 1], err);

        if (rc != PG_OK) {
            return rc;
        }
    }

    qsort(env->flags, env->count, sizeof(pg_cflag_t), pg_cflag_cmp);

    return PG_OK;
}


/* A revision of the document's top level: required, 0..PG_REVISION_MAX. */
static int
pg_revision_get(const json_t *v, const char *name, int64_t *revision,
    pg_error_t *err)
{
    if (v == NULL) {
        return pg_fail(err, "%s is required", name);
    }

    if (!json_is_integer(v) || json_integer_value(v) < 0
        || json_integer_value(v) > PG_REVISION_MAX)
    {
        return pg_fail(err, "%s must be an integer from 0 to %lld",
                       name, (long long) PG_REVISION_MAX);
    }

    *revision = json_integer_value(v);

    return PG_OK;
}


/* The top level of a snapshot or, with base, of a patch (pg_compile.h). */
int
pg_top_parse(const json_t *root, const char *what, int64_t *base,
    int64_t *revision, json_t **envs, pg_error_t *err)
{
    char         q[PG_QUOTE_LEN];
    size_t       key_len;
    json_t      *v, *b, *r, *e;
    const char  *key;

    if (!json_is_object(root)) {
        return pg_fail(err, "%s must be a JSON object", what);
    }

    b = NULL;
    r = NULL;
    e = NULL;

    json_object_keylen_foreach((json_t *) root, key, key_len, v) {

        if (base != NULL && pg_key_is(key, key_len, "base_revision")) {
            b = v;

        } else if (pg_key_is(key, key_len, "revision")) {
            r = v;

        } else if (pg_key_is(key, key_len, "environments")) {
            e = v;

        } else {
            return pg_fail(err, "unknown top-level key \"%s\"",
                           pg_quote(q, key, key_len));
        }
    }

    if ((base != NULL
         && pg_revision_get(b, "base_revision", base, err) != PG_OK)
        || pg_revision_get(r, "revision", revision, err) != PG_OK)
    {
        return PG_ERR;
    }

    if (base != NULL && *revision <= *base) {
        return pg_fail(err, "revision %lld must be above base_revision "
                       "%lld", (long long) *revision, (long long) *base);
    }

    if (e == NULL) {
        return pg_fail(err, "environments is required");
    }

    if (!json_is_object(e)) {
        return pg_fail(err, "environments must be an object");
    }

    *envs = e;

    return PG_OK;
}


static int
pg_csnap_parse(const json_t *root, pg_csnap_t *cs, pg_error_t *err)
{
    int            rc;
    char           q[PG_QUOTE_LEN];
    size_t         n, key_len;
    json_t        *v, *envs;
    const char    *key;

    if (pg_top_parse(root, "a snapshot", NULL, &cs->revision, &envs, err)
        != PG_OK)
    {
        return PG_ERR;
    }

    n = json_object_size(envs);

    if (n > PG_ENVS_MAX) {
        return pg_fail(err, "environments: %zu environments, at most %d",
                       n, PG_ENVS_MAX);
    }

    cs->envs = calloc(n ? n : 1, sizeof(pg_cenv_t));

    if (cs->envs == NULL) {
        return pg_fault(err, "environments: out of memory");
    }

    json_object_keylen_foreach(envs, key, key_len, v) {

        if (!pg_valid_name(key, key_len)) {
            return pg_fail(err, "environments: invalid environment name "
                           "\"%s\"", pg_quote(q, key, key_len));
        }

        cs->count++;

        rc = pg_env_parse(key, key_len, v, &cs->envs[cs->count - 1], err);

        if (rc != PG_OK) {
            return rc;
        }
    }

    qsort(cs->envs, cs->count, sizeof(pg_cenv_t), pg_cenv_cmp);

    return PG_OK;
}


/* Turn each `requires` into an index and refuse missing flags and cycles. */
int
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
        return pg_fault(err, "environments.%.*s: out of memory",
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


void
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
uint32_t
pg_slot_count(uint32_t count)
{
    uint32_t  n;

    for (n = 1; n < 2 * count; n <<= 1) {
        /* void */
    }

    return n;
}


/* A string in the index's byte area, followed by a NUL. */
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


/* A new piece's bytes: header, slots, entries, padding. */
static uint64_t
pg_piece_size(const pg_clist_t *list)
{
    return (sizeof(pg_blob_piece_t)
            + (uint64_t) pg_slot_count(list->count) * sizeof(uint32_t)
            + list->bytes + 3) & ~(uint64_t) 3;
}


/* A list compiled into a new piece, at piece (size bytes, zeroed). */
static void
pg_piece_write(const pg_clist_t *list, uint64_t id, size_t size,
    unsigned char *piece)
{
    char              buf[PG_INT_LEN];
    size_t            len;
    uint32_t          i, j, mask, *slots;
    uint64_t          off;
    const char       *idp;
    unsigned char    *e;
    pg_blob_piece_t  *hdr;

    mask = pg_slot_count(list->count) - 1;

    hdr = (pg_blob_piece_t *) (void *) piece;
    hdr->magic = PG_PIECE_MAGIC;
    hdr->layout = PG_SNAP_LAYOUT;
    hdr->size = (uint32_t) size;
    hdr->id_lo = (uint32_t) id;
    hdr->id_hi = (uint32_t) (id >> 32);
    hdr->count = list->count;
    hdr->mask = mask;

    slots = (uint32_t *) (void *) (piece + sizeof(pg_blob_piece_t));
    off = sizeof(pg_blob_piece_t) + ((uint64_t) mask + 1) * sizeof(uint32_t);

    for (i = 0; i < list->count; i++) {
        (void) pg_id_get(json_array_get(list->array, list->items[i].index),
                         buf, &idp, &len);

        e = piece + off;
        memcpy(e, &list->items[i].hash, sizeof(uint32_t));
        e[4] = (unsigned char) len;
        memcpy(e + PG_BLOB_ENTRY_HEAD, idp, len);

        for (j = list->items[i].hash & mask; slots[j] != 0;
             j = (j + 1) & mask)
        {
            /* void */
        }

        slots[j] = (uint32_t) off + 1;
        off += PG_BLOB_ENTRY_HEAD + len;
    }
}


/*
 * A list's reference in the index, and its piece: a new one (compiled
 * here when out->pieces is allocated) or the kept one.
 */
static int
pg_write_list(pg_writer_t *w, const pg_clist_t *list, pg_blob_list_t *bl,
    pg_build_t *out, pg_error_t *err)
{
    size_t          i;
    uint64_t        id, size;
    pg_blob_ref_t  *ref;

    if (list->count == 0) {
        return PG_OK;
    }

    i = w->pieces++;

    if (w->buf == NULL) {
        return PG_OK;
    }

    if (list->array != NULL) {
        id = w->next_id++;
        size = pg_piece_size(list);

        if (size > UINT32_MAX) {
            return pg_fail(err, "a list is too large: %llu bytes",
                           (unsigned long long) size);
        }

        /* in the packed form, where its reference says; otherwise a
         * buffer of its own */
        out->pieces[i] = w->pack ? w->pack + w->packed
                                 : calloc(1, (size_t) size);

        if (out->pieces[i] == NULL) {
            return pg_fault(err, "out of memory for a list of %llu bytes",
                            (unsigned long long) size);
        }

        pg_piece_write(list, id, (size_t) size, out->pieces[i]);

        out->kept[i] = 0;
        out->new_bytes += (size_t) size;

    } else {
        id = list->keep_id;
        size = list->keep_size;
        out->kept[i] = list->keep_pos;
    }

    out->ids[i] = id;
    out->sizes[i] = (size_t) size;
    out->bytes += (size_t) size;

    if (w->packed + size > UINT32_MAX) {
        return pg_fail(err, "the snapshot is too large: more than %u bytes",
                       (unsigned) UINT32_MAX);
    }

    ref = (pg_blob_ref_t *) (void *) (w->buf + w->refs) + i;
    ref->id_lo = (uint32_t) id;
    ref->id_hi = (uint32_t) (id >> 32);
    ref->size = (uint32_t) size;
    ref->off = (uint32_t) w->packed;
    w->packed += size;

    bl->count = list->count;
    bl->piece = (uint32_t) i + 1;

    return PG_OK;
}


/*
 * Lay the index out twice: once with w.buf == NULL to size it, once to
 * write it (and the new pieces). Both passes walk the same code, so they
 * cannot disagree.
 */
int
pg_csnap_build(const pg_csnap_t *cs, uint64_t first_id, int packed,
    pg_build_t *out, pg_error_t *err)
{
    int                rc, pass;
    size_t             i, j, flag_total, lists;
    uint64_t           total, pieces_total;
    pg_writer_t        w;
    pg_blob_hdr_t     *hdr;
    pg_blob_env_t     *be, env_scratch;
    pg_blob_flag_t    *bf, *o, flag_scratch;
    const pg_cenv_t   *e;
    const pg_cflag_t  *f;

    memset(out, 0, sizeof(pg_build_t));
    out->revision = cs->revision;

    flag_total = 0;
    lists = 0;
    pieces_total = 0;

    for (i = 0; i < cs->count; i++) {
        flag_total += cs->envs[i].count;

        for (j = 0; j < cs->envs[i].count; j++) {
            f = &cs->envs[i].flags[j];
            lists += (f->allow.count != 0) + (f->deny.count != 0);

            /* the packed form holds new pieces only (pg_snap_build_json) */
            pieces_total += f->allow.count ? pg_piece_size(&f->allow) : 0;
            pieces_total += f->deny.count ? pg_piece_size(&f->deny) : 0;
        }
    }

    if (lists > PG_BUILD_IDS) {
        return pg_fail(err, "the snapshot has too many lists: %zu", lists);
    }

    memset(&w, 0, sizeof(w));
    /* pass 0 writes into these instead of the index it is sizing */
    memset(&env_scratch, 0, sizeof(env_scratch));
    memset(&flag_scratch, 0, sizeof(flag_scratch));
    total = 0;

    for (pass = 0; pass < 2; pass++) {

        /* the records: header, environments, flags, then the references */
        w.refs = sizeof(pg_blob_hdr_t) + cs->count * sizeof(pg_blob_env_t)
                 + flag_total * sizeof(pg_blob_flag_t);
        w.bytes = w.refs + lists * sizeof(pg_blob_ref_t);
        w.pieces = 0;
        w.next_id = first_id;
        w.packed = total;

        if (w.buf != NULL) {
            hdr = (pg_blob_hdr_t *) (void *) w.buf;
            hdr->magic = PG_SNAP_MAGIC;
            hdr->layout = PG_SNAP_LAYOUT;
            hdr->size = (uint32_t) total;
            hdr->env_count = (uint32_t) cs->count;
            hdr->revision_lo = (uint32_t) ((uint64_t) cs->revision);
            hdr->revision_hi = (uint32_t) ((uint64_t) cs->revision >> 32);
            hdr->envs = sizeof(pg_blob_hdr_t);
            hdr->list_count = (uint32_t) out->count;
            hdr->lists = (uint32_t) w.refs;
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

                rc = pg_write_list(&w, &f->allow, &o->allow, out, err);

                if (rc == PG_OK) {
                    rc = pg_write_list(&w, &f->deny, &o->deny, out, err);
                }

                if (rc != PG_OK) {
                    goto failed;
                }
            }
        }

        if (pass == 0) {
            total = (w.bytes + 3) & ~(uint64_t) 3;

            if (total > UINT32_MAX) {
                return pg_fail(err, "the snapshot is too large: %llu bytes",
                               (unsigned long long) total);
            }

            if (packed && total + pieces_total > UINT32_MAX) {
                return pg_fail(err, "the snapshot is too large: %llu bytes",
                               (unsigned long long) (total + pieces_total));
            }

            out->count = w.pieces;
            w.buf = calloc(1, (size_t) (packed ? total + pieces_total
                                                : total));
            w.pack = packed ? w.buf : NULL;
            out->packed = w.pack;
            out->pieces = calloc(w.pieces ? w.pieces : 1,
                                 sizeof(unsigned char *));
            out->sizes = calloc(w.pieces ? w.pieces : 1, sizeof(size_t));
            out->ids = calloc(w.pieces ? w.pieces : 1, sizeof(uint64_t));
            out->kept = calloc(w.pieces ? w.pieces : 1, sizeof(size_t));
            out->index = w.buf;
            out->index_size = (size_t) total;
            out->bytes = (size_t) total;
            out->new_bytes = (size_t) total;

            if (w.buf == NULL || out->pieces == NULL || out->sizes == NULL
                || out->ids == NULL || out->kept == NULL)
            {
                pg_build_free(out);
                return pg_fault(err, "out of memory for a snapshot of %llu "
                                "bytes", (unsigned long long) total);
            }
        }
    }

    return PG_OK;

failed:

    pg_build_free(out);
    return rc;
}


void
pg_build_free(pg_build_t *b)
{
    size_t  i;

    if (b->pieces != NULL && b->packed == NULL) {
        for (i = 0; i < b->count; i++) {
            free(b->pieces[i]);
        }
    }

    free(b->index);     /* the packed buffer, when there is one */
    free(b->pieces);
    free(b->sizes);
    free(b->ids);
    free(b->kept);

    memset(b, 0, sizeof(pg_build_t));
}


int
pg_snap_build_json(const json_t *root, uint64_t first_id, pg_build_t *out,
    pg_error_t *err)
{
    int         rc;
    size_t      i;
    pg_csnap_t  cs;

    memset(out, 0, sizeof(pg_build_t));
    memset(&cs, 0, sizeof(cs));

    rc = pg_csnap_parse(root, &cs, err);

    for (i = 0; rc == PG_OK && i < cs.count; i++) {
        rc = pg_env_resolve(&cs.envs[i], err);
    }

    if (rc == PG_OK) {
        rc = pg_csnap_build(&cs, first_id, 0, out, err);
    }

    pg_csnap_free(&cs);

    return rc;
}


int
pg_snap_compile_json(const json_t *root, unsigned char **blob,
    size_t *size, pg_error_t *err)
{
    int         rc;
    size_t      i;
    pg_build_t  b;
    pg_csnap_t  cs;

    memset(&cs, 0, sizeof(cs));

    rc = pg_csnap_parse(root, &cs, err);

    for (i = 0; rc == PG_OK && i < cs.count; i++) {
        rc = pg_env_resolve(&cs.envs[i], err);
    }

    /* the packed form, written in place: the index, then its pieces */

    if (rc == PG_OK) {
        rc = pg_csnap_build(&cs, 1, 1, &b, err);
    }

    pg_csnap_free(&cs);

    if (rc != PG_OK) {
        return rc;
    }

    *blob = b.packed;
    *size = b.bytes;

    b.index = NULL;     /* now the caller's */
    pg_build_free(&b);

    return PG_OK;
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


size_t
pg_snap_index_size(const pg_snap_t *snap)
{
    if (snap == NULL || snap->base == NULL) {
        return 0;
    }

    return pg_blob_hdr(snap)->size;
}


size_t
pg_snap_piece_count(const pg_snap_t *snap)
{
    if (snap == NULL || snap->base == NULL) {
        return 0;
    }

    return pg_blob_hdr(snap)->list_count;
}


uint64_t
pg_snap_piece_id(const pg_snap_t *snap, size_t i, size_t *size)
{
    const pg_blob_ref_t  *ref;

    if (i >= pg_snap_piece_count(snap)) {
        if (size != NULL) {
            *size = 0;
        }

        return 0;
    }

    ref = pg_blob_at(snap, pg_blob_ref_t, pg_blob_hdr(snap)->lists) + i;

    if (size != NULL) {
        *size = ref->size;
    }

    return ((uint64_t) ref->id_hi << 32) | ref->id_lo;
}


const unsigned char *
pg_snap_piece(const pg_snap_t *snap, size_t i)
{
    if (i >= pg_snap_piece_count(snap)) {
        return NULL;
    }

    return pg_blob_piece(snap, (uint32_t) i + 1);
}


static json_t *
pg_list_to_json(const pg_snap_t *snap, const pg_blob_list_t *bl)
{
    uint32_t              i;
    json_t               *array;
    const unsigned char  *piece, *e;

    array = json_array();

    if (array == NULL || bl->count == 0) {
        return array;
    }

    piece = pg_blob_piece(snap, bl->piece);
    e = piece + pg_blob_entries(piece);

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
