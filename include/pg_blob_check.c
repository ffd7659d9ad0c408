/*
 * pg_blob_check.c: the checks of a compiled snapshot (pg_blob.h) before
 * anything reads it, and the views that open one: pg_snap_open() (the
 * packed form), pg_snap_open_pieces() (an index and its pieces), and
 * pg_piece_check() for one piece.
 *
 * An index or a piece is accepted only if it is laid out exactly as the
 * writer (pg_snapshot.c) lays one out, so that a reader may follow every
 * offset in it without a check of its own: a worker opens what it copied
 * out of shared memory, which any worker (or a stray write) could have
 * damaged.
 *
 * The check replays the writer: a cursor walks the records and another
 * the byte area in the writer's order, and every offset must be the
 * cursor's. So no two parts overlap, nothing lies outside, and the whole
 * check costs one pass; only the hash tables cost more, as many probes as
 * the compiler made building them. On top of the layout: names are
 * valid, sorted and NUL-terminated, texts are UTF-8, `requires` is in
 * range and without cycles, each list names the next reference, each
 * piece's hash set holds its ids exactly once where a probe finds them,
 * and every field the compiler leaves zero is zero. What opens is a
 * snapshot the compiler could have written.
 */

#include <stdint.h>         /* uint32_t, uint64_t, uintptr_t */
#include <string.h>         /* memcmp, memset */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_blob.h"        /* the layout */
#include "pg_compile.h"     /* pg_fail, pg_slot_count */


/* An index as pg_blob_check_index() walks it, in the writer's order. */
typedef struct {
    const unsigned char  *base;
    uint64_t              size;
    uint64_t              bytes;        /* next string */
    uint32_t              lists;        /* references named so far */
} pg_check_t;


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
static const char *pg_check_piece(const unsigned char *p, uint64_t size);
static int pg_check_index(const unsigned char *base, size_t size,
    pg_error_t *err);
static int pg_check_pieces(const pg_snap_t *snap, int packed,
    pg_error_t *err);


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
 * An allow or deny list in the index: none, or the next reference. The
 * piece it names is checked on its own (pg_check_piece()) and held to
 * the list's count when the snapshot is opened.
 */
static const char *
pg_check_list(pg_check_t *c, const pg_blob_list_t *bl)
{
    if (bl->count == 0) {
        return bl->piece ? "an empty list with a piece" : NULL;
    }

    if (bl->count > PG_LIST_MAX) {
        return "a list too long";
    }

    if (bl->piece != ++c->lists) {
        return "a list that names another piece";
    }

    return NULL;
}


/*
 * One piece whole: header, table, entries, padding; each entry a valid id
 * under its own hash; every id in exactly one slot, where a probe from
 * its hash finds it, and no id twice. NULL, or what is wrong.
 */
