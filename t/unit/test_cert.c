/*
 * test_cert.c: unit tests of the certificates' toolbox (controller/pg_cert.c)
 * and of installing a pair for nginx (controller/pg_cert_install.c). Files
 * go to a scratch folder; "nginx" is a shell script written there, and its
 * "master" a child process that says whether it got SIGHUP. Prints TAP;
 * exits 1 if any test failed.
 *
 *   make build/test-cert && build/test-cert
 *
 * Expected values are computed here independently of the code under test
 * where that can be done (ARI ids with OpenSSL's own base64, chains checked
 * with X509_verify_cert), or taken from RFC 9773's examples.
 */

#define _GNU_SOURCE         /* pipe2 */
#include <errno.h>          /* errno */
#include <fcntl.h>          /* open, O_RDONLY */
#include <dirent.h>         /* opendir: leftover temp files */
#include <math.h>           /* NAN */
#include <poll.h>           /* poll: an install that would block */
#include <signal.h>         /* sigaction, kill, SIGHUP */
#include <stdio.h>          /* printf, snprintf, fopen */
#include <stdlib.h>         /* malloc, free, mkdtemp, rand */
#include <string.h>         /* strcmp, strncmp, strstr, strlen, memcmp */
#include <sys/ioctl.h>      /* ioctl: an immutable folder, for root */
#include <sys/prctl.h>      /* prctl: a fake master dies with the test */
#include <sys/stat.h>       /* stat, chmod, umask, mkfifo */
#include <sys/wait.h>       /* waitpid */
#include <time.h>           /* time, nanosleep */
#include <unistd.h>         /* unlink, rmdir, fork, getuid, symlink,
                               chown */
#include <linux/fs.h>       /* FS_IOC_SETFLAGS, FS_IMMUTABLE_FL */
#include <limits.h>         /* LONG_MAX */
#include <openssl/err.h>    /* ERR_raise, ERR_peek_error */
#include <openssl/evp.h>    /* EVP_EncodeBlock, EVP_PKEY */
#include <openssl/pem.h>    /* PEM_read_bio_X509 */
#include <openssl/x509.h>   /* X509_verify_cert */
#include <openssl/x509v3.h> /* AUTHORITY_KEYID, X509_get_ext_d2i */
#include "pg_cert.h"        /* the toolbox under test */
#include "pg_cert_install.h"  /* the install under test */
#include "pg_cert_private.h"  /* pg_cert_proc_root */
#include "tap.h"            /* t_ok, t_diag, t_count, t_failed */


#define T_DAY  86400

/* a file of the daemon's that nginx -t must not inherit */
#define T_LEAKED_FD       77
#define T_LEAKED_FD_TEXT  "77"


static char  t_dir[] = "/tmp/pg-test-cert-XXXXXX";

static char *t_names[] = { "staging.example.com", "www.staging.example.com" };


/* --- helpers ---------------------------------------------------------- */

/* t_dir/name in a static buffer (one of four, so that a call may take
 * several). */
static const char *
t_path(const char *name)
{
    static int   i;
    static char  buf[4][512];

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", t_dir, name);

    return buf[i];
}


/* path.suffix in a static buffer (one of four) */
static const char *
t_suffix(const char *path, const char *suffix)
{
    static int   i;
    static char  buf[4][600];

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s%s", path, suffix);

    return buf[i];
}


static void
t_write(const char *path, const char *text, size_t len)
{
    FILE  *f;

    f = fopen(path, "wb");

    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        t_diag("cannot write %s", path);
        exit(1);
    }
}


static void
t_write_str(const char *path, const char *text)
{
    t_write(path, text, strlen(text));
}


/* The whole file (new, NUL-terminated), or NULL when it cannot be read. */
static char *
t_slurp(const char *path, size_t *len)
{
    FILE    *f;
    char    *buf;
    long     n;

    f = fopen(path, "rb");

    if (f == NULL) {
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n + 1);

    if (buf == NULL || fread(buf, 1, n, f) != (size_t) n) {
        free(buf);
        fclose(f);
        return NULL;
    }

    buf[n] = '\0';
    fclose(f);

    if (len != NULL) {
        *len = (size_t) n;
    }

    return buf;
}


/* path holds exactly text. */
static int
t_same(const char *path, const char *text, size_t len)
{
    int      same;
    char    *got;
    size_t   n;

    got = t_slurp(path, &n);
    same = got != NULL && n == len && memcmp(got, text, len) == 0;
    free(got);

    return same;
}


/* The permission bits of path, or -1. */
static int
t_mode(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0 ? (int) (st.st_mode & 07777) : -1;
}


static int
t_exists(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0;
}


/* Some file in folder has ".tmp." in its name: a temp file left behind. */
static int
t_temp_left(const char *folder)
{
    int             found;
    DIR            *d;
    struct dirent  *e;

    found = 0;
    d = opendir(folder);

    while (d != NULL && (e = readdir(d)) != NULL) {
        found |= strstr(e->d_name, ".tmp.") != NULL;
    }

    if (d != NULL) {
        closedir(d);
    }

    return found;
}


/* base64url without padding of in[0..n), with OpenSSL's base64: not the
 * code under test (pg_b64). */
static void
t_b64url(const unsigned char *in, size_t n, char *out)
{
    int  len, i;

    len = EVP_EncodeBlock((unsigned char *) out, in, (int) n);

    while (len > 0 && out[len - 1] == '=') {
        len--;
    }

    out[len] = '\0';

    for (i = 0; i < len; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
}


/* The first certificate of a PEM text (new). */
static X509 *
t_x509(const char *pem, size_t len, int index)
{
    BIO   *bio;
    X509  *x;

    bio = BIO_new_mem_buf(pem, (int) len);
    x = NULL;

    do {
        X509_free(x);
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    } while (x != NULL && index-- > 0);

    BIO_free(bio);

    return x;
}


static char *
t_x509_pem(X509 *x, size_t *len)
{
    BIO    *bio;
    char   *p, *pem;
    long    n;

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    n = BIO_get_mem_data(bio, &p);
    pem = malloc(n + 1);
    memcpy(pem, p, n);
    pem[n] = '\0';
    *len = n;
    BIO_free(bio);

    return pem;
}


static char *
t_key_pem(EVP_PKEY *key, size_t *len)
{
    char        *pem;
    pg_error_t   err;

    if (pg_cert_key_pem(key, &pem, len, &err) != PG_OK) {
        t_diag("key pem: %s", err.text);
        exit(1);
    }

    return pem;
}


/*
 * A certificate made here with OpenSSL, not pg_cert: subject CN cn, SANs
 * san (NULL: none), serial given as bytes (positive), valid
 * [nb, na), an AKI with keyid aki (NULL: none), signed by key.
 */
static X509 *
t_make(EVP_PKEY *key, const char *cn, const char *san,
    const unsigned char *serial, size_t serial_len,
    const unsigned char *aki, size_t aki_len, time_t nb, time_t na, int ca)
{
    X509             *x;
    BIGNUM           *bn;
    X509V3_CTX        ctx;
    ASN1_INTEGER     *sn;
    X509_EXTENSION   *ext;
    AUTHORITY_KEYID  *akid;

    x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    bn = BN_bin2bn(serial, (int) serial_len, NULL);
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    ASN1_TIME_set(X509_getm_notBefore(x), nb);
    ASN1_TIME_set(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *) cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);

    if (san != NULL) {
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name, san);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }

    if (ca) {
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
                                   "critical,CA:TRUE");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_key_usage,
                                   "critical,keyCertSign,cRLSign");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_key_identifier,
                                   "hash");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }

    if (aki != NULL) {
        akid = AUTHORITY_KEYID_new();
        akid->keyid = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(akid->keyid, aki, (int) aki_len);
        X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0,
                          X509V3_ADD_DEFAULT);
        AUTHORITY_KEYID_free(akid);
    }

    X509_sign(x, key, EVP_sha256());

    return x;
}


/* A test CA: ca.pem and ca.key under name (a prefix in t_dir), valid
 * [nb, na). Returns its certificate (new). */
static X509 *
t_ca(const char *name, time_t nb, time_t na, EVP_PKEY **key_out)
{
    X509              *x;
    char              *pem, file[64];
    size_t             len;
    EVP_PKEY          *key;
    pg_error_t         err;
    unsigned char      serial[] = { 0x01, 0x02 };

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    x = t_make(key, "Portal Gate Test CA", NULL, serial, sizeof(serial),
               NULL, 0, nb, na, 1);

    snprintf(file, sizeof(file), "%s.pem", name);
    pem = t_x509_pem(x, &len);
    t_write(t_path(file), pem, len);
    free(pem);

    snprintf(file, sizeof(file), "%s.key", name);
    pem = t_key_pem(key, &len);
    t_write(t_path(file), pem, len);
    free(pem);

    if (key_out != NULL) {
        *key_out = key;

    } else {
        EVP_PKEY_free(key);
    }

    return x;
}


/* --- keys ------------------------------------------------------------- */

static void
test_keys_round_trip(void)
{
    int          type, ok, bits;
    char        *pem, group[32];
    size_t       len, glen;
    EVP_PKEY    *key, *back;
    pg_error_t   err;
    const char  *path;

    for (type = PG_CERT_KEY_ECDSA; type <= PG_CERT_KEY_RSA; type++) {
        key = pg_cert_key_new(type, &err);

        if (!t_ok(key != NULL, "a new %s key", type ? "RSA" : "ECDSA")) {
            t_diag("%s", err.text);
            continue;
        }

        if (type == PG_CERT_KEY_ECDSA) {
            ok = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC
                 && EVP_PKEY_get_group_name(key, group, sizeof(group), &glen)
                 && strcmp(group, "prime256v1") == 0;
            t_ok(ok, "an ECDSA key is on P-256");

        } else {
            bits = EVP_PKEY_get_bits(key);
            t_ok(EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA && bits == 2048,
                 "an RSA key has 2048 bits (%d)", bits);
        }

        pem = NULL;
        t_ok(pg_cert_key_pem(key, &pem, &len, &err) == PG_OK
             && strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0
             && strlen(pem) == len,
             "%s key as PEM is PKCS#8", type ? "an RSA" : "an ECDSA");

        path = t_path(type ? "rsa.key" : "ec.key");

        t_ok(pg_cert_write_file(path, pem, len, 0600, &err) == PG_OK
             && t_mode(path) == 0600 && t_same(path, pem, len),
             "the key written to a file, mode 0600");

        back = pg_cert_key_load(path, &err);

        t_ok(back != NULL && EVP_PKEY_eq(key, back) == 1,
             "%s key read back is the same key", type ? "an RSA" : "an ECDSA");

        EVP_PKEY_free(back);
        EVP_PKEY_free(key);
        free(pem);
        unlink(path);
    }

    key = pg_cert_key_new(7, &err);
    t_ok(key == NULL && strcmp(err.text, "unknown key type 7") == 0,
         "an unknown key type is refused");
}


/* path refused as a key with exactly "cannot read key PATH: why". */
static void
t_key_refused(const char *path, const char *why, const char *name)
{
    char         want[600];
    EVP_PKEY    *key;
    pg_error_t   err;

    snprintf(want, sizeof(want), "cannot read key %s: %s", path, why);
    memset(&err, 0, sizeof(err));
    key = pg_cert_key_load(path, &err);

    if (!t_ok(key == NULL && strcmp(err.text, want) == 0, "%s", name)) {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    EVP_PKEY_free(key);
}


static void
test_keys_refused(void)
{
    BIO         *bio;
    char        *p;
    long         n;
    EVP_PKEY    *key;
    pg_error_t   err;

    t_key_refused(t_path("missing.key"), "No such file or directory",
                  "a missing key file is refused, naming the file");

    t_write_str(t_path("empty.key"), "");
    t_key_refused(t_path("empty.key"), "empty file",
                  "an empty key file is refused");

    t_write_str(t_path("corrupt.key"),
                "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49"
                "AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n");
    t_key_refused(t_path("corrupt.key"), "not a PEM private key",
                  "a corrupt (truncated) key file is refused");

    t_write_str(t_path("junk.key"), "not a key at all\n\x01\x02\n");
    t_key_refused(t_path("junk.key"), "not a PEM private key",
                  "a file of junk is refused as a key");

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, key);
    n = BIO_get_mem_data(bio, &p);
    t_write(t_path("public.key"), p, n);
    BIO_free(bio);
    t_key_refused(t_path("public.key"), "a public key, not a private key",
                  "a public key alone is refused as the private key");

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_128_cbc(), NULL, 0, NULL,
                                  (void *) "secret");
    n = BIO_get_mem_data(bio, &p);
    t_write(t_path("encrypted.key"), p, n);
    BIO_free(bio);
    t_key_refused(t_path("encrypted.key"), "an encrypted private key (only "
                  "unencrypted keys are read)",
                  "an encrypted key is refused, not asked a passphrase for");
    EVP_PKEY_free(key);

    t_key_refused(t_dir, "a folder", "a folder is refused as a key file");

    unlink(t_path("empty.key"));
    unlink(t_path("corrupt.key"));
    unlink(t_path("junk.key"));
    unlink(t_path("public.key"));
    unlink(t_path("encrypted.key"));
}


static void
test_files(void)
{
    char        *big, *data;
    size_t       len;
    mode_t       old;
    pg_error_t   err;
    const char  *path;

    path = t_path("file.pem");

    old = umask(077);
    t_ok(pg_cert_write_file(path, "abc\n", 4, 0644, &err) == PG_OK
         && t_mode(path) == 0644 && t_same(path, "abc\n", 4),
         "a file is written with its mode exactly, whatever the umask");
    umask(old);

    t_ok(pg_cert_write_file(path, "replaced", 8, 0600, &err) == PG_OK
         && t_mode(path) == 0600 && t_same(path, "replaced", 8)
         && !t_temp_left(t_dir),
         "a file is replaced whole, and no temp file stays");

    t_ok(pg_cert_read_file(path, &data, &len, &err) == PG_OK
         && len == 8 && strcmp(data, "replaced") == 0,
         "a file is read whole, NUL-terminated");
    free(data);

    t_ok(pg_cert_write_file(t_path("no/such/folder/file.pem"), "x", 1, 0644,
                            &err) == PG_ERR
         && strstr(err.text, "cannot write ") == err.text
         && strstr(err.text, "no/such/folder/file.pem: No such file or "
                   "directory") != NULL,
         "writing into a missing folder says so, naming the file");

    big = malloc(1024 * 1024 + 1);
    memset(big, 'a', 1024 * 1024 + 1);
    t_write(path, big, 1024 * 1024 + 1);
    free(big);

    t_ok(pg_cert_read_file(path, &data, &len, &err) == PG_ERR
         && strstr(err.text, "larger than 1048576 bytes") != NULL,
         "a file over 1 MiB is refused");

    t_ok(pg_cert_read_file(t_path("missing"), &data, &len, &err) == PG_ERR
         && strstr(err.text, "missing: No such file or directory") != NULL,
         "a missing file is an error naming it");

    unlink(path);
}


/* --- CSR -------------------------------------------------------------- */

/* The DNS SANs of a CSR, joined with ",". */
static void
t_csr_sans(X509_REQ *req, char *buf, size_t size)
{
    int                           i;
    GENERAL_NAME                 *gn;
    GENERAL_NAMES                *gens;
    STACK_OF(X509_EXTENSION)     *exts;

    buf[0] = '\0';
    exts = X509_REQ_get_extensions(req);
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);

    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        gn = sk_GENERAL_NAME_value(gens, i);

        if (gn->type == GEN_DNS) {
            snprintf(buf + strlen(buf), size - strlen(buf), "%s%.*s",
                     buf[0] ? "," : "", ASN1_STRING_length(gn->d.dNSName),
                     ASN1_STRING_get0_data(gn->d.dNSName));
        }
    }

    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}


