/*
 * pg_conf.c: portal-gated's configuration file. See pg_conf.h.
 *
 * The directives are a table (pg_conf_commands): name, arguments, whether
 * the directive may repeat, and the handler that checks and stores the
 * values. Every error names the file and the line, as nginx does.
 *
 * Grammar (what is accepted, and why where it is not obvious):
 *
 *   - a directive is tokens separated by spaces or tabs, ended by ';',
 *     and may span lines; its name is case-sensitive, as in nginx. A lone
 *     ';' is refused: it is a typo, not an empty directive;
 *   - '#' starts a comment to the end of the line where a token could
 *     start: at the start of a line, after a space, after ';' or after a
 *     quoted value. Inside a token it is a character ("pg#1:"), as in
 *     nginx, so a stray '#' never swallows the rest of a directive;
 *   - "..." or '...' quote a value with spaces, '#' or ';'. Inside them
 *     \" \' and \\ are the only escapes; any other backslash is refused
 *     rather than guessed at. A quote opens a value only at its start (a
 *     quote inside a token is a character: a password "it's") and a
 *     quoted value ends at the end of its line;
 *   - a quoted value must be followed by a space, ';' or a comment;
 *   - CR is a space and a UTF-8 byte order mark at the start is skipped,
 *     so a file saved by a Windows editor reads as it looks;
 *     other control characters and NUL bytes are refused anywhere, comments
 *     included; a line is at most PG_CONF_LINE_MAX bytes, and the file at
 *     most PG_CONF_FILE_MAX;
 *   - the line of an error is the line of the token it is about: the
 *     directive's name for an unknown, duplicate or miscounted directive,
 *     the value for a bad value, the last token for a missing ';'.
 *
 * Values over the defaults in *conf: a directive replaces its default;
 * `edge` repeats, and its first line replaces the edges in *conf, the
 * next ones add to them. *conf changes only when the whole file is good.
 */

#include <errno.h>          /* errno: why a file cannot be opened or read */
#include <stdarg.h>         /* va_list: the error messages */
#include <stdio.h>          /* fopen, fread, snprintf, vsnprintf */
#include <stdlib.h>         /* malloc, realloc, calloc, free, strtol */
#include <string.h>         /* memcmp, memcpy, strcmp, strerror... */
#include <arpa/inet.h>      /* inet_pton: listen's address */
#include "pg_conf_private.h"    /* the API this file implements, and
                                   what pg_conf_cert.c shares */


#define PG_CONF_RECONCILE_MIN 100L      /* ms: reconcile_interval bounds */
#define PG_CONF_RECONCILE_MAX 3600000L
#define PG_CONF_TIME_DIGITS   9         /* digits of one part of a time */
#define PG_CONF_TIME_MAX      2147483647LL  /* ms: longer times read as this */

/* What pg_conf_token() found. */
#define PG_CONF_WORD          1
#define PG_CONF_SEMICOLON     2
#define PG_CONF_EOF           3
#define PG_CONF_OPEN          4         /* { */
#define PG_CONF_CLOSE         5         /* } */

/* pg_conf_peek(): the end of the file, and a refused byte (err set). */
#define PG_CONF_END           -1
#define PG_CONF_BAD           -2


static int pg_conf_read(const char *path, char **data, size_t *size,
    pg_error_t *err);
static int pg_conf_peek(pg_conf_parse_t *cp);
static void pg_conf_advance(pg_conf_parse_t *cp);
static int pg_conf_put(pg_conf_parse_t *cp, int c);
static int pg_conf_quoted(pg_conf_parse_t *cp, int quote, int line);
static int pg_conf_token(pg_conf_parse_t *cp, char **tok, int *line);
static int pg_conf_parse(pg_conf_parse_t *cp);
static int pg_conf_parse_time(const char *s, long *ms);
static int pg_conf_set_redis(pg_conf_parse_t *cp);
static int pg_conf_set_prefix(pg_conf_parse_t *cp);
static int pg_conf_set_environments(pg_conf_parse_t *cp);
static int pg_conf_set_edge(pg_conf_parse_t *cp);
static int pg_conf_set_reconcile_interval(pg_conf_parse_t *cp);
static int pg_conf_set_log_level(pg_conf_parse_t *cp);
static int pg_conf_set_error_log(pg_conf_parse_t *cp);
static int pg_conf_set_pid(pg_conf_parse_t *cp);
static int pg_conf_set_require_reason(pg_conf_parse_t *cp);
static int pg_conf_set_listen(pg_conf_parse_t *cp);
static int pg_conf_set_server_name(pg_conf_parse_t *cp);
static int pg_conf_set_redis_replicas(pg_conf_parse_t *cp);


