"""Where the client's CPU goes: a cProfile run as readable lines and as shares per library (backstage).

Part of the measuring harness (`helpers.bench`): `run_once(profile=True)`, notebook 05 and
`make bench --profile` call it; a learner need not read it.

- `cprofile_lines(profile, top)`: the functions with the most cumulative time, outside the event loop.
- `cpu_by_package(profile)`: the share of the time per library in PACKAGES (LangChain, the openai
  SDK, pydantic, the HTTP client), the asyncio event loop and "other", each library's *own* time;
  standard-library time is charged to the library that called it.
- `cpu_split(profile)`: the same time split by *inclusive* time, which is what a layer costs: the
  openai SDK with everything it calls (the HTTP client, pydantic, the standard library), LangChain's
  own layer (everything it runs except the SDK), and the event loop and the rest.

The default timer is wall time: the event loop's own share then includes its waits for the network
(`cpu_split` leaves those out). A coroutine's inclusive time does not include its awaits: while it
waits it is suspended, and cProfile counts only the time it runs.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["PACKAGES", "SPLIT", "LAYERS", "cprofile_lines", "cpu_by_package", "cpu_split", "cpu_layers"]


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
    "HTTP client (httpx2, httpcore2, anyio, h11, or aiohttp)": (
        "httpx2", "httpcore2", "anyio", "h11", "sniffio", "aiohttp", "multidict", "yarl", "propcache",
        "aiohappyeyeballs", "frozenlist", "aiosignal"),
}
_LANGCHAIN, _SDK = "LangChain", ("openai SDK", "HTTP client (httpx2, httpcore2, anyio, h11, or aiohttp)")
SPLIT = ("LangChain's own layer (all it runs except the SDK)",
         "the openai SDK and everything it calls (HTTP client, pydantic, ...)",
         "the event loop and the rest")


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



def _owners(stats: dict) -> "Callable[[tuple], dict[str, float]]":
    """owner_of(function): how its time splits over the libraries (built-ins go to their callers)."""
    owners: dict[tuple, dict[str, float]] = {}

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

    return owner_of


def cpu_by_package(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time per library: the PACKAGES, the asyncio event loop, and "other" (the
    runner, this workbook's code). Shares add up to 1.

    A built-in or standard-library function (a socket call, `json`, `typing`) is charged to the
    library that called it, split by how much time each caller spent in it; whatever cannot be traced
    to a caller stays under "Python built-ins and standard library".
    """
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    owner_of = _owners(stats)
    shares = dict.fromkeys([*PACKAGES, "asyncio event loop", "other", _UNOWNED], 0.0)
    for key, (_, _, own, _, _) in stats.items():
        for name, part in owner_of(key).items():
            shares[name] += own * part
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()} if total else shares


def _entered(stats: dict, owner_of: Callable, inside: set[str], from_: set[str] | None = None) -> float:
    """Inclusive time of the functions of the libraries `inside`, counted where they are entered: on
    each call from a caller outside them (or, with `from_`, from a caller in those libraries)."""
    time = 0.0
    for key, (_, _, _, cumulative, callers) in stats.items():
        if _library_of(key[0]) not in inside:
            continue
        if not callers and from_ is None:  # entered from where the profile started
            time += cumulative
        for caller, (_, _, _, edge_cumulative) in callers.items():
            owner = owner_of(caller)
            share = sum(owner.get(name, 0.0) for name in from_) if from_ else 1 - sum(owner.get(name, 0.0) for name in inside)
            time += edge_cumulative * share
    return time


