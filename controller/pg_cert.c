/*
 * pg_cert.c: keys, CSRs and certificates with OpenSSL 3.0; see pg_cert.h.
 *
 * The file's sections, each one readable alone:
 *   errors            pg_cert_fail(): a message and OpenSSL's reason;
 *                     pg_cert_msg(): a message alone
 *   files             bounded read, atomic write
 *   keys              new, load (with the likely mistakes named), PEM
 *   names             the DNS names a certificate may have, as SANs
 *   certificates      the CSR
 *   X.509             dates, chains, what a certificate says, the ARI id,
 *                     the checks before an install
 *   making certs      the placeholder and the local CA's leaf
 *
 * When to renew (lifetime rule, retries, RFC 3339, ARI) is
 * pg_cert_renew.c's; what the toolbox's files share, pg_cert_private.h.
 *
 * Thread safety: every function may run in the daemon's worker thread.
 * Nothing here keeps state between calls; OpenSSL's error queue is per
 * thread, and each function empties it before it returns, so that an old
 * reason never shows up in a later message. (strerror() is thread-safe in
 * glibc >= 2.32 for the errors a file system gives.)
 */

#include <arpa/inet.h>          /* inet_aton: names that are addresses */
#include <errno.h>              /* errno, EINTR */
#include <fcntl.h>              /* open, O_*, fcntl */
#include <limits.h>             /* INT_MAX */
#include <stdarg.h>             /* va_list: pg_cert_fail(), pg_cert_msg() */
#include <stdio.h>              /* snprintf, vsnprintf */
#include <stdlib.h>             /* malloc, free, mkstemp */
#include <string.h>             /* memcpy, strlen, strerror, strstr,
                                   strrchr */
#include <sys/stat.h>           /* fstat, fchmod, fchown */
#include <time.h>               /* time, gmtime_r, strftime */
#include <unistd.h>             /* read, write, fsync, close, unlink */
#include <openssl/err.h>        /* ERR_peek_last_error, ERR_clear_error */
#include <openssl/pem.h>        /* PEM_read_bio_*, PEM_write_bio_* */
#include <openssl/rand.h>       /* RAND_bytes: serials */
#include <openssl/x509.h>       /* X509, X509_REQ */
#include <openssl/x509v3.h>     /* GENERAL_NAMES, X509V3_add1_i2d */
#include "pg_b64.h"             /* pg_b64url_encode: ARI ids */
#include "pg_cert_private.h"    /* the API this file implements
                                   (pg_cert.h), pg_cert_msg,
                                   pg_cert_days */


#define PG_CERT_FILE_MAX      (1024 * 1024)   /* bytes of a PEM file */
#define PG_CERT_CN_MAX        64              /* ub-common-name (RFC 5280) */
#define PG_CERT_SHOWN         160             /* bytes of a path shown */
#define PG_CERT_LIFETIME_MAX  (100L * 365 * 86400)  /* seconds a certificate
                                                       made here may last */


static void pg_cert_fail(pg_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pg_cert_read(const char *path, const char *what, int nofollow,
    struct stat *st, char **data, size_t *len, pg_error_t *err);
static int pg_cert_bio_take(BIO *bio, char **data, size_t *len);
static int pg_cert_pass_none(char *buf, int size, int rwflag, void *u);
static EVP_PKEY *pg_cert_key_read(const char *path, const char *what,
    pg_error_t *err);
static const EVP_MD *pg_cert_md(EVP_PKEY *key);
static int pg_cert_is_address(const char *name);
static int pg_cert_check_names(char *const *names, size_t n,
    pg_error_t *err);
static GENERAL_NAMES *pg_cert_sans(char *const *names, size_t n);
static int pg_cert_check_lifetime(long lifetime, pg_error_t *err);


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


/* err = the message alone; pg_cert_private.h (pg_cert_install.c's and
 * pg_cert_nginx.c's messages). */
void
pg_cert_msg(pg_error_t *err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, args);
    va_end(args);
}


/* --- files -------------------------------------------------------------- */

/*
 * The whole of path in a new *data, NUL-terminated. what names the file in
 * a message ("key ", "certificate ", or ""). A regular file only, opened
 * with O_NONBLOCK: a FIFO (or a device) put at a path is refused at once,
 * never waited on. nofollow: a symlink at path is refused too. *st, when
 * st is set, is what fstat() says of the file read.
 */
