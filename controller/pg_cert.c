/*
 * pg_cert.c: keys, CSRs, certificates and renewal times with OpenSSL 3.0;
 * see pg_cert.h.
 *
 * Thread safety: every function may run in the daemon's worker thread.
 * Nothing here keeps state between calls; OpenSSL's error queue is per
 * thread, and each function empties it before it returns, so that an old
 * reason never shows up in a later message.
 */

#include <ctype.h>              /* isdigit */
#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* open, O_*, fcntl */
#include <stdarg.h>             /* va_list: pg_cert_fail() */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* malloc, free, mkstemp */
#include <string.h>             /* memcpy, strlen, strerror, strstr,
                                   strrchr */
#include <sys/stat.h>           /* fstat, fchmod */
#include <unistd.h>             /* read, write, fsync, close, unlink */
#include <openssl/err.h>        /* ERR_peek_last_error, ERR_clear_error */
#include <openssl/pem.h>        /* PEM_read_bio_*, PEM_write_bio_* */
#include <openssl/x509.h>       /* X509, X509_REQ */
#include <openssl/x509v3.h>     /* GENERAL_NAMES, X509V3_add1_i2d */
#include "pg_cert.h"            /* the API this file implements */


#define PG_CERT_FILE_MAX      (1024 * 1024)   /* bytes of a PEM file */
#define PG_CERT_CN_MAX        64              /* ub-common-name (RFC 5280) */
#define PG_CERT_SHOWN         160             /* bytes of a path shown */


static void pg_cert_fail(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pg_cert_read(const char *path, const char *what, char **data,
    size_t *len, pg_error_t *err);
static int pg_cert_bio_take(BIO *bio, char **data, size_t *len);
static int pg_cert_pass_none(char *buf, int size, int rwflag, void *u);
static const EVP_MD *pg_cert_md(EVP_PKEY *key);
static int pg_cert_check_names(char *const *names, size_t n,
    pg_error_t *err);
static GENERAL_NAMES *pg_cert_sans(char *const *names, size_t n);


/* --- errors ------------------------------------------------------------- */

/*
 * err = the message, then ": " and OpenSSL's last reason when it has one
 * (its reason only: the queue's file/line dump means nothing to a user).
 * The queue is emptied.
 */
static void
pg_cert_fail(pg_error_t *err, const char *fmt, ...)
{
    int            n;
    va_list        args;
    const char    *reason;
    unsigned long  e;

    va_start(args, fmt);
    n = vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);

    e = ERR_peek_last_error();
    reason = e ? ERR_reason_error_string(e) : NULL;

    if (reason != NULL && n >= 0 && (size_t) n < sizeof(err->text) - 3) {
        snprintf(err->text + n, sizeof(err->text) - n, ": %s", reason);
    }

    ERR_clear_error();
}


/* --- files -------------------------------------------------------------- */

/*
 * The whole of path in a new *data, NUL-terminated. what names the file in
 * a message ("key ", "certificate ", or "").
 */
static int
pg_cert_read(const char *path, const char *what, char **data, size_t *len,
    pg_error_t *err)
{
    int          fd;
    char        *buf;
    size_t       got;
    ssize_t      n;
    struct stat  st;

    fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path, strerror(errno));
        return PG_ERR;
    }

    if (fstat(fd, &st) == -1) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path, strerror(errno));
        close(fd);
        return PG_ERR;
    }

    if (!S_ISREG(st.st_mode)) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path,
                 S_ISDIR(st.st_mode) ? "a folder" : "not a regular file");
        close(fd);
        return PG_ERR;
    }

    /* one byte past the limit tells a file that is too large, even one
     * that grows while it is read */
    buf = malloc(PG_CERT_FILE_MAX + 2);

    if (buf == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: out of "
                 "memory", what, PG_CERT_SHOWN, path);
        close(fd);
        return PG_ERR;
    }

    got = 0;

    while (got <= PG_CERT_FILE_MAX) {
        n = read(fd, buf + got, PG_CERT_FILE_MAX + 1 - got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1) {
            snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                     what, PG_CERT_SHOWN, path, strerror(errno));
            free(buf);
            close(fd);
            return PG_ERR;
        }

        if (n == 0) {
            break;
        }

        got += n;
    }

    close(fd);

    if (got > PG_CERT_FILE_MAX) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: larger "
                 "than %d bytes", what, PG_CERT_SHOWN, path,
                 PG_CERT_FILE_MAX);
        free(buf);
        return PG_ERR;
    }

    buf[got] = '\0';
    *data = buf;
    *len = got;

    return PG_OK;
}


