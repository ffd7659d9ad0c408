/*
 * fuzz_conf.c: portal-gated's config parser, pg_conf_load(), with the
 * bytes as the whole file (as t/unit/test_conf.c calls it).
 *
 * The file is a memfd opened through /proc/self/fd, so a run leaves
 * nothing behind in /tmp and two runs never share a file. When it loads,
 * what it holds must be what the config grammar allows, and each edge
 * what its spec parses to on its own.
 */

#define _GNU_SOURCE         /* memfd_create */

#include <stdio.h>          /* snprintf */
#include <string.h>         /* memcmp, strlen, memset */
#include <sys/mman.h>       /* memfd_create */
#include <unistd.h>         /* ftruncate, pwrite */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "pg_conf.h"        /* the API under test */


static int   conf_fd = -1;
static char  conf_path[64];


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    char            shown[1024];
    size_t          i;
    pg_conf_t       conf, before;
    pg_edge_t       edge;
    pg_error_t      err;
    pg_redis_url_t  u;

    if (conf_fd == -1) {
        conf_fd = memfd_create("portal-gated.conf", 0);
        FUZZ_CHECK(conf_fd != -1, "memfd_create failed");
        snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
    }

    FUZZ_CHECK(ftruncate(conf_fd, 0) == 0
               && (size == 0
                   || pwrite(conf_fd, data, size, 0) == (ssize_t) size),
               "cannot write the config");

    pg_conf_defaults(&conf);
    before = conf;
    err.text[0] = '\0';

    rc = pg_conf_load(conf_path, &conf, &err);

    if (rc != PG_OK) {
        FUZZ_CHECK(err.text[0] != '\0'
                   && memcmp(&conf, &before, sizeof(conf)) == 0,
                   "a refusal without a message, or that changed the conf");
        return 0;
    }

    FUZZ_CHECK(conf.nenvs >= 1 && conf.nenvs <= PG_ENVS_MAX
               && conf.nedges <= PG_EDGE_MAX
               && conf.reconcile_ms >= 100 && conf.reconcile_ms <= 3600000
               && strcmp(pg_conf_log_level_name(conf.log_level), "unknown")
                  != 0,
               "a loaded conf out of its bounds");

    for (i = 0; i < conf.nenvs; i++) {
        FUZZ_CHECK(pg_valid_name(conf.envs[i], strlen(conf.envs[i])),
                   "environment %zu has a bad name", i);
    }

    FUZZ_CHECK(strlen(conf.prefix) >= 1, "an empty prefix");

    /* each edge is what its own spec parses to */
    for (i = 0; i < conf.nedges; i++) {
        memset(&edge, 0, sizeof(edge));
        FUZZ_CHECK(pg_edge_parse(conf.edges[i].spec, &edge, &err) == PG_OK
                   && memcmp(&edge, &conf.edges[i], sizeof(edge)) == 0,
                   "edge %zu \"%s\" does not parse back to itself", i,
                   conf.edges[i].spec);
    }

    /* the URL it kept is the one it parsed */
    memset(&u, 0, sizeof(u));
    FUZZ_CHECK(pg_redis_url_parse(conf.redis_url, &u, &err) == PG_OK
               && memcmp(&u, &conf.redis, sizeof(u)) == 0,
               "redis_url and redis disagree");
    pg_redis_url_format(&conf.redis, shown, sizeof(shown));

    return 0;
}
