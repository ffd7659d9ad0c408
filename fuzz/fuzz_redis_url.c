/*
 * fuzz_redis_url.c: the Redis URL parser, pg_redis_url_parse(), with the
 * bytes as the URL (up to the first NUL, as a C string arrives from a
 * config file or PORTAL_GATE_REDIS).
 *
 * When it parses: the fields are terminated strings within their bounds,
 * pg_redis_url_format() fits any buffer, and a URL without credentials
 * formats to one that parses back to the same fields.
 */

#include <stdlib.h>         /* malloc, free */
#include <string.h>         /* memcpy, memcmp, memset, strlen */
#include "fuzz.h"           /* FUZZ_CHECK, LLVMFuzzerTestOneInput */
#include "pg_redis.h"       /* the API under test */


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    char           *url, shown[2048];
    size_t          n;
    pg_error_t      err;
    pg_redis_url_t  u, again;

    url = malloc(size + 1);
    FUZZ_CHECK(url != NULL, "out of memory");
    memcpy(url, data, size);
    url[size] = '\0';

    memset(&u, 0xa5, sizeof(u));
    err.text[0] = '\0';

    rc = pg_redis_url_parse(url, &u, &err);

    if (rc != PG_OK) {
        FUZZ_CHECK(err.text[0] != '\0', "a refusal without a message");
        free(url);
        return 0;
    }

    FUZZ_CHECK(memchr(u.host, '\0', sizeof(u.host)) != NULL
               && memchr(u.path, '\0', sizeof(u.path)) != NULL
               && memchr(u.user, '\0', sizeof(u.user)) != NULL
               && memchr(u.pass, '\0', sizeof(u.pass)) != NULL,
               "a field without its NUL");
    if (u.sentinel) {
        /* redis-sentinel://: the sentinels and the master, no host */
        FUZZ_CHECK(!u.unix_socket && u.db >= 0
                   && u.nsentinels >= 1
                   && u.nsentinels <= PG_REDIS_SENTINELS_MAX
                   && memchr(u.master, '\0', sizeof(u.master)) != NULL
                   && u.master[0] != '\0',
                   "a parsed sentinel URL out of its bounds");

        for (n = 0; n < (size_t) u.nsentinels; n++) {
            FUZZ_CHECK(memchr(u.sentinels[n].host, '\0',
                              sizeof(u.sentinels[n].host)) != NULL
                       && u.sentinels[n].host[0] != '\0'
                       && u.sentinels[n].port >= 1
                       && u.sentinels[n].port <= 65535,
                       "sentinel %zu out of its bounds", n);
        }

    } else {
        FUZZ_CHECK(u.unix_socket
                   ? u.path[0] != '\0'
                   : u.host[0] != '\0' && u.port >= 1 && u.port <= 65535
                     && u.db >= 0,
                   "a parsed URL out of its bounds");
    }

    /* every buffer size, the smallest ones included */
    for (n = 0; n < 16; n++) {
        pg_redis_url_format(&u, shown, n);
    }

    pg_redis_url_format(&u, shown, sizeof(shown));
    FUZZ_CHECK(strlen(shown) < sizeof(shown) - 1, "the format was cut");

    if (u.user[0] == '\0' && u.pass[0] == '\0') {
        memset(&again, 0, sizeof(again));
        rc = pg_redis_url_parse(shown, &again, &err);
        FUZZ_CHECK(rc == PG_OK && memcmp(&again, &u, sizeof(u)) == 0,
                   "\"%s\" formats as \"%s\", which parses %s", url, shown,
                   rc == PG_OK ? "to something else" : err.text);
    }

    free(url);

    return 0;
}
