/*
 * pg_redis_private.h: what pg_redis.c (the URL, a direct connection) and
 * pg_redis_sentinel.c (finding the master through the sentinels) share.
 * Not for other files: they use pg_redis.h.
 */

#ifndef PG_REDIS_PRIVATE_H
#define PG_REDIS_PRIVATE_H

#include "pg_redis.h"           /* pg_redis_url_t, redisContext */

/*
 * pg_redis_connect() for a redis:// or unix:// URL (u->sentinel is 0):
 * connect, AUTH, SELECT, each within timeout_ms. A new context or NULL
 * with err naming the URL (password masked) and the reason.
 */
redisContext *pg_redis_connect_direct(const pg_redis_url_t *u,
    int timeout_ms, pg_error_t *err);

/* pg_redis_connect_found() for a redis-sentinel:// URL:
 * pg_redis_sentinel.c. */
redisContext *pg_redis_sentinel_connect(const pg_redis_url_t *u,
    int timeout_ms, char *found, size_t found_size, pg_error_t *err);

#endif /* PG_REDIS_PRIVATE_H */
