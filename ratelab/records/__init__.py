"""The record of a run: the schema (one row per request attempt; columns, dtypes, units)
and the columnar store the engine writes into."""
