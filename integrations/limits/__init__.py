"""Vendor rate limits and circuit breakers, shared by every process through their rows
(issue 12).

The rooms:
- `decisions`: GCRA arithmetic, reading vendors' rate-limit headers (GitHub's x-ratelimit-*,
  the IETF draft's RateLimit-*, Retry-After; the longest wait wins) and the circuit's state
  machine (closed, open, half-open, isolated), pure.
- `models`: RateBucket and Circuit, one row per key; `keys`: the one spelling of each key.
- `buckets` (acquire with one conditional UPDATE, observe a reply) and `circuits` (permit,
  record, isolate, close), written through `store` (on PostgreSQL inside a transaction, a
  short autocommit connection of its own, so a bucket row is never held for a batch's calls).
- `api`, `admin`.
"""
