/*
 * pg_store.h: how portal-gate keeps its source of truth in Redis.
 *
 * One deployment owns every key under its prefix P (default "portal-gate:",
 * set with -p / `prefix`). Channels ignore the db number, so the change
 * channel carries the prefix too.
 *
 *   P "store"           hash, the marker of an initialised store:
 *                       format (1), created_at (ISO 8601 UTC), created_by,
 *                       epoch: which store this is, a token (32 hex
 *                       digits, random) that init and restore write new,
 *                       so that a store rebuilt (FLUSHDB and init, a
 *                       restore) is never taken for the one a reader
 *                       read before: its change log (below) counts
 *                       revisions afresh. portal-gated reads it with the
 *                       store and gives it to the log's reader; a store
 *                       from before epochs has none, which matches none.
 *                       No marker: a flushed or brand-new Redis, which the
 *                       controller never pushes and portal-gatectl never
 *                       writes to (it names `init`).
 *   P "revision"        integer, raised by one on every write; the snapshot
 *                       the edges get carries it.
 *   P "flags:" ENV      hash per environment: field = flag name, value = the
 *                       flag's JSON as DESIGN.md gives it, with its own
 *                       "version", raised by one on every write of it.
 *   P "audit"           stream (XADD, capped near PG_STORE_AUDIT_MAX), one
 *                       entry per write: ts, actor, env, flag, action,
 *                       before, after (flag JSON, "" for none), reason,
 *                       revision.
 *   P "changelog"       list, newest first (LPUSH, LTRIM to
 *                       PG_STORE_CHANGELOG_MAX entries): one entry per
 *                       revision, pushed by the script that makes it,
 *                       atomically with it:
 *                         "REV ENV FLAG"  the write that made revision
 *                                         REV changed flag FLAG of ENV
 *                                         (set or deleted) and nothing
 *                                         else (a flag write, a delete,
 *                                         a kill);
 *                         "REV"           revision REV changed anything
 *                                         else: init, restore, a
 *                                         revision raise, env add.
 *                       init and restore empty it first (a new store,
 *                       with a new epoch: a reader of another epoch reads
 *                       the whole store, whatever the revisions say).
 *                       REV is decimal, ENV and FLAG names ([a-z0-9_]),
 *                       one space apart. It is what portal-gated's delta
 *                       reads (controller/pg_ctl_store_log.c): from the
 *                       revision B it holds to the store's R, the entries
 *                       R, R-1 .. B+1 at the head, each of the first
 *                       form, say which flags to read; anything else
 *                       (the log does not reach back to B, an entry of
 *                       the second form, a gap: a write by a
 *                       portal-gatectl from before the log, whose
 *                       revision is above the log's newest entry) means
 *                       "read the whole store". A log key of another
 *                       type is replaced by the next write.
 *   P "changes"         pub/sub channel: one message per write, per init
 *                       and per revision raise, published by the script
 *                       that writes, so in revision order. Its text is
 *                       the log entry's (above), and the certificates'
 *                       two words below. It is only a trigger: anyone
 *                       can publish on a channel (a stray PUBLISH,
 *                       another deployment with the same prefix in
 *                       another db: channels ignore the db), so
 *                       portal-gated asks the log what changed and takes
 *                       nothing from the text. An older portal-gated
 *                       reads the flag a message names, or everything on
 *                       a bare REV or any other text; a newer one mixes
 *                       with writers from before the log (it reads
 *                       everything when the store is above the log).
 *                       portal-gated SUBSCRIBEs before it reads the store
 *                       (pub/sub delivers at most once), and its
 *                       reconcile asks the log too when the store moved
 *                       without a message.
 *   P "environments"    hash: field = environment name, value = JSON
 *                       {"created_at": ISO 8601 UTC, "created_by": actor}.
 *                       `init` fills it (the `environments` of -c's config,
 *                       else production and staging), `env add` adds one.
 *                       A write to an environment not in it is refused.
 *                       A store made before this key existed has none:
 *                       its environments are those of its flags: hashes
 *                       plus production and staging, until `env add`.
 *   P "controllers"     hash: field = "HOST:PID" of a running portal-gated,
 *                       value = its last beat, written at every reconcile:
 *                       JSON {"host", "pid", "version", "started_at" (ISO
 *                       8601 UTC), "beat_at" (Redis TIME, epoch ms),
 *                       "interval_ms" (its reconcile interval),
 *                       "store_revision" (what it last read), "edges":
 *                       {URL: {"revision": N or null, "ok": bool (the edge
 *                       answered and holds what was pushed), "error": text
 *                       or null, "overrides": [{"env", "flag"}] (its kill
 *                       overrides), or null before it answered}}}. A
 *                       controller is alive
 *                       while its beat is younger than 3 intervals (at
 *                       least 3 s), measured on Redis's clock. It removes
 *                       its field when it stops; beats older than a day
 *                       are removed by any controller's beat.
 *   P "acme:challenges" hash: field = an ACME http-01 token, value =
 *                       "EXPIRES KEY_AUTHORIZATION" (EXPIRES: epoch
 *                       seconds), while an order of a portal-gated's
 *                       worker is pending; every portal-gated pushes the
 *                       whole hash (key authorizations alone) to its edges
 *                       (PUT challenges) on the message "acme-challenges"
 *                       on P "changes", and at every tick while it is not
 *                       empty; a token past EXPIRES is removed by the
 *                       first controller that reads it.
 *   P "certs"           hash: field = "NAME@HOST", a certificate block's
 *                       name and the host of the portal-gated that manages
 *                       it there, value = its status JSON, written at each
 *                       change and every minute (controller/pgd_certs.c):
 *                       name, host, names, issuer, issued_by, serial,
 *                       not_before, not_after, next_renewal, next_why,
 *                       last_error, last_error_at, failures, attempts,
 *                       placeholder, issued_at, started_at, updated_at.
 *                       `portal-gatectl cert status` reads it; a status
 *                       older than 3 minutes has no live controller.
 *   P "cert:renew"      hash: field = a certificate's name, value = a new
 *                       text at each `portal-gatectl cert renew` (its time
 *                       and pid), with the message "cert-renew" on
 *                       P "changes"; every portal-gated that manages the
 *                       name renews it when the value changes. Neither
 *                       message is a revision: flags are not read again
 *                       for them.
 *   P "write:" ID       string, the revision a portal-gatectl write got,
 *                       set by the write script with it, expiring after
 *                       PG_STORE_WRITE_TTL_MS; ID is the write's own (32
 *                       hex digits, random). A write resent after its
 *                       connection dropped or its master went away (the
 *                       reply lost: applied or not) carries the same ID:
 *                       the script finds the key and answers "APPLIED"
 *                       with that revision instead of writing twice
 *                       (controller/pg_ctl_ha.c). The key is replicated
 *                       with the write, so the promoted replica has it.
 *
 * Audit actions: init, create, on, off, kill, rollout, allow, deny, and
 * revision (portal-gated raised the revision above an edge's after a
 * restore from an older backup; before and after are the revisions; or,
 * with env and flag, made a flag it found changed in Redis without a
 * revision a revision of its own: controller/pg_ctl_store_digest.c);
 * with the on-call commands also unallow, undeny, set, delete, env (an
 * environment added), and release (kill overrides released on the edges;
 * `kill --direct` records a kill whose reason names the overrides).
 *
 * A write is one Lua script (EVAL): it checks the marker, checks that the
 * flag's JSON is still what the writer read (else "CONFLICT": the writer
 * reads again and retries, so a concurrent update is never lost), then
 * HSET, INCR revision, XADD audit, LPUSH changelog and PUBLISH,
 * atomically. Every script that moves the revision pushes its log entry.
 */

