"""The local target: LocalServer's lifecycle, its app and routes, the per-request decisions
(rate limits, concurrency cap, latency, faults), its policies and its request log."""
