/*
 * pg_blob.h: the layout of a compiled snapshot. Private to the core
 * (pg_snapshot.c and pg_build.c write it, pg_eval.c and pg_blob_check.c
 * read it); nobody else looks inside.
 *
 * A snapshot is an index and its pieces. The index holds everything but
 * the allow/deny lists: environments, flags, their scalars, names,
 * metadata, `requires` resolved. Each non-empty list is a piece of its
 * own, named in the index by a 64-bit id that its maker never reuses, so
 * a change of one flag makes a new index (small) and new pieces for that
 * flag's lists only; every other piece is kept as it is, byte for byte,
 * wherever it lives (the edge's zone keeps each piece in an allocation of
 * its own, and each worker copies only the pieces it does not hold yet).
 *
 * Two forms carry a snapshot:
 *
 *   - packed: the index, then its pieces in the index's order, in one
 *     buffer (the controller, the tests, the state file's compile). A
 *     piece sits at the offset its reference says;
 *   - pieces: the index alone, plus one pointer per piece (the edge).
 *
 * Every buffer is in the host's byte order. Every reference inside the
 * index is a uint32 offset from the index's first byte, and inside a
 * piece from the piece's first byte, never a pointer, so a copy anywhere
 * is as good as the original. Every record holds only uint32 fields and
 * starts at a multiple of 4, so a base aligned to 4 (malloc, the slab
 * allocator) reads them directly; the packed list entries are read with
 * memcpy.
 *
 * The index:
 *
 *   pg_blob_hdr_t                     the header, at offset 0
 *   pg_blob_env_t[env_count]          sorted by name
 *   pg_blob_flag_t[...]               per environment, sorted by name
 *   pg_blob_ref_t[list_count]         one per non-empty list, in the
 *                                     order of the flags (allow, deny)
 *   bytes                             names, salts, metadata (each followed
 *                                     by a NUL)
 *   padding to a multiple of 4
 *
 * A piece (one allow or deny list):
 *
 *   pg_blob_piece_t                   the header, at offset 0
 *   uint32_t slots[mask + 1]          the hash table
 *   entries                           the ids, packed
 *   padding to a multiple of 4
 *
 * The table is open-addressing (linear probing) of mask + 1 slots, a
 * power of two >= 2 * count. A slot holds the offset of an entry + 1
 * (from the piece's first byte), 0 is empty. An entry is packed,
 * unaligned:
 *
 *   uint32 hash   pg_murmur3_32(id, len, PG_BLOB_SET_SEED)
 *   uint8  len    1..64
 *   len bytes     the company id, no NUL
 *
 * The entries of a list follow each other in input order (duplicates
 * dropped), so walking them gives the list back.
 *
 * Everything the compiler does not set is zero, so one snapshot always
 * compiles to the same bytes (the pieces' ids aside, which the caller
 * chooses).
 *
 * The readers follow offsets without a bounds check of their own, because
 * pg_snap_open() and pg_snap_open_pieces() check the index first, and a
 * piece is checked whole (pg_piece_check()) before any reader sees it
 * (pg_blob_check.c): every record, table, string and entry must sit
 * exactly where the writer puts it, in the order above, so a change to
 * the writer's order is a change of layout (bump PG_SNAP_LAYOUT, and
 * teach the check). fuzz/fuzz_blob.c holds the check to that.
 */

#ifndef PG_BLOB_H
#define PG_BLOB_H

#include <stddef.h>     /* size_t */
#include <stdint.h>     /* uint32_t */
#include <string.h>     /* memcpy */
#include "portal_gate.h" /* pg_snap_t */


/* Seed of the allow/deny set hash; part of the layout. */
#define PG_BLOB_SET_SEED      0x9747b28cu

/* The first 4 bytes of every piece: "PGPC" read as a little-endian word. */
#define PG_PIECE_MAGIC        0x43504750u

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
    uint32_t  size;             /* the index's bytes, header included (the
                                   packed form is longer: its pieces) */
    uint32_t  env_count;
    uint32_t  revision_lo;      /* the int64 revision, low word */
    uint32_t  revision_hi;      /* and high word */
    uint32_t  envs;             /* offset of pg_blob_env_t[env_count] */
    uint32_t  list_count;       /* pieces the index names */
    uint32_t  lists;            /* offset of pg_blob_ref_t[list_count] */
    uint32_t  reserved;         /* 0 */
} pg_blob_hdr_t;


/* A piece as the index names it. */
typedef struct {
    uint32_t  id_lo;            /* the piece's id, never 0, low word */
    uint32_t  id_hi;
    uint32_t  size;             /* the piece's bytes */
    uint32_t  off;              /* where it sits in the packed form: the
                                   index's size, then each piece after the
                                   one before */
} pg_blob_ref_t;


/* A piece's header. */
typedef struct {
    uint32_t  magic;            /* PG_PIECE_MAGIC */
    uint32_t  layout;           /* PG_SNAP_LAYOUT */
    uint32_t  size;             /* the piece's bytes, header included */
    uint32_t  id_lo;            /* as the index's reference says */
    uint32_t  id_hi;
    uint32_t  count;            /* distinct ids, 1..PG_LIST_MAX */
    uint32_t  mask;             /* slot count - 1 */
    uint32_t  reserved;         /* 0 */
} pg_blob_piece_t;


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
    uint32_t  count;            /* distinct ids; 0: empty, no piece */
    uint32_t  piece;            /* the index's reference + 1 (they come in
                                   the order of the lists); 0 when empty */
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

/* A piece's slots, and where its entries start. */
#define pg_blob_slots(piece)                                                 \
    ((const uint32_t *) (const void *) ((piece) + sizeof(pg_blob_piece_t)))

#define pg_blob_entries(piece)                                               \
    (sizeof(pg_blob_piece_t)                                                 \
     + ((size_t) ((const pg_blob_piece_t *) (const void *) (piece))->mask    \
        + 1) * sizeof(uint32_t))


/* The piece of a list (count != 0) of an opened snapshot: a pointer of
 * the pieces form, or where the packed form has it. */
static inline const unsigned char *
pg_blob_piece(const pg_snap_t *snap, uint32_t piece)
{
    const pg_blob_hdr_t  *hdr;

    if (snap->pieces != NULL) {
        return snap->pieces[piece - 1];
    }

    hdr = (const pg_blob_hdr_t *) (const void *) snap->base;

    return snap->base
           + ((const pg_blob_ref_t *) (const void *) (snap->base
                                                      + hdr->lists))
             [piece - 1].off;
}


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