static const pg_conf_command_t  pg_conf_commands[PG_CONF_COMMANDS + 1] = {

    { "redis",              1, 1,           0, pg_conf_set_redis },
    { "prefix",             1, 1,           0, pg_conf_set_prefix },
    { "environments",       1, PG_ENVS_MAX, 0, pg_conf_set_environments },
    { "edge",               1, 1,           1, pg_conf_set_edge },
    { "reconcile_interval", 1, 1,           0,
      pg_conf_set_reconcile_interval },
    { "log_level",          1, 1,           0, pg_conf_set_log_level },
    { "error_log",          1, 1,           0, pg_conf_set_error_log },
    { "pid",                1, 1,           0, pg_conf_set_pid },
    { "require_reason",     1, PG_CONF_REASON_MAX, 0,
      pg_conf_set_require_reason },
    { "state_dir",          1, 1,           0, pg_conf_set_state_dir },
    { "nginx",              1, 4,           1, pg_conf_set_nginx },
    { "listen",             1, 1,           0, pg_conf_set_listen },
    { "server_name",        1, PG_CONF_SERVER_NAMES, 0,
      pg_conf_set_server_name },
    { "redis_replicas",     1, 2,           0, pg_conf_set_redis_replicas },
    /* a block: pg_conf_parse() opens it at "{" */
    { "certificate",        1, 1,           1, NULL },

    { NULL, 0, 0, 0, NULL }
};

/* Indexed by PG_LOG_DEBUG .. PG_LOG_ERROR. */
static const char  *pg_conf_log_levels[] = {
    "debug", "info", "notice", "warn", "error"
};

#define PG_CONF_LOG_LEVELS                                                   \
    (int) (sizeof(pg_conf_log_levels) / sizeof(pg_conf_log_levels[0]))


/* --- the API ------------------------------------------------------------ */

void
pg_conf_defaults(pg_conf_t *conf)
{
    pg_error_t  err;

    memset(conf, 0, sizeof(pg_conf_t));

    snprintf(conf->redis_url, sizeof(conf->redis_url), "%s",
             PG_REDIS_URL_DEFAULT);

    /* a constant the tests parse: it cannot fail */
    (void) pg_redis_url_parse(PG_REDIS_URL_DEFAULT, &conf->redis, &err);

    snprintf(conf->prefix, sizeof(conf->prefix), "%s",
             PG_STORE_PREFIX_DEFAULT);

    snprintf(conf->envs[0], sizeof(conf->envs[0]), "%s", "production");
    conf->nenvs = 1;

    conf->nedges = 0;
    conf->reconcile_ms = 2000;
    conf->log_level = PG_LOG_INFO;
    conf->redis_replicas = 1;
    conf->redis_replicas_ms = PG_CONF_REPLICAS_MS;

    snprintf(conf->state_dir, sizeof(conf->state_dir), "%s",
             PG_CONF_STATE_DIR);
}


int
pg_conf_load(const char *path, pg_conf_t *conf, pg_error_t *err)
{
    int               rc;
    char             *data;
    size_t            size;
    pg_conf_parse_t  *cp;

    if (pg_conf_read(path, &data, &size, err) != PG_OK) {
        return PG_ERR;
    }

    cp = calloc(1, sizeof(pg_conf_parse_t));

    if (cp != NULL) {
        /* a token is never longer than its text in the file */
        cp->out_size = size + 1;
        cp->out = malloc(cp->out_size);
    }

    if (cp == NULL || cp->out == NULL) {
        snprintf(err->text, sizeof(err->text), "%s: out of memory", path);
        free(data);
        free(cp);
        return PG_ERR;
    }

    cp->path = path;
    cp->err = err;
    cp->data = data;
    cp->size = size;
    cp->line = 1;
    memcpy(&cp->conf, conf, sizeof(pg_conf_t));

    if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
        cp->pos = 3;                    /* the byte order mark */
    }

    rc = pg_conf_parse(cp);

    if (rc == PG_OK) {
        memcpy(conf, &cp->conf, sizeof(pg_conf_t));
    }

    free(cp->out);
    free(cp);
    free(data);

    return rc;
}


int
pg_conf_parse_replicas(const char *num, const char *timeout, int *n,
    long *ms, const char **why, int *bad)
{
    long  v, t;

    *bad = 1;
    *why = "expected a number of replicas from 0 to 100";

    if (num[0] == '\0' || strlen(num) > 3
        || num[strspn(num, "0123456789")] != '\0')
    {
        return PG_ERR;
    }

    v = strtol(num, NULL, 10);

    if (v > PG_CONF_REPLICAS_MAX) {
        return PG_ERR;
    }

    t = PG_CONF_REPLICAS_MS;

    if (timeout != NULL) {
        *bad = 2;

        if (v == 0) {
            *why = "0 replicas wait for nothing: give no timeout";
            return PG_ERR;
        }

        /* WAIT's 0 is "forever": a write must never hang on a replica */
        if (pg_conf_parse_time(timeout, &t) != PG_OK) {
            *why = "expected a time such as 500ms or 2s";
            return PG_ERR;
        }

        if (t < 1 || t > 3600000L) {
            *why = "from 1ms to 1h";
            return PG_ERR;
        }
    }

    *n = (int) v;
    *ms = t;

    return PG_OK;
}


