/*
 * gen_blobs.c: the seed corpus of fuzz_blob, compiled from the snapshot
 * seeds. Each FILE that compiles is written as OUTDIR/NAME.blob; the
 * others (the invalid snapshots among the seeds) are skipped. The blobs
 * are made at build time, not kept in the repository, so a change of
 * layout never leaves the fuzzer stale seeds.
 *
 *   gen-blobs OUTDIR FILE...
 */

#include <stdio.h>          /* fopen, fread, fwrite, fprintf, snprintf */
#include <stdlib.h>         /* malloc, realloc, free */
#include <string.h>         /* strrchr */
#include "portal_gate.h"    /* pg_snap_compile */


static char *
gen_read(const char *path, size_t *len)
{
    char    *buf, *p;
    FILE    *f;
    size_t   cap, n;

    f = fopen(path, "rb");

    if (f == NULL) {
        return NULL;
    }

    buf = NULL;
    cap = 0;
    *len = 0;

    do {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            p = realloc(buf, cap);

            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }

            buf = p;
        }

        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
    } while (n != 0);

    fclose(f);

    return buf;
}


int
main(int argc, char **argv)
{
    int             i, written;
    char           *json, out[4096];
    FILE           *f;
    size_t          len, size;
    pg_error_t      err;
    const char     *name;
    unsigned char  *blob;

    if (argc < 2) {
        fprintf(stderr, "usage: gen-blobs OUTDIR FILE...\n");
        return 2;
    }

    written = 0;

    for (i = 2; i < argc; i++) {
        json = gen_read(argv[i], &len);

        if (json == NULL) {
            fprintf(stderr, "gen-blobs: cannot read %s\n", argv[i]);
            return 1;
        }

        if (pg_snap_compile(json, len, &blob, &size, &err) != PG_OK) {
            free(json);
            continue;
        }

        free(json);

        name = strrchr(argv[i], '/');
        name = name ? name + 1 : argv[i];
        snprintf(out, sizeof(out), "%s/%s.blob", argv[1], name);

        f = fopen(out, "wb");

        if (f == NULL || fwrite(blob, 1, size, f) != size || fclose(f) != 0)
        {
            fprintf(stderr, "gen-blobs: cannot write %s\n", out);
            return 1;
        }

        free(blob);
        written++;
    }

    if (written == 0) {
        fprintf(stderr, "gen-blobs: no snapshot compiled\n");
        return 1;
    }

    return 0;
}
