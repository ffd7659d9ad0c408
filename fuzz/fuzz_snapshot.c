/*
 * fuzz_snapshot.c: the snapshot JSON compiler, pg_snap_compile(), with the
 * bytes as the body of a PUT or the text of a state file.
 *
 * When it compiles, the blob must open, evaluate as DESIGN.md's table
 * says (snap_walk.c), and print as JSON that compiles to the same bytes:
 * the round trip that GET snapshot, the state file and Redis rely on.
 */

#include <stdlib.h>         /* free */
#include <string.h>         /* memcmp */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "portal_gate.h"    /* the API under test */
#include "snap_walk.h"      /* snap_walk, snap_recompile */


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    size_t          blob_size, again_size;
    json_t         *root;
    pg_snap_t       snap;
    pg_error_t      err;
    unsigned char  *blob, *again;

    err.text[0] = '\0';

    if (pg_snap_compile((const char *) data, size, &blob, &blob_size, &err)
        != PG_OK)
    {
        FUZZ_CHECK(err.text[0] != '\0', "a refusal without a message");
        return 0;
    }

    rc = pg_snap_open(&snap, blob, blob_size, &err);
    FUZZ_CHECK(rc == PG_OK, "a compiled blob does not open: %s", err.text);

    root = snap_walk(&snap);
    FUZZ_CHECK(root != NULL, "pg_snap_to_json failed");

    rc = snap_recompile(root, &again, &again_size, &err);
    FUZZ_CHECK(rc == PG_OK, "the snapshot's own JSON is refused: %s",
               err.text);
    FUZZ_CHECK(again_size == blob_size
               && memcmp(again, blob, blob_size) == 0,
               "compile(to_json(blob)) differs from blob (%zu, %zu bytes)",
               blob_size, again_size);

    free(again);
    json_decref(root);
    free(blob);

    return 0;
}
