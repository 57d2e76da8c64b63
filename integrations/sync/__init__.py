"""Incremental sync of vendor records: IntegrationSyncWorker (issue 12).

The rooms:
- `models`: SyncStream (a connection's stream and its checkpoint), SyncRecord (a vendor record
  as last read: content hash and its algorithm, last action, the change number of the records
  feed), IntegrationRun (one run's trigger, checkpoints and counts), SyncLock (one run at a
  time per connection, and the feed's change counter).
- `decisions`: what a page's records are to what is stored (added, updated, unchanged), and
  whether a sweep may delete: pure.
- `handler`: IntegrationSyncWorker's handler (integrations/workers/integration_sync.py declares
  the worker): pages read through the provider, each committed with its records, checkpoint,
  counts and factory events; rate buckets and circuits (integrations.limits) before every call.
- `selectors` (runs, the records feed), `api`, `admin`.
"""
