/*
 * snap_walk.h: read everything an opened snapshot offers, as the module
 * and the controller would, and check that the answers agree with each
 * other. Shared by fuzz_snapshot.c (blobs the compiler wrote) and
 * fuzz_blob.c (blobs that pg_snap_open accepted from arbitrary bytes).
 */

#ifndef PG_FUZZ_SNAP_WALK_H
#define PG_FUZZ_SNAP_WALK_H

#include "portal_gate.h"    /* pg_snap_t, json_t */


/*
 * Every accessor over every environment and flag, pg_eval() of each flag
 * for a fixed set of companies and for the ids of its own allow and deny
 * lists, and unknown names. Aborts (FUZZ_CHECK) on an answer that
 * contradicts the blob. Returns pg_snap_to_json(snap): a new reference or
 * NULL.
 */
json_t *snap_walk(const pg_snap_t *snap);

/*
 * json_dumps() of root as the module writes it (compact, rollouts as
 * written), compiled again: PG_OK with a new malloc()ed *blob, or PG_ERR
 * with err set. Frees nothing of root.
 */
int snap_recompile(const json_t *root, unsigned char **blob, size_t *size,
    pg_error_t *err);


#endif /* PG_FUZZ_SNAP_WALK_H */
