"""Accelerator specs from the bundled `hardware.yaml` (each entry cites its datasheet).

Bandwidths are kept per chip and per direction, the way a ring moves data: datasheets print
NVLink, Infinity Fabric and ICI as both directions added, so they are halved on loading.
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from importlib import resources

from mlgrind.calc.specs import SpecError
from mlgrind.calc.working import Report, num

TERA, GIGA = 1e12, 1e9
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
FABRICS = {"nvlink": "NVLink", "infinity-fabric": "Infinity Fabric", "ici": "ICI"}
TOPOLOGIES = ("switch", "mesh", "torus")


@dataclass(frozen=True)
class ScaleUp:
    """The fast fabric between chips (NVLink, Infinity Fabric, TPU ICI)."""

    fabric: str  # a key of FABRICS
    bandwidth: float  # bytes/s per chip, both directions added, as printed
    links: int  # per chip
    topology: str  # switch, mesh or torus (see hardware.yaml)
    domain: int  # chips it joins
    torus: tuple[int, ...] = ()  # axes of the largest slice, torus only

    @property
    def name(self) -> str:
        return FABRICS[self.fabric]

    @property
    def reach(self) -> int:
        """Chips one job's collectives can span on this fabric: a torus's largest slice, else
        the domain."""
        return math.prod(self.torus) if self.torus else self.domain

    @property
    def per_direction(self) -> float:
        return self.bandwidth / 2

    @property
    def link_bw(self) -> float:
        """One link, one direction."""
        return self.per_direction / self.links

    @property
    def peer_bw(self) -> float:
        """Mesh: the bandwidth to each other chip of the domain, one direction."""
        return self.per_direction / (self.domain - 1)


@dataclass(frozen=True)
class Hardware:
    key: str
    name: str
    flops: dict  # dtype -> dense peak FLOP/s (int8: OP/s)
    hbm_bytes: float
    hbm_bw: float  # bytes/s
    scale_up: ScaleUp | None
    pcie_bw: float | None  # bytes/s in each direction
    network_bw: float | None  # bytes/s in each direction, per chip
    gpus_per_node: int
    source: str
    aliases: tuple[str, ...] = ()

    @property
    def bf16_flops(self) -> float:
        return self.flops["bf16"]

    @property
    def fp8_flops(self) -> float | None:
        return self.flops.get("fp8")

    @property
    def nvlink_bw(self) -> float | None:
        """NVLink bytes/s per GPU in each direction; None on other fabrics."""
        return self.scale_up.per_direction if self.scale_up and self.scale_up.fabric == "nvlink" else None

    def peak(self, dtype: str) -> float:
        if dtype not in DTYPES:
            raise SpecError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        if dtype not in self.flops:
            raise SpecError(f"{self.key} lists no {dtype} peak (its datasheet prints: {', '.join(self.flops)})")
        return self.flops[dtype]

    @property
    def ops_per_byte(self) -> float:
        """Ridge point of the roofline: FLOPs per byte of HBM traffic at which compute and
        memory take the same time (bf16)."""
        return self.bf16_flops / self.hbm_bw

    def as_json(self) -> dict:
        s = self.scale_up
        return {
            "key": self.key, "name": self.name, "aliases": list(self.aliases),
            "bf16_flops": self.bf16_flops, "fp8_flops": self.fp8_flops, "flops": dict(self.flops),
            "hbm_bytes": self.hbm_bytes, "hbm_bw": self.hbm_bw, "nvlink_bw": self.nvlink_bw,
            "scale_up": None if s is None else {
                "fabric": s.fabric, "bandwidth": s.bandwidth, "per_direction": s.per_direction,
                "links": s.links, "link_bw": s.link_bw, "topology": s.topology, "domain": s.domain, "reach": s.reach,
                "torus": list(s.torus)},
            "pcie_bw": self.pcie_bw, "network_bw": self.network_bw, "gpus_per_node": self.gpus_per_node,
            "ops_per_byte": self.ops_per_byte, "hbm_sweep_seconds": self.hbm_bytes / self.hbm_bw,
            "source": self.source,
        }


def report(table: dict[str, Hardware]) -> Report:
    """Per accelerator, the numbers worth knowing in an interview, each with its formula."""
    r = Report("derived, per accelerator")
    ridge = "a kernel below this many FLOPs per HBM byte is memory-bound (roofline, dense bf16 peak)"
    sweep_note = "the floor of a decode step that reads the whole memory once"
    for h in table.values():
        r.add(f"{h.key} ridge point", h.ops_per_byte, f"{h.ops_per_byte:,.0f} FLOP/B",
              f"bf16 peak / HBM bandwidth = {num(h.bf16_flops)} / {num(h.hbm_bw)} = {h.ops_per_byte:,.0f} FLOP/B",
              ridge)
        sweep = h.hbm_bytes / h.hbm_bw
        r.add(f"{h.key} hbm sweep", sweep, f"{sweep * 1e3:,.1f} ms",
              f"HBM bytes / HBM bandwidth = {num(h.hbm_bytes)} / {num(h.hbm_bw)} = {sweep * 1e3:,.1f} ms",
              sweep_note)
    return r


def _entry(key: str, e: dict) -> Hardware:
    try:
        if ("hbm_gb" in e) == ("hbm_gib" in e):
            raise SpecError(f"hardware.yaml: {key}: give exactly one of hbm_gb, hbm_gib")
        unknown = set(e["tflops"]) - set(DTYPES)
        if unknown or "bf16" not in e["tflops"]:
            raise SpecError(f"hardware.yaml: {key}: tflops needs bf16 and only {', '.join(DTYPES)}")
        s = e["scale_up"]
        scale_up = None if s is None else ScaleUp(
            fabric=s["fabric"], bandwidth=s["gbps"] * GIGA, links=s["links"], topology=s["topology"],
            domain=s["domain"], torus=tuple(s.get("torus", ())))
        if scale_up and (scale_up.fabric not in FABRICS or scale_up.topology not in TOPOLOGIES
                         or (scale_up.topology == "torus") != bool(scale_up.torus)):
            raise SpecError(f"hardware.yaml: {key}: bad scale_up {s}")
        return Hardware(
            key=key, name=e["name"], flops={d: t * TERA for d, t in e["tflops"].items()},
            hbm_bytes=e["hbm_gb"] * GIGA if "hbm_gb" in e else e["hbm_gib"] * 2**30,
            hbm_bw=e["hbm_tbps"] * TERA, scale_up=scale_up,
            pcie_bw=e["pcie_gbps"] * GIGA / 2 if e["pcie_gbps"] is not None else None,
            network_bw=e["network_gbit"] * GIGA / 8 if e["network_gbit"] is not None else None,
            gpus_per_node=e["gpus_per_node"], source=e["source"], aliases=tuple(e["aliases"]),
        )
    except KeyError as missing:
        raise SpecError(f"hardware.yaml: {key}: missing field {missing}") from None


def load_all() -> dict[str, Hardware]:
    return dict(_table())  # a copy: the parsed table is shared


@functools.cache
def _table() -> dict[str, Hardware]:
    """hardware.yaml parsed once per process: a sheet looks hardware up hundreds of times, and
    each parse costs ~50 ms. The file is package data; it does not change while we run."""
    import yaml  # only the commands that need hardware pay for importing it

    text = (resources.files("mlgrind.calc") / "hardware.yaml").read_text(encoding="utf-8")
    return {key: _entry(key, e) for key, e in yaml.safe_load(text).items()}


def load(name: str) -> Hardware:
    """By key, alias or unique prefix of a key, case-insensitive: `h100`, `H100-SXM`, `mi300`."""
    table = _table()
    wanted = name.strip().lower()
    names = {key: key for key in table} | {a: h.key for h in table.values() for a in h.aliases}
    if wanted in names:
        return table[names[wanted]]
    prefixed = sorted({key for n, key in names.items() if n.startswith(wanted)}) if wanted else []
    if len(prefixed) == 1:
        return table[prefixed[0]]
    if len(prefixed) > 1:
        raise SpecError(f"hardware {name!r} is ambiguous: {', '.join(prefixed)}")
    near = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(dict.fromkeys(names[n] for n in near))}?" if near else ""
    raise SpecError(f"unknown hardware {name!r}{hint} (bundled: {', '.join(table)})")