static int
pg_cert_read(const char *path, const char *what, int nofollow,
    struct stat *st, char **data, size_t *len, pg_error_t *err)
{
    int          fd;
    char        *buf;
    size_t       got;
    ssize_t      n;
    struct stat  sb;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK
                    | (nofollow ? O_NOFOLLOW : 0));

    if (fd == -1) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path,
                 (nofollow && errno == ELOOP) ? "a symlink"
                                              : strerror(errno));
        return PG_ERR;
    }

    if (fstat(fd, &sb) == -1) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path, strerror(errno));
        close(fd);
        return PG_ERR;
    }

    if (!S_ISREG(sb.st_mode)) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path,
                 S_ISDIR(sb.st_mode) ? "a folder" : "not a regular file");
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
            OPENSSL_cleanse(buf, got);      /* the part of a key read */
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
        OPENSSL_cleanse(buf, got);
        free(buf);
        return PG_ERR;
    }

    buf[got] = '\0';
    *data = buf;
    *len = got;

    if (st != NULL) {
        *st = sb;
    }

    return PG_OK;
}


int
pg_cert_read_file(const char *path, char **data, size_t *len,
    pg_error_t *err)
{
    return pg_cert_read(path, "", 0, NULL, data, len, err);
}


int
pg_cert_read_file_nofollow(const char *path, char **data, size_t *len,
    struct stat *st, pg_error_t *err)
{
    return pg_cert_read(path, "", 1, st, data, len, err);
}


int
pg_cert_write_file(const char *path, const char *data, size_t len, int mode,
    pg_error_t *err)
{
    return pg_cert_write_file_owned(path, data, len, mode, (uid_t) -1,
                                    (gid_t) -1, err);
}


int
pg_cert_write_file_owned(const char *path, const char *data, size_t len,
    int mode, uid_t uid, gid_t gid, pg_error_t *err)
{
    int     saved;
    char    tmp[4096];

    if (pg_cert_file_stage(path, data, len, mode, uid, gid, tmp, sizeof(tmp),
                           err)
        != PG_OK)
    {
        return PG_ERR;
    }

    if (rename(tmp, path) == -1) {
        saved = errno;
        unlink(tmp);
        snprintf(err->text, sizeof(err->text), "cannot write %.*s: %s",
                 PG_CERT_SHOWN, path, strerror(saved));
        return PG_ERR;
    }

    /* the rename itself survives a crash once the folder is synced */
    pg_cert_dir_sync(path);

    return PG_OK;
}


void
pg_cert_dir_sync(const char *path)
{
    int    fd;
    char   dir[4096];
    char  *slash;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");

    } else if (slash == dir) {
        dir[1] = '\0';

    } else {
        *slash = '\0';
    }

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd != -1) {
        (void) fsync(fd);
        close(fd);
    }
}


int
pg_cert_file_stage(const char *path, const char *data, size_t len, int mode,
    uid_t uid, gid_t gid, char *tmp, size_t tmp_size, pg_error_t *err)
{
    int          fd, saved;
    size_t       done;
    ssize_t      n;
    struct stat  st;

    if ((size_t) snprintf(tmp, tmp_size, "%s.tmp.XXXXXX", path)
        >= tmp_size)
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

    /* the owner first (a chown may clear mode bits), on the file itself,
     * never by path; asked only when it differs from what the file got
     * (a daemon not run as root can keep its own files' owner) */
    if ((uid != (uid_t) -1 || gid != (gid_t) -1)
        && (fstat(fd, &st) == -1
            || (uid != (uid_t) -1 && st.st_uid != uid)
            || (gid != (gid_t) -1 && st.st_gid != gid))
        && fchown(fd, uid, gid) == -1)
    {
        saved = errno;
        close(fd);
        unlink(tmp);
        snprintf(err->text, sizeof(err->text), "cannot write %.*s: cannot "
                 "keep its owner %ld:%ld: %s", PG_CERT_SHOWN, path,
                 (long) uid, (long) gid, strerror(saved));
        return PG_ERR;
    }

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

    /* an earlier caller's error is not this call's: each public function
     * here that may read OpenSSL's queue starts with it empty */
    ERR_clear_error();

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


/* The private key in path; what is what messages call the file: "key "
 * or "CA key ". */
static EVP_PKEY *
pg_cert_key_read(const char *path, const char *what, pg_error_t *err)
{
    BIO         *bio;
    char        *pem;
    size_t       len;
    EVP_PKEY    *key;
    const char  *why;

    if (pg_cert_read(path, what, 0, NULL, &pem, &len, err) != PG_OK) {
        return NULL;
    }

    if (len == 0) {
        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: empty "
                 "file", what, PG_CERT_SHOWN, path);
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

        snprintf(err->text, sizeof(err->text), "cannot read %s%.*s: %s",
                 what, PG_CERT_SHOWN, path, why);
        ERR_clear_error();
    }

    OPENSSL_cleanse(pem, len);
    free(pem);

    return key;
}