int
pg_cert_read_file(const char *path, char **data, size_t *len,
    pg_error_t *err)
{
    return pg_cert_read(path, "", data, len, err);
}


int
pg_cert_write_file(const char *path, const char *data, size_t len, int mode,
    pg_error_t *err)
{
    int      fd, dfd, saved;
    char     tmp[4096], dir[4096];
    char    *slash;
    size_t   done;
    ssize_t  n;

    if ((size_t) snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path)
        >= sizeof(tmp))
    {
        snprintf(err->text, sizeof(err->text), "cannot write %.*s: the path "
                 "is too long", PG_CERT_SHOWN, path);
        return PG_ERR;
    }

    /* the temp file beside the target, so that rename() is atomic; created
     * 0600 by mkstemp, so a key is never readable by others, not even
     * while it is written */
    fd = mkstemp(tmp);

    if (fd == -1) {
        snprintf(err->text, sizeof(err->text), "cannot write %.*s: %s",
                 PG_CERT_SHOWN, path, strerror(errno));
        return PG_ERR;
    }

    /* not inherited by an nginx -t that another thread starts meanwhile */
    (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

    /* fchmod, not the umask: the mode is exact */
    if (fchmod(fd, (mode_t) mode) == -1) {
        goto failed;
    }

    for (done = 0; done < len; done += n) {
        n = write(fd, data + done, len - done);

        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n == -1) {
            goto failed;
        }
    }

    if (fsync(fd) == -1) {
        goto failed;
    }

    if (close(fd) == -1) {
        fd = -1;
        goto failed;
    }

    fd = -1;

    if (rename(tmp, path) == -1) {
        goto failed;
    }

    /* the rename itself survives a crash once the folder is synced */
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");

    } else if (slash == dir) {
        dir[1] = '\0';

    } else {
        *slash = '\0';
    }

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd != -1) {
        (void) fsync(dfd);
        close(dfd);
    }

    return PG_OK;

failed:

    saved = errno;

    if (fd != -1) {
        close(fd);
    }

    unlink(tmp);

    snprintf(err->text, sizeof(err->text), "cannot write %.*s: %s",
             PG_CERT_SHOWN, path, strerror(saved));

    return PG_ERR;
}


/* The contents of a memory BIO in a new *data (NUL-terminated), *len. */
static int
pg_cert_bio_take(BIO *bio, char **data, size_t *len)
{
    long   n;
    char  *p, *buf;

    n = BIO_get_mem_data(bio, &p);

    if (n < 0) {
        return PG_ERR;
    }

    buf = malloc((size_t) n + 1);

    if (buf == NULL) {
        return PG_ERR;
    }

    memcpy(buf, p, (size_t) n);
    buf[n] = '\0';

    *data = buf;
    *len = (size_t) n;

    return PG_OK;
}


/* --- keys --------------------------------------------------------------- */

EVP_PKEY *
pg_cert_key_new(int type, pg_error_t *err)
{
    EVP_PKEY  *key;

    if (type == PG_CERT_KEY_ECDSA) {
        key = EVP_EC_gen("P-256");

    } else if (type == PG_CERT_KEY_RSA) {
        key = EVP_RSA_gen(2048);

    } else {
        snprintf(err->text, sizeof(err->text), "unknown key type %d", type);
        return NULL;
    }

    if (key == NULL) {
        pg_cert_fail(err, "cannot make a%s key",
                     type == PG_CERT_KEY_RSA ? "n RSA" : " P-256");
        return NULL;
    }

    return key;
}


