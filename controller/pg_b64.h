/*
 * pg_b64.h: base64url without padding (RFC 4648 section 5), the encoding of
 * every binary field in ACME's JWS and of RFC 9773's certificate ids.
 *
 * Ownership: the caller gives the output buffer; nothing is allocated.
 */

#ifndef PG_B64_H
#define PG_B64_H

#include <stddef.h>             /* size_t */

/* Encoded length of n bytes, without the NUL. */
#define PG_B64URL_LEN(n)   (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/*
 * Encode in[0..n) into out, NUL-terminated. Returns the length written, or
 * (size_t) -1 when out (size bytes) cannot hold it and the NUL.
 */
size_t pg_b64url_encode(const unsigned char *in, size_t n, char *out,
    size_t size);

#endif /* PG_B64_H */