EVP_PKEY *
pg_cert_key_load(const char *path, pg_error_t *err)
{
    ERR_clear_error();

    return pg_cert_key_read(path, "key ", err);
}


int
pg_cert_key_pem(EVP_PKEY *key, char **pem, size_t *len, pg_error_t *err)
{
    int   rc;
    BIO  *bio;

    ERR_clear_error();

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
 * name (of DNS syntax, "*." allowed first) is an IP address: one that
 * inet_aton() reads ("10.0.0.1", and the forms resolvers also take,
 * "127.1", "0x7f000001"), or any name whose last label is all digits (no
 * top-level domain is). A CA issues for neither, and a client would not
 * match one against a DNS SAN.
 */
static int
pg_cert_is_address(const char *name)
{
    const char      *last;
    struct in_addr   addr;

    if (name[0] == '*' && name[1] == '.') {
        name += 2;
    }

    if (inet_aton(name, &addr) != 0) {
        return 1;
    }

    last = strrchr(name, '.');
    last = last ? last + 1 : name;

    return last[0] != '\0' && strspn(last, "0123456789") == strlen(last);
}


/*
 * names are DNS names a CA can put in a certificate: 1 to
 * PG_CERT_NAMES_MAX of them, each 1..PG_CERT_NAME_MAX bytes of letters,
 * digits, '-' and '.', no empty label, "*." only as the whole first
 * label, and not an IP address.
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

        if (why == NULL && pg_cert_is_address(names[i])) {
            why = "an IP address, not a DNS name";
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

    ERR_clear_error();

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


/* --- X.509 -------------------------------------------------------------- */

/* Days since 1970-01-01 of a date; pg_cert_private.h (pg_cert_renew.c's
 * RFC 3339 times use it too). */
long long
pg_cert_days(long long y, int m, int d)
{
    long long  era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


/* An ASN1_TIME as seconds since the epoch. */
static int
pg_cert_asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(struct tm));

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
        return PG_ERR;
    }

    *out = (time_t) (pg_cert_days(tm.tm_year + 1900LL, tm.tm_mon + 1,
                                  tm.tm_mday) * 86400
                     + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);

    return PG_OK;
}


/* t as "2025-01-02T04:00:00Z" in buf (at least 32 bytes), for messages. */
static const char *
pg_cert_time_str(time_t t, char *buf, size_t size)
{
    struct tm  tm;

    if (gmtime_r(&t, &tm) == NULL
        || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        snprintf(buf, size, "%lld", (long long) t);
    }

    return buf;
}


/*
 * Every certificate of a PEM chain, in a new stack (sk_X509_pop_free(,
 * X509_free)), the leaf first. what names the chain in a message. At least
 * one, and a "-----BEGIN CERTIFICATE-----" that does not read as one is
 * an error: a chain file with a broken certificate is not installed.
 * Text outside the PEM blocks, and other blocks, are passed over, as
 * nginx passes over them.
 */