/* An encrypted key is refused rather than asked a passphrase for: there is
 * no one to ask in a daemon. */
static int
pg_cert_pass_none(char *buf, int size, int rwflag, void *u)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) u;

    return -1;
}


EVP_PKEY *
pg_cert_key_load(const char *path, pg_error_t *err)
{
    BIO         *bio;
    char        *pem;
    size_t       len;
    EVP_PKEY    *key;
    const char  *why;

    if (pg_cert_read(path, "key ", &pem, &len, err) != PG_OK) {
        return NULL;
    }

    if (len == 0) {
        snprintf(err->text, sizeof(err->text), "cannot read key %.*s: empty "
                 "file", PG_CERT_SHOWN, path);
        free(pem);
        return NULL;
    }

    key = NULL;
    bio = BIO_new_mem_buf(pem, (int) len);

    if (bio != NULL) {
        key = PEM_read_bio_PrivateKey(bio, NULL, pg_cert_pass_none, NULL);
        BIO_free(bio);
    }

    if (key == NULL) {
        /* the likely mistakes, named; the rest is "not a PEM private key" */
        if (strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL
            || strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL)
        {
            why = "an encrypted private key (only unencrypted keys are read)";

        } else if (strstr(pem, "PUBLIC KEY-----") != NULL) {
            why = "a public key, not a private key";

        } else if (strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL) {
            why = "a certificate, not a private key";

        } else {
            why = "not a PEM private key";
        }

        snprintf(err->text, sizeof(err->text), "cannot read key %.*s: %s",
                 PG_CERT_SHOWN, path, why);
        ERR_clear_error();
    }

    OPENSSL_cleanse(pem, len);
    free(pem);

    return key;
}


int
pg_cert_key_pem(EVP_PKEY *key, char **pem, size_t *len, pg_error_t *err)
{
    int   rc;
    BIO  *bio;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL
        || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
    {
        pg_cert_fail(err, "cannot write the key as PEM");
        BIO_free(bio);
        return PG_ERR;
    }

    rc = pg_cert_bio_take(bio, pem, len);
    BIO_free(bio);

    if (rc != PG_OK) {
        snprintf(err->text, sizeof(err->text), "cannot write the key as PEM: "
                 "out of memory");
    }

    return rc;
}


/* SHA-256 for the keys we make; the keys that take no digest (Ed25519,
 * Ed448), which pg_cert_key_load() also reads, get none. */
static const EVP_MD *
pg_cert_md(EVP_PKEY *key)
{
    int  id;

    id = EVP_PKEY_get_id(key);

    return (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448)
           ? NULL : EVP_sha256();
}


/* --- names -------------------------------------------------------------- */

/*
 * names are DNS names a CA can put in a certificate: 1 to
 * PG_CERT_NAMES_MAX of them, each 1..PG_CERT_NAME_MAX bytes of letters,
 * digits, '-' and '.', no empty label, and "*." only as the whole first
 * label.
 */
static int
pg_cert_check_names(char *const *names, size_t n, pg_error_t *err)
{
    size_t       i, len, label;
    const char  *p, *why;

    if (n == 0 || n > PG_CERT_NAMES_MAX) {
        snprintf(err->text, sizeof(err->text), "a certificate has 1 to %d "
                 "names, not %zu", PG_CERT_NAMES_MAX, n);
        return PG_ERR;
    }

    for (i = 0; i < n; i++) {
        len = strlen(names[i]);
        why = NULL;

        if (len == 0 || len > PG_CERT_NAME_MAX) {
            why = "empty or longer than 253 bytes";
        }

        p = names[i];

        if (why == NULL && p[0] == '*') {
            p++;

            if (*p != '.') {
                why = "a wildcard is \"*.\" and a domain";

            } else {
                p++;
            }
        }

        for (label = 0; why == NULL; p++) {

            if (*p == '.' || *p == '\0') {
                if (label == 0 || label > 63) {
                    why = "an empty label or one longer than 63 bytes";
                }

                if (*p == '\0') {
                    break;
                }

                label = 0;
                continue;
            }

            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-'))
            {
                why = "only letters, digits, '-' and '.' (and \"*.\" first)";
            }

            label++;
        }

        if (why != NULL) {
            snprintf(err->text, sizeof(err->text), "invalid name \"%.64s%s\": "
                     "%s", names[i], len > 64 ? "..." : "", why);
            return PG_ERR;
        }
    }

    return PG_OK;
}


