"""Advice: which numbers to use against a server's limit (probe, recommend, snippets)."""
