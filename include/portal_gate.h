/*
 * portal_gate.h: the core shared by the nginx module and the controller.
 *
 * It holds the flag model, the bucket hash, the evaluation table and the
 * snapshot in its two forms:
 *
 *   - JSON, the form of the API, the state file and Redis (DESIGN.md);
 *   - the compiled form: an index (environments, flags, their scalars,
 *     names, metadata) and one piece per non-empty allow/deny list, each
 *     position-independent (offsets, never pointers) and named by a
 *     64-bit id. The packed form is one buffer, the index then its
 *     pieces (the controller, the tests); the module keeps the index and
 *     each piece in an allocation of its own in the shared-memory zone,
 *     so that a change of one flag replaces that flag's pieces only, and
 *     a worker copies only the pieces it does not hold yet. A worker
 *     never re-parses JSON and never follows a pointer into shared
 *     memory. pg_blob.h has the layout.
 *
 * The core has no nginx dependency: the controller compiles the same files,
 * so `portal-gatectl explain` gives exactly the edge's answer.
 *
 * Errors: functions return PG_OK or PG_ERR (PG_CONFLICT too, for a
 * patch); the snapshot's functions return PG_FAULT where the input is not
 * at fault: out of memory, or (pg_snap_build_patch()) an index given that
 * does not check. On any of them they fill a pg_error_t whose text names
 * what was wrong (which flag, which field, which company id), ready to be
 * shown to an operator.
 *
 * Ownership: a blob returned by pg_snap_compile*() is malloc()ed and owned
 * by the caller, who releases it with free(); a pg_build_t's buffers are
 * released with pg_build_free(). A pg_snap_t is a borrowed view of a blob
 * (or of an index and its pieces): it owns nothing and is valid only
 * while they are.
 */

#ifndef PORTAL_GATE_H
#define PORTAL_GATE_H

#include <stddef.h>     /* size_t */
#include <stdint.h>     /* uint32_t, int64_t */
#include <jansson.h>    /* json_t: the JSON form of a snapshot */


/* The release of portal-gate's module and programs (--version, the beat);
 * -DPG_VERSION=... overrides it for a build. */
#ifndef PG_VERSION
#define PG_VERSION         "0.8.0"
#endif

#define PG_OK              0
#define PG_ERR            -1
#define PG_CONFLICT       -2        /* a patch's base is not the snapshot */
#define PG_FAULT          -3        /* not the input's fault: a server's
                                       error (an edge answers 500) */

#define PG_NAME_MAX        64       /* flag and environment names */
#define PG_ID_MAX          64       /* company ids */
#define PG_SALT_MAX        64       /* bucketing salt */
#define PG_LIST_MAX        100000   /* companies in one allow or deny list */
#define PG_FLAGS_MAX       4096     /* flags in one environment */
#define PG_ENVS_MAX        64       /* environments in one snapshot */
#define PG_TEXT_MAX        1024     /* description, updated_at, updated_by */
#define PG_BUCKETS         10000    /* a bucket is 0..9999 */
#define PG_BP_MAX          10000    /* rollout 100% in basis points */

/* The highest revision a snapshot may carry: 2^53 - 1, the largest integer
 * every JSON reader (jq, JavaScript, a double) holds exactly. An edge
 * refuses a higher one, so no PUT can pin an edge where the store's
 * revision could never pass it. */
#define PG_REVISION_MAX    9007199254740991LL

#define PG_ERROR_LEN       256

/* Flags for json_dump*() of anything holding a rollout: 15 significant
 * digits print a rollout as it was written (0.07, not jansson's default
 * 0.070000000000000007), and still read back to the same double. */
#define PG_JSON_REAL       JSON_REAL_PRECISION(15)

/* The first 4 bytes of every blob: "PGSN" read as a little-endian word. */
#define PG_SNAP_MAGIC      0x4e534750u
/* Bumped whenever the blob layout changes (2: an index and pieces). */
#define PG_SNAP_LAYOUT     2