/* The names as a subjectAltName's GENERAL_NAMES (new), or NULL. */
static GENERAL_NAMES *
pg_cert_sans(char *const *names, size_t n)
{
    size_t             i;
    GENERAL_NAME      *gn;
    GENERAL_NAMES     *gens;
    ASN1_IA5STRING    *ia5;

    gens = sk_GENERAL_NAME_new_null();

    if (gens == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        gn = GENERAL_NAME_new();
        ia5 = ASN1_IA5STRING_new();

        if (gn == NULL || ia5 == NULL
            || !ASN1_STRING_set(ia5, names[i], (int) strlen(names[i])))
        {
            GENERAL_NAME_free(gn);
            ASN1_IA5STRING_free(ia5);
            goto failed;
        }

        GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);

        if (!sk_GENERAL_NAME_push(gens, gn)) {
            GENERAL_NAME_free(gn);
            goto failed;
        }
    }

    return gens;

failed:

    GENERAL_NAMES_free(gens);

    return NULL;
}


/* --- certificates ------------------------------------------------------- */

int
pg_cert_csr(EVP_PKEY *key, char *const *names, size_t n, unsigned char **der,
    size_t *len, pg_error_t *err)
{
    int                          rc, dlen;
    X509_REQ                    *req;
    X509_NAME                   *subject;
    GENERAL_NAMES               *gens;
    unsigned char               *p, *buf;
    STACK_OF(X509_EXTENSION)    *exts;

    if (pg_cert_check_names(names, n, err) != PG_OK) {
        return PG_ERR;
    }

    rc = PG_ERR;
    exts = NULL;
    gens = NULL;
    p = NULL;

    req = X509_REQ_new();

    if (req == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1)
        || !X509_REQ_set_pubkey(req, key))
    {
        pg_cert_fail(err, "cannot make a CSR for %.64s", names[0]);
        goto done;
    }

    /* the CN is legacy (CAs read the SANs) and limited to 64 bytes: a
     * longer first name is only a SAN */
    subject = X509_REQ_get_subject_name(req);

    if (strlen(names[0]) <= PG_CERT_CN_MAX
        && !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                       (const unsigned char *) names[0], -1,
                                       -1, 0))
    {
        pg_cert_fail(err, "cannot make a CSR for %.64s", names[0]);
        goto done;
    }

    gens = pg_cert_sans(names, n);

    if (gens == NULL
        || X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, 0,
                           X509V3_ADD_DEFAULT) != 1
        || !X509_REQ_add_extensions(req, exts))
    {
        pg_cert_fail(err, "cannot make a CSR for %.64s: its names",
                     names[0]);
        goto done;
    }

    if (X509_REQ_sign(req, key, pg_cert_md(key)) <= 0) {
        pg_cert_fail(err, "cannot sign the CSR for %.64s", names[0]);
        goto done;
    }

    dlen = i2d_X509_REQ(req, &p);

    if (dlen <= 0) {
        pg_cert_fail(err, "cannot encode the CSR for %.64s", names[0]);
        goto done;
    }

    /* malloc'd, so that the caller frees it with free() as pg_cert.h
     * says, whatever allocator OpenSSL was given */
    buf = malloc((size_t) dlen);

    if (buf == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot make a CSR for "
                 "%.64s: out of memory", names[0]);
        goto done;
    }

    memcpy(buf, p, (size_t) dlen);
    *der = buf;
    *len = (size_t) dlen;
    rc = PG_OK;

done:

    OPENSSL_free(p);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    ERR_clear_error();

    return rc;
}
