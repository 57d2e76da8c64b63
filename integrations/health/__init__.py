"""Vendor health probes: ExternalApiHealthWorker (issue 12).

The rooms:
- `decisions`: a probe's outcome against Gatus-style conditions, the state the newest windows
  add up to (pending before down, hysteresis before up, degraded when slow), and which changes
  an operator hears of: pure.
- `models`: a probe result per (connection, window), and each connection's health.
- `handler`: ExternalApiHealthWorker's handler (integrations/workers/external_api_health.py
  declares the worker): probe, keep the latest window, trip or close the circuits, publish
  ConnectionHealthChanged and one IntegrationFailed per outage.
- `prometheus` (probe latency and state on /metrics), `api`, `admin` (the health board).
"""
