"""What the benchmark suite (``python -m loadtest.bench``) runs: the protocols and
their modes, the offered rates, databases, worker counts and caches, from the command
line; and the demo names it asks for.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace

from loadtest.harness import demo_enterprises, example_handle

PROTOCOLS = {"http": ("http",), "handle": ("handle-udp", "handle-tcp"), "dns": ("dns",)}
"""What ``--protocols`` names, and the rows ("modes") each one gives."""
DEFAULT_RATES: dict[str, tuple[int, ...]] = {
    "http": (1000, 2500, 5000),
    "handle-udp": (2000, 10_000, 20_000),
    "handle-tcp": (2000, 10_000, 20_000),
    "dns": (2000, 10_000, 20_000),
}
DATABASES = ("sqlite", "postgresql")
CACHES = ("cached", "cold")
POSTGRESQL = "postgresql+asyncpg://postgres@127.0.0.1:5432/idnode_bench"
PEAK_SHARE = 0.9
"""Offered rates above this share of the measured peak are not run: they only overload."""
DEMO = (32, 10_240)
QUICK_DEMO = (32, 640)
CACHED_NAMES = 1000
"""Cached runs cycle over this many names (all warmed); cold runs over every identifier."""


@dataclass(frozen=True)
class Settings:
    modes: tuple[str, ...]
    dbs: tuple[str, ...]
    workers: tuple[int, ...]
    caches: tuple[str, ...]
    rates: dict[str, tuple[int, ...]]
    duration: float
    warm_seconds: float
    demo: tuple[int, int]
    """Enterprises and identifiers of the demo data set."""
    postgresql: str
    quick: bool


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_rates(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``1000,5000`` for every mode, ``http=1000,2500`` or ``handle=...`` for some."""
    rates = dict(DEFAULT_RATES)
    for spec in specs:
        target, _, values = spec.rpartition("=")
        numbers = tuple(sorted(int(float(v)) for v in _items(values)))
        if not numbers or min(numbers) < 1:
            raise ValueError(f"--rates {spec!r}: positive numbers, comma-separated")
        if not target:
            modes: Sequence[str] = list(rates)
        elif target in PROTOCOLS:
            modes = PROTOCOLS[target]
        elif target in rates:
            modes = [target]
        else:
            raise ValueError(f"--rates {spec!r}: unknown protocol {target!r}")
        for mode in modes:
            rates[mode] = numbers
    return rates


def settings_from(args: argparse.Namespace) -> Settings:
    protocols = _items(args.protocols)
    unknown = set(protocols) - set(PROTOCOLS)
    dbs = _items(args.dbs)
    caches = _items(args.caches)
    if unknown or set(dbs) - set(DATABASES) or set(caches) - set(CACHES):
        raise ValueError("--protocols, --dbs or --caches names something unknown")
    modes = tuple(mode for p in protocols for mode in PROTOCOLS[p])
    workers = tuple(int(w) for w in _items(args.workers))
    rates = parse_rates(args.rates)
    if not modes or not dbs or not caches or not workers or min(workers) < 1:
        raise ValueError("nothing to run: check --protocols, --dbs, --caches and --workers")
    settings = Settings(
        modes=modes,
        dbs=tuple(dbs),
        workers=workers,
        caches=tuple(caches),
        rates=rates,
        duration=max(1.0, min(args.duration, 120.0)),
        warm_seconds=2.0,
        demo=DEMO,
        postgresql=args.postgresql,
        quick=False,
    )
    if args.quick:  # the smoke run: smallest of everything, whatever else was asked
        settings = replace(
            settings,
            dbs=("sqlite",),
            workers=(1,),
            caches=("cached",),
            rates={mode: values[:1] for mode, values in rates.items()},
            duration=1.0,
            warm_seconds=0.5,
            demo=QUICK_DEMO,
            quick=True,
        )
    return settings


# --- names -----------------------------------------------------------------------------


def demo_names(enterprises: int, identifiers: int) -> list[str]:
    """Every product-level identifier the demo seeds, enterprise after enterprise in
    turn, so that any leading slice spreads over every enterprise and mode. Each
    enterprise gets ceil(identifiers / enterprises) records; a traceability one spends
    1/16 of them (at least one) on batch records, so its products stop short of that."""
    per_enterprise = -(-identifiers // enterprises)
    ents = demo_enterprises(enterprises)
    limits = [
        per_enterprise - max(1, per_enterprise // 16) if e.mode.key == "trace" else per_enterprise
        for e in ents
    ]
    return [
        example_handle(ent, i)
        for i in range(1, per_enterprise + 1)
        for ent, limit in zip(ents, limits, strict=True)
        if i <= limit
    ]