static void
test_csr(void)
{
    int                   type, i;
    char                  sans[1024], cn[128], longname[80];
    char                 *names[3], *many[PG_CERT_NAMES_MAX + 1];
    size_t                len;
    EVP_PKEY             *key;
    X509_REQ             *req;
    pg_error_t            err;
    unsigned char        *der;
    const unsigned char  *p;

    names[0] = "staging.example.com";
    names[1] = "www.staging.example.com";
    names[2] = "*.api.staging.example.com";

    for (type = PG_CERT_KEY_ECDSA; type <= PG_CERT_KEY_RSA; type++) {
        key = pg_cert_key_new(type, &err);
        der = NULL;

        if (!t_ok(pg_cert_csr(key, names, 3, &der, &len, &err) == PG_OK,
                  "a CSR for three names, %s key", type ? "RSA" : "ECDSA"))
        {
            t_diag("%s", err.text);
            EVP_PKEY_free(key);
            continue;
        }

        p = der;
        req = d2i_X509_REQ(NULL, &p, (long) len);
        t_csr_sans(req, sans, sizeof(sans));
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req),
                                  NID_commonName, cn, sizeof(cn));

        t_ok(req != NULL && p == der + len
             && X509_REQ_verify(req, key) == 1
             && EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key) == 1,
             "the CSR is DER, signed by the key, for its public key");

        t_ok(strcmp(sans, "staging.example.com,www.staging.example.com,"
                    "*.api.staging.example.com") == 0
             && strcmp(cn, "staging.example.com") == 0,
             "the CSR has every name as a SAN, the first also as CN (%s)",
             sans);

        X509_REQ_free(req);
        free(der);
        EVP_PKEY_free(key);
    }

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);

    /* 65 bytes: a SAN, but over the CN's 64 */
    memset(longname, 'a', 53);
    snprintf(longname + 53, sizeof(longname) - 53, ".example.com");
    names[0] = longname;
    der = NULL;
    cn[0] = '\0';

    if (t_ok(strlen(longname) == 65
             && pg_cert_csr(key, names, 1, &der, &len, &err) == PG_OK,
             "a CSR for a name longer than a CN may be"))
    {
        p = der;
        req = d2i_X509_REQ(NULL, &p, (long) len);
        t_csr_sans(req, sans, sizeof(sans));
        t_ok(strcmp(sans, longname) == 0
             && X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0,
             "... has it as a SAN and no CN");
        X509_REQ_free(req);
        free(der);
    }

    {
        static const struct {
            const char  *name;
            const char  *why;
        } bad[] = {
            { "", "empty or longer than 253 bytes" },
            { "a..example.com", "an empty label or one longer than 63 "
              "bytes" },
            { "example.com.", "an empty label or one longer than 63 bytes" },
            { "exa mple.com", "only letters, digits, '-' and '.' (and "
              "\"*.\" first)" },
            { "exa_mple.com", "only letters, digits, '-' and '.' (and "
              "\"*.\" first)" },
            { "www.*.example.com", "only letters, digits, '-' and '.' (and "
              "\"*.\" first)" },
            { "*example.com", "a wildcard is \"*.\" and a domain" },
            { "*.", "an empty label or one longer than 63 bytes" },
            /* review 19/10: an IP address is no DNS name */
            { "192.168.1.10", "an IP address, not a DNS name" },
            { "127.1", "an IP address, not a DNS name" },
            { "0x7f000001", "an IP address, not a DNS name" },
            { "*.10.0.0.1", "an IP address, not a DNS name" },
            { "example.123", "an IP address, not a DNS name" },
        };
        char  want[256];

        for (i = 0; i < (int) (sizeof(bad) / sizeof(bad[0])); i++) {
            names[0] = (char *) bad[i].name;
            snprintf(want, sizeof(want), "invalid name \"%s\": %s",
                     bad[i].name, bad[i].why);

            if (!t_ok(pg_cert_csr(key, names, 1, &der, &len, &err) == PG_ERR
                      && strcmp(err.text, want) == 0,
                      "the name \"%s\" is refused", bad[i].name))
            {
                t_diag("got: %s", err.text);
            }
        }
    }

    {
        char  *fine[] = { "1password.example.com", "123.example.com",
                          "0x7f.example.com" };

        der = NULL;
        t_ok(pg_cert_csr(key, fine, 3, &der, &len, &err) == PG_OK,
             "names with digits that are not IP addresses are accepted");
        free(der);
    }

    t_ok(pg_cert_csr(key, names, 0, &der, &len, &err) == PG_ERR
         && strcmp(err.text, "a certificate has 1 to 100 names, not 0") == 0,
         "a CSR without names is refused");

    for (i = 0; i <= PG_CERT_NAMES_MAX; i++) {
        many[i] = "example.com";
    }

    t_ok(pg_cert_csr(key, many, PG_CERT_NAMES_MAX + 1, &der, &len, &err)
         == PG_ERR
         && strcmp(err.text, "a certificate has 1 to 100 names, not 101")
            == 0,
         "a CSR for 101 names is refused");

    EVP_PKEY_free(key);
}


/* --- what a certificate says ------------------------------------------ */

/* RFC 9773 Appendix A: the example certificate of section 4.1, whose
 * ARI id the RFC gives. */
static const char  t_rfc9773_cert[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt\n"
    "cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS\n"
    "BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu\n"
    "7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf\n"
    "qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B\n"
    "yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb\n"
    "+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK\n"
    "-----END CERTIFICATE-----\n";


static void
test_info(void)
{
    int              i;
    X509            *x;
    char            *pem, want[256], aki_b64[64], serial_b64[64];
    size_t           len;
    time_t           nb, na;
    EVP_PKEY        *key;
    pg_error_t       err;
    pg_cert_info_t   info;
    unsigned char    aki[20];
    unsigned char    serial[] = { 0x80, 0x01, 0x02 };
    unsigned char    serial_der[] = { 0x00, 0x80, 0x01, 0x02 };

    if (t_ok(pg_cert_info(t_rfc9773_cert, sizeof(t_rfc9773_cert) - 1, &info,
                          &err) == PG_OK,
             "RFC 9773's example certificate is read"))
    {
        t_ok(strcmp(info.ari_id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE") == 0,
             "its ARI id is the RFC's: aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE "
             "(%s)", info.ari_id);
        t_ok(strcmp(info.serial, "87654321") == 0,
             "its serial is 87654321 (%s)", info.serial);
        t_ok(strcmp(info.issuer, "Example CA") == 0 && !info.self_signed,
             "its issuer is Example CA, not itself");
        /* 0001-01-01T00:00:00Z: 719162 days before 1970 */
        t_ok(info.not_before == -719162LL * T_DAY
             && info.not_after == info.not_before,
             "its dates are year 1, as the RFC wrote them (%lld)",
             (long long) info.not_before);
    }

    /* an AKI and a serial set here; the expected id computed here */
    for (i = 0; i < (int) sizeof(aki); i++) {
        aki[i] = (unsigned char) (0xf0 + i * 7);
    }

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    nb = 1700000000;
    na = nb + 90 * T_DAY;
    x = t_make(key, "info.example.com", "DNS:info.example.com", serial,
               sizeof(serial), aki, sizeof(aki), nb, na, 0);
    pem = t_x509_pem(x, &len);
    X509_free(x);

    t_b64url(aki, sizeof(aki), aki_b64);
    t_b64url(serial_der, sizeof(serial_der), serial_b64);
    snprintf(want, sizeof(want), "%s.%s", aki_b64, serial_b64);

    if (t_ok(pg_cert_info(pem, len, &info, &err) == PG_OK,
             "a certificate with a high-bit serial is read"))
    {
        t_ok(strcmp(info.ari_id, want) == 0
             && strcmp(serial_b64, "AIABAg") == 0,
             "its ARI id has the serial's DER bytes, 0x00 first: %s (%s)",
             want, info.ari_id);
        t_ok(strcmp(info.serial, "800102") == 0,
             "its serial shows as lowercase hex without the sign byte (%s)",
             info.serial);
        t_ok(info.not_before == nb && info.not_after == na,
             "its dates are read exactly");
        t_ok(info.self_signed && strcmp(info.issuer, "info.example.com") == 0,
             "subject == issuer is self-signed; the issuer is its CN");
    }

    free(pem);

    /* no AKI: no ARI id */
    x = t_make(key, "noaki.example.com", NULL, serial, sizeof(serial), NULL,
               0, nb, na, 0);
    pem = t_x509_pem(x, &len);
    X509_free(x);

    t_ok(pg_cert_info(pem, len, &info, &err) == PG_OK
         && info.ari_id[0] == '\0',
         "a certificate without an AKI has no ARI id");

    free(pem);

    /* review 19/8: an AKI key id too long for an ARI id: read all the
     * same, without one */
    {
        unsigned char  long_aki[200];

        memset(long_aki, 0xab, sizeof(long_aki));
        x = t_make(key, "longaki.example.com", "DNS:longaki.example.com",
                   serial, sizeof(serial), long_aki, sizeof(long_aki), nb,
                   na, 0);
        pem = t_x509_pem(x, &len);
        X509_free(x);
        memset(&err, 0, sizeof(err));

        if (!t_ok(pg_cert_info(pem, len, &info, &err) == PG_OK
                  && info.ari_id[0] == '\0' && info.not_after == na
                  && strcmp(info.serial, "800102") == 0,
                  "an AKI key id of 200 bytes (no ARI id fits): the "
                  "certificate is read, without an ARI id"))
        {
            t_diag("%s", err.text);
        }

        free(pem);
    }
    EVP_PKEY_free(key);

    t_ok(pg_cert_info("garbage\n", 8, &info, &err) == PG_ERR
         && strcmp(err.text, "the certificate: not a PEM certificate") == 0,
         "garbage is not a certificate (%s)", err.text);

    t_ok(pg_cert_info("", 0, &info, &err) == PG_ERR,
         "nothing is not a certificate");
}


/* --- check_pair --------------------------------------------------------- */

static void
t_pair_refused(const char *chain, size_t chain_len, const char *key,
    size_t key_len, char *const *names, size_t n, time_t now,
    const char *want, const char *name)
{
    pg_error_t  err;
    int         rc;

    memset(&err, 0, sizeof(err));
    rc = pg_cert_check_pair(chain, chain_len, key, key_len, names, n, now,
                            &err);

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0, "%s", name)) {
        t_diag("rc %d, got: %s", rc, err.text);
        t_diag("wanted:     %s", want);
    }
}


static void
test_check_pair(void)
{
    X509            *x;
    char            *chain, *kpem, *other_pem, *cn_chain, *bad_chain;
    char            *names[3];
    size_t           clen, klen, olen, cnlen, blen;
    time_t           nb, na;
    EVP_PKEY        *key, *other;
    pg_error_t       err;
    unsigned char    serial[] = { 0x42 };

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    other = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    kpem = t_key_pem(key, &klen);
    other_pem = t_key_pem(other, &olen);

    nb = 1700000000;
    na = nb + 90 * T_DAY;
    x = t_make(key, "staging.example.com",
               "DNS:staging.example.com,DNS:*.staging.example.com",
               serial, 1, NULL, 0, nb, na, 0);
    chain = t_x509_pem(x, &clen);
    X509_free(x);

    names[0] = "staging.example.com";
    names[1] = "www.staging.example.com";
    names[2] = "WWW.Staging.Example.COM";

    t_ok(pg_cert_check_pair(chain, clen, kpem, klen, names, 3, nb + T_DAY,
                            &err) == PG_OK,
         "a good pair passes: key matches, names covered (a wildcard, any "
         "case), valid now");

    t_pair_refused(chain, clen, other_pem, olen, names, 1, nb + T_DAY,
                   "the key does not match the certificate",
                   "another key is refused");

    names[1] = "other.example.com";
    t_pair_refused(chain, clen, kpem, klen, names, 2, nb + T_DAY,
                   "the certificate does not cover other.example.com",
                   "a name not in the SANs is refused, naming it");

    names[1] = "a.b.staging.example.com";
    t_pair_refused(chain, clen, kpem, klen, names, 2, nb + T_DAY,
                   "the certificate does not cover a.b.staging.example.com",
                   "a wildcard covers one label only");

    names[1] = "staging.example.com";
    t_pair_refused(chain, clen, kpem, klen, names, 1, na + 1,
                   "the certificate expired at 2024-02-12T22:13:20Z",
                   "an expired certificate is refused, with its end");

    /* review 19/10: notAfter is the last valid second (RFC 5280 4.1.2.5) */
    memset(&err, 0, sizeof(err));
    t_ok(pg_cert_check_pair(chain, clen, kpem, klen, names, 1, na, &err)
         == PG_OK,
         "a certificate is valid at its notAfter itself (%s)", err.text);

    t_pair_refused(chain, clen, kpem, klen, names, 1, nb - 1,
                   "the certificate is not valid yet: from "
                   "2023-11-14T22:13:20Z",
                   "a certificate not valid yet is refused, with its start");

    t_pair_refused("garbage", 7, kpem, klen, names, 1, nb + T_DAY,
                   "the certificate chain: not a PEM certificate",
                   "a garbage chain is refused");

    /* a good leaf, then a broken certificate */
    blen = clen + 70;
    bad_chain = malloc(blen + 1);
    snprintf(bad_chain, blen + 1, "%s-----BEGIN CERTIFICATE-----\nAAAA\n"
             "-----END CERTIFICATE-----\n", chain);
    blen = strlen(bad_chain);
    t_pair_refused(bad_chain, blen, kpem, klen, names, 1, nb + T_DAY,
                   "the certificate chain: certificate 2 is not a valid PEM "
                   "certificate",
                   "a chain with a broken second certificate is refused");
    free(bad_chain);

    t_pair_refused(chain, clen, "junk", 4, names, 1, nb + T_DAY,
                   "the key is not a PEM private key",
                   "a junk key is refused");

    /* the CN does not count when there are SANs (RFC 6125) */
    x = t_make(key, "cn-only.example.com", "DNS:san.example.com", serial, 1,
               NULL, 0, nb, na, 0);
    cn_chain = t_x509_pem(x, &cnlen);
    X509_free(x);
    names[0] = "cn-only.example.com";
    t_pair_refused(cn_chain, cnlen, kpem, klen, names, 1, nb + T_DAY,
                   "the certificate does not cover cn-only.example.com",
                   "a name only in the CN is not covered when SANs exist");
    free(cn_chain);

    /* review 19/10: nor when there is no SAN at all (OpenSSL's default
     * falls back to the CN then; browsers do not) */
    x = t_make(key, "cn-only.example.com", NULL, serial, 1, NULL, 0, nb, na,
               0);
    cn_chain = t_x509_pem(x, &cnlen);
    X509_free(x);
    t_pair_refused(cn_chain, cnlen, kpem, klen, names, 1, nb + T_DAY,
                   "the certificate does not cover cn-only.example.com",
                   "a certificate with a CN and no SAN covers no name");
    free(cn_chain);

    free(chain);
    free(kpem);
    free(other_pem);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}


/* --- making certificates ---------------------------------------------- */