const char *
pg_conf_log_level_name(int level)
{
    if (level < 0 || level >= PG_CONF_LOG_LEVELS) {
        return "unknown";
    }

    return pg_conf_log_levels[level];
}


/* --- errors ------------------------------------------------------------- */

int
pg_conf_error(pg_conf_parse_t *cp, int line, const char *fmt, ...)
{
    int      n;
    size_t   size;
    va_list  args;

    size = sizeof(cp->err->text);
    n = snprintf(cp->err->text, size, "%s:%d: ", cp->path, line);

    if (n >= 0 && (size_t) n < size) {
        va_start(args, fmt);
        vsnprintf(cp->err->text + n, size - (size_t) n, fmt, args);
        va_end(args);
    }

    return PG_ERR;
}


/*
 * A token as a message quotes it: other than printable ASCII is '?', and
 * more than PG_CONF_SHOWN chars end with "...". size > PG_CONF_SHOWN + 3.
 */
void
pg_conf_shown(const char *s, char *buf, size_t size)
{
    size_t  n;

    for (n = 0; s[n] != '\0' && n < PG_CONF_SHOWN && n + 4 < size; n++) {
        buf[n] = (s[n] >= ' ' && s[n] < 0x7f) ? s[n] : '?';
    }

    if (s[n] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }

    buf[n] = '\0';
}


/* --- reading ------------------------------------------------------------ */

/* The whole file into a new *data (the caller frees it) of *size bytes. */
static int
pg_conf_read(const char *path, char **data, size_t *size, pg_error_t *err)
{
    int     failed;
    char   *buf, *p;
    FILE   *f;
    size_t  len, cap, n;

    f = fopen(path, "rb");

    if (f == NULL) {
        snprintf(err->text, sizeof(err->text), "cannot open %s: %s", path,
                 strerror(errno));
        return PG_ERR;
    }

    buf = NULL;
    len = 0;
    cap = 0;
    failed = 0;

    for ( ;; ) {

        if (len == cap) {
            /* one byte past the limit tells a file that is too large */
            cap = (cap == 0) ? 4096 : cap * 2;
            cap = (cap > PG_CONF_FILE_MAX + 1) ? PG_CONF_FILE_MAX + 1 : cap;

            p = realloc(buf, cap);

            if (p == NULL) {
                snprintf(err->text, sizeof(err->text), "%s: out of memory",
                         path);
                failed = 1;
                break;
            }

            buf = p;
        }

        n = fread(buf + len, 1, cap - len, f);
        len += n;

        if (len > PG_CONF_FILE_MAX) {
            snprintf(err->text, sizeof(err->text), "%s: larger than %d "
                     "bytes", path, PG_CONF_FILE_MAX);
            failed = 1;
            break;
        }

        if (n == 0) {
            if (ferror(f)) {
                snprintf(err->text, sizeof(err->text), "cannot read %s: %s",
                         path, strerror(errno));
                failed = 1;
            }

            break;
        }
    }

    fclose(f);

    if (failed) {
        free(buf);
        return PG_ERR;
    }

    *data = buf;
    *size = len;

    return PG_OK;
}


/* --- tokens ------------------------------------------------------------- */

/*
 * The byte at cp->pos, 0..255; PG_CONF_END at the end of the file;
 * PG_CONF_BAD, err set, for a NUL, a control character or a line too long.
 */
static int
pg_conf_peek(pg_conf_parse_t *cp)
{
    int  c;

    if (cp->pos == cp->size) {
        return PG_CONF_END;
    }

    c = (unsigned char) cp->data[cp->pos];

    if (c == '\n') {
        return c;
    }

    if (cp->col == PG_CONF_LINE_MAX) {
        pg_conf_error(cp, cp->line, "line longer than %d bytes",
                      PG_CONF_LINE_MAX);
        return PG_CONF_BAD;
    }

    if (c == '\0') {
        pg_conf_error(cp, cp->line, "unexpected NUL byte");
        return PG_CONF_BAD;
    }

    if ((c < ' ' && c != '\t' && c != '\r') || c == 0x7f) {
        pg_conf_error(cp, cp->line, "unexpected control character 0x%02x",
                      (unsigned) c);
        return PG_CONF_BAD;
    }

    return c;
}


/* Past the byte pg_conf_peek() gave. */
static void
pg_conf_advance(pg_conf_parse_t *cp)
{
    if (cp->data[cp->pos] == '\n') {
        cp->line++;
        cp->col = 0;

    } else {
        cp->col++;
    }

    cp->pos++;
}


/* One byte of a token. */
static int
pg_conf_put(pg_conf_parse_t *cp, int c)
{
    if (cp->out_len == cp->out_size) {
        /* cannot happen: a token is never longer than its text */
        return pg_conf_error(cp, cp->line, "internal error: token buffer");
    }

    cp->out[cp->out_len++] = (char) c;

    return PG_OK;
}


