/*
 * pg_conf_private.h: what the files of portal-gated's configuration parser
 * share; only controller/pg_conf*.c include it.
 *
 *   pg_conf.c        reading, tokens, the top-level directives
 *   pg_conf_cert.c   the certificates' directives: state_dir, nginx, and
 *                    the certificate NAME { ... } block
 */

#ifndef PG_CONF_PRIVATE_H
#define PG_CONF_PRIVATE_H

#include "pg_conf.h"            /* pg_conf_t */


#define PG_CONF_LINE_MAX      4096      /* bytes of a line, newline aside */
#define PG_CONF_FILE_MAX      (1024 * 1024)     /* bytes of the file */
#define PG_CONF_ARGS_MAX      (PG_CONF_CERT_NAMES + 1)  /* tokens kept:
                                           the name, then its values; the
                                           longest is a certificate's names */
#define PG_CONF_SHOWN         64        /* token chars a message shows */
#define PG_CONF_COMMANDS      15        /* directives in pg_conf_commands */
#define PG_CONF_CERT_COMMANDS 8         /* in a certificate block */


typedef struct pg_conf_parse_s  pg_conf_parse_t;

/* Checks the directive in cp->args and stores it in cp->conf. */
typedef int (*pg_conf_handler_pt)(pg_conf_parse_t *cp);

typedef struct {
    const char          *name;
    int                  min_args;      /* values, the name aside */
    int                  max_args;
    int                  repeatable;
    pg_conf_handler_pt   handler;
} pg_conf_command_t;

/* One read of a file. */
struct pg_conf_parse_s {
    const char    *path;
    pg_error_t    *err;
    pg_conf_t      conf;                /* a copy, *conf once all is good */

    const char    *data;                /* the file */
    size_t         size;
    size_t         pos;
    int            line;                /* of data[pos], from 1 */
    size_t         col;                 /* bytes of the line before pos */

    char          *out;                 /* the tokens, NUL-terminated */
    size_t         out_len;
    size_t         out_size;

    char          *args[PG_CONF_ARGS_MAX];  /* args[0]: the name */
    int            lines[PG_CONF_ARGS_MAX];
    int            nargs;               /* tokens, also those not kept */
    int            last_line;           /* of the last token */

    int            seen[PG_CONF_COMMANDS];  /* per command: the line of
                                               its first use, 0: none */
    size_t         nedges;              /* edges the file gave so far */
    int            edge_lines[PG_EDGE_MAX];  /* where each edge is */
    size_t         nnginx;              /* nginx lines the file gave */

    pg_conf_cert_t *cert;               /* the block being read, or NULL */
    int            cert_seen[PG_CONF_CERT_COMMANDS];    /* in that block */
};


/* err = "FILE:LINE: message"; returns PG_ERR. */
int pg_conf_error(pg_conf_parse_t *cp, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* `invalid value "V" in "NAME"[: why]` for cp->args[i]; returns PG_ERR. */
int pg_conf_invalid(pg_conf_parse_t *cp, int i, const char *why);

/* A token as a message quotes it; size > PG_CONF_SHOWN + 3. */
void pg_conf_shown(const char *s, char *buf, size_t size);

/* The directive in cp->args against table (its counts, repeats: seen[]),
 * then its handler. */
int pg_conf_command(pg_conf_parse_t *cp, const pg_conf_command_t *table,
    int *seen);

/* value (of cp->args[i]) as an absolute path into out (size bytes); a
 * file's (folder 0) does not end with '/'. pg_conf_cert.c. */
int pg_conf_path(pg_conf_parse_t *cp, int i, const char *value, char *out,
    size_t size, int folder);

/* pg_conf_cert.c: the top-level directives */
int pg_conf_set_state_dir(pg_conf_parse_t *cp);
int pg_conf_set_nginx(pg_conf_parse_t *cp);

/* pg_conf_cert.c: the block. _open at "certificate NAME {" (in
 * cp->args), _directive at each ';' within, _close at its '}'. */
int pg_conf_cert_open(pg_conf_parse_t *cp);
int pg_conf_cert_directive(pg_conf_parse_t *cp);
int pg_conf_cert_close(pg_conf_parse_t *cp, int line);

#endif /* PG_CONF_PRIVATE_H */