static void
test_self_signed(void)
{
    X509            *x;
    char            *pem, *kpem;
    size_t           len, klen;
    time_t           before;
    EVP_PKEY        *key;
    pg_error_t       err;
    pg_cert_info_t   info;

    key = pg_cert_key_new(PG_CERT_KEY_RSA, &err);
    kpem = t_key_pem(key, &klen);
    before = time(NULL);

    if (!t_ok(pg_cert_self_signed(key, t_names, 2, 3600, &pem, &len, &err)
              == PG_OK, "a self-signed certificate"))
    {
        t_diag("%s", err.text);
        return;
    }

    x = t_x509(pem, len, 0);

    t_ok(x != NULL && X509_verify(x, key) == 1
         && pg_cert_info(pem, len, &info, &err) == PG_OK
         && info.self_signed && info.ari_id[0] == '\0'
         && strcmp(info.issuer, "staging.example.com") == 0,
         "it is signed by its own key, its own issuer, without an ARI id");

    t_ok(info.not_after - info.not_before == 3600 + PG_CERT_BACKDATE
         && info.not_before >= before - PG_CERT_BACKDATE
         && info.not_before <= time(NULL) - PG_CERT_BACKDATE,
         "it is valid from PG_CERT_BACKDATE ago for the lifetime given");

    t_ok(pg_cert_check_pair(pem, len, kpem, klen, t_names, 2,
                            info.not_before, &err) == PG_OK,
         "it covers its names and matches its key");

    t_ok(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) == 1
         && X509_get_extension_flags(x) & EXFLAG_BCONS
         && !(X509_get_extension_flags(x) & EXFLAG_CA),
         "it is for a TLS server and not a CA");

    t_ok(t_x509(pem, len, 1) == NULL,
         "the placeholder is one certificate");

    X509_free(x);
    free(pem);

    t_ok(pg_cert_self_signed(key, t_names, 2, 0, &pem, &len, &err) == PG_ERR
         && strcmp(err.text, "a certificate's lifetime is positive, not 0 s")
            == 0,
         "a lifetime of 0 is refused");

    /* review 19/10: now + lifetime overflowed (UBSan stops the test on
     * the old code) */
    {
        char  want[256];

        snprintf(want, sizeof(want), "a certificate's lifetime is at most "
                 "100 years (3153600000 s), not %ld s", LONG_MAX);
        memset(&err, 0, sizeof(err));
        pem = NULL;

        if (!t_ok(pg_cert_self_signed(key, t_names, 2, LONG_MAX, &pem, &len,
                                      &err) == PG_ERR
                  && strcmp(err.text, want) == 0,
                  "a lifetime that would overflow is refused"))
        {
            t_diag("got: %s", err.text);
            free(pem);
        }

        pem = NULL;
        t_ok(pg_cert_local_issue(t_path("none.pem"), t_path("none.key"), key,
                                 t_names, 2, LONG_MAX, &pem, &len, &err)
             == PG_ERR && strcmp(err.text, want) == 0,
             "... by the local CA too, before it reads anything");
    }

    free(kpem);
    EVP_PKEY_free(key);
}


/* pem's chain verifies against the CA in ca for name, as a TLS server. */
static int
t_verifies(const char *pem, size_t len, X509 *ca, const char *name,
    time_t at)
{
    int               ok;
    X509             *leaf, *inter;
    X509_STORE       *store;
    X509_STORE_CTX   *ctx;
    STACK_OF(X509)   *rest;

    leaf = t_x509(pem, len, 0);
    inter = t_x509(pem, len, 1);
    store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    rest = sk_X509_new_null();
    sk_X509_push(rest, inter);
    ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, rest);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), name, 0);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), at);

    ok = X509_verify_cert(ctx) == 1;

    if (!ok) {
        t_diag("verify: %s", X509_verify_cert_error_string(
                                 X509_STORE_CTX_get_error(ctx)));
    }

    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(rest, X509_free);
    X509_STORE_free(store);
    X509_free(leaf);

    return ok;
}


static void
test_local_issue(void)
{
    X509            *ca, *leaf, *second;
    char            *pem, *kpem, want[256], b64[64];
    size_t           len, klen;
    time_t           now;
    EVP_PKEY        *key, *ca_key;
    pg_error_t       err;
    pg_cert_info_t   info;
    ASN1_OCTET_STRING  *ski;
    const ASN1_INTEGER *sn;
    unsigned char      *der;
    int                 dlen;

    now = time(NULL);
    ca = t_ca("ca", now - T_DAY, now + 3650 * T_DAY, &ca_key);
    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);
    kpem = t_key_pem(key, &klen);

    if (!t_ok(pg_cert_local_issue(t_path("ca.pem"), t_path("ca.key"), key,
                                  t_names, 2, 90L * T_DAY, &pem, &len, &err)
              == PG_OK, "the local CA issues a certificate"))
    {
        t_diag("%s", err.text);
        return;
    }

    leaf = t_x509(pem, len, 0);
    second = t_x509(pem, len, 1);

    t_ok(leaf != NULL && second != NULL && X509_cmp(second, ca) == 0
         && t_x509(pem, len, 2) == NULL,
         "the chain is the leaf, then the CA certificate");

    t_ok(t_verifies(pem, len, ca, "www.staging.example.com", now),
         "the chain verifies against the CA for its names "
         "(X509_verify_cert, TLS server)");

    t_ok(pg_cert_check_pair(pem, len, kpem, klen, t_names, 2, now, &err)
         == PG_OK,
         "the pair passes the install checks");

    pg_cert_info(pem, len, &info, &err);

    t_ok(info.not_after - info.not_before == 90L * T_DAY + PG_CERT_BACKDATE
         && strcmp(info.issuer, "Portal Gate Test CA") == 0
         && !info.self_signed && strlen(info.serial) == 32,
         "it is valid 90 days, issued by the CA, a 128-bit serial (%s)",
         info.serial);

    /* its ARI id: the CA's SKI and the leaf's serial, computed here */
    ski = X509_get_ext_d2i(ca, NID_subject_key_identifier, NULL, NULL);
    t_b64url(ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski), b64);
    snprintf(want, sizeof(want), "%s.", b64);
    ASN1_OCTET_STRING_free(ski);
    sn = X509_get0_serialNumber(leaf);
    der = NULL;
    dlen = i2d_ASN1_INTEGER(sn, &der);
    t_b64url(der + 2, dlen - 2, b64);
    OPENSSL_free(der);
    strcat(want, b64);

    t_ok(strcmp(info.ari_id, want) == 0,
         "its ARI id is the CA's key id and its serial (%s)", info.ari_id);

    X509_free(leaf);
    X509_free(second);
    free(pem);

    /* a second issuance: another serial */
    {
        pg_cert_info_t  again;

        pg_cert_local_issue(t_path("ca.pem"), t_path("ca.key"), key,
                            t_names, 2, 90L * T_DAY, &pem, &len, &err);
        pg_cert_info(pem, len, &again, &err);
        t_ok(strcmp(again.serial, info.serial) != 0,
             "each issuance has a new serial");
        free(pem);
    }

    X509_free(ca);

    /* a CA ending in 2 days: the leaf ends with it */
    ca = t_ca("short-ca", now - T_DAY, now + 2 * T_DAY, NULL);

    t_ok(pg_cert_local_issue(t_path("short-ca.pem"), t_path("short-ca.key"),
                             key, t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_OK
         && pg_cert_info(pem, len, &info, &err) == PG_OK
         && info.not_after == now + 2 * T_DAY,
         "a leaf never outlives its CA");
    free(pem);
    X509_free(ca);

    ca = t_ca("old-ca", now - 10 * T_DAY, now - T_DAY, NULL);
    snprintf(want, sizeof(want), "CA certificate %s: not valid now "
             "(expired)", t_path("old-ca.pem"));
    t_ok(pg_cert_local_issue(t_path("old-ca.pem"), t_path("old-ca.key"),
                             key, t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_ERR && strcmp(err.text, want) == 0,
         "an expired CA issues nothing, and says so");
    X509_free(ca);

    snprintf(want, sizeof(want), "CA key %s does not match CA certificate "
             "%s", t_path("short-ca.key"), t_path("ca.pem"));
    t_ok(pg_cert_local_issue(t_path("ca.pem"), t_path("short-ca.key"), key,
                             t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_ERR && strcmp(err.text, want) == 0,
         "a CA key that is not the CA certificate's is refused");

    t_write_str(t_path("broken-ca.key"), "-----BEGIN PRIVATE KEY-----\n"
                "garbage\n-----END PRIVATE KEY-----\n");
    snprintf(want, sizeof(want), "cannot read CA key %s: not a PEM private "
             "key", t_path("broken-ca.key"));
    t_ok(pg_cert_local_issue(t_path("ca.pem"), t_path("broken-ca.key"), key,
                             t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_ERR && strcmp(err.text, want) == 0,
         "a corrupt CA key is refused, naming the file");

    snprintf(want, sizeof(want), "cannot read CA certificate %s: No such "
             "file or directory", t_path("none.pem"));
    t_ok(pg_cert_local_issue(t_path("none.pem"), t_path("ca.key"), key,
                             t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_ERR && strcmp(err.text, want) == 0,
         "a missing CA certificate is refused, naming the file");

    snprintf(want, sizeof(want), "CA certificate %s: not a PEM certificate",
             t_path("ca.key"));
    t_ok(pg_cert_local_issue(t_path("ca.key"), t_path("ca.key"), key,
                             t_names, 1, 90L * T_DAY, &pem, &len, &err)
         == PG_ERR && strcmp(err.text, want) == 0,
         "a CA certificate file that is not one is refused");

    /* review 19/7: a CA certificate that is not a CA's */
    {
        X509            *notca;
        X509V3_CTX       ctx;
        X509_EXTENSION  *ext;
        char            *p2, *k2;
        size_t           l2, kl2;
        unsigned char    sn[] = { 0x07 };

        notca = t_make(ca_key, "Not A CA", NULL, sn, 1, NULL, 0,
                       now - T_DAY, now + 10 * T_DAY, 0);
        p2 = t_x509_pem(notca, &l2);
        t_write(t_path("leaf-ca.pem"), p2, l2);
        free(p2);
        X509_free(notca);
        k2 = t_key_pem(ca_key, &kl2);
        t_write(t_path("leaf-ca.key"), k2, kl2);
        free(k2);

        snprintf(want, sizeof(want), "CA certificate %s: not a CA "
                 "certificate (no basicConstraints CA:TRUE)",
                 t_path("leaf-ca.pem"));
        memset(&err, 0, sizeof(err));

        pem = NULL;

        if (!t_ok(pg_cert_local_issue(t_path("leaf-ca.pem"),
                                      t_path("leaf-ca.key"), key, t_names, 1,
                                      90L * T_DAY, &pem, &len, &err)
                  == PG_ERR && strcmp(err.text, want) == 0,
                  "a leaf given as the CA certificate is refused"))
        {
            t_diag("got:    %s", err.text);
            t_diag("wanted: %s", want);
            free(pem);
        }

        /* CA:TRUE, but a keyUsage without keyCertSign */
        notca = t_make(ca_key, "Signing Only", NULL, sn, 1, NULL, 0,
                       now - T_DAY, now + 10 * T_DAY, 0);
        X509V3_set_ctx(&ctx, notca, notca, NULL, NULL, 0);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
                                   "critical,CA:TRUE");
        X509_add_ext(notca, ext, -1);
        X509_EXTENSION_free(ext);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_key_usage,
                                   "critical,digitalSignature");
        X509_add_ext(notca, ext, -1);
        X509_EXTENSION_free(ext);
        X509_sign(notca, ca_key, EVP_sha256());
        p2 = t_x509_pem(notca, &l2);
        t_write(t_path("leaf-ca.pem"), p2, l2);
        free(p2);
        X509_free(notca);

        snprintf(want, sizeof(want), "CA certificate %s: its keyUsage does "
                 "not allow signing certificates (no keyCertSign)",
                 t_path("leaf-ca.pem"));
        memset(&err, 0, sizeof(err));

        pem = NULL;

        if (!t_ok(pg_cert_local_issue(t_path("leaf-ca.pem"),
                                      t_path("leaf-ca.key"), key, t_names, 1,
                                      90L * T_DAY, &pem, &len, &err)
                  == PG_ERR && strcmp(err.text, want) == 0,
                  "a CA certificate whose keyUsage lacks keyCertSign is "
                  "refused"))
        {
            t_diag("got:    %s", err.text);
            t_diag("wanted: %s", want);
            free(pem);
        }

        unlink(t_path("leaf-ca.pem"));
        unlink(t_path("leaf-ca.key"));
    }

    /* review 19/7: a first name over 64 bytes leaves the subject empty:
     * the SAN is critical then (RFC 5280 4.2.1.6) */
    {
        char    longname[80], *names2[2];
        X509   *x;
        int     i, crit;

        memset(longname, 'a', 53);
        snprintf(longname + 53, sizeof(longname) - 53, ".example.com");
        names2[0] = longname;
        names2[1] = "staging.example.com";

        for (i = 0; i < 2; i++) {
            pem = NULL;
            x = NULL;
            crit = -1;

            if ((i == 0
                 ? pg_cert_local_issue(t_path("ca.pem"), t_path("ca.key"),
                                       key, names2, 2, 90L * T_DAY, &pem,
                                       &len, &err)
                 : pg_cert_self_signed(key, names2, 2, 3600, &pem, &len,
                                       &err)) == PG_OK)
            {
                x = t_x509(pem, len, 0);
            }

            if (x != NULL) {
                crit = X509_EXTENSION_get_critical(X509_get_ext(x,
                           X509_get_ext_by_NID(x, NID_subject_alt_name,
                                               -1)));
            }

            t_ok(x != NULL
                 && X509_NAME_entry_count(X509_get_subject_name(x)) == 0
                 && crit == 1,
                 "%s for a 65-byte first name: no subject, a critical SAN",
                 i == 0 ? "the local CA's leaf" : "a self-signed certificate");
            X509_free(x);
            free(pem);
        }

        pg_cert_local_issue(t_path("ca.pem"), t_path("ca.key"), key,
                            t_names, 2, 90L * T_DAY, &pem, &len, &err);
        x = t_x509(pem, len, 0);
        t_ok(x != NULL
             && X509_EXTENSION_get_critical(X509_get_ext(x,
                    X509_get_ext_by_NID(x, NID_subject_alt_name, -1))) == 0,
             "... with a CN, the SAN is not critical");
        X509_free(x);
        free(pem);
    }

    unlink(t_path("broken-ca.key"));
    unlink(t_path("old-ca.pem"));
    unlink(t_path("old-ca.key"));
    unlink(t_path("short-ca.pem"));
    unlink(t_path("short-ca.key"));
    free(kpem);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}


/* --- when to renew ---------------------------------------------------- */

static void
test_renew_at(void)
{
    int     i, ok;
    time_t  nb, na, t, lo, hi;

    nb = 1700000000;
    na = nb + 90 * T_DAY;

    t_ok(pg_cert_renew_at(nb, na, 0.0) == nb + 60 * T_DAY,
         "90 days: renewed at 2/3, day 60");
    t_ok(pg_cert_renew_at(nb, na, 1.0) == nb + 60 * T_DAY + 90 * T_DAY / 50
         && pg_cert_renew_at(nb, na, -1.0)
            == nb + 60 * T_DAY - 90 * T_DAY / 50,
         "90 days: jitter moves it by at most 2%% of the lifetime (1.8 days)");
    t_ok(pg_cert_renew_at(nb, na, 7.0) == pg_cert_renew_at(nb, na, 1.0)
         && pg_cert_renew_at(nb, na, -7.0) == pg_cert_renew_at(nb, na, -1.0)
         && pg_cert_renew_at(nb, na, NAN) == pg_cert_renew_at(nb, na, 0.0),
         "a jitter out of [-1, 1] is held to it, NaN is none");

    na = nb + 6 * T_DAY;
    t_ok(pg_cert_renew_at(nb, na, 0.0) == nb + 3 * T_DAY,
         "6 days (shortlived): renewed at 1/2, day 3");
    t_ok(pg_cert_renew_at(nb, na, 1.0) == nb + 3 * T_DAY + 6 * T_DAY / 50
         && pg_cert_renew_at(nb, na, -1.0) == nb + 3 * T_DAY - 6 * T_DAY / 50,
         "6 days: jitter at most 2%% (2.88 hours)");

    t_ok(pg_cert_renew_at(nb, nb + 10 * T_DAY, 0.0) == nb + 5 * T_DAY
         && pg_cert_renew_at(nb, nb + 11 * T_DAY, 0.0)
            == nb + 11 * T_DAY * 2 / 3,
         "10 days is short (1/2), 11 days is not (2/3)");

    t_ok(pg_cert_renew_at(nb, nb, 0.0) == nb
         && pg_cert_renew_at(nb, nb - 5, 0.0) == nb,
         "no lifetime: renewed at once");

    /* random draws stay within the bounds */
    na = nb + 90 * T_DAY;
    lo = nb + 60 * T_DAY - 90 * T_DAY / 50;
    hi = nb + 60 * T_DAY + 90 * T_DAY / 50;
    ok = 1;
    srand(9773);

    for (i = 0; i < 10000; i++) {
        t = pg_cert_renew_at(nb, na, rand() / (double) RAND_MAX * 2 - 1);
        ok &= t >= lo && t <= hi && t < na;
    }

    t_ok(ok, "10000 random jitters stay within day 60 +- 1.8, before the "
         "end");
}


static void
test_retry_at(void)
{
    time_t  now;

    now = 1700000000;

    t_ok(pg_cert_retry_at(now, 1, 0, 0) == now + 60
         && pg_cert_retry_at(now, 2, 0, 0) == now + 600
         && pg_cert_retry_at(now, 3, 0, 0) == now + 6000
         && pg_cert_retry_at(now, 4, 0, 0) == now + T_DAY
         && pg_cert_retry_at(now, 50, 0, 0) == now + T_DAY,
         "failures retry after 1 min, 10 min, 100 min, then daily");
    t_ok(pg_cert_retry_at(now, 0, 0, 0) == now + 60,
         "0 failures counts as the first");
    t_ok(pg_cert_retry_at(now, 1, 3600, 0) == now + 3600
         && pg_cert_retry_at(now, 4, 2 * T_DAY, 0) == now + 2 * T_DAY,
         "a later Retry-After wins");
    t_ok(pg_cert_retry_at(now, 2, 30, 0) == now + 600
         && pg_cert_retry_at(now, 1, -5, 0) == now + 60,
         "an earlier (or negative) Retry-After does not hurry the retry");
    t_ok(pg_cert_retry_at(now, 1, 0x7fffffffL, 0) == now + 30 * T_DAY,
         "an absurd Retry-After is held to 30 days");

    /* review 19/6: never after the end of the certificate in place: at
     * most a tenth of the time left (at least 1 min) */
    t_ok(pg_cert_retry_at(now, 4, 0, now + 30 * T_DAY) == now + T_DAY
         && pg_cert_retry_at(now, 1, 0, now + 30 * T_DAY) == now + 60,
         "30 days left: the schedule as it is (daily is under a tenth)");
    t_ok(pg_cert_retry_at(now, 4, 0, now + 5 * T_DAY) == now + T_DAY / 2
         && pg_cert_retry_at(now, 3, 0, now + 5 * T_DAY) == now + 6000,
         "5 days left: daily becomes 12 hours, 100 min stays");
    t_ok(pg_cert_retry_at(now, 1, 2 * T_DAY, now + 5 * T_DAY)
         == now + T_DAY / 2,
         "5 days left: a CA's Retry-After of 2 days is held to 12 hours");
    t_ok(pg_cert_retry_at(now, 9, 0, now + 300) == now + 60,
         "5 minutes left: 1 minute");
    t_ok(pg_cert_retry_at(now, 4, 0, now - 10) == now + T_DAY
         && pg_cert_retry_at(now, 4, 0, 0) == now + T_DAY,
         "expired already, or the end unknown (0): the schedule as it is");

    {
        int     i, ok;
        time_t  left, t;

        srand(5);
        ok = 1;

        for (i = 0; i < 10000; i++) {
            left = 60 + rand() % (100 * T_DAY);
            t = pg_cert_retry_at(now, 1 + rand() % 8, rand() % (40 * T_DAY),
                                 now + left);
            ok &= t > now && t <= now + left;
        }

        t_ok(ok, "10000 draws (a minute to 100 days left, any failures and "
             "Retry-After): the retry never lands after the end");
    }
}


static void
t_ari_refused(const char *json, const char *want, const char *name)
{
    int         rc;
    time_t      s, e;
    pg_error_t  err;

    memset(&err, 0, sizeof(err));
    rc = pg_cert_ari_parse(json, strlen(json), &s, &e, &err);

    if (!t_ok(rc == PG_ERR && strncmp(err.text, want, strlen(want)) == 0,
              "%s", name))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s...", want);
    }
}


/* The window of a renewalInfo whose start and end are given, or -1. */
static time_t
t_ari_start(const char *start, const char *end, time_t *e)
{
    char        json[256];
    time_t      s;
    pg_error_t  err;

    snprintf(json, sizeof(json), "{\"suggestedWindow\": {\"start\": \"%s\", "
             "\"end\": \"%s\"}}", start, end);

    if (pg_cert_ari_parse(json, strlen(json), &s, e, &err) != PG_OK) {
        return -1;
    }

    return s;
}


static void
test_ari(void)
{
    time_t       s, e, now;
    pg_error_t   err;

    /* RFC 9773 section 4.2's example answer */
    static const char  rfc[] =
        "{\n"
        "  \"suggestedWindow\": {\n"
        "    \"start\": \"2025-01-02T04:00:00Z\",\n"
        "    \"end\": \"2025-01-03T04:00:00Z\"\n"
        "  },\n"
        "  \"explanationURL\": \"https://acme.example.com/docs/ari\"\n"
        "}\n";

    t_ok(pg_cert_ari_parse(rfc, sizeof(rfc) - 1, &s, &e, &err) == PG_OK
         && s == 1735790400 && e == 1735876800,
         "RFC 9773's example: 2025-01-02T04:00Z to 2025-01-03T04:00Z");

    t_ok(t_ari_start("2025-01-02T04:00:00.123456789Z",
                     "2025-01-03T04:00:00.5Z", &e) == 1735790400
         && e == 1735876800,
         "fractions of a second are read and dropped");

    t_ok(t_ari_start("2025-01-02T05:00:00+01:00",
                     "2025-01-02T22:30:00-05:30", &e) == 1735790400
         && e == 1735876800,
         "offsets: +01:00 and -05:30 are converted to UTC");

    t_ok(t_ari_start("2025-01-02t04:00:00z", "2025-01-03T04:00:00Z", &e)
         == 1735790400,
         "lowercase t and z are RFC 3339 too");

    t_ok(t_ari_start("2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", &e)
         == 1709164800 && e == 1709164800 + T_DAY,
         "a leap day is a day");

    t_ok(t_ari_start("2025-02-29T00:00:00Z", "2025-03-01T00:00:00Z", &e)
         == -1
         && t_ari_start("2025-04-31T00:00:00Z", "2025-05-01T00:00:00Z", &e)
            == -1
         && t_ari_start("2025-13-01T00:00:00Z", "2026-01-01T00:00:00Z", &e)
            == -1
         && t_ari_start("2025-01-01T24:00:00Z", "2026-01-01T00:00:00Z", &e)
            == -1,
         "a date that does not exist is refused");

    t_ok(t_ari_start("2025-01-02T04:00:00", "2025-01-03T04:00:00Z", &e) == -1
         && t_ari_start("2025-01-02 04:00:00Z", "2025-01-03T04:00:00Z", &e)
            == -1
         && t_ari_start("2025-01-02T04:00:00Zjunk", "2025-01-03T04:00:00Z",
                        &e) == -1
         && t_ari_start("2025-01-02T04:00:00.Z", "2025-01-03T04:00:00Z", &e)
            == -1
         && t_ari_start("2025-1-02T04:00:00Z", "2025-01-03T04:00:00Z", &e)
            == -1
         && t_ari_start("1735790400", "2025-01-03T04:00:00Z", &e) == -1,
         "no zone, a space, trailing text, an empty fraction, one digit, "
         "a number: refused");

    t_ari_refused("{\"suggestedWindow\": ", "renewalInfo is not JSON: ",
                  "a truncated answer is refused as not JSON");
    t_ari_refused("[]", "renewalInfo has no suggestedWindow object",
                  "an array is refused");
    t_ari_refused("{\"explanationURL\": \"x\"}",
                  "renewalInfo has no suggestedWindow object",
                  "an answer without a window is refused");
    t_ari_refused("{\"suggestedWindow\": \"soon\"}",
                  "renewalInfo has no suggestedWindow object",
                  "a window that is not an object is refused");
    t_ari_refused("{\"suggestedWindow\": {\"end\": \"2025-01-03T04:00:00Z\"}}",
                  "renewalInfo's suggestedWindow has no \"start\" string",
                  "a window without a start is refused");
    t_ari_refused("{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\","
                  " \"end\": 1735876800}}",
                  "renewalInfo's suggestedWindow has no \"end\" string",
                  "an end that is a number is refused");
    t_ari_refused("{\"suggestedWindow\": {\"start\": \"tomorrow\\n\","
                  " \"end\": \"2025-01-03T04:00:00Z\"}}",
                  "renewalInfo's suggestedWindow.start \"tomorrow?\" is not "
                  "an RFC 3339 time",
                  "a bad time is quoted, without its control characters");
    t_ari_refused("{\"suggestedWindow\": {\"start\": \"2025-01-03T04:00:00Z\","
                  " \"end\": \"2025-01-03T04:00:00Z\"}}",
                  "renewalInfo's suggestedWindow ends before it starts, or "
                  "at its start",
                  "an empty window is refused");
    t_ari_refused("{\"suggestedWindow\": {\"start\": \"2025-01-03T04:00:00Z\","
                  " \"end\": \"2025-01-02T04:00:00Z\"}}",
                  "renewalInfo's suggestedWindow ends before it starts",
                  "a window that ends before it starts is refused");

    /* the pick, the end of the certificate unknown (0) */
    s = 1735790400;
    e = s + T_DAY;
    now = s - 10 * T_DAY;

    t_ok(pg_cert_ari_pick(s, e, now, 0, 0, 0.0) == s
         && pg_cert_ari_pick(s, e, now, 0, 0, 0.5) == s + T_DAY / 2
         && pg_cert_ari_pick(s, e, now, 0, 0, 0.999999) < e
         && pg_cert_ari_pick(s, e, now, 0, 0, 0.999999) >= e - 1,
         "the pick is uniform in [start, end)");
    t_ok(pg_cert_ari_pick(s, e, now, 0, 0, 1.0) == s
         && pg_cert_ari_pick(s, e, now, 0, 0, -0.5) == s
         && pg_cert_ari_pick(s, e, now, 0, 0, NAN) == s,
         "a draw out of [0, 1) counts as 0");
    t_ok(pg_cert_ari_pick(s, e, e + 100, 0, 0, 0.5) == e + 100,
         "a window in the past: now");
    t_ok(pg_cert_ari_pick(s, e, s + T_DAY / 2, 0, 0, 0.25) == s + T_DAY / 2
         && pg_cert_ari_pick(s, e, s + T_DAY / 2, 0, 0, 0.75)
            == s + T_DAY * 3 / 4,
         "inside the window: a pick already past is now, a later one "
         "stays");

    /* review 19/5: against the certificate's end */
    {
        time_t  nb, na;

        nb = s - 60 * T_DAY;
        na = nb + 90 * T_DAY;      /* s + 30 days; the last tenth: 9 days */

        t_ok(pg_cert_ari_pick(s, e, now, nb, na, 0.5) == s + T_DAY / 2,
             "a window well before the end: as the CA suggests");
        t_ok(pg_cert_ari_pick(na - 10 * T_DAY, na - 6 * T_DAY, now, nb, na,
                              0.9) == na - 9 * T_DAY
             && pg_cert_ari_pick(na - 10 * T_DAY, na - 6 * T_DAY, now, nb,
                                 na, 0.1) < na - 9 * T_DAY,
             "a window reaching into the last tenth of the lifetime: the "
             "pick is held at 9 days before the end");
        t_ok(pg_cert_ari_pick(na - T_DAY, na + 5 * T_DAY, now, nb, na, 0.5)
             == na - 9 * T_DAY,
             "a window that starts in the last tenth and ends past the end: "
             "9 days before the end");
        t_ok(pg_cert_ari_pick(na + 1, na + 5 * T_DAY, now, nb, na, 0.5)
             == PG_CERT_ARI_IGNORED
             && pg_cert_ari_pick(na + 1, na + 5 * T_DAY, now, nb, na, 0.0)
                == PG_CERT_ARI_IGNORED,
             "a window that starts after the end: ignored "
             "(PG_CERT_ARI_IGNORED), the caller keeps its plan");
        t_ok(pg_cert_ari_pick(na - 10 * T_DAY, na - 6 * T_DAY,
                              na - 2 * T_DAY, nb, na, 0.5)
             == na - 2 * T_DAY,
             "already in the last tenth: now");
    }
}


/*
 * review 19/10: OpenSSL's error queue is per thread and its last entry
 * goes into messages (pg_cert_fail()). A call that returned early (a bad
 * argument) left what an earlier caller had put there, for a later
 * message to show; each call now empties it on entry.
 */
static void
test_error_queue(void)
{
    int           ok, i;
    char         *pem, *bad[] = { "bad name" };
    size_t        len;
    EVP_PKEY     *key;
    pg_error_t    err;
    unsigned char *der;

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);

    for (i = 0, ok = 1; i < 5; i++) {
        ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
        pem = NULL;
        der = NULL;

        switch (i) {
        case 0:
            (void) pg_cert_key_new(7, &err);
            break;
        case 1:
            (void) pg_cert_csr(key, bad, 1, &der, &len, &err);
            break;
        case 2:
            (void) pg_cert_self_signed(key, t_names, 2, 0, &pem, &len, &err);
            break;
        case 3:
            (void) pg_cert_local_issue(t_path("none.pem"), t_path("none.key"),
                                       key, bad, 1, 3600, &pem, &len, &err);
            break;
        case 4:
            (void) pg_cert_check_pair("", 0, "", 0, t_names, 2, 0, &err);
            break;
        }

        if (ERR_peek_error() != 0) {
            t_diag("call %d left an error on the queue", i);
            ok = 0;
        }

        ERR_clear_error();
        free(pem);
        free(der);
    }

    t_ok(ok, "no call leaves an earlier error on the thread's OpenSSL "
         "queue, even one that returns early");
    EVP_PKEY_free(key);
}