static STACK_OF(X509) *
pg_cert_chain(const char *pem, size_t len, const char *what, pg_error_t *err)
{
    BIO             *bio;
    X509            *x;
    unsigned long    e;
    STACK_OF(X509)  *chain;

    if (len > INT_MAX) {
        snprintf(err->text, sizeof(err->text), "%s: too large", what);
        return NULL;
    }

    chain = sk_X509_new_null();
    bio = BIO_new_mem_buf(pem, (int) len);

    if (chain == NULL || bio == NULL) {
        pg_cert_fail(err, "%s: out of memory", what);
        goto failed;
    }

    for ( ;; ) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

        if (x == NULL) {
            e = ERR_peek_last_error();

            /* the end of the text: no more "-----BEGIN" */
            if (sk_X509_num(chain) > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM
                && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            {
                ERR_clear_error();
                break;
            }

            if (sk_X509_num(chain) == 0) {
                snprintf(err->text, sizeof(err->text), "%s: not a PEM "
                         "certificate", what);

            } else {
                snprintf(err->text, sizeof(err->text), "%s: certificate %d "
                         "is not a valid PEM certificate", what,
                         sk_X509_num(chain) + 1);
            }

            ERR_clear_error();
            goto failed;
        }

        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            pg_cert_fail(err, "%s: out of memory", what);
            goto failed;
        }
    }

    BIO_free(bio);

    return chain;

failed:

    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);

    return NULL;
}


/* The CN of name, else its one-line DN, in buf; control characters shown
 * as '?' (an issuer's name reaches logs and terminals). */
static void
pg_cert_name_str(const X509_NAME *name, char *buf, size_t size)
{
    int               i, n;
    char             *p;
    unsigned char    *utf8;
    const ASN1_STRING *s;

    buf[0] = '\0';
    utf8 = NULL;
    i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);

    if (i >= 0) {
        s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        n = ASN1_STRING_to_UTF8(&utf8, s);

        if (n >= 0) {
            snprintf(buf, size, "%.*s", n, (char *) utf8);
        }

        OPENSSL_free(utf8);
    }

    if (buf[0] == '\0') {
        X509_NAME_oneline(name, buf, (int) size);
    }

    for (p = buf; *p != '\0'; p++) {
        if ((unsigned char) *p < ' ' || *p == 0x7f) {
            *p = '?';
        }
    }
}


/*
 * RFC 9773 section 4.1: base64url(the AKI's keyIdentifier) "."
 * base64url(the serial's DER content octets: two's complement, so a
 * leading 0x00 when the high bit is set). "" when there is no AKI key id.
 */
static int
pg_cert_ari_id(X509 *x, char *id, size_t size)
{
    int                  len, rc;
    size_t               n, hdr;
    unsigned char       *der, *p;
    AUTHORITY_KEYID     *akid;

    id[0] = '\0';
    rc = PG_OK;
    der = NULL;

    akid = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);

    if (akid == NULL || akid->keyid == NULL) {
        AUTHORITY_KEYID_free(akid);
        ERR_clear_error();
        return PG_OK;
    }

    len = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);

    if (len < 3) {
        rc = PG_ERR;
        goto done;
    }

    /* the tag, then a short or a long length */
    hdr = (der[1] & 0x80) ? 2 + (der[1] & 0x7f) : 2;

    if (hdr >= (size_t) len) {
        rc = PG_ERR;
        goto done;
    }

    n = pg_b64url_encode(ASN1_STRING_get0_data(akid->keyid),
                         (size_t) ASN1_STRING_length(akid->keyid), id, size);

    if (n == (size_t) -1 || n + 2 >= size) {
        rc = PG_ERR;
        goto done;
    }

    id[n++] = '.';
    p = der + hdr;

    if (pg_b64url_encode(p, (size_t) len - hdr, id + n, size - n)
        == (size_t) -1)
    {
        rc = PG_ERR;
    }

done:

    if (rc != PG_OK) {
        id[0] = '\0';
    }

    OPENSSL_free(der);
    AUTHORITY_KEYID_free(akid);

    return rc;
}