/* The rest of a value that opened with quote on line; the quote read. */
static int
pg_conf_quoted(pg_conf_parse_t *cp, int quote, int line)
{
    int  c;

    for ( ;; ) {
        c = pg_conf_peek(cp);

        if (c == PG_CONF_BAD) {
            return PG_ERR;
        }

        if (c == PG_CONF_END || c == '\n' || c == '\r') {
            return pg_conf_error(cp, line, "unterminated quoted value, "
                                 "expecting %c", quote);
        }

        pg_conf_advance(cp);

        if (c == quote) {
            break;
        }

        if (c == '\\') {
            c = pg_conf_peek(cp);

            if (c == PG_CONF_BAD) {
                return PG_ERR;
            }

            if (c == PG_CONF_END || c == '\n' || c == '\r') {
                return pg_conf_error(cp, line, "unterminated quoted value, "
                                     "expecting %c", quote);
            }

            if (c != '"' && c != '\'' && c != '\\') {
                return pg_conf_error(cp, cp->line, "invalid escape \"\\%c\" "
                                     "in a quoted value: only \\\", \\' and "
                                     "\\\\ are", (c >= ' ' && c < 0x7f)
                                     ? c : '?');
            }

            pg_conf_advance(cp);
        }

        if (pg_conf_put(cp, c) != PG_OK) {
            return PG_ERR;
        }
    }

    /* "a"b would read as one token to some, two to others: refuse it */
    c = pg_conf_peek(cp);

    if (c == PG_CONF_BAD) {
        return PG_ERR;
    }

    if (c != PG_CONF_END && c != ' ' && c != '\t' && c != '\r' && c != '\n'
        && c != ';' && c != '#' && c != '{' && c != '}')
    {
        return pg_conf_error(cp, cp->line, "unexpected \"%c\" after a "
                             "quoted value", (c >= ' ' && c < 0x7f) ? c : '?');
    }

    return PG_OK;
}


/*
 * The next token: PG_CONF_WORD with *tok (in cp->out) and its *line,
 * PG_CONF_SEMICOLON with its *line, PG_CONF_EOF, or PG_ERR.
 */
static int
pg_conf_token(pg_conf_parse_t *cp, char **tok, int *line)
{
    int  c;

    /* spaces, line ends and comments */
    for ( ;; ) {
        c = pg_conf_peek(cp);

        if (c == PG_CONF_BAD) {
            return PG_ERR;
        }

        if (c == PG_CONF_END) {
            return PG_CONF_EOF;
        }

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            pg_conf_advance(cp);
            continue;
        }

        if (c != '#') {
            break;
        }

        /* peek each byte: a comment too has no NUL and a bounded line */
        while (c != PG_CONF_END && c != '\n') {
            pg_conf_advance(cp);
            c = pg_conf_peek(cp);

            if (c == PG_CONF_BAD) {
                return PG_ERR;
            }
        }
    }

    *line = cp->line;

    if (c == ';' || c == '{' || c == '}') {
        pg_conf_advance(cp);
        return c == ';' ? PG_CONF_SEMICOLON
                        : (c == '{' ? PG_CONF_OPEN : PG_CONF_CLOSE);
    }

    *tok = cp->out + cp->out_len;

    if (c == '"' || c == '\'') {
        pg_conf_advance(cp);

        if (pg_conf_quoted(cp, c, *line) != PG_OK) {
            return PG_ERR;
        }

    } else {
        while (c != PG_CONF_END && c != ' ' && c != '\t' && c != '\r'
               && c != '\n' && c != ';' && c != '{' && c != '}')
        {
            if (pg_conf_put(cp, c) != PG_OK) {
                return PG_ERR;
            }

            pg_conf_advance(cp);
            c = pg_conf_peek(cp);

            if (c == PG_CONF_BAD) {
                return PG_ERR;
            }
        }
    }

    if (pg_conf_put(cp, '\0') != PG_OK) {
        return PG_ERR;
    }

    return PG_CONF_WORD;
}


/* --- directives --------------------------------------------------------- */

