/*
 * pg_cert.h: the staging vhosts' certificates as files and as X.509, with
 * OpenSSL: keys, CSRs, what a certificate says, the placeholder pair, the
 * local CA issuer, and when to renew. No network, no Redis: the ACME
 * conversation is pg_acme.h, installing a pair and reloading nginx is
 * pg_cert_install.h, the daemon's side is pgd_certs.c.
 *
 * Implemented by pg_cert.c, and pg_cert_renew.c for "when to renew".
 *
 * Errors: PG_OK or PG_ERR with one line in pg_error_t that names the file
 * or the certificate and says what is wrong ("cannot read key
 * /etc/x/privkey.pem: not a PEM private key"), never OpenSSL's error queue
 * raw (its first reason, at most, after a colon). Every function that
 * uses OpenSSL empties the calling thread's error queue on entry and
 * before it returns: no reason of an earlier call shows in a message.
 * Ownership: functions named _new or returning char ** give new memory
 * (EVP_PKEY_free(), free()); every other pointer is borrowed.
 */

#ifndef PG_CERT_H
#define PG_CERT_H

#include <stddef.h>             /* size_t */
#include <sys/stat.h>           /* struct stat: pg_cert_read_file_nofollow */
#include <sys/types.h>          /* uid_t, gid_t */
#include <time.h>               /* time_t */
#include <openssl/evp.h>        /* EVP_PKEY */
#include "portal_gate.h"        /* pg_error_t, PG_OK, PG_ERR */

#define PG_CERT_KEY_ECDSA     0     /* P-256, the default */
#define PG_CERT_KEY_RSA       1     /* 2048 bits */

#define PG_CERT_NAMES_MAX     100   /* names of one certificate (SANs) */
#define PG_CERT_NAME_MAX      253   /* bytes of one DNS name */
#define PG_CERT_SERIAL_MAX    64    /* hex digits of a serial we show */
#define PG_CERT_ARI_ID_MAX    256   /* RFC 9773 certificate id */

/* Seconds of the placeholder written on first start: nginx can start, and
 * nothing trusts it; the first issuance replaces it at once. */
#define PG_CERT_PLACEHOLDER_LIFETIME  (24 * 3600)

/* Seconds the certificates made here (the placeholder, the local CA's)
 * start before they are made: a client whose clock is a little behind,
 * or a check made in the same second, still finds them valid. */
#define PG_CERT_BACKDATE              300


/* What a certificate (the first of a PEM chain) says. */
typedef struct {
    char     serial[PG_CERT_SERIAL_MAX + 1];  /* lowercase hex, no colons */
    time_t   not_before;
    time_t   not_after;
    char     issuer[256];                     /* the issuer's CN, or its
                                                 one-line DN */
    int      self_signed;                     /* subject == issuer */
    char     ari_id[PG_CERT_ARI_ID_MAX + 1];  /* RFC 9773 section 4.1:
                                                 b64url(AKI keyIdentifier)
                                                 "." b64url(serial); ""
                                                 when it has no AKI, or
                                                 one too long to fit */
} pg_cert_info_t;


/* --- keys --------------------------------------------------------------- */

/* A new private key of type PG_CERT_KEY_*. */
EVP_PKEY *pg_cert_key_new(int type, pg_error_t *err);

/* The private key in a PEM file (any type OpenSSL reads; unencrypted). */
EVP_PKEY *pg_cert_key_load(const char *path, pg_error_t *err);

/* The key as PEM (PKCS#8), in *pem (new, NUL-terminated), *len. */
int pg_cert_key_pem(EVP_PKEY *key, char **pem, size_t *len,
    pg_error_t *err);

/*
 * Write data to path atomically: a temp file beside it (mode), fsync,
 * rename, fsync of the folder. The folder must exist. Used for keys
 * (0600), certificates (0644) and the account key.
 */
int pg_cert_write_file(const char *path, const char *data, size_t len,
    int mode, pg_error_t *err);

/*
 * pg_cert_write_file() that also gives the file an owner (fchown on the
 * temp file, before its mode): uid, gid, or (uid_t) -1 / (gid_t) -1 to
 * leave that one as created. An install keeps the owner of what it
 * replaces with it.
 */
int pg_cert_write_file_owned(const char *path, const char *data, size_t len,
    int mode, uid_t uid, gid_t gid, pg_error_t *err);

/* The whole file in *data (new, NUL-terminated), *len; at most 1 MiB; a
 * regular file (a FIFO is refused at once, not waited on). */
int pg_cert_read_file(const char *path, char **data, size_t *len,
    pg_error_t *err);

/* pg_cert_read_file() for the files portal-gated writes itself (a pair,
 * its .prev): a symlink at path is refused ("cannot read PATH: a
 * symlink"), and *st (st may be NULL) is what fstat() says of the file
 * read: its mode and owner, to keep. */
int pg_cert_read_file_nofollow(const char *path, char **data, size_t *len,
    struct stat *st, pg_error_t *err);


/* --- certificates ------------------------------------------------------- */

