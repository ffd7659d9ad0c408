/*
 * pg_b64.c: base64url without padding; see pg_b64.h.
 */

#include "pg_b64.h"             /* the API this file implements */


static const char  pg_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


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
