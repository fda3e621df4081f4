"""Which numbers should I use: probe a server's limit (``probe``), recommend a client."""