/* --- install ---------------------------------------------------------- */

/*
 * A process a pid file may name, as the kernel shows it: a copy of /bin/sh
 * at t_dir/bin/NAME (comm is the name of the file run: NAME, its first 15
 * bytes) run with argv0 and "-c", "read x", then arg when set (its
 * command line). It waits on a pipe it holds itself, and SIGHUP ends it
 * (the default action): "got SIGHUP" is "died of signal 1". Returns once
 * the copy runs, its pid written to pid_file.
 */
static pid_t
t_proc(const char *pid_file, const char *name, const char *argv0,
    const char *arg)
{
    int               ready[2], hold[2], i;
    char              text[32], exe[600], cmd[700], *argv[5];
    pid_t             pid;
    sigset_t          none;
    ssize_t           n;

    mkdir(t_path("bin"), 0755);
    snprintf(exe, sizeof(exe), "%s/bin/%s", t_dir, name);

    if (!t_exists(exe)) {
        snprintf(cmd, sizeof(cmd), "cp /bin/sh '%s'", exe);

        if (system(cmd) != 0) {
            t_diag("cannot copy /bin/sh to %s", exe);
            exit(1);
        }
    }

    argv[0] = (char *) argv0;
    argv[1] = "-c";
    argv[2] = "read x";
    argv[3] = (char *) arg;
    argv[4] = NULL;

    /* ready: closed by the exec (O_CLOEXEC), so that its EOF says the
     * copy runs; hold: the pipe it reads, whose write end it keeps */
    if (pipe2(ready, O_CLOEXEC) == -1 || pipe(hold) == -1) {
        t_diag("pipe: %s", strerror(errno));
        exit(1);
    }

    pid = fork();

    if (pid == 0) {
        /* gone with the test, even when it crashes (kept through exec) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);

        for (i = 1; i < 32; i++) {
            signal(i, SIG_DFL);
        }

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(hold[0], 0);
        execv(exe, argv);
        _exit(127);
    }

    close(ready[1]);
    close(hold[0]);
    close(hold[1]);

    do {
        n = read(ready[0], text, sizeof(text));
    } while (n == -1 && errno == EINTR);

    close(ready[0]);

    snprintf(text, sizeof(text), "%d\n", (int) pid);
    t_write_str(pid_file, text);

    return pid;
}


/* A fake nginx master, as nginx shows one: comm "nginx", command line
 * "nginx: master process BINARY ..." */
static pid_t
t_master(const char *pid_file)
{
    char  argv0[700];

    snprintf(argv0, sizeof(argv0), "nginx: master process %s -c %s",
             t_path("nginx"), t_path("nginx.conf"));

    return t_proc(pid_file, "nginx", argv0, NULL);
}


/* The process got SIGHUP (1), or not (0): it is ended either way. A
 * SIGHUP already sent has decided how it ends (its default action is
 * fatal), so "not" is not a race. */
static int
t_master_hupped(pid_t pid, int wait_for_it)
{
    int              status, i;
    struct timespec  nap = { 0, 10 * 1000000 };

    for (i = 0; wait_for_it && i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP;
        }

        nanosleep(&nap, NULL);
    }

    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);

    return WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP;
}