/* The most piece ids one build takes: a list of each kind per flag. A
 * maker that numbers builds from first_id reserves this many per build. */
#define PG_BUILD_IDS       (2 * PG_FLAGS_MAX * PG_ENVS_MAX)


typedef struct {
    char        text[PG_ERROR_LEN];  /* NUL-terminated, never empty on ERR */
} pg_error_t;


typedef enum {
    PG_REASON_UNKNOWN = 0,      /* "unknown": flag not in this environment */
    PG_REASON_KILLED,           /* "killed": enabled is false */
    PG_REASON_REQUIRES,         /* "requires": the required flag is off */
    PG_REASON_NO_COMPANY,       /* "no_company": no company, rollout < 100 */
    PG_REASON_DENIED,           /* "denied": company in deny */
    PG_REASON_ALLOWED,          /* "allowed": company in allow */
    PG_REASON_ROLLOUT           /* "rollout": decided by bucket < bp */
} pg_reason_t;

/* how many reasons: tables indexed by pg_reason_t (the edge's counters) */
#define PG_REASON_COUNT  (PG_REASON_ROLLOUT + 1)


typedef struct {
    int          on;            /* 1 on, 0 off */
    pg_reason_t  reason;
    int          bucket;        /* 0..9999 for a known flag and a valid
                                   company; -1 otherwise */
} pg_result_t;


/* A borrowed, read-only view of a compiled snapshot. base == NULL is the
 * empty snapshot: revision 0, no environments; every flag evaluates
 * "unknown". */
typedef struct {
    const unsigned char         *base;      /* the index (the packed form:
                                               its pieces follow) */
    size_t                       size;      /* bytes at base */
    const unsigned char *const  *pieces;    /* NULL: the packed form;
                                               otherwise one per piece, in
                                               the index's order */
} pg_snap_t;


/*
 * A snapshot built in the pieces form (pg_snap_build_*): the index and
 * the pieces it names, in its order. A piece is a new malloc()ed buffer,
 * or NULL when the build keeps the old snapshot's piece of that id
 * (kept[i] is then the old index's position + 1; 0 for a new piece).
 * Released with pg_build_free().
 */
typedef struct {
    unsigned char   *index;
    size_t           index_size;
    size_t           count;         /* pieces the index names */
    unsigned char  **pieces;        /* [count] */
    size_t          *sizes;         /* [count] */
    uint64_t        *ids;           /* [count] */
    size_t          *kept;          /* [count] */
    unsigned char   *packed;        /* NULL; pg_snap_compile*()'s own
                                       builds: index and pieces in one
                                       buffer, index == packed */
    int64_t          revision;
    size_t           bytes;         /* index and every piece */
    size_t           new_bytes;     /* index and the new pieces */
} pg_build_t;


/* --- hash and bucket ------------------------------------------------- */

/* MurmurHash3 x86_32, as PHP's hash('murmur3a'). */
uint32_t pg_murmur3_32(const void *key, size_t len, uint32_t seed);

/* murmur3_x86_32(salt ":" company, seed 0) % 10000. Returns -1 when
 * salt is longer than PG_SALT_MAX or company longer than PG_ID_MAX. */
int pg_bucket(const char *salt, size_t salt_len, const char *company,
    size_t company_len);


/* --- names ------------------------------------------------------------ */

/* [a-z0-9_]{1,64}: flag and environment names. Returns 1 or 0. */
int pg_valid_name(const char *s, size_t len);

/* [A-Za-z0-9_.-]{1,64}: company ids. Returns 1 or 0. */
int pg_valid_company(const char *s, size_t len);

/* The reason's name as the API and the variables spell it. Static. */
const char *pg_reason_name(pg_reason_t reason);


/* --- snapshot: JSON -> blob -------------------------------------------- */

