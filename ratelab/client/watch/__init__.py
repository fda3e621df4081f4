"""Watching a run: the limiters' state sampled over time, and the live views (terminal,
JupyterLab) fed from the record store while the run goes."""
