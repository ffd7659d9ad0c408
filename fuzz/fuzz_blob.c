/*
 * fuzz_blob.c: the blob opener, pg_snap_open(), with arbitrary bytes (the
 * seeds are real compiled blobs, see gen_blobs.c). A worker trusts a blob
 * that opened: it binary-searches its tables and follows its offsets
 * without another check. So whatever pg_snap_open() accepts must be safe
 * to read whole, and must be a snapshot the compiler could have written.
 *
 * When it opens: every accessor and pg_eval() over every environment,
 * flag and several companies (snap_walk.c), then pg_snap_to_json(). Its
 * JSON must compile, and the blob compiled from it must print the same
 * JSON again: an accepted blob is a valid snapshot, not merely a readable
 * one.
 *
 * The same blob in the pieces form, as a worker holds it: the index and
 * each piece in an allocation of its own, each piece checked on its own
 * (pg_piece_check()) and the index opened over them
 * (pg_snap_open_pieces()): it must open too, and mean the same.
 */

#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* memcpy */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "portal_gate.h"    /* the API under test */
#include "snap_walk.h"      /* snap_walk, snap_recompile */


static void fuzz_blob_pieces(const pg_snap_t *snap, const json_t *root);


static void
fuzz_blob_pieces(const pg_snap_t *snap, const json_t *root)
{
    int                    rc;
    size_t                 i, n, size;
    json_t                *root2;
    pg_snap_t              view;
    pg_error_t             err;
    unsigned char         *index, **pieces;

    if (snap->base == NULL) {
        return;             /* the empty snapshot: no index */
    }

    n = pg_snap_piece_count(snap);
    index = malloc(pg_snap_index_size(snap));
    pieces = calloc(n ? n : 1, sizeof(unsigned char *));
    FUZZ_CHECK(index != NULL && pieces != NULL, "out of memory");
    memcpy(index, snap->base, pg_snap_index_size(snap));

    for (i = 0; i < n; i++) {
        (void) pg_snap_piece_id(snap, i, &size);
        pieces[i] = malloc(size);
        FUZZ_CHECK(pieces[i] != NULL, "out of memory");
        memcpy(pieces[i], pg_snap_piece(snap, i), size);

        rc = pg_piece_check(pieces[i], size, &err);
        FUZZ_CHECK(rc == PG_OK, "a piece of an accepted blob is refused: %s",
                   err.text);
    }

    rc = pg_snap_open_pieces(&view, index, pg_snap_index_size(snap),
                             (const unsigned char *const *) pieces, n, &err);
    FUZZ_CHECK(rc == PG_OK, "an accepted blob's pieces do not open: %s",
               err.text);

    root2 = pg_snap_to_json(&view);
    FUZZ_CHECK(root2 != NULL && json_equal(root, root2),
               "an accepted blob means something else in pieces");
    json_decref(root2);

    for (i = 0; i < n; i++) {
        free(pieces[i]);
    }

    free(pieces);
    free(index);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    size_t          again_size;
    json_t         *root, *root2;
    pg_snap_t       snap, snap2;
    pg_error_t      err;
    unsigned char  *copy, *again;

    /* a buffer of exactly size bytes, aligned as malloc() and the slab
     * allocator align: a read past its end is an ASan report */
    copy = malloc(size ? size : 1);
    FUZZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, data, size);

    err.text[0] = '\0';

    if (pg_snap_open(&snap, copy, size, &err) != PG_OK) {
        FUZZ_CHECK(err.text[0] != '\0' && snap.base == NULL,
                   "a refusal without a message, or with a view");
        free(copy);
        return 0;
    }

    root = snap_walk(&snap);
    FUZZ_CHECK(root != NULL, "an accepted blob does not print as JSON");

    fuzz_blob_pieces(&snap, root);

    rc = snap_recompile(root, &again, &again_size, &err);
    FUZZ_CHECK(rc == PG_OK, "an accepted blob's JSON is refused: %s",
               err.text);

    rc = pg_snap_open(&snap2, again, again_size, &err);
    FUZZ_CHECK(rc == PG_OK, "a compiled blob does not open: %s", err.text);

    root2 = pg_snap_to_json(&snap2);
    FUZZ_CHECK(root2 != NULL && json_equal(root, root2),
               "an accepted blob means something else once recompiled");

    json_decref(root2);
    free(again);
    json_decref(root);
    free(copy);

    return 0;
}