static int
pg_cert_x509_info(X509 *x, pg_cert_info_t *info, const char *what,
    pg_error_t *err)
{
    int                  i, n;
    const unsigned char *p;
    const ASN1_INTEGER  *serial;

    memset(info, 0, sizeof(pg_cert_info_t));

    serial = X509_get0_serialNumber(x);
    p = ASN1_STRING_get0_data(serial);
    n = ASN1_STRING_length(serial);

    /* the bytes CAs and browsers show; a serial is at most 20 bytes (RFC
     * 5280), and longer ones are cut at what the field holds */
    for (i = 0; i < n && i * 2 + 2 <= PG_CERT_SERIAL_MAX; i++) {
        snprintf(info->serial + i * 2, 3, "%02x", p[i]);
    }

    if (pg_cert_asn1_time(X509_get0_notBefore(x), &info->not_before)
        != PG_OK
        || pg_cert_asn1_time(X509_get0_notAfter(x), &info->not_after)
        != PG_OK)
    {
        snprintf(err->text, sizeof(err->text), "%s: its validity dates "
                 "cannot be read", what);
        ERR_clear_error();
        return PG_ERR;
    }

    pg_cert_name_str(X509_get_issuer_name(x), info->issuer,
                     sizeof(info->issuer));

    info->self_signed = X509_NAME_cmp(X509_get_subject_name(x),
                                      X509_get_issuer_name(x)) == 0;

    /* an id that does not fit (an AKI key id of more than ~170 bytes, as
     * no CA makes) is no id: the certificate is renewed by its lifetime,
     * as one without an AKI is; the rest of what it says still counts */
    if (pg_cert_ari_id(x, info->ari_id, sizeof(info->ari_id)) != PG_OK) {
        info->ari_id[0] = '\0';
        ERR_clear_error();
    }

    return PG_OK;
}


int
pg_cert_info(const char *pem, size_t len, pg_cert_info_t *info,
    pg_error_t *err)
{
    int              rc;
    STACK_OF(X509)  *chain;

    ERR_clear_error();

    chain = pg_cert_chain(pem, len, "the certificate", err);

    if (chain == NULL) {
        return PG_ERR;
    }

    rc = pg_cert_x509_info(sk_X509_value(chain, 0), info, "the certificate",
                           err);

    sk_X509_pop_free(chain, X509_free);

    return rc;
}


/*
 * The chain (*chain, new) and the key (*key, new) of a pair, and that the
 * key is the first certificate's: the first checks of an install, and all
 * of pg_cert_check_key(). On PG_ERR nothing is left to free.
 */
static int
pg_cert_pair_load(const char *chain_pem, size_t chain_len,
    const char *key_pem, size_t key_len, STACK_OF(X509) **chain,
    EVP_PKEY **key, pg_error_t *err)
{
    BIO  *bio;

    *key = NULL;
    *chain = pg_cert_chain(chain_pem, chain_len, "the certificate chain",
                           err);

    if (*chain == NULL) {
        return PG_ERR;
    }

    bio = (key_len <= INT_MAX) ? BIO_new_mem_buf(key_pem, (int) key_len)
                               : NULL;

    if (bio != NULL) {
        *key = PEM_read_bio_PrivateKey(bio, NULL, pg_cert_pass_none, NULL);
        BIO_free(bio);
    }

    if (*key == NULL) {
        snprintf(err->text, sizeof(err->text), "the key is not a PEM private "
                 "key");
        goto failed;
    }

    if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(*chain, 0)), *key) != 1) {
        snprintf(err->text, sizeof(err->text), "the key does not match the "
                 "certificate");
        goto failed;
    }

    return PG_OK;

failed:

    EVP_PKEY_free(*key);
    *key = NULL;
    sk_X509_pop_free(*chain, X509_free);
    *chain = NULL;
    ERR_clear_error();

    return PG_ERR;
}


int
pg_cert_check_key(const char *chain_pem, size_t chain_len,
    const char *key_pem, size_t key_len, pg_error_t *err)
{
    EVP_PKEY        *key;
    STACK_OF(X509)  *chain;

    ERR_clear_error();

    if (pg_cert_pair_load(chain_pem, chain_len, key_pem, key_len, &chain,
                          &key, err) != PG_OK)
    {
        return PG_ERR;
    }

    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();

    return PG_OK;
}


