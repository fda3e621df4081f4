"""The explorer: ``rl.explore(experiment, server, rate=(5, 60), ...)``, sliders over an
experiment that re-simulate and redraw on every change (needs ipywidgets: the
``notebooks`` extra).

The folder is ``explorer/``, not ``explore/``: importing a submodule binds its package as
an attribute of ``ratelab``, which would hide the function ``rl.explore``.
"""
