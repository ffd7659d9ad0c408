/*
 * pg_b64.h: base64url without padding (RFC 4648 section 5), the encoding of
 * every binary field of a JWS: ACME's (the controller) and the company
 * tokens' (pg_token.c, compiled into the module too), and of RFC 9773's
 * certificate ids.
 *
 * Ownership: the caller gives the output buffer; nothing is allocated.
 */

#ifndef PG_B64_H
#define PG_B64_H

#include <stddef.h>             /* size_t */

/* Encoded length of n bytes, without the NUL. */
#define PG_B64URL_LEN(n)   (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/* The most bytes n characters can decode to. */
#define PG_B64URL_DECODED_MAX(n)   (((n) / 4) * 3 + ((n) % 4) * 3 / 4)

/*
 * Encode in[0..n) into out, NUL-terminated. Returns the length written, or
 * (size_t) -1 when out (size bytes) cannot hold it and the NUL.
 */
size_t pg_b64url_encode(const unsigned char *in, size_t n, char *out,
    size_t size);

/*
 * Decode in[0..n) into out (size bytes), strictly: only the 64 characters
 * of the alphabet (no '=', no whitespace, no '+' or '/'), a length that is
 * not 1 more than a multiple of 4, and the unused low bits of the last
 * character zero, so that a byte string has exactly one text. Returns the
 * number of bytes written, or (size_t) -1 when the text is not such an
 * encoding or out is too small. n == 0 decodes to 0 bytes.
 */
size_t pg_b64url_decode(const char *in, size_t n, unsigned char *out,
    size_t size);

#endif /* PG_B64_H */