int
pg_cert_check_pair(const char *chain_pem, size_t chain_len,
    const char *key_pem, size_t key_len, char *const *names, size_t n,
    time_t now, pg_error_t *err)
{
    int              rc;
    X509            *leaf;
    size_t           i;
    time_t           not_before, not_after;
    EVP_PKEY        *key;
    STACK_OF(X509)  *chain;
    char             when[32];

    ERR_clear_error();
    rc = PG_ERR;

    if (pg_cert_pair_load(chain_pem, chain_len, key_pem, key_len, &chain,
                          &key, err) != PG_OK)
    {
        return PG_ERR;
    }

    leaf = sk_X509_value(chain, 0);

    /* SANs alone, as browsers read them (RFC 6125 6.4.4 lets a client
     * fall back to the CN; OpenSSL's default does, when there is no DNS
     * SAN: never here), and "*" is a whole label */
    for (i = 0; i < n; i++) {
        if (X509_check_host(leaf, names[i], strlen(names[i]),
                            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
                            | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL)
            != 1)
        {
            snprintf(err->text, sizeof(err->text), "the certificate does not "
                     "cover %.128s", names[i]);
            goto done;
        }
    }

    if (pg_cert_asn1_time(X509_get0_notBefore(leaf), &not_before) != PG_OK
        || pg_cert_asn1_time(X509_get0_notAfter(leaf), &not_after) != PG_OK)
    {
        snprintf(err->text, sizeof(err->text), "the certificate's validity "
                 "dates cannot be read");
        goto done;
    }

    if (now < not_before) {
        snprintf(err->text, sizeof(err->text), "the certificate is not valid "
                 "yet: from %s", pg_cert_time_str(not_before, when,
                                                   sizeof(when)));
        goto done;
    }

    /* notAfter is the last second it is valid (RFC 5280 4.1.2.5) */
    if (now > not_after) {
        snprintf(err->text, sizeof(err->text), "the certificate expired at "
                 "%s", pg_cert_time_str(not_after, when, sizeof(when)));
        goto done;
    }

    rc = PG_OK;

done:

    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();

    return rc;
}


/* --- making certs ------------------------------------------------------- */

/* One extension of x from its OpenSSL config text ("critical,CA:FALSE"),
 * with ctx giving the issuer and subject. */
static int
pg_cert_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    int              ok;
    X509_EXTENSION  *ext;

    ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);

    if (ext == NULL) {
        return PG_ERR;
    }

    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);

    return ok ? PG_OK : PG_ERR;
}


/* The SHA-1 of cert's public key (RFC 5280 section 4.2.1.2, method 1) as a
 * new octet string: a SKI, and the AKI of what it signs. */
static ASN1_OCTET_STRING *
pg_cert_key_id(X509 *cert)
{
    unsigned int        len;
    unsigned char       md[EVP_MAX_MD_SIZE];
    ASN1_OCTET_STRING  *id;

    if (!X509_pubkey_digest(cert, EVP_sha1(), md, &len)) {
        return NULL;
    }

    id = ASN1_OCTET_STRING_new();

    if (id != NULL && !ASN1_OCTET_STRING_set(id, md, (int) len)) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }

    return id;
}


/*
 * A new leaf certificate for key and names, valid [not_before, not_after),
 * with a random 128-bit serial, SANs, serverAuth, a SKI; signed by ca_key
 * as ca when ca is set (and then with an AKI), else self-signed.
 */
