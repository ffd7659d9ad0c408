/*
 * pg_eval.c: the evaluation table of DESIGN.md over a compiled blob.
 *
 * This is the per-request hot path: it never allocates, finds the
 * environment and the flag by binary search in the index, hashes the
 * company for the allow/deny pieces at most once per call, and walks a
 * `requires` chain without recursion (compiling refused cycles).
 */

#include <string.h>         /* memcmp */
#include "portal_gate.h"    /* the API this file implements */
#include "pg_blob.h"        /* the blob's layout */


/* What one pg_eval() call knows about its company. */
typedef struct {
    const char  *id;
    size_t       len;
    int          valid;         /* a well-formed company id */
    int          hashed;        /* hash below is computed */
    uint32_t     hash;          /* pg_murmur3_32(id, PG_BLOB_SET_SEED) */
} pg_company_t;


static const pg_blob_env_t *pg_find_env(const pg_snap_t *snap,
    const char *name, size_t len);
static const pg_blob_flag_t *pg_find_flag(const pg_snap_t *snap,
    const pg_blob_env_t *env, const char *name, size_t len);
static int pg_list_has(const unsigned char *piece, const pg_company_t *c);
static int pg_rules(const pg_snap_t *snap, const pg_blob_flag_t *f,
    pg_company_t *c, int bucket, pg_reason_t *reason);


static const pg_blob_env_t *
pg_find_env(const pg_snap_t *snap, const char *name, size_t len)
{
    int                   cmp;
    size_t                lo, hi, mid;
    const pg_blob_env_t  *envs;

    envs = pg_blob_at(snap, pg_blob_env_t, pg_blob_hdr(snap)->envs);
    lo = 0;
    hi = pg_blob_hdr(snap)->env_count;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        cmp = pg_blob_namecmp(name, len,
                              (const char *) snap->base + envs[mid].name.off,
                              envs[mid].name.len);
        if (cmp == 0) {
            return &envs[mid];
        }

        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


static const pg_blob_flag_t *
pg_find_flag(const pg_snap_t *snap, const pg_blob_env_t *env,
    const char *name, size_t len)
{
    int                    cmp;
    size_t                 lo, hi, mid;
    const pg_blob_flag_t  *flags;

    flags = pg_blob_at(snap, pg_blob_flag_t, env->flags);
    lo = 0;
    hi = env->flag_count;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        cmp = pg_blob_namecmp(name, len,
                              (const char *) snap->base + flags[mid].name.off,
                              flags[mid].name.len);
        if (cmp == 0) {
            return &flags[mid];
        }

        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


/* Is the company in this allow or deny piece? ~1-2 probes on a miss. */
static int
pg_list_has(const unsigned char *piece, const pg_company_t *c)
{
    uint32_t              j, s, mask;
    const uint32_t       *slots;
    const unsigned char  *e;

    mask = ((const pg_blob_piece_t *) (const void *) piece)->mask;
    slots = pg_blob_slots(piece);

    for (j = c->hash & mask; (s = slots[j]) != 0; j = (j + 1) & mask) {
        e = piece + s - 1;

        if (pg_blob_rd32(e) == c->hash && e[4] == c->len
            && memcmp(e + PG_BLOB_ENTRY_HEAD, c->id, c->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Rules 4 to 7 for an enabled flag whose requirements hold. bucket is the
 * flag's bucket for this company when the caller has it, otherwise -1.
 */
static int
pg_rules(const pg_snap_t *snap, const pg_blob_flag_t *f, pg_company_t *c,
    int bucket, pg_reason_t *reason)
{
    if (!c->valid) {
        if (f->bp == PG_BP_MAX) {
            *reason = PG_REASON_ROLLOUT;
            return 1;
        }

        *reason = PG_REASON_NO_COMPANY;
        return 0;
    }

    if (f->deny.count != 0 || f->allow.count != 0) {
        if (!c->hashed) {
            c->hash = pg_murmur3_32(c->id, c->len, PG_BLOB_SET_SEED);
            c->hashed = 1;
        }

        if (f->deny.count != 0
            && pg_list_has(pg_blob_piece(snap, f->deny.piece), c))
        {
            *reason = PG_REASON_DENIED;
            return 0;
        }

        if (f->allow.count != 0
            && pg_list_has(pg_blob_piece(snap, f->allow.piece), c))
        {
            *reason = PG_REASON_ALLOWED;
            return 1;
        }
    }

    *reason = PG_REASON_ROLLOUT;

    /* 0 and 100% need no hash */
    if (f->bp == 0) {
        return 0;
    }

    if (f->bp >= PG_BP_MAX) {
        return 1;
    }

    if (bucket < 0) {
        bucket = pg_bucket((const char *) snap->base + f->salt.off,
                           f->salt.len, c->id, c->len);
    }

    return (uint32_t) bucket < f->bp;
}


void
pg_eval(const pg_snap_t *snap, const char *env, size_t env_len,
    const char *flag, size_t flag_len, const char *company,
    size_t company_len, pg_result_t *res)
{
    size_t                 steps;
    uint32_t               r;
    pg_reason_t            reason;
    pg_company_t           c;
    const pg_blob_env_t   *e;
    const pg_blob_flag_t  *f, *flags, *rf;

    res->on = 0;
    res->reason = PG_REASON_UNKNOWN;
    res->bucket = -1;

    /* rule 1: unknown flag, unknown environment or the empty snapshot */
    if (snap == NULL || snap->base == NULL || env == NULL || flag == NULL) {
        return;
    }

    e = pg_find_env(snap, env, env_len);

    if (e == NULL) {
        return;
    }

    f = pg_find_flag(snap, e, flag, flag_len);

    if (f == NULL) {
        return;
    }

    c.id = company;
    c.len = company_len;
    c.valid = pg_valid_company(company, company_len);
    c.hashed = 0;
    c.hash = 0;

    if (c.valid) {
        res->bucket = pg_bucket((const char *) snap->base + f->salt.off,
                                f->salt.len, company, company_len);
    }

    /* rule 2 */
    if (!f->enabled) {
        res->reason = PG_REASON_KILLED;
        return;
    }

    /*
     * Rule 3: the required flag is off if it is killed, if its own
     * requirement is off, or if its rules 4-7 say off; so the flag's
     * requirement holds iff every flag down the chain is enabled and
     * passes rules 4-7. The step bound only guards a corrupt blob.
     */
    flags = pg_blob_at(snap, pg_blob_flag_t, e->flags);

    for (r = f->requires, steps = 0;
         r != 0 && r <= e->flag_count && steps < e->flag_count;
         r = rf->requires, steps++)
    {
        rf = &flags[r - 1];

        if (!rf->enabled || !pg_rules(snap, rf, &c, -1, &reason)) {
            res->reason = PG_REASON_REQUIRES;
            return;
        }
    }

    /* rules 4 to 7 */
    res->on = pg_rules(snap, f, &c, res->bucket, &res->reason);
}


int
pg_snap_kill(const pg_snap_t *snap, unsigned char *blob, const char *env,
    size_t env_len, const char *flag, size_t flag_len)
{
    const pg_blob_env_t   *e;
    const pg_blob_flag_t  *f;

    if (snap == NULL || snap->base == NULL || snap->base != blob) {
        return 0;
    }

    e = pg_find_env(snap, env, env_len);
    f = e ? pg_find_flag(snap, e, flag, flag_len) : NULL;

    if (f == NULL) {
        return 0;
    }

    /* the same record, through the caller's writable pointer */
    ((pg_blob_flag_t *) (void *) (blob + ((const unsigned char *) f
                                          - snap->base)))->enabled = 0;

    return 1;
}
