"""Accelerator specs from the bundled `hardware.yaml` (each entry cites its datasheet)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from mlgrind.calc.specs import SpecError

TERA, GIGA = 1e12, 1e9


@dataclass(frozen=True)
class Hardware:
    key: str
    name: str
    bf16_flops: float  # dense peak, FLOP/s
    fp8_flops: float | None
    hbm_bytes: float
    hbm_bw: float  # bytes/s
    nvlink_bw: float | None  # bytes/s in each direction
    network_bw: float | None  # bytes/s in each direction, per GPU
    gpus_per_node: int
    source: str

    def peak(self, dtype: str) -> float:
        flops = {"bf16": self.bf16_flops, "fp8": self.fp8_flops}[dtype]
        if flops is None:
            raise SpecError(f"{self.key} has no {dtype} tensor cores")
        return flops

    @property
    def ops_per_byte(self) -> float:
        """Ridge point of the roofline: FLOPs per byte of HBM traffic at which compute and
        memory take the same time (bf16)."""
        return self.bf16_flops / self.hbm_bw


def _entry(key: str, e: dict) -> Hardware:
    try:
        return Hardware(
            key=key, name=e["name"], bf16_flops=e["bf16_tflops"] * TERA,
            fp8_flops=e["fp8_tflops"] * TERA if e["fp8_tflops"] is not None else None,
            hbm_bytes=e["hbm_gb"] * GIGA, hbm_bw=e["hbm_tbps"] * TERA,
            # Datasheets print NVLink as both directions added; a ring moves data one way.
            nvlink_bw=e["nvlink_gbps"] * GIGA / 2 if e["nvlink_gbps"] is not None else None,
            network_bw=e["network_gbit"] * GIGA / 8 if e["network_gbit"] is not None else None,
            gpus_per_node=e["gpus_per_node"], source=e["source"],
        )
    except KeyError as missing:
        raise SpecError(f"hardware.yaml: {key}: missing field {missing}") from None


def load_all() -> dict[str, Hardware]:
    import yaml  # only the commands that need hardware pay for importing it

    text = (resources.files("mlgrind.calc") / "hardware.yaml").read_text(encoding="utf-8")
    return {key: _entry(key, e) for key, e in yaml.safe_load(text).items()}


def load(key: str) -> Hardware:
    table = load_all()
    if key not in table:
        raise SpecError(f"unknown hardware {key!r}; bundled: {', '.join(table)}")
    return table[key]