/* Every directive of the file, in order; stops at the first error. */
static int
pg_conf_parse(pg_conf_parse_t *cp)
{
    int    rc, line;
    char  *tok;
    char   shown[PG_CONF_SHOWN + 4];

    cp->nargs = 0;
    tok = NULL;
    line = 0;

    for ( ;; ) {
        rc = pg_conf_token(cp, &tok, &line);

        if (rc == PG_ERR) {
            return PG_ERR;
        }

        if (rc == PG_CONF_EOF) {
            if (cp->nargs > 0) {
                return pg_conf_error(cp, cp->last_line, "unexpected end of "
                                     "file, expecting \";\"");
            }

            if (cp->cert != NULL) {
                return pg_conf_error(cp, cp->last_line, "unexpected end of "
                                     "file, expecting \"}\"");
            }

            return PG_OK;
        }

        if (rc == PG_CONF_SEMICOLON || rc == PG_CONF_OPEN) {
            if (cp->nargs == 0) {
                return pg_conf_error(cp, line, "unexpected \"%c\"",
                                     rc == PG_CONF_OPEN ? '{' : ';');
            }

            if (cp->cert != NULL) {
                rc = (rc == PG_CONF_OPEN)
                     ? pg_conf_error(cp, line, "unexpected \"{\": a "
                                     "certificate block holds no block")
                     : pg_conf_cert_directive(cp);

            } else if (rc == PG_CONF_OPEN) {
                pg_conf_shown(cp->args[0], shown, sizeof(shown));
                rc = (strcmp(cp->args[0], "certificate") == 0)
                     ? pg_conf_command(cp, pg_conf_commands, cp->seen)
                     : pg_conf_error(cp, line, "unexpected \"{\": "
                                     "\"%s\" takes no block", shown);

            } else if (strcmp(cp->args[0], "certificate") == 0) {
                rc = pg_conf_error(cp, cp->lines[0], "directive "
                                   "\"certificate\" has no opening \"{\"");

            } else {
                rc = pg_conf_command(cp, pg_conf_commands, cp->seen);
            }

            if (rc != PG_OK) {
                return PG_ERR;
            }

            cp->nargs = 0;
            cp->out_len = 0;
            continue;
        }

        if (rc == PG_CONF_CLOSE) {
            if (cp->nargs > 0) {
                return pg_conf_error(cp, line, "unexpected \"}\", "
                                     "expecting \";\"");
            }

            if (cp->cert == NULL) {
                return pg_conf_error(cp, line, "unexpected \"}\"");
            }

            if (pg_conf_cert_close(cp, line) != PG_OK) {
                return PG_ERR;
            }

            continue;
        }

        /* tokens past the last kept one are only counted: too many */
        if (cp->nargs < PG_CONF_ARGS_MAX) {
            cp->args[cp->nargs] = tok;
            cp->lines[cp->nargs] = line;
        }

        cp->nargs++;
        cp->last_line = line;
    }
}


/*
 * The directive in cp->args: its checks in table (seen: per command, the
 * line of its first use in this scope), then its handler; a block's
 * command (no handler) is "certificate", opened here.
 */
int
pg_conf_command(pg_conf_parse_t *cp, const pg_conf_command_t *table,
    int *seen)
{
    int                       i, n;
    char                      shown[PG_CONF_SHOWN + 4];
    const pg_conf_command_t  *cmd;

    cmd = NULL;

    for (i = 0; table[i].name != NULL; i++) {
        if (strcmp(cp->args[0], table[i].name) == 0) {
            cmd = &table[i];
            break;
        }
    }

    if (cmd == NULL) {
        pg_conf_shown(cp->args[0], shown, sizeof(shown));
        return pg_conf_error(cp, cp->lines[0], "unknown directive \"%s\"%s",
                             shown, cp->cert != NULL
                             ? " in a certificate block" : "");
    }

    n = cp->nargs - 1;

    if (n > cmd->max_args && cmd->max_args > 1) {
        return pg_conf_error(cp, cp->lines[0], "too many values in \"%s\": "
                             "at most %d", cmd->name, cmd->max_args);
    }

    if (n < cmd->min_args || n > cmd->max_args) {
        return pg_conf_error(cp, cp->lines[0], "invalid number of arguments "
                             "in \"%s\"", cmd->name);
    }

    if (!cmd->repeatable && seen[i]) {
        return pg_conf_error(cp, cp->lines[0], "\"%s\" directive is "
                             "duplicate", cmd->name);
    }

    if ((cmd->handler ? cmd->handler(cp) : pg_conf_cert_open(cp)) != PG_OK) {
        return PG_ERR;
    }

    if (!seen[i]) {
        seen[i] = cp->lines[0];
    }

    return PG_OK;
}


int
pg_conf_invalid(pg_conf_parse_t *cp, int i, const char *why)
{
    char  shown[PG_CONF_SHOWN + 4];

    pg_conf_shown(cp->args[i], shown, sizeof(shown));

    return pg_conf_error(cp, cp->lines[i], "invalid value \"%s\" in \"%s\"%s%s",
                         shown, cp->args[0], why ? ": " : "", why ? why : "");
}


/*
 * nginx's time: parts of digits and a unit, the largest unit first, each
 * unit once: "500ms", "2s", "1m", "1h", "1m30s". A bare number alone is
 * seconds. PG_ERR for anything else.
 */
