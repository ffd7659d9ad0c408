/*
 * pg_hash.c: MurmurHash3 x86_32 and the rollout bucket.
 *
 * The hash is Austin Appleby's public-domain MurmurHash3_x86_32, the one
 * PHP calls hash('murmur3a'), so the application computes the same bucket
 * as the edge. Blocks are read with memcpy (no unaligned loads) and with
 * little-endian meaning on every host, as the reference does on x86.
 */

#include <string.h>         /* memcpy */
#include "portal_gate.h"    /* the API this file implements */


#define PG_ROTL32(x, r)  (((x) << (r)) | ((x) >> (32 - (r))))


static uint32_t
pg_murmur3_block(const unsigned char *p)
{
    uint32_t  k;

    memcpy(&k, p, sizeof(k));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    k = __builtin_bswap32(k);
#endif
    return k;
}


uint32_t
pg_murmur3_32(const void *key, size_t len, uint32_t seed)
{
    size_t                i, nblocks;
    uint32_t              h, k;
    const unsigned char  *p, *tail;

    const uint32_t  c1 = 0xcc9e2d51;
    const uint32_t  c2 = 0x1b873593;

    p = key;
    h = seed;
    nblocks = len / 4;

    for (i = 0; i < nblocks; i++) {
        k = pg_murmur3_block(p + i * 4);

        k *= c1;
        k = PG_ROTL32(k, 15);
        k *= c2;

        h ^= k;
        h = PG_ROTL32(h, 13);
        h = h * 5 + 0xe6546b64;
    }

    tail = p + nblocks * 4;
    k = 0;

    switch (len & 3) {
    case 3:
        k ^= (uint32_t) tail[2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t) tail[1] << 8;
        /* fall through */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = PG_ROTL32(k, 15);
        k *= c2;
        h ^= k;
    }

    h ^= (uint32_t) len;

    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;

    return h;
}


int
pg_bucket(const char *salt, size_t salt_len, const char *company,
    size_t company_len)
{
    char  buf[PG_SALT_MAX + 1 + PG_ID_MAX];

    if (salt_len > PG_SALT_MAX || company_len > PG_ID_MAX) {
        return -1;
    }

    if (salt_len) {
        memcpy(buf, salt, salt_len);
    }

    buf[salt_len] = ':';

    if (company_len) {
        memcpy(buf + salt_len + 1, company, company_len);
    }

    return (int) (pg_murmur3_32(buf, salt_len + 1 + company_len, 0)
                  % PG_BUCKETS);
}