/* A pair from the local CA, for names: chain and key PEM (new). */
static void
t_pair(char **chain, size_t *clen, char **kpem, size_t *klen)
{
    EVP_PKEY    *key;
    pg_error_t   err;

    key = pg_cert_key_new(PG_CERT_KEY_ECDSA, &err);

    if (pg_cert_local_issue(t_path("ca.pem"), t_path("ca.key"), key, t_names,
                            2, 90L * T_DAY, chain, clen, &err) != PG_OK)
    {
        t_diag("local issue: %s", err.text);
        exit(1);
    }

    *kpem = t_key_pem(key, klen);
    EVP_PKEY_free(key);
}


/* The fake nginx: records its arguments, the chain it saw, whether the
 * install's marker was there (nginx.marker), its pid (nginx.running), the
 * signals it ignores and blocks (nginx.signals, from /proc), its open
 * files (nginx.fds);
 * fails with nginx's words when t_dir/nginx.fail exists, sleeps when
 * t_dir/nginx.sleep does. */
static void
t_fake_nginx(void)
{
    char  script[2048];

    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "echo \"$@\" >> %s/nginx.args\n"
             "cp %s/out/fullchain.pem %s/nginx.seen 2>/dev/null\n"
             "if [ -e %s/out/fullchain.pem.installing ]; then\n"
             "  touch %s/nginx.marker\n"
             "fi\n"
             "echo $$ > %s/nginx.running\n"
             "grep -E '^Sig(Ign|Blk):' /proc/$$/status > %s/nginx.signals\n"
             "ls /proc/$$/fd > %s/nginx.fds\n"
             "if [ -e %s/nginx.sleep ]; then exec sleep 10; fi\n"
             "if [ -e %s/nginx.fail ]; then\n"
             "  echo 'nginx: [emerg] cannot load certificate key "
             "\"%s/out/privkey.pem\": PEM_read_bio_PrivateKey() failed' >&2\n"
             "  echo 'nginx: configuration file %s/nginx.conf test failed' "
             ">&2\n"
             "  exit 1\n"
             "fi\n"
             "exit 0\n",
             t_dir, t_dir, t_dir, t_dir, t_dir, t_dir, t_dir, t_dir, t_dir,
             t_dir, t_dir, t_dir);

    t_write_str(t_path("nginx"), script);
    chmod(t_path("nginx"), 0755);
}


/*
 * A folder that exists and cannot be written: mode 0555, or for root (whom
 * modes do not stop) the immutable flag, where the file system has it.
 * on = 0 undoes it. 1 when done.
 */
static int
t_readonly(const char *dir, int on)
{
    int  fd, flags, ok;

    if (getuid() != 0) {
        return chmod(dir, on ? 0555 : 0755) == 0;
    }

    fd = open(dir, O_RDONLY | O_DIRECTORY);

    if (fd == -1) {
        return 0;
    }

    ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;

    if (ok) {
        flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }

    close(fd);

    return ok;
}


/* The output folder, holding chain/key, cannot be written: installing
 * new_chain/new_key changes nothing. */
static void
t_install_readonly(const char *fc, const char *pk, const char *chain,
    size_t chain_len, const char *key, size_t key_len, const char *new_chain,
    size_t new_chain_len, const char *new_key, size_t new_key_len,
    const pg_cert_nginx_t *ngx)
{
    int          rc;
    char         want[600];
    pid_t        m;
    pg_error_t   err;

    if (!t_readonly(t_path("out"), 1)) {
        t_ok(1, "an output folder that cannot be written # SKIP neither "
             "mode 0555 nor the immutable flag stop writes here");
        return;
    }

    m = t_master(ngx[0].pid);
    unlink(t_path("nginx.args"));

    rc = pg_cert_install(fc, pk, new_chain, new_chain_len, new_key,
                         new_key_len, t_names, 2, ngx, 1, time(NULL), &err);

    /* undone at once: a folder left immutable could not be cleaned up */
    t_readonly(t_path("out"), 0);

    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "cannot write %s.prev: ", pk);

    if (!t_ok(rc == PG_ERR && strncmp(err.text, want, strlen(want)) == 0,
              "an output folder that cannot be written: refused, saying "
              "which file"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s...", want);
    }

    t_ok(t_same(fc, chain, chain_len) && t_same(pk, key, key_len)
         && !t_exists(t_path("nginx.args")) && !t_master_hupped(m, 0)
         && !t_temp_left(t_path("out")),
         "... the pair in place unchanged, no nginx -t, no SIGHUP, no temp "
         "file");
}


static void
test_install(void)
{
    int               rc, written;
    char             *c1, *k1, *c2, *k2, *args, *ph_chain, *ph_key;
    char              want[1024], fc[512], pk[512], conf2[512];
    size_t            c1l, k1l, c2l, k2l, phcl, phkl;
    pid_t             m1, m2;
    time_t            now;
    X509             *ca;
    struct stat       st;
    pg_error_t        err;
    pg_cert_nginx_t   ngx[2];

    now = time(NULL);
    ca = t_ca("ca", now - T_DAY, now + 3650 * T_DAY, NULL);
    X509_free(ca);
    t_fake_nginx();

    snprintf(fc, sizeof(fc), "%s", t_path("out/fullchain.pem"));
    snprintf(pk, sizeof(pk), "%s", t_path("out/privkey.pem"));
    snprintf(conf2, sizeof(conf2), "%s", t_path("nginx2.conf"));

    memset(ngx, 0, sizeof(ngx));
    ngx[0].conf = t_path("nginx.conf");
    ngx[0].pid = t_path("nginx.pid");
    ngx[0].binary = t_path("nginx");
    ngx[0].prefix = t_path("prefix/");
    ngx[0].conf = strdup(ngx[0].conf);
    ngx[0].pid = strdup(ngx[0].pid);
    ngx[0].binary = strdup(ngx[0].binary);
    ngx[0].prefix = strdup(ngx[0].prefix);
    ngx[1].conf = conf2;
    ngx[1].pid = strdup(t_path("nginx2.pid"));
    ngx[1].binary = ngx[0].binary;

    /* the first start: the placeholder */
    rc = pg_cert_placeholder(fc, pk, PG_CERT_KEY_ECDSA, t_names, 2, &written,
                             &err);

    if (!t_ok(rc == PG_OK && written && t_exists(fc) && t_exists(pk),
              "first start: the placeholder pair is written"))
    {
        t_diag("%s", err.text);
        return;
    }

    t_ok(t_mode(pk) == 0600 && t_mode(fc) == 0644
         && t_mode(t_path("out")) == 0755,
         "placeholder: key 0600, chain 0644, its folder made 0755");

    ph_chain = t_slurp(fc, &phcl);
    ph_key = t_slurp(pk, &phkl);

    {
        pg_cert_info_t  info;

        t_ok(pg_cert_check_pair(ph_chain, phcl, ph_key, phkl, t_names, 2,
                                now, &err) == PG_OK
             && pg_cert_info(ph_chain, phcl, &info, &err) == PG_OK
             && info.self_signed
             && info.not_after - info.not_before
                == PG_CERT_PLACEHOLDER_LIFETIME + PG_CERT_BACKDATE,
             "placeholder: self-signed for the names, its key, 24 hours");
    }

    rc = pg_cert_placeholder(fc, pk, PG_CERT_KEY_RSA, t_names, 2, &written,
                             &err);
    t_ok(rc == PG_OK && !written && t_same(fc, ph_chain, phcl)
         && t_same(pk, ph_key, phkl),
         "placeholder: an existing pair is never replaced");

    /* the first install, over the placeholder */
    t_pair(&c1, &c1l, &k1, &k1l);
    m1 = t_master(ngx[0].pid);
    m2 = t_master(ngx[1].pid);

    rc = pg_cert_install(fc, pk, c1, c1l, k1, k1l, t_names, 2, ngx, 2, now,
                         &err);

    if (!t_ok(rc == PG_OK, "a good pair is installed")) {
        t_diag("%s", err.text);
    }

    t_ok(t_same(fc, c1, c1l) && t_same(pk, k1, k1l),
         "... the files hold the new chain and key");
    t_ok(t_mode(pk) == 0600 && t_mode(fc) == 0644,
         "... the key is 0600, the chain 0644");
    snprintf(want, sizeof(want), "%s.prev", fc);
    t_ok(t_same(want, ph_chain, phcl) && t_mode(want) == 0644,
         "... the previous chain is kept as fullchain.pem.prev");
    snprintf(want, sizeof(want), "%s.prev", pk);
    t_ok(t_same(want, ph_key, phkl) && t_mode(want) == 0600,
         "... the previous key as privkey.pem.prev, 0600");
    t_ok(t_same(t_path("nginx.seen"), c1, c1l),
         "... nginx -t saw the new chain");
    t_ok(t_exists(t_path("nginx.marker"))
         && !t_exists(t_suffix(fc, ".installing")),
         "... with the install's marker beside it, removed once done "
         "(review 19/2)");
    unlink(t_path("nginx.marker"));

    args = t_slurp(t_path("nginx.args"), NULL);
    snprintf(want, sizeof(want), "-t -q -c %s -p %s\n-t -q -c %s\n",
             ngx[0].conf, ngx[0].prefix, conf2);
    t_ok(args != NULL && strcmp(args, want) == 0,
         "... nginx -t ran for each nginx, with -p only where set");
    free(args);

    t_ok(t_master_hupped(m1, 1) && t_master_hupped(m2, 1),
         "... each master got SIGHUP");
    t_ok(!t_temp_left(t_path("out")), "... no temp file is left");

    /* nginx -t fails: the pair in place comes back */
    t_pair(&c2, &c2l, &k2, &k2l);
    m1 = t_master(ngx[0].pid);
    t_write_str(t_path("nginx.fail"), "");

    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1, now,
                         &err);

    snprintf(want, sizeof(want), "nginx -t failed for %s (the previous pair "
             "is back, nginx not reloaded): nginx: [emerg] cannot load "
             "certificate key \"%s\": PEM_read_bio_PrivateKey() failed",
             ngx[0].conf, pk);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0,
              "nginx -t fails: refused, quoting nginx's first line"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    t_ok(t_same(t_path("nginx.seen"), c2, c2l),
         "... nginx -t had seen the new pair");
    t_ok(t_same(fc, c1, c1l) && t_same(pk, k1, k1l)
         && t_mode(pk) == 0600 && t_mode(fc) == 0644,
         "... the previous pair is back, byte for byte, same modes");
    {
        char  prev_fc[600], prev_pk[600];

        snprintf(prev_fc, sizeof(prev_fc), "%s.prev", fc);
        snprintf(prev_pk, sizeof(prev_pk), "%s.prev", pk);
        t_ok(t_same(prev_fc, ph_chain, phcl)
             && t_same(prev_pk, ph_key, phkl),
             "... and the .prev files hold the pair before it again");
    }
    t_ok(!t_master_hupped(m1, 0), "... and the master got no SIGHUP");
    t_ok(!t_temp_left(t_path("out")), "... no temp file is left");
    t_ok(t_exists(t_path("nginx.marker"))
         && !t_exists(t_suffix(fc, ".installing")),
         "... the marker was there during nginx -t, and is removed by the "
         "rollback (review 19/2)");
    unlink(t_path("nginx.marker"));
    unlink(t_path("nginx.fail"));

    /* nginx -t hangs: killed at the timeout, the pair comes back */
    t_write_str(t_path("nginx.sleep"), "");
    ngx[0].timeout = 1;
    m1 = t_master(ngx[0].pid);

    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1, now,
                         &err);
    snprintf(want, sizeof(want), "nginx -t failed for %s (the previous pair "
             "is back, nginx not reloaded): no answer in 1 s", ngx[0].conf);
    t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
         && t_same(fc, c1, c1l) && t_same(pk, k1, k1l)
         && !t_master_hupped(m1, 0),
         "nginx -t that hangs is killed at the timeout; the pair is back");
    unlink(t_path("nginx.sleep"));
    ngx[0].timeout = 0;

    /* a pair that fails the checks: nothing runs, nothing changes */
    unlink(t_path("nginx.args"));
    m1 = t_master(ngx[0].pid);
    stat(fc, &st);

    rc = pg_cert_install(fc, pk, c2, c2l, k1, k1l, t_names, 2, ngx, 1, now,
                         &err);
    snprintf(want, sizeof(want), "new pair for %s refused, nothing changed: "
             "the key does not match the certificate", fc);
    t_ok(rc == PG_ERR && strcmp(err.text, want) == 0,
         "a key that does not match: refused before anything is touched");

    {
        char  prev[600];

        snprintf(prev, sizeof(prev), "%s.prev", fc);
        t_ok(t_same(fc, c1, c1l) && t_same(pk, k1, k1l)
             && t_same(prev, ph_chain, phcl)
             && !t_exists(t_path("nginx.args")) && !t_master_hupped(m1, 0),
             "... the pair and the .prev files unchanged, no nginx -t, no "
             "SIGHUP");
    }

    {
        char  *other[] = { "staging.example.com", "api.example.com" };

        rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, other, 2, ngx, 1, now,
                             &err);
        snprintf(want, sizeof(want), "new pair for %s refused, nothing "
                 "changed: the certificate does not cover api.example.com",
                 fc);
        t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
             && t_same(fc, c1, c1l),
             "a pair that does not cover a name: refused, nothing changed");
    }

    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1,
                         now + 91 * T_DAY, &err);
    t_ok(rc == PG_ERR && strstr(err.text, "refused, nothing changed: the "
                                "certificate expired at ") != NULL
         && t_same(fc, c1, c1l),
         "an expired pair: refused, nothing changed");

    /* a stale pid file, now another program's pid: not signalled */
    m1 = t_proc(ngx[0].pid, "sleep", "sleep", NULL);
    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1, now,
                         &err);
    snprintf(want, sizeof(want), "new pair installed, but nginx %s was not "
             "reloaded: pid file %s names process %d, which is not nginx "
             "(sleep): not signalled", ngx[0].conf, ngx[0].pid, (int) m1);
    want[sizeof(err.text) - 1] = '\0';
    t_ok(rc == PG_CERT_NOT_RELOADED && strcmp(err.text, want) == 0
         && !t_master_hupped(m1, 0),
         "a pid file that names another program: it gets no SIGHUP");

    /* the pid file is missing: installed, not reloaded */
    unlink(ngx[0].pid);
    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1, now,
                         &err);
    snprintf(want, sizeof(want), "new pair installed, but nginx %s was not "
             "reloaded: cannot read %s: No such file or directory",
             ngx[0].conf, ngx[0].pid);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_CERT_NOT_RELOADED && strcmp(err.text, want) == 0
              && t_same(fc, c2, c2l) && t_same(pk, k2, k2l),
              "a missing pid file: the pair is installed, nginx not "
              "reloaded, and it says so"))
    {
        t_diag("rc %d: %s", rc, err.text);
    }

    t_write_str(ngx[0].pid, "nginx\n");
    m2 = t_master(ngx[1].pid);
    rc = pg_cert_install(fc, pk, c1, c1l, k1, k1l, t_names, 2, ngx, 2, now,
                         &err);
    snprintf(want, sizeof(want), "new pair installed, but nginx %s was not "
             "reloaded: pid file %s holds no pid", ngx[0].conf, ngx[0].pid);
    t_ok(rc == PG_CERT_NOT_RELOADED && strcmp(err.text, want) == 0
         && t_same(fc, c1, c1l) && t_master_hupped(m2, 1),
         "a pid file without a pid: said; the other nginx is reloaded");

    t_write_str(ngx[0].pid, "0\n");
    rc = pg_cert_install(fc, pk, c2, c2l, k2, k2l, t_names, 2, ngx, 1, now,
                         &err);
    t_ok(rc == PG_CERT_NOT_RELOADED && strstr(err.text, "holds no pid"),
         "pid 0 is refused (kill(0) would signal our own group)");

    /* the nginx binary is missing: nothing reloaded, the pair is back */
    {
        const char  *binary = ngx[0].binary;

        ngx[0].binary = t_path("no-nginx");
        rc = pg_cert_install(fc, pk, c1, c1l, k1, k1l, t_names, 2, ngx, 1,
                             now, &err);
        snprintf(want, sizeof(want), "nginx -t failed for %s (the previous "
                 "pair is back, nginx not reloaded): cannot run %s: No such "
                 "file or directory", ngx[0].conf, ngx[0].binary);
        want[sizeof(err.text) - 1] = '\0';
        t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
             && t_same(fc, c2, c2l) && t_same(pk, k2, k2l),
             "an nginx binary that is not there: refused, the pair is back");
        ngx[0].binary = binary;
    }

    /* a first install (no pair in place) that nginx -t refuses: removed */
    {
        char  fc2[512], pk2[512];

        snprintf(fc2, sizeof(fc2), "%s", t_path("fresh/a/fullchain.pem"));
        snprintf(pk2, sizeof(pk2), "%s", t_path("fresh/b/privkey.pem"));
        t_write_str(t_path("nginx.fail"), "");

        rc = pg_cert_install(fc2, pk2, c1, c1l, k1, k1l, t_names, 2, ngx, 1,
                             now, &err);
        t_ok(rc == PG_ERR && !t_exists(fc2) && !t_exists(pk2)
             && t_exists(t_path("fresh/a")) && t_exists(t_path("fresh/b")),
             "no pair before and nginx -t fails: the new files are removed");
        unlink(t_path("nginx.fail"));

        t_write_str(ngx[0].pid, "nginx\n");
        rc = pg_cert_install(fc2, pk2, c1, c1l, k1, k1l, t_names, 2, ngx, 0,
                             now, &err);
        snprintf(want, sizeof(want), "%s.prev", fc2);
        t_ok(rc == PG_OK && t_same(fc2, c1, c1l) && t_same(pk2, k1, k1l)
             && !t_exists(want),
             "no pair before, no nginx lines: installed, no .prev made");
        unlink(fc2);
        unlink(pk2);
        rmdir(t_path("fresh/a"));
        rmdir(t_path("fresh/b"));
        rmdir(t_path("fresh"));
    }

    /* output folders that cannot be written */
    {
        char  fc3[512], pk3[512];

        t_write_str(t_path("file"), "a file, not a folder\n");
        snprintf(fc3, sizeof(fc3), "%s", t_path("file/sub/fullchain.pem"));
        snprintf(pk3, sizeof(pk3), "%s", t_path("file/sub/privkey.pem"));
        unlink(t_path("nginx.args"));

        rc = pg_cert_install(fc3, pk3, c1, c1l, k1, k1l, t_names, 2, ngx, 1,
                             now, &err);
        snprintf(want, sizeof(want), "new pair not installed, nothing "
                 "changed: cannot create folder %s: a file is in the way",
                 t_path("file"));
        t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
             && !t_exists(t_path("nginx.args")),
             "an output folder under a file: refused, nginx not run");

        /* the key's folder alone cannot be made: the chain's is untouched */
        rc = pg_cert_install(fc, pk3, c1, c1l, k1, k1l, t_names, 2, ngx, 1,
                             now, &err);
        t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
             && t_same(fc, c2, c2l),
             "the key's folder cannot be made: the chain in place is "
             "untouched");
        unlink(t_path("file"));
    }

    t_install_readonly(fc, pk, c2, c2l, k2, k2l, c1, c1l, k1, k1l, ngx);

    {
        char  prev[600];

        snprintf(prev, sizeof(prev), "%s.prev", fc);
        unlink(prev);
        snprintf(prev, sizeof(prev), "%s.prev", pk);
        unlink(prev);
    }

    /* the placeholder where one half of a pair is missing */
    unlink(pk);
    rc = pg_cert_placeholder(fc, pk, PG_CERT_KEY_RSA, t_names, 2, &written,
                             &err);
    snprintf(want, sizeof(want), "%s.prev", fc);
    free(ph_chain);
    free(ph_key);
    ph_chain = t_slurp(fc, &phcl);
    ph_key = t_slurp(pk, &phkl);

    {
        EVP_PKEY  *key = pg_cert_key_load(pk, &err);

        t_ok(rc == PG_OK && written && t_same(want, c2, c2l)
             && key != NULL && EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA
             && pg_cert_check_pair(ph_chain, phcl, ph_key, phkl, t_names, 2,
                                   time(NULL), &err) == PG_OK,
             "a chain without its key: a new RSA placeholder pair, the "
             "lone chain kept as .prev");
        EVP_PKEY_free(key);
    }

    t_write_str(t_path("file"), "x");
    rc = pg_cert_placeholder(t_path("file/fullchain.pem"),
                             t_path("file/privkey.pem"), PG_CERT_KEY_ECDSA,
                             t_names, 2, &written, &err);
    snprintf(want, sizeof(want), "no placeholder for %s: cannot create "
             "folder %s: a file is in the way", t_path("file/fullchain.pem"),
             t_path("file"));
    t_ok(rc == PG_ERR && !written && strcmp(err.text, want) == 0,
         "a placeholder that cannot be written says where and why");
    unlink(t_path("file"));

    rc = pg_cert_install(fc, fc, c1, c1l, k1, k1l, t_names, 2, ngx, 0, now,
                         &err);
    t_ok(rc == PG_ERR && strstr(err.text, "the same file") != NULL,
         "fullchain and privkey the same file: refused");

    /* cleanup */
    {
        char  prev[600];

        snprintf(prev, sizeof(prev), "%s.prev", fc);
        unlink(prev);
        snprintf(prev, sizeof(prev), "%s.prev", pk);
        unlink(prev);
    }

    unlink(fc);
    unlink(pk);
    rmdir(t_path("out"));
    unlink(t_path("nginx"));
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.seen"));
    unlink(t_path("nginx.marker"));
    unlink(t_path("nginx.running"));
    unlink(t_path("nginx.signals"));
    unlink(ngx[0].pid);
    unlink(ngx[1].pid);
    unlink(t_path("ca.pem"));
    unlink(t_path("ca.key"));

    free((char *) ngx[0].conf);
    free((char *) ngx[0].pid);
    free((char *) ngx[0].binary);
    free((char *) ngx[0].prefix);
    free((char *) ngx[1].pid);
    free(ph_chain);
    free(ph_key);
    free(c1);
    free(k1);
    free(c2);
    free(k2);
}


