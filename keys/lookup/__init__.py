"""The proxy's hot path: which deployment does a presented key route to, answered from a Redis
cache that no revocation can be outlived by.

- `outcomes`: the contract's table of answers and how a verified key is judged;
- `selectors`: `key_lookup`, the one entry point (parse, cache, verify, fill);
- `cache`: the read side in Redis (entries, guards, the epoch, the three Lua scripts);
- `guards`: the write side (tombstones, generations, and what Redis did not take, owed in
  PostgreSQL) that revocations and ends call;
- `limits`: failed verifications (429) and the bound on concurrent argon2 runs;
- `ratelimit`: the per-key RPM/TPM limits (429 `rate_limit_exceeded`), counted by the scripts of
  `cache` in the round trip that reads the entry;
- `usage`: last use of keys, gathered and flushed in batches;
- `apis`, `middleware`: the internal endpoint and its short ways through Django (a shortcut
  middleware, and a WSGI front for gunicorn's ordinary lookups).


What is stored (all under `buddy:lookup:`, in the cache's Redis: `BUDDY_CACHE_REDIS_URL`, else
`REDIS_URL`):

- `e:<public id>` — the *entry*: what a lookup of that key needs (deployment, model, endpoint,
  status, `pack_ends_at`, revoked, and of the key its `expires_at` and limits) plus an
  HMAC-SHA256 of the full key under a server-side pepper (`BUDDY_LOOKUP_CACHE_PEPPER`), the
  *generation* it was filled under and the *epoch*
  (below). It is written only after a successful argon2 verification, so a presented key whose
  HMAC matches it (compared with `hmac.compare_digest`) is the verified key: no argon2 and no SQL
  on a hit. It lives `BUDDY_LOOKUP_CACHE_TTL_SECONDS` (default 300 s). Layout:
  `<deployment id>|<epoch>|<generation>|<HMAC>|<rpm>|<tpm>|<JSON>`, encoded and decoded by
  `cache.Entry` only.
- `tomb:k:<public id>` / `tomb:d:<deployment id>` — *tombstones*, written by `key_revoke`,
  `key_revoke_all_for_deployments` and a deployment's end (`deployments.signals`) **before**
  their transaction commits, and kept 24 h, longer than any entry lives.
- `gen:d:<deployment id>` — the deployment's *generation*, bumped before and after the commit of
  every change that is not permanent (restart, new endpoint, extension).
- `gen:k:<public id>` — the key's *generation*, bumped the same way by a change of what the entry
  holds of the key (a PATCH of its expiry or limits, a roll). An entry's generation is the pair
  `<deployment generation>.<key generation>`: whatever is said below of the deployment's holds of
  the key's.
- `rl:r:<public id>` / `rl:t:<public id>` — the key's RPM log and TPM buckets (`ratelimit`).
- `fail:<public id>:<client address>` — failed verifications in the current window (the 429
  `rate_limited` counter), per public id and client address (`limits`).
- `used` — a sorted set public id -> last use (epoch seconds), flushed to the database by beat.

The *epoch* is the `run_id` of the Redis process: a random id Redis draws at every start and that
no data it loads (RDB, AOF, a full resync from a primary) can set. The scripts read it themselves
(`INFO server`, inside the script: callers pass nothing new), so every caller checks it alike.

Why no lookup can answer 200 once a revoke or an end has committed:

0. An end *is* a revocation: the receiver of `deployments_ended` (`keys.receivers`) revokes every
   active key of the ended deployments inside the ending transaction, set-based per batch (the
   expiry sweep ends hundreds at once). So from the end's commit PostgreSQL says `revoked`, and
   every answer below that reads it says 401, never a 409 that turns into a 401 later. The
   revoke-all task and the reconciler stay as an idempotent safety net that finds nothing.
1. A hit is read by one Lua script, atomically: the entry, its key's tombstone, its deployment's
   tombstone and generation. A live answer is served only if neither tombstone exists and the
   generation is the one the entry was filled under. A tombstone exists from *before* the commit,
   so a hit after the commit always sees it and falls through to PostgreSQL, which says revoked.
2. A miss reads the guards (tombstones, generation G, epoch) *before* it reads the database, and
   fills through a second Lua script that writes the entry only if the epoch and the generation
   are still those and, for a live entry, no tombstone exists. The race a plain "delete on
   commit" loses — a lookup reads the database just before the commit and writes the cache just
   after it — ends here in one of two ways: the tombstone was written before the fill (the fill is
   refused), or the fill came first and the tombstone, written before the commit, hides the entry
   from every later hit. Either way the entry never answers again; and since tombstones outlive
   entries (300 s vs 24 h), the tombstone cannot expire first. The same holds for generations: a
   fill carries the generation read before its database read, and the after-commit bump makes any
   entry filled from a pre-commit read stale.
3. Negative answers that are permanent (revoked key, deleted deployment) are cached and served
   regardless of guards: nothing can make them 200 again. The 409 of an ended deployment is served
   so only while its key has no tombstone (an entry of before the keys were revoked in the end):
   a revocation writes one, and the next lookup reads PostgreSQL and says 401.
4. An ended pack answers 409 at once from the cache too: the entry carries `pack_ends_at` and the
   answer is judged against the clock on every hit.
5. Nothing of this is cached in-process: every answer reads Redis (or PostgreSQL).

Why no Redis restart, failover or restore from any earlier snapshot can bring a 200 back:

6. What such a Redis lacks is writes: a tombstone or a bump made after its snapshot (or after what
   a lagging replica received). It cannot tell from its data; but every one of these events starts
   a new Redis process (a restart, to load an RDB or AOF) or moves the clients to another one
   (a failover), and a process's `run_id` is its own. The read script answers an entry only if it
   was filled under the `run_id` of the Redis now answering, so every entry that existed before
   the event reads as a miss: a Redis that may have lost writes is treated as empty, and PostgreSQL
   answers (and fills again, under the new epoch). A fill racing the event carries the epoch it
   read with its guards, before its database read, and is refused under another one (2).
7. A guard that Redis does not take (unreachable, paused, read-only) is *owed*: a
   `PendingCacheGuard` row written in the transaction of the change itself, so it exists exactly
   when the change commits and outlives the process that made it. A thread of that process retries
   it at once (`guards.guard_retrier`, every 0.2 s); beat writes whatever is still owed every
   `BUDDY_LOOKUP_PENDING_GUARDS_SECONDS` (default 5 s, `keys.write_pending_guards`) and deletes
   the rows Redis took. Generation bumps are owed the same way as tombstones. So a Redis that was
   only out of reach for the writer (a blip, a partition) and kept its entries hides them at the
   latest one beat interval after it answers again, even if the revoking process died: that
   interval is the one window left, and only for a Redis that was unreachable for the writer but
   reachable for lookups at the same time. A Redis restarted meanwhile needs none of it (6).

What Redis must give for this to hold: a tombstone may not be evicted while an entry it guards
lives, so run the cache's Redis with `maxmemory-policy noeviction` (`volatile-ttl` evicts the
shortest TTL of a *sample* of keys, so it may take a tombstone while an entry lives: no guarantee;
when a `noeviction` Redis is full, fills and guards fail, guards are owed, lookups use PostgreSQL).
Persistence buys nothing (a restart is a
new epoch and empties the cache anyway), so production runs the cache on its own Redis without
it (`docker/compose.yaml`, `BUDDY_CACHE_REDIS_URL`). The Redis user must be allowed `INFO`: an
INFO that fails reads as the epoch "", and the protection of 6 is then off. Lookups that cannot
reach Redis answer from PostgreSQL.

The cost of 6: `INFO server` in the read script costs Redis about 13 µs of CPU per hit (measured,
5 µs -> 18 µs per script call; a miss pays nothing), which bounds one Redis at some 50 000 hits a
second; cluster the cache by public id beyond that.

The embedded default runs all of this unchanged against its in-process Redis
(`buddy.core.embedded`), which lives and dies with its one process: nothing there can be out of
reach, evicted or restored from a snapshot (it has no INFO, and its epoch is "").
"""
