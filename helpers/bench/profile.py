"""Where the client's CPU goes: a cProfile run as readable lines and as shares per library (backstage).

Part of the measuring harness (`helpers.bench`): `run_once(profile=True)`, notebook 05 and
`make bench --profile` call it; a learner need not read it.

- `cprofile_lines(profile, top)`: the functions with the most cumulative time, outside the event loop.
- `cpu_by_package(profile)`: the share of the time per library in PACKAGES (LangChain, the openai
  SDK, pydantic, the HTTP client), the asyncio event loop and "other"; standard-library time is
  charged to the library that called it.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PACKAGES", "cprofile_lines", "cpu_by_package"]


def _short_path(filename: str) -> str:
    """'langchain_core/runnables/base.py' for a file in site-packages, 'asyncio/events.py' for the stdlib."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return Path(filename).name


_UNOWNED = "Python built-ins and standard library"  # where time no library owns goes

# Libraries, by the first folder of their files below site-packages.
PACKAGES = {
    "LangChain": ("langchain_core", "langchain_openai", "langsmith"),
    "openai SDK": ("openai",),
    "pydantic (used by the SDK and LangChain)": ("pydantic", "pydantic_core"),
    "HTTP client (httpx2, httpcore2, anyio, h11)": ("httpx2", "httpcore2", "anyio", "h11", "sniffio"),
}


def _library_of(filename: str) -> str:
    """Which PACKAGES entry a profiled file belongs to, else asyncio / the standard library / other."""
    if "site-packages/" in filename:
        top = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        return next((name for name, tops in PACKAGES.items() if top in tops), "other")
    if "/asyncio/" in filename or filename.endswith("selectors.py"):
        return "asyncio event loop"
    if "/lib/python3." in filename or filename == "~":  # "~" marks built-ins (C functions)
        return _UNOWNED
    return "other"


def cprofile_lines(profile: cProfile.Profile, top: int = 10,
                   skip: Iterable[str] = ("asyncio/", "contextvars", "~")) -> list[tuple[str, float]]:
    """The `top` functions of `profile` by cumulative time, as (file:line function, share of all time).

    Functions in files matching `skip` (the event loop's own machinery, builtins) are left out, so the
    list shows where library code spends the time. Cumulative time includes the functions called.
    """
    stats = pstats.Stats(profile)
    total = sum(entry[2] for entry in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.startswith("<") or any(pattern in filename for pattern in skip):
            continue
        rows.append((f"{_short_path(filename)}:{line} {name}", cumulative / total))
    rows.sort(key=lambda row: -row[1])
    return rows[:top]



def cpu_by_package(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time per library: the PACKAGES, the asyncio event loop, and "other" (the
    runner, this workbook's code). Shares add up to 1.

    A built-in or standard-library function (a socket call, `json`, `typing`) is charged to the
    library that called it, split by how much time each caller spent in it; whatever cannot be traced
    to a caller stays under "Python built-ins and standard library".
    """
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    names = [*PACKAGES, "asyncio event loop", "other", _UNOWNED]
    owners: dict[tuple, dict[str, float]] = {}  # function -> how its time splits over the libraries

    def owner_of(key: tuple, visiting: frozenset = frozenset()) -> dict[str, float]:
        library = _library_of(key[0])
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        if library != _UNOWNED or not callers or key in visiting:
            return {library: 1.0}
        if key not in owners:
            weights = {caller: timing[2] for caller, timing in callers.items()}  # time in `key` per caller
            total = sum(weights.values())
            split: dict[str, float] = {}
            for caller, weight in weights.items():
                share = weight / total if total > 0 else 1 / len(weights)
                for name, part in owner_of(caller, visiting | {key}).items():
                    split[name] = split.get(name, 0.0) + share * part
            owners[key] = split
        return owners[key]

    shares = dict.fromkeys(names, 0.0)
    for key, (_, _, own, _, _) in stats.items():
        for name, part in owner_of(key).items():
            shares[name] += own * part
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()} if total else shares