/*
 * Validate a whole snapshot and compile it into a new blob. Nothing is
 * returned unless every environment and every flag is valid. On PG_OK
 * *blob is a new malloc()ed buffer of *size bytes, owned by the caller.
 *
 * pg_snap_compile() parses JSON text (duplicate keys are refused);
 * pg_snap_compile_json() takes a parsed document (borrowed reference).
 */
int pg_snap_compile(const char *json, size_t len, unsigned char **blob,
    size_t *size, pg_error_t *err);
int pg_snap_compile_json(const json_t *root, unsigned char **blob,
    size_t *size, pg_error_t *err);

/*
 * Validate one flag object on its own, as Redis holds it (a field of an
 * environment's hash). `requires` is not resolved here: it needs the other
 * flags. Returns PG_OK or PG_ERR with err naming the field; PG_FAULT
 * when out of memory (not the flag's fault: never report it as invalid).
 */
int pg_flag_check_json(const char *name, const json_t *flag, pg_error_t *err);

/*
 * Validate a whole snapshot, as pg_snap_compile_json(), and build it in
 * the pieces form: every piece new, numbered first_id, first_id + 1, ...
 * (at most PG_BUILD_IDS of them). root is borrowed.
 */
int pg_snap_build_json(const json_t *root, uint64_t first_id,
    pg_build_t *out, pg_error_t *err);

/*
 * Apply a patch (the body of PATCH snapshot, as pg_snap_patch_json()
 * takes it) to a snapshot's index, without reading its lists: only the
 * flags the patch names are compiled; a new index is made from the old
 * one plus those flags, checked exactly as a whole snapshot is
 * (`requires` resolved, cycles, limits, with the same messages), and
 * every piece of a flag the patch does not name is kept (out->pieces[i]
 * NULL, out->kept[i] its old position + 1). New pieces are numbered from
 * first_id. index (its index_size bytes, as pg_snap_index() gives them)
 * may be NULL with size 0: the empty snapshot; it is checked first.
 *
 * PG_OK; PG_CONFLICT when the index's revision is not the patch's
 * base_revision; PG_FAULT when the index does not check (it is the
 * caller's memory, not the patch) or out of memory; PG_ERR otherwise (the
 * patch, or its result, is not valid); err says what was wrong.
 */
int pg_snap_build_patch(const void *index, size_t index_size,
    const json_t *patch, uint64_t first_id, pg_build_t *out,
    pg_error_t *err);

void pg_build_free(pg_build_t *b);


/* --- snapshot: patches (pg_patch.c) ----------------------------------- */

/*
 * Apply a patch document, the body of PATCH snapshot, to a snapshot
 * document:
 *
 *   {"base_revision": N, "revision": M,
 *    "environments": {ENV: {FLAG: {...the whole flag...} | null, ...}}}
 *
 * A flag given replaces the snapshot's flag of that name whole; null
 * deletes it (absent already is no error); flags not named stay. An
 * environment named is in the result, created empty if the snapshot has
 * none of that name; a patch never removes an environment.
 *
 * The patch's form is checked first (keys, names, N and M integers with
 * 0 <= N < M <= PG_REVISION_MAX, each flag an object or null): PG_ERR.
 * Then its base: PG_CONFLICT when the snapshot's revision is not N. A
 * snapshot that is no snapshot (no revision, an environment not an
 * object) and out of memory are PG_FAULT. err says what was wrong in
 * each case. Whether the result is a valid snapshot (each flag's fields,
 * `requires`, cycles, limits) is not checked here: pg_snap_compile_json()
 * of the result does that.
 *
 * Both documents are borrowed and left as they are. On PG_OK *result is a
 * new reference to the patched document, revision M (otherwise NULL). Its
 * root, its "environments" and each environment the patch names are new
 * objects; the rest (every flag, the environments not named) is shared
 * with the inputs by reference: change none of it in place while they
 * are in use.
 */
int pg_snap_patch_json(const json_t *snapshot, const json_t *patch,
    json_t **result, pg_error_t *err);