static X509 *
pg_cert_make(EVP_PKEY *key, char *const *names, size_t n, time_t not_before,
    time_t not_after, X509 *ca, EVP_PKEY *ca_key)
{
    int                  ok;
    X509                *x;
    BIGNUM              *bn;
    X509_NAME           *subject;
    X509V3_CTX           ctx;
    GENERAL_NAMES       *gens;
    ASN1_INTEGER        *serial;
    AUTHORITY_KEYID     *akid;
    ASN1_OCTET_STRING   *ski;
    unsigned char        rnd[16];

    x = X509_new();

    if (x == NULL) {
        return NULL;
    }

    ok = 0;
    gens = NULL;
    akid = NULL;
    ski = NULL;
    serial = NULL;
    bn = NULL;

    if (!X509_set_version(x, X509_VERSION_3)) {
        goto done;
    }

    /* positive and 16 bytes long: the high bit clear, the next one set */
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        goto done;
    }

    rnd[0] = (rnd[0] & 0x7f) | 0x40;
    bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;

    if (serial == NULL || !X509_set_serialNumber(x, serial)
        || ASN1_TIME_set(X509_getm_notBefore(x), not_before) == NULL
        || ASN1_TIME_set(X509_getm_notAfter(x), not_after) == NULL
        || !X509_set_pubkey(x, key))
    {
        goto done;
    }

    subject = X509_get_subject_name(x);

    if (strlen(names[0]) <= PG_CERT_CN_MAX
        && !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                       (const unsigned char *) names[0], -1,
                                       -1, 0))
    {
        goto done;
    }

    if (!X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : subject)) {
        goto done;
    }

    X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);

    gens = pg_cert_sans(names, n);
    ski = pg_cert_key_id(x);

    /* without a CN the subject is empty, and the SAN must then be
     * critical (RFC 5280 section 4.2.1.6) */
    if (gens == NULL || ski == NULL
        || !X509_add1_ext_i2d(x, NID_subject_alt_name, gens,
                              strlen(names[0]) > PG_CERT_CN_MAX,
                              X509V3_ADD_DEFAULT)
        || !X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0,
                          X509V3_ADD_DEFAULT)
        || pg_cert_add_ext(x, &ctx, NID_basic_constraints,
                           "critical,CA:FALSE") != PG_OK
        || pg_cert_add_ext(x, &ctx, NID_key_usage,
                           EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA
                           ? "critical,digitalSignature,keyEncipherment"
                           : "critical,digitalSignature") != PG_OK
        || pg_cert_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth")
           != PG_OK)
    {
        goto done;
    }

    if (ca != NULL) {
        /* the CA's own SKI when it has one: that is what a verifier
         * matches the AKI with; else the same hash of its key */
        akid = AUTHORITY_KEYID_new();

        if (akid == NULL) {
            goto done;
        }

        akid->keyid = X509_get_ext_d2i(ca, NID_subject_key_identifier, NULL,
                                       NULL);

        if (akid->keyid == NULL) {
            akid->keyid = pg_cert_key_id(ca);
        }

        if (akid->keyid == NULL
            || !X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0,
                              X509V3_ADD_DEFAULT))
        {
            goto done;
        }
    }

    if (X509_sign(x, ca ? ca_key : key, pg_cert_md(ca ? ca_key : key)) <= 0)
    {
        goto done;
    }

    ok = 1;

done:

    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(ski);
    GENERAL_NAMES_free(gens);
    ASN1_INTEGER_free(serial);
    BN_free(bn);

    if (!ok) {
        X509_free(x);
        return NULL;
    }

    return x;
}


/* lifetime (seconds) is one a certificate may have: positive, and at most
 * PG_CERT_LIFETIME_MAX, so that now + lifetime cannot overflow. */
static int
pg_cert_check_lifetime(long lifetime, pg_error_t *err)
{
    if (lifetime <= 0) {
        snprintf(err->text, sizeof(err->text), "a certificate's lifetime is "
                 "positive, not %ld s", lifetime);
        return PG_ERR;
    }

    if (lifetime > PG_CERT_LIFETIME_MAX) {
        snprintf(err->text, sizeof(err->text), "a certificate's lifetime is "
                 "at most 100 years (%ld s), not %ld s",
                 (long) PG_CERT_LIFETIME_MAX, lifetime);
        return PG_ERR;
    }

    return PG_OK;
}


/* The certificates as PEM, one after the other, in a new *pem, *len. */
static int
pg_cert_pem_chain(X509 *leaf, X509 *ca, char **pem, size_t *len)
{
    int   rc;
    BIO  *bio;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL || !PEM_write_bio_X509(bio, leaf)
        || (ca != NULL && !PEM_write_bio_X509(bio, ca)))
    {
        BIO_free(bio);
        return PG_ERR;
    }

    rc = pg_cert_bio_take(bio, pem, len);
    BIO_free(bio);

    return rc;
}


int
pg_cert_self_signed(EVP_PKEY *key, char *const *names, size_t n,
    long lifetime, char **pem, size_t *len, pg_error_t *err)
{
    X509    *x;
    time_t   now;

    ERR_clear_error();

    if (pg_cert_check_names(names, n, err) != PG_OK
        || pg_cert_check_lifetime(lifetime, err) != PG_OK)
    {
        return PG_ERR;
    }

    now = time(NULL);
    x = pg_cert_make(key, names, n, now - PG_CERT_BACKDATE, now + lifetime,
                     NULL, NULL);

    if (x == NULL) {
        pg_cert_fail(err, "cannot make a self-signed certificate for %.64s",
                     names[0]);
        return PG_ERR;
    }

    if (pg_cert_pem_chain(x, NULL, pem, len) != PG_OK) {
        pg_cert_fail(err, "cannot write the certificate for %.64s as PEM",
                     names[0]);
        X509_free(x);
        return PG_ERR;
    }

    X509_free(x);
    ERR_clear_error();

    return PG_OK;
}


