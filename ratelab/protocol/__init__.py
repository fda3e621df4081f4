"""What travels on the wire between a client and a rate-limited server: the quotas a
response announces (``quota.py``), the header styles that carry them, written by the
server (``header_styles.py``) and read by the client (``header_reading.py``), and the wall
clock both sides read resets against (``wall_clock.py``). Imports nothing else of ratelab,
so the server and the client both use it without knowing each other."""