/* --- snapshot: blob -> view, JSON ------------------------------------ */

/* Check a whole blob in the packed form (the index, then its pieces) and
 * make a view of it: every record, table, string and list entry must sit
 * where the compiler puts it, so anything accepted is safe to read (a
 * pass over the blob, about 30 times a memcpy of it).
 * blob may be NULL with size 0: the empty snapshot (size 0 is the empty
 * snapshot whatever blob is). blob must be 4-byte aligned, as malloc()
 * and the slab allocator give; a misaligned copy is refused. */
int pg_snap_open(pg_snap_t *snap, const void *blob, size_t size,
    pg_error_t *err);

/*
 * Check one piece whole (anything may have written it: the zone is
 * shared) before any reader sees it: PG_OK or PG_ERR. piece must be
 * 4-byte aligned.
 */
int pg_piece_check(const void *piece, size_t size, pg_error_t *err);

/* A piece's id from its header (a checked piece). */
uint64_t pg_piece_id(const void *piece);

/*
 * Check an index and make a view of it in the pieces form: pieces[i] is
 * the piece the index names i-th, which the caller has checked with
 * pg_piece_check(); npieces is how many it gives, which must be what the
 * index names, and each must be the one the index names (its id, size
 * and count are compared), or the view is refused. index may be NULL
 * with size 0: the empty snapshot (pieces is then ignored).
 */
int pg_snap_open_pieces(pg_snap_t *snap, const void *index, size_t size,
    const unsigned char *const *pieces, size_t npieces, pg_error_t *err);

/* The index of an opened snapshot: its first bytes, and how many (0 for
 * the empty snapshot). */
size_t pg_snap_index_size(const pg_snap_t *snap);

/* The pieces an opened snapshot's index names, and the i-th one's id and
 * size (0 when i is out of range). */
size_t pg_snap_piece_count(const pg_snap_t *snap);
uint64_t pg_snap_piece_id(const pg_snap_t *snap, size_t i, size_t *size);

/* The i-th piece's bytes: in the packed form, where it sits; in the
 * pieces form, the caller's pointer. NULL when i is out of range. */
const unsigned char *pg_snap_piece(const pg_snap_t *snap, size_t i);

/* The snapshot's revision; 0 for the empty snapshot. */
int64_t pg_snap_revision(const pg_snap_t *snap);

/* Environments, in name order, and how many flags each holds. A name
 * points into the blob and is NUL-terminated; an index out of range gives
 * NULL (and *len 0) or 0 flags. */
size_t pg_snap_env_count(const pg_snap_t *snap);
const char *pg_snap_env_name(const pg_snap_t *snap, size_t i, size_t *len);
size_t pg_snap_env_flag_count(const pg_snap_t *snap, size_t i);

/* The snapshot in its JSON form, metadata included. A new reference, or
 * NULL when out of memory. Compiling the result gives an equal blob. */
json_t *pg_snap_to_json(const pg_snap_t *snap);


/* --- evaluation ------------------------------------------------------ */

/*
 * Evaluate flag in env for company, by the table in DESIGN.md. A company
 * that is NULL, empty, too long or has other characters is "no company".
 * Never fails: an unknown environment or flag is off/"unknown".
 */
void pg_eval(const pg_snap_t *snap, const char *env, size_t env_len,
    const char *flag, size_t flag_len, const char *company,
    size_t company_len, pg_result_t *res);

/*
 * Turn flag off in env in a blob that the caller owns and may write, as
 * `"enabled": false` would: the edge's kill overrides, applied to each
 * worker's copy, so that evaluation (requires included) costs nothing
 * more. blob must be snap->base (the index). Returns 1 when the flag is
 * there, and 0 when it is not (then it evaluates off, "unknown",
 * anyway).
 */
int pg_snap_kill(const pg_snap_t *snap, unsigned char *blob,
    const char *env, size_t env_len, const char *flag, size_t flag_len);


#endif /* PORTAL_GATE_H */