int
pg_cert_local_issue(const char *ca_cert_path, const char *ca_key_path,
    EVP_PKEY *key, char *const *names, size_t n, long lifetime, char **pem,
    size_t *len, pg_error_t *err)
{
    int              rc;
    X509            *ca, *leaf;
    char            *text;
    size_t           tlen;
    time_t           now, ca_not_before, ca_not_after, end, start;
    EVP_PKEY        *ca_key;
    char             what[PG_CERT_SHOWN + 32];
    STACK_OF(X509)  *chain;

    ERR_clear_error();

    if (pg_cert_check_names(names, n, err) != PG_OK
        || pg_cert_check_lifetime(lifetime, err) != PG_OK)
    {
        return PG_ERR;
    }

    if (pg_cert_read(ca_cert_path, "CA certificate ", 0, NULL, &text, &tlen,
                     err)
        != PG_OK)
    {
        return PG_ERR;
    }

    snprintf(what, sizeof(what), "CA certificate %.*s", PG_CERT_SHOWN,
             ca_cert_path);
    chain = pg_cert_chain(text, tlen, what, err);
    free(text);

    if (chain == NULL) {
        return PG_ERR;
    }

    /* the first certificate of the file signs; the others are not ours */
    ca = sk_X509_shift(chain);
    sk_X509_pop_free(chain, X509_free);

    rc = PG_ERR;
    leaf = NULL;

    ca_key = pg_cert_key_read(ca_key_path, "CA key ", err);

    if (ca_key == NULL) {
        X509_free(ca);
        return PG_ERR;
    }

    /* a certificate that is not a CA's would sign leaves no client
     * accepts: said here, not by every TLS client later */
    if ((X509_get_extension_flags(ca) & EXFLAG_KUSAGE)
        && !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN))
    {
        snprintf(err->text, sizeof(err->text), "%.170s: its keyUsage does "
                 "not allow signing certificates (no keyCertSign)", what);
        goto done;
    }

    if (X509_check_ca(ca) < 1) {
        snprintf(err->text, sizeof(err->text), "%.170s: not a CA "
                 "certificate (no basicConstraints CA:TRUE)", what);
        goto done;
    }

    if (EVP_PKEY_eq(X509_get0_pubkey(ca), ca_key) != 1) {
        snprintf(err->text, sizeof(err->text), "CA key %.100s does not match "
                 "CA certificate %.100s", ca_key_path, ca_cert_path);
        goto done;
    }

    if (pg_cert_asn1_time(X509_get0_notBefore(ca), &ca_not_before) != PG_OK
        || pg_cert_asn1_time(X509_get0_notAfter(ca), &ca_not_after) != PG_OK)
    {
        snprintf(err->text, sizeof(err->text), "%s: its validity dates "
                 "cannot be read", what);
        goto done;
    }

    now = time(NULL);

    if (now < ca_not_before || now > ca_not_after) {
        snprintf(err->text, sizeof(err->text), "%s: not valid now (%s)",
                 what, now < ca_not_before ? "not yet" : "expired");
        goto done;
    }

    /* a leaf outliving its CA would fail verification at the CA's end */
    end = (now + lifetime < ca_not_after) ? now + lifetime : ca_not_after;

    /* backdated as CAs do, never before the CA itself */
    start = (now - PG_CERT_BACKDATE > ca_not_before)
            ? now - PG_CERT_BACKDATE : ca_not_before;
    leaf = pg_cert_make(key, names, n, start, end, ca, ca_key);

    if (leaf == NULL) {
        pg_cert_fail(err, "cannot issue %.64s with %s", names[0], what);
        goto done;
    }

    if (pg_cert_pem_chain(leaf, ca, pem, len) != PG_OK) {
        pg_cert_fail(err, "cannot write the certificate for %.64s as PEM",
                     names[0]);
        goto done;
    }

    rc = PG_OK;

done:

    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();

    return rc;
}
