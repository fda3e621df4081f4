"""Guards that combine or listen: ``rl.AllOf`` (several limits taken atomically) and
``rl.HeaderPacing`` (pacing from the server's rate-limit headers)."""
