"""Jupyter helpers.

ratelab's own :func:`~ratelab.run` and :func:`~ratelab.arun` never patch the event loop:
inside a running kernel ``rl.run`` runs the experiment on a worker thread with a loop of
its own, and ``await rl.arun(exp)`` runs it on the kernel's loop. Nothing here is needed
for them.

:func:`allow_asyncio_run` is for *other* code: a script written for the command line
that ends in ``asyncio.run(main())``, pasted into a notebook and run unmodified. In a
kernel, whose event loop is already running, that call raises ``RuntimeError:
asyncio.run() cannot be called from a running event loop``. The usual fix is to write
``await main()`` instead; when the script must stay as it is, opt in to a re-entrant loop:

    rl.allow_asyncio_run()    # patches asyncio in this process, for the rest of the session
    asyncio.run(main())       # now runs main() to the end on the kernel's loop
"""

from __future__ import annotations

__all__ = ["allow_asyncio_run"]

_EXTRA_HINT = (
    "rl.allow_asyncio_run() needs the 'nest-asyncio2' package, which comes with ratelab's "
    "notebooks extra: pip install 'ratelab[notebooks]' (or: pip install nest-asyncio2)"
)


def allow_asyncio_run() -> None:
    """Let ``asyncio.run()`` (and ``loop.run_until_complete()``) work inside a running loop.

    Opt-in, for running a script's ``asyncio.run(main())`` unmodified in Jupyter. It applies
    ``nest_asyncio2.apply()``: asyncio is patched *process-wide* and the kernel's loop
    becomes re-entrant until the kernel restarts. Calling it again is harmless. ratelab's
    own ``rl.run`` / ``await rl.arun`` never need it and never call it.

    Raises :class:`ImportError` naming the ``notebooks`` extra when ``nest_asyncio2`` is not
    installed.
    """
    try:
        import nest_asyncio2
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT, name="nest_asyncio2") from exc
    nest_asyncio2.apply()