/* --- install: what is in place cannot be read ------------------------- */

/* pair n (1 or 2) of t_pairs(): chain and key PEM, borrowed */
static char    *t_pc[3], *t_pk[3];
static size_t   t_pcl[3], t_pkl[3];


/* Two pairs from a new local CA, for the install tests below; t_pairs_free()
 * undoes it. */
static void
t_pairs(void)
{
    X509    *ca;
    time_t   now;

    now = time(NULL);
    ca = t_ca("ca", now - T_DAY, now + 3650 * T_DAY, NULL);
    X509_free(ca);
    t_pair(&t_pc[1], &t_pcl[1], &t_pk[1], &t_pkl[1]);
    t_pair(&t_pc[2], &t_pcl[2], &t_pk[2], &t_pkl[2]);
}


static void
t_pairs_free(void)
{
    int  i;

    for (i = 1; i <= 2; i++) {
        free(t_pc[i]);
        free(t_pk[i]);
        t_pc[i] = NULL;
        t_pk[i] = NULL;
    }

    unlink(t_path("ca.pem"));
    unlink(t_path("ca.key"));
}


/* pair n installed at dir/fullchain.pem, dir/privkey.pem, no nginx */
static int
t_install0(const char *fc, const char *pk, int n, pg_error_t *err)
{
    return pg_cert_install(fc, pk, t_pc[n], t_pcl[n], t_pk[n], t_pkl[n],
                           t_names, 2, NULL, 0, time(NULL), err);
}


/*
 * review 19/1: a refused install must not delete what it could not read.
 * The key in place (or its .prev) cannot be read (here: larger than 1 MiB,
 * which also stands for EIO or a mode root is not stopped by): the install
 * is refused and every file stays as it was.
 */
static void
test_install_unreadable(void)
{
    int          rc;
    char        *big, want[1200];
    size_t       big_len;
    pg_error_t   err;
    const char  *fc, *pk;
    char         fcb[512], pkb[512];

    t_pairs();
    snprintf(fcb, sizeof(fcb), "%s", t_path("unread/fullchain.pem"));
    snprintf(pkb, sizeof(pkb), "%s", t_path("unread/privkey.pem"));
    fc = fcb;
    pk = pkb;

    if (t_install0(fc, pk, 1, &err) != PG_OK
        || t_install0(fc, pk, 2, &err) != PG_OK)
    {
        t_diag("install: %s", err.text);
    }

    big_len = 1024 * 1024 + 1;
    big = malloc(big_len);
    memset(big, 'k', big_len);

    /* the key in place cannot be read */
    t_write(pk, big, big_len);
    rc = t_install0(fc, pk, 1, &err);
    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "cannot read %s: larger than 1048576 bytes", pk);

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0,
              "a key in place that cannot be read: the install is refused"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    t_ok(t_same(pk, big, big_len) && t_same(fc, t_pc[2], t_pcl[2])
         && t_same(t_suffix(pk, ".prev"), t_pk[1], t_pkl[1])
         && t_same(t_suffix(fc, ".prev"), t_pc[1], t_pcl[1]),
         "... and the key it could not read is still there, as is every "
         "other file");

    /* the key's .prev cannot be read */
    t_write(pk, t_pk[2], t_pkl[2]);
    t_write(t_suffix(pk, ".prev"), big, big_len);
    rc = t_install0(fc, pk, 1, &err);
    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "cannot read %s.prev: larger than 1048576 bytes", pk);

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0,
              "a key's .prev that cannot be read: the install is refused"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    t_ok(t_same(t_suffix(pk, ".prev"), big, big_len)
         && t_same(pk, t_pk[2], t_pkl[2]) && t_same(fc, t_pc[2], t_pcl[2]),
         "... and the .prev it could not read is still there");

    /* the chain's .prev cannot be read: the key's .prev, already made, is
     * put back */
    t_write(t_suffix(pk, ".prev"), t_pk[1], t_pkl[1]);
    t_write(t_suffix(fc, ".prev"), big, big_len);
    rc = t_install0(fc, pk, 1, &err);
    t_ok(rc == PG_ERR && t_same(t_suffix(fc, ".prev"), big, big_len)
         && t_same(t_suffix(pk, ".prev"), t_pk[1], t_pkl[1])
         && t_same(pk, t_pk[2], t_pkl[2]) && t_same(fc, t_pc[2], t_pcl[2])
         && !t_temp_left(t_path("unread")),
         "a chain's .prev that cannot be read: refused, the key's .prev "
         "back as it was");

    free(big);
    unlink(fc);
    unlink(pk);
    unlink(t_suffix(fc, ".prev"));
    unlink(t_suffix(pk, ".prev"));
    rmdir(t_path("unread"));
    t_pairs_free();
}


/*
 * pg_cert_install() in a child, so that a call that blocks (an open() of a
 * FIFO) fails the test instead of hanging it: its rc, or -2 when it has
 * not returned in 20 s (a guard, not a timing: it returns at once).
 */
static int
t_install_guarded(const char *fc, const char *pk, int n,
    const pg_cert_nginx_t *ngx, size_t ngx_n, pg_error_t *err)
{
    int            fds[2], rc, status;
    pid_t          pid;
    ssize_t        got;
    struct pollfd  pfd;

    if (pipe(fds) == -1) {
        return -3;
    }

    pid = fork();

    if (pid == 0) {
        close(fds[0]);
        rc = pg_cert_install(fc, pk, t_pc[n], t_pcl[n], t_pk[n], t_pkl[n],
                             t_names, 2, ngx, ngx_n, time(NULL), err);
        (void) !write(fds[1], &rc, sizeof(rc));
        (void) !write(fds[1], err->text, sizeof(err->text));
        _exit(0);
    }

    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    rc = -2;

    if (poll(&pfd, 1, 20000) == 1
        && read(fds[0], &rc, sizeof(rc)) == (ssize_t) sizeof(rc))
    {
        got = read(fds[0], err->text, sizeof(err->text));
        err->text[got > 0 ? (size_t) got - 1 : 0] = '\0';

    } else {
        rc = -2;
        snprintf(err->text, sizeof(err->text), "blocked");
        kill(pid, SIGKILL);
    }

    close(fds[0]);
    waitpid(pid, &status, 0);

    return rc;
}


/* The exact "is a symlink" refusal of an install, for path. */
static void
t_symlink_refused(int rc, const pg_error_t *err, const char *path,
    const char *name)
{
    char  want[1200];

    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "%s is a symlink: portal-gated writes regular files; point "
             "fullchain/privkey at paths of their own, not certbot's live/ "
             "links", path);
    want[sizeof(err->text) - 1] = '\0';

    if (!t_ok(rc == PG_ERR && strcmp(err->text, want) == 0, "%s", name)) {
        t_diag("got:    %s", err->text);
        t_diag("wanted: %s", want);
    }
}


static int
t_is_symlink(const char *path)
{
    struct stat  st;

    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}


/* The owner's group of path, or -1. */
static long
t_gid(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0 ? (long) st.st_gid : -1;
}


/*
 * review 19/4: what is at the output paths. Symlinks are refused (a
 * certbot live/ link is not replaced by a regular file, and a link to a
 * secret is not copied world-readable to .prev); a FIFO is refused, not
 * waited on; the mode and owner of the files in place are kept by an
 * install and restored exactly by a rollback; a world-writable output
 * folder is refused.
 */