#ifndef PG_STORE_H
#define PG_STORE_H

#define PG_STORE_FORMAT        1

#define PG_STORE_KEY_MARKER    "store"
#define PG_STORE_KEY_REVISION  "revision"
#define PG_STORE_KEY_FLAGS     "flags:"
#define PG_STORE_KEY_AUDIT     "audit"
#define PG_STORE_CHANNEL       "changes"
#define PG_STORE_KEY_CHANGELOG "changelog"
#define PG_STORE_KEY_ENVS      "environments"
#define PG_STORE_KEY_CONTROLLERS "controllers"
#define PG_STORE_KEY_CHALLENGES  "acme:challenges"
#define PG_STORE_KEY_CERTS       "certs"
#define PG_STORE_KEY_CERT_RENEW  "cert:renew"
#define PG_STORE_KEY_WRITE       "write:"
/* longer than portal-gatectl retries a write (its --wait limit, at most
 * an hour) */
#define PG_STORE_WRITE_TTL_MS    (2 * 3600 * 1000)
/* messages on the change channel that are not a revision */
#define PG_STORE_MSG_CHALLENGES  "acme-challenges"
#define PG_STORE_MSG_CERT_RENEW  "cert-renew"

/* A controller is alive while its beat is younger than this many of its
 * reconcile intervals, and never less than PG_STORE_ALIVE_MIN_MS. */
#define PG_STORE_ALIVE_INTERVALS  3
#define PG_STORE_ALIVE_MIN_MS     3000
#define PG_STORE_BEAT_FORGET_MS   (24 * 3600 * 1000LL)

#define PG_STORE_PREFIX_DEFAULT  "portal-gate:"
#define PG_STORE_PREFIX_MAX      128
#define PG_STORE_AUDIT_MAX       100000
/* entries in P changelog: a daemon that missed more writes than this
 * between two reads reads the whole store (a few ms at most stores) */
#define PG_STORE_CHANGELOG_MAX   1000

#endif /* PG_STORE_H */
