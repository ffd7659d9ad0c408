/*
 * pg_blob.h: the layout of a compiled snapshot blob. Private to the core
 * (pg_snapshot.c writes it, pg_eval.c and pg_snapshot.c read it); nobody
 * else looks inside a blob.
 *
 * A blob is one contiguous buffer in the host's byte order. Every
 * reference inside it is a uint32 offset from the blob's first byte, never
 * a pointer, so a copy anywhere is as good as the original. Every record
 * below holds only uint32 fields and starts at a multiple of 4, so a base
 * aligned to 4 (malloc, the slab allocator) reads them directly; the
 * packed list entries are read with memcpy.
 *
 *   pg_blob_hdr_t                     the header, at offset 0
 *   pg_blob_env_t[env_count]          sorted by name
 *   pg_blob_flag_t[...]               per environment, sorted by name
 *   uint32_t slots[...]               one hash table per non-empty list
 *   bytes                             names, salts, metadata (each followed
 *                                     by a NUL) and the list entries
 *   padding to a multiple of 4
 *
 * An allow or deny list is an open-addressing table (linear probing) of
 * mask + 1 slots, a power of two >= 2 * count. A slot holds the offset of
 * an entry + 1, 0 is empty. An entry is packed, unaligned:
 *
 *   uint32 hash   pg_murmur3_32(id, len, PG_BLOB_SET_SEED)
 *   uint8  len    1..64
 *   len bytes     the company id, no NUL
 *
 * The entries of a list follow each other in input order (duplicates
 * dropped), so walking them from `entries` gives the list back.
 *
 * Everything the compiler does not set is zero, so one snapshot always
 * compiles to the same bytes.
 *
 * The readers follow offsets without a bounds check of their own, because
 * pg_snap_open() checks the whole blob first (pg_blob_check() in
 * pg_snapshot.c): every record, table, string and entry must sit exactly
 * where the writer puts it, in the order above, so a change to the
 * writer's order is a change of layout (bump PG_SNAP_LAYOUT, and teach the
 * check). fuzz/fuzz_blob.c holds the check to that.
 */

#ifndef PG_BLOB_H
#define PG_BLOB_H

#include <stddef.h>     /* size_t */
#include <stdint.h>     /* uint32_t */
#include <string.h>     /* memcpy */


/* Seed of the allow/deny set hash; part of the layout. */
#define PG_BLOB_SET_SEED      0x9747b28cu

/* An entry's fixed part: the uint32 hash and the uint8 length. */
#define PG_BLOB_ENTRY_HEAD    5

/* pg_blob_flag_t.meta: which metadata the flag carries. */
#define PG_BLOB_META_VERSION      0x01u
#define PG_BLOB_META_DESCRIPTION  0x02u
#define PG_BLOB_META_UPDATED_AT   0x04u
#define PG_BLOB_META_UPDATED_BY   0x08u


typedef struct {
    uint32_t  magic;            /* PG_SNAP_MAGIC */
    uint32_t  layout;           /* PG_SNAP_LAYOUT */
    uint32_t  size;             /* the blob's bytes, header included */
    uint32_t  env_count;
    uint32_t  revision_lo;      /* the int64 revision, low word */
    uint32_t  revision_hi;      /* and high word */
    uint32_t  envs;             /* offset of pg_blob_env_t[env_count] */
    uint32_t  reserved;         /* 0 */
} pg_blob_hdr_t;


typedef struct {
    uint32_t  off;              /* offset of the bytes; 0 when absent */
    uint32_t  len;
} pg_blob_str_t;


typedef struct {
    pg_blob_str_t  name;
    uint32_t       flag_count;
    uint32_t       flags;       /* offset of pg_blob_flag_t[flag_count] */
} pg_blob_env_t;


typedef struct {
    uint32_t  count;            /* distinct ids; 0: no table */
    uint32_t  mask;             /* slot count - 1 */
    uint32_t  slots;            /* offset of uint32_t[mask + 1] */
    uint32_t  entries;          /* offset of the first entry */
} pg_blob_list_t;


typedef struct {
    pg_blob_str_t   name;
    pg_blob_str_t   salt;       /* the same offset as name by default */
    uint32_t        enabled;    /* 1 or 0 */
    uint32_t        bp;         /* rollout in basis points, 0..10000 */
    uint32_t        requires;   /* index + 1 of the required flag in this
                                   environment; 0: none */
    uint32_t        meta;       /* PG_BLOB_META_* */
    uint32_t        version_lo; /* the int64 version, low word */
    uint32_t        version_hi;
    pg_blob_str_t   description;
    pg_blob_str_t   updated_at;
    pg_blob_str_t   updated_by;
    pg_blob_list_t  allow;
    pg_blob_list_t  deny;
} pg_blob_flag_t;


/* The blob's header, or NULL for the empty snapshot. */
#define pg_blob_hdr(snap)                                                    \
    ((const pg_blob_hdr_t *) (const void *) (snap)->base)

#define pg_blob_at(snap, type, off)                                          \
    ((const type *) (const void *) ((snap)->base + (off)))


/* The order of names in a blob: bytewise, then the shorter first. */
static inline int
pg_blob_namecmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int  rc;

    rc = memcmp(a, b, a_len < b_len ? a_len : b_len);

    if (rc != 0) {
        return rc;
    }

    return (a_len > b_len) - (a_len < b_len);
}


static inline uint32_t
pg_blob_rd32(const unsigned char *p)
{
    uint32_t  v;

    memcpy(&v, p, sizeof(v));
    return v;
}


#endif /* PG_BLOB_H */