static int
pg_conf_parse_time(const char *s, long *ms)
{
    int                 digits, rank, last, nunits;
    size_t              len;
    const char         *p;
    long long           value, scale, total;

    static const struct {
        const char  *unit;
        long long    scale;
    } units[] = {                       /* "ms" before "m" */
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }
    };

    nunits = (int) (sizeof(units) / sizeof(units[0]));
    p = s;
    total = 0;
    last = nunits;                      /* higher than any rank */

    if (*p == '\0') {
        return PG_ERR;
    }

    while (*p != '\0') {
        value = 0;

        for (digits = 0; *p >= '0' && *p <= '9'; digits++, p++) {
            if (digits == PG_CONF_TIME_DIGITS) {
                return PG_ERR;
            }

            value = value * 10 + (*p - '0');
        }

        if (digits == 0) {
            return PG_ERR;
        }

        if (*p == '\0' && p - digits == s) {
            /* a bare number: seconds */
            total = value * 1000;
            break;
        }

        scale = 0;

        for (rank = 0; rank < nunits; rank++) {
            len = strlen(units[rank].unit);

            if (strncmp(p, units[rank].unit, len) == 0
                && (p[len] == '\0' || (p[len] >= '0' && p[len] <= '9')))
            {
                scale = units[rank].scale;
                p += len;
                break;
            }
        }

        if (scale == 0 || rank >= last) {
            return PG_ERR;
        }

        last = rank;
        total += value * scale;
    }

    /* 9 digits of hours overflow no long long, but may a 32-bit long */
    *ms = (long) (total > PG_CONF_TIME_MAX ? PG_CONF_TIME_MAX : total);

    return PG_OK;
}


/* redis URL;  the text as written, and its parsed form. */
static int
pg_conf_set_redis(pg_conf_parse_t *cp)
{
    pg_error_t      sub;
    pg_redis_url_t  u;

    if (pg_redis_url_parse(cp->args[1], &u, &sub) != PG_OK) {
        return pg_conf_error(cp, cp->lines[1], "%s", sub.text);
    }

    /* the URL may hold a password: a message never quotes it here */
    if (strlen(cp->args[1]) >= sizeof(cp->conf.redis_url)) {
        return pg_conf_error(cp, cp->lines[1], "invalid value in \"redis\": "
                             "the url is longer than %zu bytes",
                             sizeof(cp->conf.redis_url) - 1);
    }

    snprintf(cp->conf.redis_url, sizeof(cp->conf.redis_url), "%s",
             cp->args[1]);
    cp->conf.redis = u;

    return PG_OK;
}


/* prefix P;  1..PG_STORE_PREFIX_MAX bytes, no space or control char. */
static int
pg_conf_set_prefix(pg_conf_parse_t *cp)
{
    size_t          len, i;
    unsigned char   c;
    char            why[64];

    len = strlen(cp->args[1]);

    if (len == 0 || len > PG_STORE_PREFIX_MAX) {
        snprintf(why, sizeof(why), "1 to %d bytes", PG_STORE_PREFIX_MAX);
        return pg_conf_invalid(cp, 1, why);
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) cp->args[1][i];

        if (c <= ' ' || c == 0x7f) {
            return pg_conf_invalid(cp, 1, "no spaces or control characters");
        }
    }

    memcpy(cp->conf.prefix, cp->args[1], len + 1);

    return PG_OK;
}


/* environments E...;  names, each once; the list replaces the default. */
static int
pg_conf_set_environments(pg_conf_parse_t *cp)
{
    int     i, j;
    size_t  len;
    char    shown[PG_CONF_SHOWN + 4];
    char    why[64];

    for (i = 1; i < cp->nargs; i++) {
        len = strlen(cp->args[i]);

        if (!pg_valid_name(cp->args[i], len)) {
            snprintf(why, sizeof(why), "an environment is [a-z0-9_], 1 to "
                     "%d characters", PG_NAME_MAX);
            return pg_conf_invalid(cp, i, why);
        }

        for (j = 1; j < i; j++) {
            if (strcmp(cp->args[i], cp->args[j]) == 0) {
                pg_conf_shown(cp->args[i], shown, sizeof(shown));
                return pg_conf_error(cp, cp->lines[i], "duplicate environment "
                                     "\"%s\" in \"environments\"", shown);
            }
        }
    }

    for (i = 1; i < cp->nargs; i++) {
        memcpy(cp->conf.envs[i - 1], cp->args[i], strlen(cp->args[i]) + 1);
    }

    cp->conf.nenvs = (size_t) (cp->nargs - 1);

    return PG_OK;
}


