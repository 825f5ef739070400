"""The proxy's hot path: which deployment does a presented key route to, answered from a Redis
cache that no revocation can be outlived by.

- `outcomes`: the contract's table of answers and how a verified key is judged;
- `selectors`: `key_lookup`, the one entry point (parse, cache, verify, fill);
- `cache`: the read side in Redis (entries, guards, the two Lua scripts);
- `guards`: the write side (tombstones, generations) that revocations and ends call;
- `limits`: failed verifications (429) and the bound on concurrent argon2 runs;
- `usage`: last use of keys, gathered and flushed in batches;
- `apis`, `middleware`: the internal endpoint and its short way through the middleware.


What is stored (all under `buddy:lookup:`):

- `e:<public id>` — the *entry*: what a lookup of that key needs (deployment, model, endpoint,
  status, `pack_ends_at`, revoked) plus an HMAC-SHA256 of the full key under a server-side pepper
  (`BUDDY_LOOKUP_CACHE_PEPPER`) and the deployment *generation* it was filled under. It is written
  only after a successful argon2 verification, so a presented key whose HMAC matches it (compared
  with `hmac.compare_digest`) is the verified key: no argon2 and no SQL on a hit. It lives
  `BUDDY_LOOKUP_CACHE_TTL_SECONDS` (default 300 s).
- `tomb:k:<public id>` / `tomb:d:<deployment id>` — *tombstones*, written by `key_revoke`,
  `key_revoke_all_for_deployments` and a deployment's end (`deployments.signals`) **before**
  their transaction commits, and kept 24 h, longer than any entry lives.
- `gen:d:<deployment id>` — the deployment's *generation*, bumped before and after the commit of
  every change that is not permanent (restart, new endpoint, extension).
- `fail:<public id>` — failed verifications in the current window (the 429 `rate_limited` counter).
- `used` — a sorted set public id -> last use (epoch seconds), flushed to the database by beat.

Why no lookup can answer 200 once a revoke or an end has committed:

1. A hit is read by one Lua script, atomically: the entry, its key's tombstone, its deployment's
   tombstone and generation. A live answer is served only if neither tombstone exists and the
   generation is the one the entry was filled under. A tombstone exists from *before* the commit,
   so a hit after the commit always sees it and falls through to PostgreSQL, which says revoked.
2. A miss reads the guards (tombstones + generation G) *before* it reads the database, and fills
   through a second Lua script that writes the entry only if the generation is still G and, for a
   live entry, no tombstone exists. The race a plain "delete on commit" loses — a lookup reads the
   database just before the commit and writes the cache just after it — ends here in one of two
   ways: the tombstone was written before the fill (the fill is refused), or the fill came first
   and the tombstone, written before the commit, hides the entry from every later hit. Either way
   the entry never answers again; and since tombstones outlive entries (300 s vs 24 h), the
   tombstone cannot expire first. The same holds for generations: a fill carries the generation
   read before its database read, and the after-commit bump makes any entry filled from a
   pre-commit read stale.
3. Negative answers that are permanent (revoked key, ended deployment) are cached and served
   regardless of guards: nothing can make them 200 again.
4. An ended pack answers 409 at once from the cache too: the entry carries `pack_ends_at` and the
   answer is judged against the clock on every hit.
5. Nothing of this is cached in-process: every answer reads Redis (or PostgreSQL).

What Redis must give for this to hold: a tombstone may not be evicted while an entry it guards
lives. Run Redis with `maxmemory-policy noeviction` or `volatile-ttl` (it evicts the entries,
whose TTL is shortest, before tombstones). Do not restore it from an old snapshot (run the cache
without persistence, or delete `buddy:lookup:*` after a restore). If a revoke cannot reach Redis at
all, it still commits (the console must keep working) and is logged; lookups that cannot reach
Redis answer from PostgreSQL. The tombstone is retried by a thread of the revoking process
(`tombstone_retrier`) until Redis takes it, for as long as an entry it guards can live, so a Redis
that was only out of reach (a blip, or unreachable *for the writer* only) hides the entries it
kept as soon as it answers that process again. If that process dies first, an entry filled before
the revoke may answer until it expires (at most the entry TTL).

The embedded default runs all of this unchanged against its in-process Redis
(`buddy.core.embedded`), which lives and dies with its one process: nothing there can be out of
reach, evicted or restored from a snapshot.
"""