def cpu_split(profile: cProfile.Profile) -> dict[str, float]:
    """The profiled busy time split by layer (the SPLIT names), by inclusive time; shares add up to 1.

    Busy: the event loop's waits for the network (its `select.epoll.poll`) are left out. A suspended
    coroutine is not running, so with the default (wall-clock) timer the rest is time on the CPU,
    or waiting for it on a loaded machine. (A CPU timer such as `time.thread_time` costs a system call
    per event here, and that overhead, charged per function call, would distort the split.)

    The SDK's share is the time from each entry into the openai SDK or the HTTP client (from
    LangChain, or from the event loop's callbacks) to its return, so it holds all they call.
    LangChain's own layer is LangChain's inclusive time minus the SDK calls it makes.
    """
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    owner_of = _owners(stats)
    idle = sum(entry[2] for key, entry in stats.items() if key[0] == "~" and "'poll' of 'select." in key[2])
    total = sum(entry[2] for entry in stats.values()) - idle or 1.0  # the event loop's waits are not CPU
    sdk = _entered(stats, owner_of, set(_SDK))
    langchain = _entered(stats, owner_of, {_LANGCHAIN}) - _entered(stats, owner_of, set(_SDK), {_LANGCHAIN})
    langchain, sdk = max(0.0, min(langchain, total)), max(0.0, min(sdk, total - max(0.0, langchain)))
    return dict(zip(SPLIT, (langchain / total, sdk / total, max(0.0, total - langchain - sdk) / total)))


# Layers, outermost first: a layer's inclusive time is counted where it is entered from outside it,
# less the time in the inner layers it calls. The workbook's runner is this repository's code.
LAYERS = ("runner (the workbook)", "LangChain", "openai SDK", "HTTP client", "the rest (event loop, ...)")
_LAYER_LIBRARIES = {"LangChain": {"LangChain"}, "openai SDK": {"openai SDK"},
                    "HTTP client": {"HTTP client (httpx2, httpcore2, anyio, h11, or aiohttp)"}}


def _layer_of(filename: str) -> str:
    """The LAYERS name of a profiled file's code (the standard library and built-ins: the rest)."""
    if "site-packages/" not in filename and "/helpers/" in filename:
        return LAYERS[0]
    library = _library_of(filename)
    return next((layer for layer, names in _LAYER_LIBRARIES.items() if library in names), LAYERS[-1])


def _entered_layer(stats: dict, owner_of: Callable, layer: str, from_: str | None = None) -> float:
    """Inclusive time of `layer`'s functions on each entry from outside it (or from the layer `from_`)."""
    time = 0.0
    for key, (_, _, _, cumulative, callers) in stats.items():
        if _layer_of(key[0]) != layer:
            continue
        if not callers and from_ is None:
            time += cumulative
        for caller, (_, _, _, edge_cumulative) in callers.items():
            owners = owner_of(caller)
            caller_layer = {_layer_of(caller[0])} if _library_of(caller[0]) != _UNOWNED else None
            share = _share_in_layer(owners, caller, from_ or layer, caller_layer)
            time += edge_cumulative * (share if from_ else 1 - share)
    return time


def _share_in_layer(owners: dict[str, float], caller: tuple, layer: str, caller_layer: set[str] | None) -> float:
    """How much of `caller` belongs to `layer` (a standard-library caller: by who called it)."""
    if caller_layer is not None:
        return 1.0 if layer in caller_layer else 0.0
    if layer == LAYERS[0]:
        return 0.0  # the workbook's code is never reached through the standard library alone
    return sum(owners.get(name, 0.0) for name in _LAYER_LIBRARIES.get(layer, ()))


def cpu_layers(profile: cProfile.Profile) -> dict[str, float]:
    """The profiled busy time split over LAYERS by inclusive time (what a layer costs with all it
    calls, less the inner layers it calls); shares add up to 1. The event loop's waits are left out."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    owner_of = _owners(stats)
    idle = sum(entry[2] for key, entry in stats.items() if key[0] == "~" and "'poll' of 'select." in key[2])
    total = sum(entry[2] for entry in stats.values()) - idle or 1.0
    inner = list(LAYERS[:-1])
    own = {}
    for depth, layer in enumerate(inner):
        entered = _entered_layer(stats, owner_of, layer)
        calls_inward = sum(_entered_layer(stats, owner_of, deeper, layer) for deeper in inner[depth + 1:])
        own[layer] = max(0.0, entered - calls_inward)
    scale = min(1.0, total / sum(own.values())) if sum(own.values()) else 1.0
    shares = {layer: time * scale / total for layer, time in own.items()}
    return {**shares, LAYERS[-1]: max(0.0, 1.0 - sum(shares.values()))}