/* edge SPEC;  repeatable, each edge once, at most PG_EDGE_MAX. */
static int
pg_conf_set_edge(pg_conf_parse_t *cp)
{
    size_t       i, n;
    char         shown[PG_CONF_SHOWN + 4];
    pg_edge_t    edge;
    pg_error_t   sub;

    /* the rule is pg_edge's; the refusal is worded as the file's */
    if (pg_edge_check_url(cp->args[1], &sub) != PG_OK) {
        return pg_conf_invalid(cp, 1, sub.text);
    }

    if (pg_edge_parse(cp->args[1], &edge, &sub) != PG_OK) {
        return pg_conf_error(cp, cp->lines[1], "%s", sub.text);
    }

    /* the file's edges replace those in *conf: the first one starts over */
    n = cp->nedges;

    /* the same API twice would get every push twice */
    for (i = 0; i < n; i++) {
        if (strcmp(cp->conf.edges[i].base, edge.base) == 0
            && strcmp(cp->conf.edges[i].socket, edge.socket) == 0)
        {
            pg_conf_shown(cp->args[1], shown, sizeof(shown));
            return pg_conf_error(cp, cp->lines[1], "duplicate edge \"%s\", "
                                 "first on line %d", shown,
                                 cp->edge_lines[i]);
        }
    }

    if (n == PG_EDGE_MAX) {
        return pg_conf_error(cp, cp->lines[0], "too many \"edge\" "
                             "directives: at most %d", PG_EDGE_MAX);
    }

    cp->conf.edges[n] = edge;
    cp->edge_lines[n] = cp->lines[0];
    cp->nedges = n + 1;
    cp->conf.nedges = n + 1;

    return PG_OK;
}


/* reconcile_interval TIME;  100ms .. 1h. */
static int
pg_conf_set_reconcile_interval(pg_conf_parse_t *cp)
{
    long  ms;

    if (pg_conf_parse_time(cp->args[1], &ms) != PG_OK) {
        return pg_conf_invalid(cp, 1, NULL);
    }

    if (ms < PG_CONF_RECONCILE_MIN || ms > PG_CONF_RECONCILE_MAX) {
        return pg_conf_invalid(cp, 1, "from 100ms to 1h");
    }

    cp->conf.reconcile_ms = ms;

    return PG_OK;
}


/* log_level LEVEL;  debug|info|notice|warn|error. */
static int
pg_conf_set_log_level(pg_conf_parse_t *cp)
{
    int  level;

    for (level = 0; level < PG_CONF_LOG_LEVELS; level++) {
        if (strcmp(cp->args[1], pg_conf_log_levels[level]) == 0) {
            cp->conf.log_level = level;
            return PG_OK;
        }
    }

    return pg_conf_invalid(cp, 1, "expected debug, info, notice, warn or "
                           "error");
}


/*
 * error_log FILE | stderr;  the log goes to FILE (appended) instead of
 * stderr once the daemon has started; SIGUSR1 reopens it (portal-gated.c).
 * An absolute path: -d leaves the working folder.
 */
static int
pg_conf_set_error_log(pg_conf_parse_t *cp)
{
    if (strcmp(cp->args[1], "stderr") == 0) {
        cp->conf.error_log[0] = '\0';
        return PG_OK;
    }

    return pg_conf_path(cp, 1, cp->args[1], cp->conf.error_log,
                        sizeof(cp->conf.error_log), 0);
}


/* pid FILE;  the daemon writes its pid there at start, removes it at exit
 * (portal-gated.c). An absolute path, as error_log's. */
static int
pg_conf_set_pid(pg_conf_parse_t *cp)
{
    return pg_conf_path(cp, 1, cp->args[1], cp->conf.pid,
                        sizeof(cp->conf.pid), 0);
}


/*
 * require_reason CMD...;  portal-gatectl's writing commands that refuse to
 * run without --reason (portal-gated itself ignores it), each once.
 */
static int
pg_conf_set_require_reason(pg_conf_parse_t *cp)
{
    int          i, j;
    const char  *const *c;

    static const char  *const commands[] = {
        "create", "on", "off", "kill", "rollout", "allow", "deny",
        "unallow", "undeny", "set", "delete", "env", "release", NULL
    };

    for (i = 1; i < cp->nargs; i++) {
        for (c = commands; *c && strcmp(*c, cp->args[i]) != 0; c++) {
            /* void */
        }

        if (*c == NULL) {
            return pg_conf_invalid(cp, i, "expected portal-gatectl's "
                                   "writing commands: create, on, off, "
                                   "kill, rollout, allow, deny, unallow, "
                                   "undeny, set, delete, env, release");
        }

        for (j = 1; j < i; j++) {
            if (strcmp(cp->args[i], cp->args[j]) == 0) {
                return pg_conf_invalid(cp, i, "named twice");
            }
        }
    }

    for (i = 1; i < cp->nargs; i++) {
        snprintf(cp->conf.require_reason[i - 1],
                 sizeof(cp->conf.require_reason[0]), "%s", cp->args[i]);
    }

    cp->conf.nrequire_reason = (size_t) (cp->nargs - 1);
    cp->conf.require_reason_line = cp->lines[0];

    return PG_OK;
}


/*
 * listen ADDR:PORT;  portal-gated's own HTTP endpoint (pgd_http.c): an
 * IPv4 literal, an IPv6 literal in brackets, or "localhost" (127.0.0.1,
 * never a lookup: /etc/hosts may say otherwise, and a loopback-only
 * endpoint must not become a public one), then a port 1..65535. Names are
 * refused: a bind address read from DNS is a surprise waiting to happen.
 */