static const char *
pg_check_piece(const unsigned char *p, uint64_t size)
{
    uint32_t                i, j, s, used, len, hash;
    uint64_t                off, start, end, t;
    const uint32_t         *slots;
    const unsigned char    *e;
    const pg_blob_piece_t  *hdr;

    if (size < sizeof(pg_blob_piece_t) || size % 4 != 0) {
        return "a piece of a wrong size";
    }

    hdr = (const pg_blob_piece_t *) (const void *) p;

    if (hdr->magic != PG_PIECE_MAGIC || hdr->layout != PG_SNAP_LAYOUT) {
        return "a piece with a bad magic or layout";
    }

    if (hdr->size != size || hdr->reserved != 0
        || (hdr->id_lo | hdr->id_hi) == 0)
    {
        return "a piece with a corrupt header";
    }

    if (hdr->count == 0 || hdr->count > PG_LIST_MAX
        || hdr->mask != pg_slot_count(hdr->count) - 1)
    {
        return "a table of the wrong size";
    }

    start = sizeof(pg_blob_piece_t) + ((uint64_t) hdr->mask + 1) * 4;

    if (start > size) {
        return "a table past the end";
    }

    /* the entries, one after the other */

    off = start;

    for (i = 0; i < hdr->count; i++) {
        e = p + off;

        if (off + PG_BLOB_ENTRY_HEAD > size
            || off + PG_BLOB_ENTRY_HEAD + e[4] > size)
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

        off += PG_BLOB_ENTRY_HEAD + len;
    }

    end = off;

    if (((end + 3) & ~(uint64_t) 3) != size) {
        return "parts that do not fill it";
    }

    for (t = end; t < size; t++) {
        if (p[t] != 0) {
            return "padding that is not zero";
        }
    }

    /* every used slot points inside the entries, so a probe reads safely;
     * count of them, so at least half the slots are empty and every probe
     * ends */

    slots = pg_blob_slots(p);
    used = 0;

    for (j = 0; j <= hdr->mask; j++) {
        if (slots[j] == 0) {
            continue;
        }

        t = (uint64_t) slots[j] - 1;

        if (t < start || t + PG_BLOB_ENTRY_HEAD > end
            || t + PG_BLOB_ENTRY_HEAD + p[t + 4] > end)
        {
            return "a slot outside its entries";
        }

        used++;
    }

    if (used != hdr->count) {
        return "a table that does not hold its entries";
    }

    /* each entry is found by the probe that pg_eval() makes, in a slot of
     * its own (count slots for count entries), and no other id is equal */

    for (off = start; off < end; off += PG_BLOB_ENTRY_HEAD + len) {
        e = p + off;
        hash = pg_blob_rd32(e);
        len = e[4];

        for (j = hash & hdr->mask; (s = slots[j]) != 0;
             j = (j + 1) & hdr->mask)
        {
            if (s - 1 == off) {
                break;
            }

            t = (uint64_t) s - 1;

            if (pg_blob_rd32(p + t) == hash && p[t + 4] == len
                && memcmp(p + t + PG_BLOB_ENTRY_HEAD,
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
 * An index's own bytes, past a header pg_blob_check_index() has checked
 * (magic, layout, its size <= size). PG_OK, or PG_ERR with err naming the
 * first thing out of place.
 */
static int
pg_check_index(const unsigned char *base, size_t size, pg_error_t *err)
{
    int                    rev_ok;
    uint32_t               i, j, n;
    uint64_t               total, records, start, revision, packed;
    pg_check_t             c;
    const char            *why;
    const pg_blob_hdr_t   *hdr;
    const pg_blob_env_t   *envs, *e;
    const pg_blob_ref_t   *refs;
    const pg_blob_flag_t  *flags;

    hdr = (const pg_blob_hdr_t *) (const void *) base;
    size = hdr->size;

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

    /* the records: environments, then every environment's flags, then
     * the references */

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

    if (records > size) {
        return pg_fail(err, "snapshot blob has a corrupt flag table");
    }

    if (hdr->lists != records || hdr->list_count > PG_BUILD_IDS
        || records + (uint64_t) hdr->list_count * sizeof(pg_blob_ref_t)
           > size)
    {
        return pg_fail(err, "snapshot blob has a corrupt piece table");
    }

    /* the byte area starts with the first name, after the references */
    start = records + (uint64_t) hdr->list_count * sizeof(pg_blob_ref_t);

    if (hdr->env_count && envs[0].name.off != start) {
        return pg_fail(err, "snapshot blob is corrupt: environment 0's name "
                       "is out of place");
    }

    /* each reference: where the packed form has its piece, one after the
     * other from the index's end */

    refs = (const pg_blob_ref_t *) (const void *) (base + hdr->lists);
    packed = size;

    for (i = 0; i < hdr->list_count; i++) {
        if ((refs[i].id_lo | refs[i].id_hi) == 0
            || refs[i].size < sizeof(pg_blob_piece_t) + 2 * sizeof(uint32_t)
            || refs[i].size % 4 != 0
            || refs[i].off != packed
            || packed + refs[i].size > UINT32_MAX)
        {
            return pg_fail(err, "snapshot blob is corrupt: piece %u's "
                           "reference", (unsigned) i);
        }

        packed += refs[i].size;
    }

    c.base = base;
    c.size = size;
    c.bytes = start;
    c.lists = 0;

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

    if (c.lists != hdr->list_count) {
        return pg_fail(err, "snapshot blob is corrupt: %u pieces named, "
                       "%u referenced", (unsigned) c.lists,
                       (unsigned) hdr->list_count);
    }

    /* the byte area fills the index up to zero padding */

    total = (c.bytes + 3) & ~(uint64_t) 3;

    if (total != size) {
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


/* What every form's opening checks first: alignment, magic, layout, an
 * index that fits in size; then the index (pg_compile.h). */
int
pg_blob_check_index(const void *blob, size_t size, pg_error_t *err)
{
    const pg_blob_hdr_t  *hdr;

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

    if (hdr->size > size || hdr->size < sizeof(pg_blob_hdr_t)) {
        return pg_fail(err, "snapshot blob says %u bytes, but has %zu",
                       (unsigned) hdr->size, size);
    }

    return pg_check_index(blob, size, err);
}


/*
 * Each list's piece, in the index's order: the one its reference names
 * (id, size) holding the list's count. In the packed form each piece is
 * checked whole here too; in the pieces form the caller has.
 */
static int
pg_check_pieces(const pg_snap_t *snap, int packed, pg_error_t *err)
{
    uint32_t                i, j, k, n;
    const char             *why;
    const unsigned char    *p;
    const pg_blob_hdr_t    *hdr;
    const pg_blob_env_t    *envs;
    const pg_blob_ref_t    *refs;
    const pg_blob_flag_t   *flags;
    const pg_blob_list_t   *bl;
    const pg_blob_piece_t  *ph;

    hdr = pg_blob_hdr(snap);
    envs = pg_blob_at(snap, pg_blob_env_t, hdr->envs);
    refs = pg_blob_at(snap, pg_blob_ref_t, hdr->lists);

    for (i = 0; i < hdr->env_count; i++) {
        flags = pg_blob_at(snap, pg_blob_flag_t, envs[i].flags);
        n = envs[i].flag_count;

        for (j = 0; j < n; j++) {
            for (k = 0; k < 2; k++) {
                bl = k ? &flags[j].deny : &flags[j].allow;

                if (bl->count == 0) {
                    continue;
                }

                p = pg_blob_piece(snap, bl->piece);

                if (p == NULL || (uintptr_t) p % sizeof(uint32_t) != 0) {
                    return pg_fail(err, "snapshot piece %u is missing or "
                                   "misaligned", (unsigned) bl->piece - 1);
                }

                if (packed) {
                    why = pg_check_piece(p, refs[bl->piece - 1].size);

                    if (why != NULL) {
                        return pg_fail(err, "snapshot blob is corrupt: "
                                       "environment %u, flag %u, %s: %s",
                                       (unsigned) i, (unsigned) j,
                                       k ? "deny" : "allow", why);
                    }
                }

                ph = (const pg_blob_piece_t *) (const void *) p;

                if (ph->magic != PG_PIECE_MAGIC
                    || ph->id_lo != refs[bl->piece - 1].id_lo
                    || ph->id_hi != refs[bl->piece - 1].id_hi
                    || ph->size != refs[bl->piece - 1].size
                    || ph->count != bl->count)
                {
                    return pg_fail(err, "snapshot piece %u is not the one "
                                   "the index names",
                                   (unsigned) bl->piece - 1);
                }
            }
        }
    }

    return PG_OK;
}


int
pg_piece_check(const void *piece, size_t size, pg_error_t *err)
{
    const char  *why;

    if (piece == NULL || (uintptr_t) piece % sizeof(uint32_t) != 0) {
        return pg_fail(err, "snapshot piece is missing or misaligned");
    }

    why = pg_check_piece(piece, size);

    if (why != NULL) {
        return pg_fail(err, "snapshot piece is corrupt: %s", why);
    }

    return PG_OK;
}


uint64_t
pg_piece_id(const void *piece)
{
    const pg_blob_piece_t  *hdr = piece;

    return ((uint64_t) hdr->id_hi << 32) | hdr->id_lo;
}


int
pg_snap_open(pg_snap_t *snap, const void *blob, size_t size,
    pg_error_t *err)
{
    pg_snap_t             view;
    const pg_blob_hdr_t  *hdr;
    const pg_blob_ref_t  *refs;

    snap->base = NULL;
    snap->size = 0;
    snap->pieces = NULL;

    if (size == 0) {
        return PG_OK;       /* the empty snapshot */
    }

    if (pg_blob_check_index(blob, size, err) != PG_OK) {
        return PG_ERR;
    }

    /* the pieces fill the rest, one after the other */

    hdr = blob;
    refs = (const pg_blob_ref_t *) (const void *) ((const unsigned char *)
                                                   blob + hdr->lists);

    if ((hdr->list_count == 0 && hdr->size != size)
        || (hdr->list_count != 0
            && (uint64_t) refs[hdr->list_count - 1].off
               + refs[hdr->list_count - 1].size != size))
    {
        return pg_fail(err, "snapshot blob says %u bytes, but has %zu",
                       (unsigned) (hdr->list_count
                                   ? refs[hdr->list_count - 1].off
                                     + refs[hdr->list_count - 1].size
                                   : hdr->size), size);
    }

    view.base = blob;
    view.size = size;
    view.pieces = NULL;

    if (pg_check_pieces(&view, 1, err) != PG_OK) {
        return PG_ERR;
    }

    *snap = view;

    return PG_OK;
}


int
pg_snap_open_pieces(pg_snap_t *snap, const void *index, size_t size,
    const unsigned char *const *pieces, size_t npieces, pg_error_t *err)
{
    pg_snap_t             view;
    const pg_blob_hdr_t  *hdr;

    snap->base = NULL;
    snap->size = 0;
    snap->pieces = NULL;

    if (size == 0) {
        return PG_OK;       /* the empty snapshot */
    }

    if (pg_blob_check_index(index, size, err) != PG_OK) {
        return PG_ERR;
    }

    hdr = index;

    if (hdr->size != size) {
        return pg_fail(err, "snapshot index says %u bytes, but has %zu",
                       (unsigned) hdr->size, size);
    }

    if (hdr->list_count != npieces || (npieces != 0 && pieces == NULL)) {
        /* the view reads pieces[i] for every piece the index names */
        return pg_fail(err, "snapshot index names %u pieces, %zu given",
                       (unsigned) hdr->list_count,
                       pieces ? npieces : (size_t) 0);
    }

    view.base = index;
    view.size = size;
    view.pieces = pieces;

    if (pg_check_pieces(&view, 0, err) != PG_OK) {
        return PG_ERR;
    }

    *snap = view;

    return PG_OK;
}
