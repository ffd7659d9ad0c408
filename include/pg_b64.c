/*
 * pg_b64.c: base64url without padding, both ways; see pg_b64.h.
 */

#include "pg_b64.h"             /* the API this file implements */


static const char  pg_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/* A character's 6 bits, or 64 for anything outside the alphabet. */
static unsigned
pg_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return 64;
}


size_t
pg_b64url_encode(const unsigned char *in, size_t n, char *out, size_t size)
{
    size_t    i, o;
    unsigned  v;

    if (size == 0 || PG_B64URL_LEN(n) > size - 1) {
        return (size_t) -1;
    }

    o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        v = (unsigned) in[i] << 16 | (unsigned) in[i + 1] << 8 | in[i + 2];
        out[o++] = pg_b64url_alphabet[v >> 18 & 63];
        out[o++] = pg_b64url_alphabet[v >> 12 & 63];
        out[o++] = pg_b64url_alphabet[v >> 6 & 63];
        out[o++] = pg_b64url_alphabet[v & 63];
    }

    if (n - i == 1) {
        v = (unsigned) in[i] << 16;
        out[o++] = pg_b64url_alphabet[v >> 18 & 63];
        out[o++] = pg_b64url_alphabet[v >> 12 & 63];

    } else if (n - i == 2) {
        v = (unsigned) in[i] << 16 | (unsigned) in[i + 1] << 8;
        out[o++] = pg_b64url_alphabet[v >> 18 & 63];
        out[o++] = pg_b64url_alphabet[v >> 12 & 63];
        out[o++] = pg_b64url_alphabet[v >> 6 & 63];
    }

    out[o] = '\0';

    return o;
}


size_t
pg_b64url_decode(const char *in, size_t n, unsigned char *out, size_t size)
{
    size_t    i, o, rest;
    unsigned  v, c, bits;

    rest = n % 4;

    /* one character alone holds 6 bits: no byte */
    if (rest == 1 || PG_B64URL_DECODED_MAX(n) > size) {
        return (size_t) -1;
    }

    o = 0;
    v = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        c = pg_b64url_value((unsigned char) in[i]);

        if (c == 64) {
            return (size_t) -1;
        }

        v = (v << 6 | c) & 0xffffff;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (v >> bits);
        }
    }

    /* the last character's unused bits (2 or 4) must be zero: otherwise
     * several texts would decode to the same bytes */
    if (bits > 0 && (v & ((1u << bits) - 1)) != 0) {
        return (size_t) -1;
    }

    return o;
}