static int
pg_conf_set_listen(pg_conf_parse_t *cp)
{
    long             port;
    char            *end, addr[PG_CONF_LISTEN_MAX];
    size_t           len;
    const char      *v, *colon;
    unsigned char    bin[16];

    v = cp->args[1];
    len = strlen(v);

    if (len >= PG_CONF_LISTEN_MAX) {
        return pg_conf_invalid(cp, 1, "too long");
    }

    if (v[0] == '[') {
        colon = strstr(v, "]:");

        if (colon == NULL) {
            return pg_conf_invalid(cp, 1, "expected [IPV6]:PORT");
        }

        memcpy(addr, v + 1, (size_t) (colon - v - 1));
        addr[colon - v - 1] = '\0';
        colon++;

        if (inet_pton(AF_INET6, addr, bin) != 1) {
            return pg_conf_invalid(cp, 1, "not an IPv6 address");
        }

        cp->conf.listen_v6 = 1;

    } else {
        colon = strrchr(v, ':');

        if (colon == NULL) {
            return pg_conf_invalid(cp, 1, "expected ADDR:PORT, as "
                                   "127.0.0.1:9145");
        }

        memcpy(addr, v, (size_t) (colon - v));
        addr[colon - v] = '\0';

        if (strcmp(addr, "localhost") == 0) {
            snprintf(addr, sizeof(addr), "127.0.0.1");

        } else if (strchr(addr, ':') != NULL) {
            return pg_conf_invalid(cp, 1, "an IPv6 address goes in "
                                   "brackets: [::1]:9145");

        } else if (inet_pton(AF_INET, addr, bin) != 1) {
            return pg_conf_invalid(cp, 1, "the address is an IPv4 or IPv6 "
                                   "literal, or localhost");
        }

        cp->conf.listen_v6 = 0;
    }

    if (colon[1] < '0' || colon[1] > '9') {
        return pg_conf_invalid(cp, 1, "expected a port after \":\"");
    }

    errno = 0;
    port = strtol(colon + 1, &end, 10);

    if (*end != '\0' || errno != 0 || port < 1 || port > 65535) {
        return pg_conf_invalid(cp, 1, "the port is 1 to 65535");
    }

    memcpy(cp->conf.listen, v, len + 1);
    memcpy(cp->conf.listen_addr, addr, strlen(addr) + 1);
    cp->conf.listen_port = (int) port;
    cp->conf.listen_line = cp->lines[0];

    return PG_OK;
}


/*
 * server_name NAME...;  the names, beside localhost and IP literals, that
 * listen's page and /status.json answer in a request's Host (pgd_http.c:
 * a DNS-rebinding guard), as nginx's server_name: a name, or *.NAME for any
 * name under NAME. Kept lowercase, without a final dot.
 */
static int
pg_conf_set_server_name(pg_conf_parse_t *cp)
{
    int          i;
    char        *name;
    size_t       len, k;
    const char  *p;

    for (i = 1; i < cp->nargs; i++) {
        p = cp->args[i];
        len = strlen(p);

        if (len > 0 && p[len - 1] == '.') {
            len--;
        }

        if (len == 0 || len > PG_CONF_HOST_MAX) {
            return pg_conf_invalid(cp, i, "a name of 1 to 253 bytes");
        }

        k = strncmp(p, "*.", 2) == 0 ? 2 : 0;

        if (k >= len || p[k] == '.' || p[len - 1] == '.') {
            return pg_conf_invalid(cp, i, "expected a name, as "
                                   "status.example.com, or *.example.com");
        }

        for ( /* void */ ; k < len; k++) {
            if (!((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z')
                  || (p[k] >= '0' && p[k] <= '9') || p[k] == '-'
                  || (p[k] == '.' && p[k - 1] != '.')))
            {
                return pg_conf_invalid(cp, i, "expected a name, as "
                                       "status.example.com, or "
                                       "*.example.com");
            }
        }

        name = cp->conf.server_names[i - 1];

        for (k = 0; k < len; k++) {
            name[k] = (char) (p[k] >= 'A' && p[k] <= 'Z' ? p[k] - 'A' + 'a'
                                                         : p[k]);
        }

        name[len] = '\0';
    }

    cp->conf.nserver_names = (size_t) (cp->nargs - 1);

    return PG_OK;
}


/*
 * redis_replicas NUM [TIMEOUT];  portal-gatectl's writes wait (WAIT) until
 * NUM replicas have them, at most TIMEOUT (default 1s), when the master has
 * a replica at all; 0 turns it off. portal-gated's own writes never wait.
 */
static int
pg_conf_set_redis_replicas(pg_conf_parse_t *cp)
{
    int          n, bad;
    long         ms;
    const char  *why;

    if (pg_conf_parse_replicas(cp->args[1], cp->nargs > 2 ? cp->args[2]
                               : NULL, &n, &ms, &why, &bad)
        != PG_OK)
    {
        return pg_conf_invalid(cp, bad, why);
    }

    cp->conf.redis_replicas = n;
    cp->conf.redis_replicas_ms = ms;

    return PG_OK;
}
