"""``ratelab demo``: the recipe and each single strategy on one embedded server.

The recipe (``RateLimit(20) + ConnectionLimit(10)``) runs as written (with think time), then
it and every single strategy run under load (more workers, no think time), so that each
one's bound shows. Each run is saved, the tables are printed, and ``compare.png`` is drawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ratelab.cli.figures import save_figure, use_agg
from ratelab.cli.status import EXIT_INTERRUPTED, EXIT_OK
from ratelab.cli.tables import runs_table

if TYPE_CHECKING:
    from ratelab.analysis.result import Result

__all__ = ["run_demo"]


def run_demo(
    *, out_dir: str | Path, requests: int, workers: int, load_workers: int, progress: bool
) -> int:
    """Run the demo: ``requests`` per run, ``workers`` for the recipe as written,
    ``load_workers`` for the runs under load; results and ``compare.png`` go to ``out_dir``.
    Returns the exit status (interrupted: :data:`~ratelab.cli.status.EXIT_INTERRUPTED`)."""
    use_agg()
    from ratelab.analysis import plots
    from ratelab.client.runner import run
    from ratelab.client.sweep import slug
    from ratelab.experiment.distributions import Uniform
    from ratelab.experiment.experiment import Experiment
    from ratelab.experiment.strategies import Concurrency, ConnectionLimit, RateLimit, Unlimited
    from ratelab.server.local import LocalServer

    out = Path(out_dir)
    recipe = RateLimit(20) + ConnectionLimit(10)
    # the recipe as written, then every strategy under load (more workers, no think time),
    # so that each one's bound shows
    plan = [(recipe, workers)] + [
        (s, load_workers)
        for s in (recipe, RateLimit(20), ConnectionLimit(10), Concurrency(10), Unlimited())
    ]
    t0 = time.perf_counter()
    results: list[Result] = []
    saved: list[Path] = []
    latency = Uniform(0.05, 0.2)
    print(
        f"ratelab demo: {requests} requests per run, server latency {latency!r}, seed 1",
        flush=True,
    )
    with LocalServer(latency=latency, seed=1) as server:
        for i, (strategy, n_workers) in enumerate(plan, 1):
            exp = Experiment(
                target=server,
                requests=requests,
                workers=n_workers,
                think_time=Uniform(0.05, 1.0) if i == 1 else None,
                strategy=strategy,
                seed=1,
                name=f"{strategy!r} [{n_workers} workers]",
            )
            result = run(exp, progress=progress)
            results.append(result)
            saved.append(result.save(out / f"{i:02d}-{slug(result.label)}.parquet"))
            if result.interrupted:
                break
    print()
    print(f"The recipe ({workers} workers, think time Uniform(0.05, 1.0)):")
    print(runs_table(results[:1]))
    print(
        f"  {workers} workers x ~0.65 s per request (think + server) offer about "
        f"{workers / 0.65:.0f} requests/s: below 20/s and never more than {workers} "
        "in flight, so here neither bound binds."
    )
    loaded = results[1:]
    if loaded:
        print()
        print(f"Each strategy under load ({load_workers} workers, no think time):")
        print(runs_table(loaded))
        print(
            "  steady/s leaves out each rate limit's first period (aiolimiter's initial "
            "burst: RateLimit(20) sends 39 in its first second); rate/s counts it."
        )
    print()
    figure = save_figure(plots.compare(loaded or results), out / "compare.png")
    print(f"saved {len(saved)} runs to {out}/:")
    for p in saved:
        print(f"  {p}")
    print(f"figure: {figure}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return EXIT_INTERRUPTED if results and results[-1].interrupted else EXIT_OK