static void
test_install_paths(void)
{
    int               rc, written;
    char              fc[512], pk[512], want[1200];
    pg_error_t        err;
    pg_cert_nginx_t   ngx;

    t_pairs();
    t_fake_nginx();
    memset(&ngx, 0, sizeof(ngx));
    ngx.conf = t_path("nginx.conf");
    ngx.pid = t_path("paths.pid");
    ngx.binary = t_path("nginx");
    ngx.conf = strdup(ngx.conf);
    ngx.pid = strdup(ngx.pid);
    ngx.binary = strdup(ngx.binary);

    snprintf(fc, sizeof(fc), "%s", t_path("paths/fullchain.pem"));
    snprintf(pk, sizeof(pk), "%s", t_path("paths/privkey.pem"));

    /* (a) certbot's layout: fullchain a link into archive/ */
    mkdir(t_path("paths"), 0755);
    t_write(t_path("paths/archive-fullchain1.pem"), t_pc[1], t_pcl[1]);
    symlink("archive-fullchain1.pem", fc);
    t_write(pk, t_pk[1], t_pkl[1]);

    rc = t_install0(fc, pk, 2, &err);
    t_symlink_refused(rc, &err, fc, "a symlinked fullchain (certbot's live/ "
                      "layout): refused, saying why");
    t_ok(t_is_symlink(fc)
         && t_same(t_path("paths/archive-fullchain1.pem"), t_pc[1], t_pcl[1])
         && t_same(pk, t_pk[1], t_pkl[1])
         && !t_exists(t_suffix(fc, ".prev"))
         && !t_exists(t_suffix(pk, ".prev")),
         "... the link and what it points to are untouched, no .prev made");

    /* (c) fullchain a link to a secret: never copied to a .prev */
    unlink(fc);
    t_write_str(t_path("paths/secret"), "top secret\n");
    chmod(t_path("paths/secret"), 0600);
    symlink(t_path("paths/secret"), fc);
    rc = t_install0(fc, pk, 2, &err);
    t_symlink_refused(rc, &err, fc, "fullchain a symlink to a 0600 secret: "
                      "refused");
    t_ok(!t_exists(t_suffix(fc, ".prev"))
         && t_same(t_path("paths/secret"), "top secret\n", 11)
         && t_mode(t_path("paths/secret")) == 0600,
         "... the secret is not copied to fullchain.pem.prev");
    unlink(fc);
    unlink(t_path("paths/secret"));
    unlink(t_path("paths/archive-fullchain1.pem"));

    /* a link at the key, at a .prev; a dangling link for the
     * placeholder */
    t_write(fc, t_pc[1], t_pcl[1]);
    unlink(pk);
    symlink(t_path("paths/elsewhere.key"), pk);
    rc = t_install0(fc, pk, 2, &err);
    t_symlink_refused(rc, &err, pk, "a symlinked privkey: refused");
    t_ok(t_is_symlink(pk) && !t_exists(t_path("paths/elsewhere.key"))
         && t_same(fc, t_pc[1], t_pcl[1]),
         "... the link stays a link, nothing written through it");

    rc = pg_cert_placeholder(fc, pk, PG_CERT_KEY_ECDSA, t_names, 2, &written,
                             &err);
    snprintf(want, sizeof(want), "no placeholder for %s: %s is a symlink: "
             "portal-gated writes regular files; point fullchain/privkey at "
             "paths of their own, not certbot's live/ links", fc, pk);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_ERR && !written && strcmp(err.text, want) == 0
              && t_is_symlink(pk),
              "a dangling symlinked privkey: no placeholder written over the "
              "link"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    unlink(pk);
    t_write(pk, t_pk[1], t_pkl[1]);
    symlink(t_path("paths/elsewhere.prev"), t_suffix(pk, ".prev"));
    rc = t_install0(fc, pk, 2, &err);
    t_symlink_refused(rc, &err, t_suffix(pk, ".prev"),
                      "a symlinked privkey.pem.prev: refused");
    t_ok(t_is_symlink(t_suffix(pk, ".prev"))
         && !t_exists(t_path("paths/elsewhere.prev"))
         && t_same(pk, t_pk[1], t_pkl[1]) && t_same(fc, t_pc[1], t_pcl[1]),
         "... nothing written through it, the pair unchanged");
    unlink(t_suffix(pk, ".prev"));

    /* (d) a FIFO at the key: refused at once, not waited on */
    unlink(pk);
    mkfifo(pk, 0600);
    rc = t_install_guarded(fc, pk, 2, NULL, 0, &err);
    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "cannot read %s: not a regular file", pk);

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0,
              "a FIFO at privkey: refused at once, saying so"))
    {
        t_diag("rc %d, got: %s", rc, err.text);
        t_diag("wanted:     %s", want);
    }

    t_ok(t_exists(pk) && !t_exists(t_suffix(pk, ".prev"))
         && t_same(fc, t_pc[1], t_pcl[1]),
         "... the FIFO is left, nothing else written");
    unlink(pk);
    t_write(pk, t_pk[1], t_pkl[1]);

    /* a FIFO as the pid file: installed, not reloaded, at once */
    mkfifo(ngx.pid, 0600);
    rc = t_install_guarded(fc, pk, 2, &ngx, 1, &err);
    snprintf(want, sizeof(want), "new pair installed, but nginx %s was not "
             "reloaded: cannot read %s: not a regular file", ngx.conf,
             ngx.pid);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_CERT_NOT_RELOADED && strcmp(err.text, want) == 0
              && t_same(pk, t_pk[2], t_pkl[2]),
              "a FIFO as the pid file: the pair installed, nginx not "
              "reloaded, at once"))
    {
        t_diag("rc %d, got: %s", rc, err.text);
    }

    unlink(ngx.pid);

    /* (b) modes and owners kept, and restored exactly by a rollback */
    t_install0(fc, pk, 1, &err);
    chmod(pk, 0640);
    chmod(fc, 0444);

    if (getuid() == 0) {
        chown(pk, 0, 65534);
        chown(fc, 0, 65534);
    }

    t_write_str(t_path("nginx.fail"), "");
    rc = pg_cert_install(fc, pk, t_pc[2], t_pcl[2], t_pk[2], t_pkl[2],
                         t_names, 2, &ngx, 1, time(NULL), &err);
    unlink(t_path("nginx.fail"));
    t_ok(rc == PG_ERR && t_same(pk, t_pk[1], t_pkl[1])
         && t_mode(pk) == 0640 && t_mode(fc) == 0444
         && (getuid() != 0 || (t_gid(pk) == 65534 && t_gid(fc) == 65534)),
         "a rollback restores the key's 0640 and group, the chain's 0444%s",
         getuid() == 0 ? "" : " (groups not tried: not root)");

    rc = t_install0(fc, pk, 2, &err);
    t_ok(rc == PG_OK && t_same(pk, t_pk[2], t_pkl[2])
         && t_mode(pk) == 0640 && t_mode(fc) == 0444
         && (getuid() != 0 || (t_gid(pk) == 65534 && t_gid(fc) == 65534)),
         "an install keeps the mode and owner of the files it replaces");
    t_ok(t_mode(t_suffix(pk, ".prev")) == 0600
         && t_mode(t_suffix(fc, ".prev")) == 0444
         && (getuid() != 0 || t_gid(t_suffix(pk, ".prev")) == 65534),
         "... the key's .prev is 0600 (its 0640 made stricter), the chain's "
         "keeps 0444");

    chmod(pk, 0400);
    rc = t_install0(fc, pk, 1, &err);
    t_ok(rc == PG_OK && t_mode(pk) == 0400
         && t_mode(t_suffix(pk, ".prev")) == 0400,
         "a 0400 key stays 0400, and so does its .prev");

    /* a world-writable output folder */
    mkdir(t_path("paths/open"), 0755);
    chmod(t_path("paths/open"), 0777);
    rc = pg_cert_install(t_path("paths/open/fullchain.pem"), pk, t_pc[2],
                         t_pcl[2], t_pk[2], t_pkl[2], t_names, 2, NULL, 0,
                         time(NULL), &err);
    snprintf(want, sizeof(want), "new pair not installed, nothing changed: "
             "folder %s is world-writable: anyone could replace what is "
             "written there", t_path("paths/open"));

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
              && !t_exists(t_path("paths/open/fullchain.pem"))
              && t_same(pk, t_pk[1], t_pkl[1]),
              "a world-writable output folder is refused"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }

    rmdir(t_path("paths/open"));
    unlink(fc);
    unlink(pk);
    unlink(t_suffix(fc, ".prev"));
    unlink(t_suffix(pk, ".prev"));
    rmdir(t_path("paths"));
    unlink(t_path("nginx"));
    unlink(t_path("nginx.args"));
    free((char *) ngx.conf);
    free((char *) ngx.pid);
    free((char *) ngx.binary);
    t_pairs_free();
}


/* dir/fullchain.pem, privkey.pem and their .prev as pairs fc, kn, pfc,
 * pkn of t_pairs() (0: no file), and the marker with text (NULL: none). */
static void
t_crash_state(const char *fc, const char *pk, int cn, int kn, int pcn,
    int pkn, const char *marker)
{
    int          i, n[4];
    const char  *path[4];

    path[0] = fc;
    path[1] = pk;
    path[2] = t_suffix(fc, ".prev");
    path[3] = t_suffix(pk, ".prev");
    n[0] = cn;
    n[1] = kn;
    n[2] = pcn;
    n[3] = pkn;

    for (i = 0; i < 4; i++) {
        unlink(path[i]);

        if (n[i] != 0) {
            t_write(path[i], i % 2 ? t_pk[n[i]] : t_pc[n[i]],
                    i % 2 ? t_pkl[n[i]] : t_pcl[n[i]]);
            chmod(path[i], i % 2 ? 0600 : 0644);
        }
    }

    unlink(t_suffix(fc, ".installing"));

    if (marker != NULL) {
        t_write_str(t_suffix(fc, ".installing"), marker);
    }
}


/* The pair at fc, pk is pair cn's chain and kn's key (0: no file). */
static int
t_crash_is(const char *fc, const char *pk, int cn, int kn)
{
    return (cn ? t_same(fc, t_pc[cn], t_pcl[cn]) : !t_exists(fc))
           && (kn ? t_same(pk, t_pk[kn], t_pkl[kn]) : !t_exists(pk));
}


/*
 * review 19/2: an install killed half-way (the key renamed, not yet the
 * chain; or nginx -t running) left a mismatched or unchecked pair, and
 * nginx refuses to start on a mismatched one. The marker
 * FULLCHAIN.installing is there while the live files may be changed, and
 * pg_cert_recover(), at the daemon's start, puts the .prev pair back.
 */
static void
test_install_crash(void)
{
    int               rc, i, status;
    char              fc[512], pk[512], want[1200], *text;
    pid_t             pid;
    long              running;
    pg_error_t        err;
    pg_cert_nginx_t   ngx;
    struct timespec   nap = { 0, 10 * 1000000 };

    t_pairs();
    t_fake_nginx();
    snprintf(fc, sizeof(fc), "%s", t_path("out/fullchain.pem"));
    snprintf(pk, sizeof(pk), "%s", t_path("out/privkey.pem"));
    memset(&ngx, 0, sizeof(ngx));
    ngx.conf = strdup(t_path("nginx.conf"));
    ngx.pid = strdup(t_path("crash.pid"));
    ngx.binary = strdup(t_path("nginx"));

    /* a real crash: the install killed while nginx -t runs */
    t_install0(fc, pk, 1, &err);
    t_write_str(t_path("nginx.sleep"), "");
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.running"));
    pid = fork();

    if (pid == 0) {
        pg_cert_install(fc, pk, t_pc[2], t_pcl[2], t_pk[2], t_pkl[2],
                        t_names, 2, &ngx, 1, time(NULL), &err);
        _exit(0);
    }

    /* a guard, not a timing: nginx -t starts at once */
    for (i = 0; i < 2000 && !t_exists(t_path("nginx.running")); i++) {
        nanosleep(&nap, NULL);
    }

    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    text = t_slurp(t_path("nginx.running"), NULL);
    running = text ? strtol(text, NULL, 10) : 0;

    if (running > 0) {
        kill((pid_t) running, SIGKILL);
    }

    free(text);
    unlink(t_path("nginx.sleep"));
    unlink(t_path("nginx.running"));

    t_ok(t_crash_is(fc, pk, 2, 2) && t_exists(t_suffix(fc, ".installing"))
         && t_crash_is(t_suffix(fc, ".prev"), t_suffix(pk, ".prev"), 1, 1),
         "an install killed during nginx -t: the new pair in place, its "
         "marker and the previous pair as .prev are left");

    rc = pg_cert_recover(fc, pk, &err);
    snprintf(want, sizeof(want), "an install of %s was interrupted: the "
             "previous pair (.prev) is back", fc);

    if (!t_ok(rc == PG_CERT_RECOVERED && strcmp(err.text, want) == 0
              && t_crash_is(fc, pk, 1, 1)
              && !t_exists(t_suffix(fc, ".installing")),
              "... pg_cert_recover() puts the previous pair back (nginx -t "
              "never passed the new one), removes the marker, and says so"))
    {
        t_diag("rc %d: %s", rc, err.text);
    }

    t_ok(t_crash_is(t_suffix(fc, ".prev"), t_suffix(pk, ".prev"), 1, 1)
         && !t_temp_left(t_path("out")),
         "... the .prev pair stays, no temp file is left");

    /* killed between the two renames: new key, old chain; attributes of
     * the key in place kept */
    t_crash_state(fc, pk, 1, 2, 1, 1, "");
    chmod(pk, 0640);
    rc = pg_cert_recover(fc, pk, &err);
    t_ok(rc == PG_CERT_RECOVERED && t_crash_is(fc, pk, 1, 1)
         && t_mode(pk) == 0640 && !t_exists(t_suffix(fc, ".installing")),
         "a marker and a new key beside the old chain: the previous pair is "
         "back, with the key's mode");

    /* the same without a marker (lost, or from a version without one) */
    t_crash_state(fc, pk, 1, 2, 1, 1, NULL);
    rc = pg_cert_recover(fc, pk, &err);
    snprintf(want, sizeof(want), "%s and %s do not match (the key does not "
             "match the certificate): the previous pair (.prev), which does, "
             "is back", fc, pk);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_CERT_RECOVERED && strcmp(err.text, want) == 0
              && t_crash_is(fc, pk, 1, 1),
              "no marker, a pair in place that does not match, a .prev pair "
              "that does: the .prev pair is back"))
    {
        t_diag("rc %d: %s", rc, err.text);
    }

    /* a good pair in place, no marker: nothing to do */
    t_crash_state(fc, pk, 2, 2, 1, 1, NULL);
    rc = pg_cert_recover(fc, pk, &err);
    t_ok(rc == PG_OK && t_crash_is(fc, pk, 2, 2)
         && t_crash_is(t_suffix(fc, ".prev"), t_suffix(pk, ".prev"), 1, 1),
         "a matching pair and no marker: nothing changed");

    /* a mismatched pair, no marker, no .prev: nothing recover can do */
    t_crash_state(fc, pk, 1, 2, 0, 0, NULL);
    rc = pg_cert_recover(fc, pk, &err);
    t_ok(rc == PG_OK && t_crash_is(fc, pk, 1, 2),
         "a mismatched pair without a .prev pair: left to the daemon (it "
         "reissues)");

    /* a first install (nothing before) interrupted: its files removed, as
     * its rollback would have */
    t_crash_state(fc, pk, 2, 2, 0, 0, "privkey=0\nfullchain=0\n");
    rc = pg_cert_recover(fc, pk, &err);
    snprintf(want, sizeof(want), "an install of %s was interrupted: there "
             "was no pair before it, its files are removed", fc);
    t_ok(rc == PG_CERT_RECOVERED && strcmp(err.text, want) == 0
         && t_crash_is(fc, pk, 0, 0)
         && !t_exists(t_suffix(fc, ".installing")),
         "a first install interrupted: its files removed, as its rollback "
         "does (the placeholder follows)");

    /* a .prev pair that is no pair: the matching pair in place is kept */
    t_crash_state(fc, pk, 2, 2, 1, 2, "");
    rc = pg_cert_recover(fc, pk, &err);
    snprintf(want, sizeof(want), "an install of %s was interrupted, and the "
             "previous pair (.prev) does not match (the key does not match "
             "the certificate): the pair in place, which does, is kept", fc);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_ERR && strcmp(err.text, want) == 0
              && t_crash_is(fc, pk, 2, 2)
              && !t_exists(t_suffix(fc, ".installing")),
              "a marker and a .prev pair that does not match: the pair in "
              "place is kept, and it says so"))
    {
        t_diag("rc %d: %s", rc, err.text);
    }

    /* neither matches: nothing touched, the marker stays */
    t_crash_state(fc, pk, 1, 2, 1, 2, "");
    rc = pg_cert_recover(fc, pk, &err);
    t_ok(rc == PG_ERR && t_crash_is(fc, pk, 1, 2)
         && t_exists(t_suffix(fc, ".installing"))
         && strstr(err.text, "nothing changed") != NULL,
         "a marker and neither pair matching: nothing touched, said");

    /* stale temp files: ours removed, nobody else's */
    t_crash_state(fc, pk, 1, 1, 0, 0, NULL);
    {
        static const char  *ours[] = {
            "out/fullchain.pem.tmp.AbC123", "out/privkey.pem.tmp.x9Y8z7",
            "out/privkey.pem.prev.tmp.QWERTY",
            "out/fullchain.pem.installing.tmp.a1b2c3",
        };
        static const char  *theirs[] = {
            "out/other.pem.tmp.ABCDEF", "out/fullchain.pem.tmp.ABCDEFG",
            "out/fullchain.pem.tmp.AB-DEF", "out/fullchain.pem.tmp.",
            "out/privkey.pem.tmpx.ABCDEF",
        };
        int  gone, kept;

        for (i = 0; i < 4; i++) {
            t_write_str(t_path(ours[i]), "-----BEGIN PRIVATE KEY-----\n");
        }

        for (i = 0; i < 5; i++) {
            t_write_str(t_path(theirs[i]), "theirs\n");
        }

        rc = pg_cert_recover(fc, pk, &err);
        gone = 1;
        kept = 1;

        for (i = 0; i < 4; i++) {
            gone &= !t_exists(t_path(ours[i]));
        }

        for (i = 0; i < 5; i++) {
            kept &= t_exists(t_path(theirs[i]));
            unlink(t_path(theirs[i]));
        }

        t_ok(rc == PG_OK && gone && kept && t_crash_is(fc, pk, 1, 1),
             "temp files a crash left beside the outputs are removed; "
             "files that only look like them are not");
    }

    t_crash_state(fc, pk, 0, 0, 0, 0, NULL);
    rmdir(t_path("out"));
    unlink(t_path("nginx"));
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.seen"));
    unlink(t_path("nginx.marker"));
    free((char *) ngx.conf);
    free((char *) ngx.pid);
    free((char *) ngx.binary);
    t_pairs_free();
}


