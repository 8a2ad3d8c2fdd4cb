"""Zero-cost warm start (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

A searcher that starts from uniform samples (evolution's first population, BANANAS's
initial cells) starts instead from the best of many uniform samples by a zero-cost
proxy. The proxy costs a forward/backward pass per sample (synflow: 0.05-0.08 CPU s on NB-201)
and no oracle query. Scores are cached on disk, so runs that share samples pay once.
The ranked cells depend only on the space, the spec and the run's seed, so a resumed
or distributed run rebuilds the very same list.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..core import Arch
from ..errors import NasflowError

DEFAULT_SAMPLES = 1000
# synflow scores about 1,000 new cells per 45 CPU s, so this is about 15 CPU minutes of scoring before
# the first query, more than the whole NB-201 space
MAX_SAMPLES = 20_000
# its own random stream: the samples do not shift any other random draw of the run
_STREAM = 7


def parse(spec: str, size: Optional[int] = None) -> tuple[str, int]:
    """'PROXY[:SAMPLES]' -> (proxy, samples); a bad spec, or more samples than MAX_SAMPLES or the ``size`` of
    the space, is a one-line NasflowError (a huge count was accepted and scored for ever)."""
    from ..proxies import check_names

    if not isinstance(spec, str) or not spec.strip():
        raise NasflowError(f"warm start must be PROXY[:SAMPLES], e.g. synflow:1000; got {spec!r}")
    proxy, _, samples = spec.strip().partition(":")
    check_names([proxy])
    if not samples:
        return proxy, DEFAULT_SAMPLES
    try:
        count = int(samples)
    except ValueError:
        count = 0
    if count < 1:
        raise NasflowError(f"warm start samples must be an integer >= 1, got {samples!r} in {spec!r}")
    if size is not None and count > size:
        raise NasflowError(f"warm start samples {count:,d} are more than the {size:,d} cells of the space; "
                           f"use at most {min(size, MAX_SAMPLES):,d}")
    if count > MAX_SAMPLES:
        raise NasflowError(f"warm start samples {count:,d} would take hours to score; use at most {MAX_SAMPLES:,d}")
    return proxy, count


def warm_start_cells(space, spec: Optional[str], seed: int, progress: bool = False) -> list[Arch]:
    """The distinct cells of SAMPLES uniform draws, best proxy score first (ties: first drawn first)."""
    if spec is None:
        return []
    from ..proxies import zero_cost

    proxy, samples = parse(spec, space.size)
    rng = np.random.default_rng([seed, _STREAM])
    pool = list(dict.fromkeys(space.sample(rng) for _ in range(samples)))
    scores = zero_cost(space, pool, proxy, progress=progress)
    scores = np.where(np.isfinite(scores), scores, -np.inf)  # a cell the proxy cannot score goes last
    return [pool[i] for i in np.argsort(-scores, kind="stable")]