/*
 * The names given to the functions below are DNS names: 1 to
 * PG_CERT_NAMES_MAX, each of letters, digits, '-' and '.' in labels of 1
 * to 63 bytes, "*." only as the whole first label, and never an IP
 * address ("10.0.0.1", "127.1", a last label all digits): refused with
 * "invalid name \"NAME\": why".
 */

/* A CSR for names (the first is also the CN), DER in *der (new), *len. */
int pg_cert_csr(EVP_PKEY *key, char *const *names, size_t n,
    unsigned char **der, size_t *len, pg_error_t *err);

/* What the first certificate of a PEM chain says. */
int pg_cert_info(const char *pem, size_t len, pg_cert_info_t *info,
    pg_error_t *err);

/*
 * The checks before an install (DESIGN.md): chain_pem holds at least one
 * certificate; key_pem is a private key that matches the first; every one
 * of names is covered by it (a DNS SAN, wildcards as RFC 6125 says; never
 * the CN, even without SANs, as browsers); and now is within its validity
 * (notBefore and notAfter both included, RFC 5280). The message says which
 * check failed.
 */
int pg_cert_check_pair(const char *chain_pem, size_t chain_len,
    const char *key_pem, size_t key_len, char *const *names, size_t n,
    time_t now, pg_error_t *err);

/* The first of those checks alone: chain_pem's first certificate is for
 * key_pem's key ("the key does not match the certificate"). No names, no
 * dates: whether a pair on disk is a pair at all. */
int pg_cert_check_key(const char *chain_pem, size_t chain_len,
    const char *key_pem, size_t key_len, pg_error_t *err);

/* A self-signed certificate for names and key, valid from now for
 * lifetime seconds (1 to 100 years; here and for the local CA), PEM in
 * *pem (new). The first-start placeholder. */
int pg_cert_self_signed(EVP_PKEY *key, char *const *names, size_t n,
    long lifetime, char **pem, size_t *len, pg_error_t *err);

/*
 * The local CA issuer (`issuer local CERT KEY`): a leaf for key and names,
 * signed by the CA in ca_cert_path / ca_key_path, valid from now for
 * lifetime seconds (not past the CA's own end), with a random serial,
 * SANs, serverAuth, and AKI/SKI. *pem (new) is the chain: the leaf, then
 * the CA certificate. The CA certificate must be a CA's (X509_check_ca:
 * basicConstraints CA:TRUE, or a v1 root) whose keyUsage, if it has one,
 * allows keyCertSign; else refused, saying which.
 *
 * Both certificates made here (this and pg_cert_self_signed()) have the
 * first name as CN when it fits 64 bytes; a longer one leaves the subject
 * empty, and the SAN is then critical (RFC 5280 section 4.2.1.6).
 */
int pg_cert_local_issue(const char *ca_cert_path, const char *ca_key_path,
    EVP_PKEY *key, char *const *names, size_t n, long lifetime,
    char **pem, size_t *len, pg_error_t *err);


/* --- when to renew (pg_cert_renew.c) ------------------------------------ */

/*
 * DESIGN.md's rule without ARI: at 2/3 of the lifetime (1/2 when the
 * lifetime is 10 days or less), moved by jitter * 2% of the lifetime
 * (jitter in [-1, 1], the caller's random draw).
 */
time_t pg_cert_renew_at(time_t not_before, time_t not_after, double jitter);

/*
 * The next try after failures failed attempts in a row (1, 2, ...): 1 min,
 * 10 min, 100 min, then daily after now; not before now + retry_after
 * (seconds, a CA's Retry-After, at most 30 days; 0 for none). But never
 * after the end of the certificate in place: while not_after (its
 * notAfter; 0 when unknown or none) is ahead, the wait is at most a tenth
 * of the time left, and at least 1 min, Retry-After included.
 */
time_t pg_cert_retry_at(time_t now, unsigned failures, long retry_after,
    time_t not_after);

/*
 * RFC 9773's renewalInfo answer (JSON text): suggestedWindow's start and
 * end (RFC 3339) in *start, *end. Refused: no window, a bad time, end
 * not after start.
 */
int pg_cert_ari_parse(const char *json, size_t len, time_t *start,
    time_t *end, pg_error_t *err);

/* pg_cert_ari_pick(): the CA's window opens after the certificate ends;
 * the caller keeps its own plan (pg_cert_renew_at()). */
#define PG_CERT_ARI_IGNORED   ((time_t) -1)

/*
 * The renewal time in an ARI window (RFC 9773 section 4.2): a uniform draw
 * (u in [0, 1), the caller's) within [start, end); now when that is
 * already past. Against the certificate renewed, [not_before, not_after]
 * (not_after 0: unknown, none of this): never later than not_after minus a
 * tenth of its lifetime (room for retries), and PG_CERT_ARI_IGNORED when
 * the window starts after not_after.
 */
time_t pg_cert_ari_pick(time_t start, time_t end, time_t now,
    time_t not_before, time_t not_after, double u);

#endif /* PG_CERT_H */