/* pg_cert_reload_all() for the one nginx of t_fake_nginx() with pid file
 * t_dir/proc.pid naming process pid: PG_OK, or PG_ERR with err. */
static int
t_reload(pg_error_t *err)
{
    pg_cert_nginx_t  ngx;

    memset(&ngx, 0, sizeof(ngx));
    ngx.conf = t_path("nginx.conf");
    ngx.pid = t_path("proc.pid");
    ngx.binary = t_path("nginx");

    return pg_cert_reload_all(&ngx, 1, err);
}


/* A process named name with command line argv0 -c "read x" [arg] gets
 * SIGHUP (hup) or not, with why when not. */
static void
t_hup_case(const char *name, const char *argv0, const char *arg, int hup,
    const char *why, const char *test)
{
    int          rc, got;
    char         want[1200];
    pid_t        pid;
    pg_error_t   err;

    pid = t_proc(t_path("proc.pid"), name, argv0, arg);
    memset(&err, 0, sizeof(err));
    rc = t_reload(&err);
    got = t_master_hupped(pid, hup);

    if (hup) {
        if (!t_ok(rc == PG_OK && got, "%s", test)) {
            t_diag("rc %d, hupped %d: %s", rc, got, err.text);
        }

        return;
    }

    snprintf(want, sizeof(want), "nginx %s was not reloaded: pid file %s "
             "names process %d, %s: not signalled", t_path("nginx.conf"),
             t_path("proc.pid"), (int) pid, why);
    want[sizeof(err.text) - 1] = '\0';

    if (!t_ok(rc == PG_ERR && !got && strcmp(err.text, want) == 0, "%s",
              test))
    {
        t_diag("rc %d, hupped %d", rc, got);
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s", want);
    }
}


/*
 * review 19/3: SIGHUP went to any process whose command line held "nginx"
 * (a `tail -f /var/log/nginx/error.log` got it, and died). Now: comm
 * "nginx" and a master's command line (or argv[0] the configured binary);
 * or valgrind (argv[0] valgrind*, or comm memcheck*) with the configured
 * binary as one of its arguments, exactly.
 */
static void
test_reload_who(void)
{
    char  master[700], worker[700], bin[600];

    snprintf(bin, sizeof(bin), "%s", t_path("nginx"));
    snprintf(master, sizeof(master), "nginx: master process %s -c %s", bin,
             t_path("nginx.conf"));
    snprintf(worker, sizeof(worker), "nginx: worker process");

    t_hup_case("nginx", master, NULL, 1, NULL,
               "comm nginx, \"nginx: master process ...\": signalled");
    t_hup_case("nginx", bin, NULL, 1, NULL,
               "comm nginx, argv[0] the configured binary: signalled");
    t_hup_case("valgrind", "valgrind", bin, 1, NULL,
               "valgrind running the configured binary: signalled");
    t_hup_case("memcheck-amd64-linux", "/usr/bin/valgrind.bin", bin, 1,
               NULL, "valgrind's memcheck (comm memcheck-amd64-) running "
               "the configured binary: signalled");

    t_hup_case("tail", "tail", "/var/log/nginx/error.log", 0,
               "which is not nginx (tail)",
               "`tail -f /var/log/nginx/error.log`: not signalled");
    t_hup_case("tail", master, NULL, 0, "which is not nginx (tail)",
               "a command line that says nginx master, comm not nginx: not "
               "signalled");
    t_hup_case("nginx", worker, NULL, 0, "which is nginx but not its master "
               "(nginx: worker process)",
               "comm nginx, but a worker's command line: not signalled");
    t_hup_case("nginx", "/usr/sbin/other", NULL, 0, "which is nginx but not "
               "its master (/usr/sbin/other)",
               "comm nginx, argv[0] another program: not signalled");
    t_hup_case("valgrind", "valgrind", "/usr/sbin/nginx-other", 0,
               "which is valgrind, but not running the configured nginx",
               "valgrind running another program: not signalled");
    t_hup_case("valgrind", "valgrind", t_suffix(bin, ".bak"), 0,
               "which is valgrind, but not running the configured nginx",
               "valgrind whose argument only starts with the binary: not "
               "signalled");

    /*
     * review of the packaging: under the unit's ProtectProc=invisible,
     * /proc shows no process of another user, and a live master was said
     * to be "gone". A process that exists (this one) and a /proc without
     * it (an empty folder in its place):
     */
    {
        int          rc;
        char         pid[32];
        pg_error_t   err;

        snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
        t_write_str(t_path("proc.pid"), pid);
        mkdir(t_path("noproc"), 0700);
        pg_cert_proc_root = t_path("noproc");
        memset(&err, 0, sizeof(err));
        rc = t_reload(&err);
        pg_cert_proc_root = "/proc";
        rmdir(t_path("noproc"));

        if (!t_ok(rc == PG_ERR
                  && strstr(err.text, "cannot be inspected from here") != NULL
                  && strstr(err.text, "drop pid=") != NULL
                  && strstr(err.text, "is gone") == NULL,
                  "a master /proc hides: \"cannot be inspected from here\", "
                  "drop pid=, not \"gone\""))
        {
            t_diag("got: %s", err.text);
        }
    }

    unlink(t_path("proc.pid"));
}


/*
 * review of the packaging (issue 12): the daemon signalled nginx's master
 * itself, which under the package's unit needed CAP_KILL (any process).
 * Without pid=, the reload is `BINARY -s reload -c CONF [-p PREFIX]`: nginx's
 * own, or the package's root helper's; its failure is said with nginx's
 * words.
 */
static void
test_reload_by_binary(void)
{
    int               rc;
    char             *args, want[1200];
    pg_error_t        err;
    pg_cert_nginx_t   ngx;
    char              conf[512], binary[512], prefix[512];

    t_fake_nginx();
    snprintf(conf, sizeof(conf), "%s", t_path("nginx.conf"));
    snprintf(binary, sizeof(binary), "%s", t_path("nginx"));
    snprintf(prefix, sizeof(prefix), "%s", t_path("prefix"));
    memset(&ngx, 0, sizeof(ngx));
    ngx.conf = conf;
    ngx.binary = binary;
    ngx.prefix = prefix;
    ngx.by_binary = 1;
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.fail"));

    memset(&err, 0, sizeof(err));
    rc = pg_cert_reload_all(&ngx, 1, &err);
    args = t_slurp(t_path("nginx.args"), NULL);
    snprintf(want, sizeof(want), "-s reload -c %s -p %s\n", conf, prefix);

    if (!t_ok(rc == PG_OK && args != NULL && strcmp(args, want) == 0,
              "no pid=: the reload is BINARY -s reload -c CONF -p PREFIX"))
    {
        t_diag("rc %d (%s), args: %s", rc, err.text, args ? args : "none");
    }

    free(args);
    unlink(t_path("nginx.args"));
    t_write_str(t_path("nginx.fail"), "");
    memset(&err, 0, sizeof(err));
    rc = pg_cert_reload_all(&ngx, 1, &err);
    snprintf(want, sizeof(want), "nginx %s was not reloaded: %s -s reload "
             "failed: nginx: [emerg] cannot load certificate key", conf,
             binary);

    if (!t_ok(rc == PG_ERR && strncmp(err.text, want, strlen(want)) == 0,
              "... its failure is said with nginx's first line"))
    {
        t_diag("got:    %s", err.text);
        t_diag("wanted: %s...", want);
    }

    ngx.by_binary = 0;
    unlink(t_path("nginx.args"));
    rc = pg_cert_reload_all(&ngx, 1, &err);
    t_ok(rc == PG_OK && !t_exists(t_path("nginx.args")),
         "no pid=, no by_binary (reload=off): nothing run");

    unlink(t_path("nginx.fail"));
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.running"));
    unlink(t_path("nginx.signals"));
    unlink(t_path("nginx.fds"));
    unlink(t_path("nginx"));
}


/*
 * review 19/9: `nginx -t` ran with what the daemon had set for itself: a
 * signal the daemon ignores (SIGPIPE) stays ignored through execv, and a
 * signal that came between the unmask and the execv ran the daemon's
 * handler in the child. The child now sets every signal to its default
 * before it unmasks them. Since nginx -t is started with posix_spawn (no
 * fork: the daemon's loop stalled on it), the same holds through its
 * attributes, and the daemon's files are closed through its file actions.
 */
static void
test_nginx_signals(void)
{
    int               rc, leak;
    char             *text, *ign, *blk, *fds;
    unsigned long     ignored, blocked;
    pg_error_t        err;
    pg_cert_nginx_t   ngx;
    struct sigaction  sa, old_pipe, old_int;
    char              conf[512], pid[512], binary[512];

    t_pairs();
    t_fake_nginx();
    snprintf(conf, sizeof(conf), "%s", t_path("nginx.conf"));
    snprintf(pid, sizeof(pid), "%s", t_path("signals.pid"));
    snprintf(binary, sizeof(binary), "%s", t_path("nginx"));
    memset(&ngx, 0, sizeof(ngx));
    ngx.conf = conf;
    ngx.pid = pid;
    ngx.binary = binary;

    /* as a daemon may have them: SIGPIPE and SIGINT ignored */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    sigaction(SIGINT, &sa, &old_int);
    unlink(t_path("nginx.signals"));
    unlink(t_path("nginx.fds"));

    /* and a file of the daemon's left open across exec (a library's
     * socket without close-on-exec) */
    leak = dup2(2, T_LEAKED_FD);

    rc = pg_cert_install(t_path("sig/fullchain.pem"),
                         t_path("sig/privkey.pem"), t_pc[1], t_pcl[1],
                         t_pk[1], t_pkl[1], t_names, 2, &ngx, 1, time(NULL),
                         &err);

    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGINT, &old_int, NULL);

    if (leak != -1) {
        close(leak);
    }

    fds = t_slurp(t_path("nginx.fds"), NULL);

    /* ls's order: 0 1 10 11 2 ... (the shell keeps its script above 9) */
    if (!t_ok(leak == T_LEAKED_FD && fds != NULL
              && strncmp(fds, "0\n1\n", 4) == 0 && strstr(fds, "\n2\n")
              && strstr(fds, "\n" T_LEAKED_FD_TEXT "\n") == NULL,
              "nginx -t gets stdin, stdout and stderr, and none of the "
              "daemon's files"))
    {
        t_diag("nginx -t's fds: %s", fds ? fds : "(not recorded)");
    }

    free(fds);
    text = t_slurp(t_path("nginx.signals"), NULL);
    ign = text ? strstr(text, "SigIgn:") : NULL;
    blk = text ? strstr(text, "SigBlk:") : NULL;
    ignored = ign ? strtoul(ign + 7, NULL, 16) : ~0UL;
    blocked = blk ? strtoul(blk + 7, NULL, 16) : ~0UL;

    if (!t_ok(rc == PG_CERT_NOT_RELOADED
              && !(ignored & (1UL << (SIGPIPE - 1)))
              && !(ignored & (1UL << (SIGINT - 1))) && blocked == 0,
              "nginx -t runs with every signal at its default and none "
              "blocked, whatever the daemon ignores"))
    {
        t_diag("rc %d (%s); nginx -t's SigIgn %lx, SigBlk %lx", rc,
               err.text, ignored, blocked);
    }

    free(text);
    unlink(t_path("sig/fullchain.pem"));
    unlink(t_path("sig/privkey.pem"));
    rmdir(t_path("sig"));
    unlink(t_path("nginx"));
    unlink(t_path("nginx.args"));
    unlink(t_path("nginx.running"));
    unlink(t_path("nginx.signals"));
    unlink(t_path("nginx.fds"));
    t_pairs_free();
}


/*
 * As a daemon not run as root (the package's portal-gate user): replacing
 * its own files keeps their owner without asking for it; a file whose
 * group it cannot give is refused, saying so, and left as it was. Run in
 * a child that drops to nobody (65534), in a folder of its own; skipped
 * when the test is not root.
 */
static void
test_write_owned_unprivileged(void)
{
    int          status, fd[2];
    char         dir[] = "/tmp/pg-test-cert-own-XXXXXX", path[128];
    char         text[512];
    pid_t        pid;
    ssize_t      n;
    pg_error_t   err;

    if (getuid() != 0) {
        t_ok(1, "owners kept by a daemon not run as root # SKIP not root");
        return;
    }

    if (mkdtemp(dir) == NULL || chown(dir, 65534, 65534) != 0
        || chmod(dir, 0755) != 0 || pipe(fd) != 0)
    {
        t_diag("cannot make %s", dir);
        return;
    }

    snprintf(path, sizeof(path), "%s/privkey.pem", dir);
    t_write_str(path, "old\n");
    chown(path, 65534, 0);          /* a group nobody is not in */
    chmod(path, 0640);

    pid = fork();

    if (pid == 0) {
        close(fd[0]);

        if (setgid(65534) != 0 || setuid(65534) != 0) {
            _exit(2);
        }

        /* its own file: kept as it is, no chown asked */
        if (pg_cert_write_file_owned(path, "own\n", 4, 0600, 65534, 65534,
                                     &err) != PG_OK)
        {
            (void) !write(fd[1], err.text, strlen(err.text));
            _exit(3);
        }

        /* a group it is not in */
        if (pg_cert_write_file_owned(path, "new\n", 4, 0640, 65534, 0, &err)
            == PG_OK)
        {
            _exit(4);
        }

        (void) !write(fd[1], err.text, strlen(err.text));
        _exit(0);
    }

    close(fd[1]);
    n = read(fd[0], text, sizeof(text) - 1);
    text[n > 0 ? n : 0] = '\0';
    close(fd[0]);
    waitpid(pid, &status, 0);

    {
        char  want[300];

        snprintf(want, sizeof(want), "cannot write %s: cannot keep its "
                 "owner 65534:0: Operation not permitted", path);

        if (!t_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0
                  && strcmp(text, want) == 0 && t_same(path, "own\n", 4)
                  && t_gid(path) == 65534 && !t_temp_left(dir),
                  "not root: its own files keep their owner; a group it "
                  "cannot give is refused, saying so, the file as it was"))
        {
            t_diag("status %d: %s", status, text);
        }
    }

    unlink(path);
    rmdir(dir);
}


int
main(void)
{
    if (mkdtemp(t_dir) == NULL) {
        printf("Bail out! cannot make a scratch folder\n");
        return 255;
    }

    test_keys_round_trip();
    test_keys_refused();
    test_files();
    test_csr();
    test_info();
    test_check_pair();
    test_self_signed();
    test_local_issue();
    test_renew_at();
    test_retry_at();
    test_ari();
    test_error_queue();
    test_install();
    test_install_unreadable();
    test_install_paths();
    test_install_crash();
    test_reload_who();
    test_reload_by_binary();
    test_nginx_signals();
    test_write_owned_unprivileged();

    unlink(t_path("ca.pem"));
    unlink(t_path("ca.key"));

    /* t_proc()'s copies of /bin/sh */
    {
        DIR            *d;
        char            path[600];
        struct dirent  *e;

        d = opendir(t_path("bin"));

        while (d != NULL && (e = readdir(d)) != NULL) {
            snprintf(path, sizeof(path), "%s/bin/%s", t_dir, e->d_name);
            unlink(path);
        }

        if (d != NULL) {
            closedir(d);
        }

        rmdir(t_path("bin"));
    }

    if (rmdir(t_dir) != 0) {
        t_diag("%s is not empty: a test left a file", t_dir);
    }

    printf("1..%d\n", t_count);

    if (t_failed) {
        t_diag("failed %d of %d tests", t_failed, t_count);
        return 1;
    }

    return 0;
}
