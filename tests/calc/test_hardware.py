"""`mlgrind calc hardware`: each entry's datasheet numbers through the CLI, names that resolve
for every command taking --hw, and a did-you-mean for the ones that do not.

Each expected value is copied as its source prints it; the tolerance is the printed rounding.
NVIDIA prints tensor-core peaks "with sparsity", twice the dense peak the entry stores.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from tests.conftest import run

T, G = 1e12, 1e9
SPARSE = T / 2  # a dense FLOP/s value in printed "with sparsity" TFLOPS
GIB = 2**30

NVIDIA_H100 = "NVIDIA H100 datasheet table, SXM column (via archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100)"
NVIDIA_H100_PCIE = "NVIDIA H100 datasheet table, PCIe column (via archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100)"
NVIDIA_H200 = "NVIDIA H200 datasheet (via hpc-ai.com B200 article table; MLPerf v4.1 H200 system file)"
NVIDIA_A100 = "NVIDIA A100 datasheet nvidia-a100-datasheet-us-nvidia-1758950-r4 (via glennklockwood.com)"
NVIDIA_B200 = "NVIDIA HGX B200 datasheet (via hpc-ai.com table; MLPerf v6.0 B200 system file)"
AMD_ROCM = "ROCm docs, MI300 series microarchitecture, MI300X peak table and node architecture"
TPU_V4 = "cloud.google.com/tpu/docs/v4, key specifications"
TPU_V5E = "cloud.google.com/tpu/docs/v5e, key chip and Pod specifications"
TPU_V5P = "cloud.google.com/tpu/docs/v5p, key specifications"


@cache
def table() -> dict:
    result = run("calc", "hardware", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def field(key: str, path: str):
    value = table()[key]
    for part in path.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("key, path, unit, printed, step, source", [
    # All verified with search. Google's and AMD's numbers against their own documentation;
    # NVIDIA's own datasheet pages are not in the search corpora, so against pages that copy
    # their tables (named in the source string).
    ("h100-sxm", "flops.bf16", SPARSE, 1979, 1, NVIDIA_H100),
    ("h100-sxm", "flops.fp8", SPARSE, 3958, 1, NVIDIA_H100),
    ("h100-sxm", "flops.fp32", T, 67, 1, NVIDIA_H100),
    ("h100-sxm", "hbm_bytes", G, 80, 1, NVIDIA_H100),
    ("h100-sxm", "hbm_bw", T, 3.35, 0.01, NVIDIA_H100),
    ("h100-sxm", "scale_up.bandwidth", G, 900, 1, NVIDIA_H100),
    ("h100-sxm", "scale_up.links", 1, 18, 1, "NVIDIA SXM: 18 NVLink 4 links of 50 GB/s (cloud-atlas nvidia_sxm_socket)"),
    ("h100-pcie", "flops.bf16", SPARSE, 1513, 1, NVIDIA_H100_PCIE),
    ("h100-pcie", "flops.fp8", SPARSE, 3026, 1, NVIDIA_H100_PCIE),
    ("h100-pcie", "flops.fp32", T, 51, 1, NVIDIA_H100_PCIE),
    ("h100-pcie", "hbm_bw", G, 2000, 1, NVIDIA_H100_PCIE),
    ("h100-pcie", "scale_up.bandwidth", G, 600, 1, NVIDIA_H100_PCIE),
    ("h100-pcie", "pcie_bw", G / 2, 128, 1, NVIDIA_H100_PCIE + ": PCIe Gen5 128 GB/s"),
    ("h200", "flops.bf16", SPARSE, 1979, 1, NVIDIA_H200),
    ("h200", "flops.fp8", SPARSE, 3958, 1, NVIDIA_H200),
    ("h200", "hbm_bytes", G, 141, 1, NVIDIA_H200),
    ("h200", "hbm_bw", T, 4.8, 0.1, NVIDIA_H200),
    ("h200", "scale_up.bandwidth", G, 900, 1, NVIDIA_H200),
    ("h200", "scale_up.links", 1, 18, 1, "MLPerf inference v4.1, H200-SXM-141GBx8: 18x 4th Gen NVLink"),
    ("a100-40gb", "flops.bf16", T, 312, 1, NVIDIA_A100),
    ("a100-40gb", "flops.tf32", T, 156, 1, NVIDIA_A100),
    ("a100-40gb", "flops.fp32", T, 19.5, 0.1, NVIDIA_A100),
    ("a100-40gb", "hbm_bw", G, 1555, 1, NVIDIA_A100),
    ("a100-80gb", "hbm_bw", G, 2039, 1, NVIDIA_A100),
    ("a100-80gb", "scale_up.bandwidth", G, 600, 1, NVIDIA_A100),
    ("b200", "flops.bf16", SPARSE, 4500, 1, NVIDIA_B200),
    ("b200", "flops.fp8", SPARSE, 9000, 1, NVIDIA_B200),
    ("b200", "flops.tf32", SPARSE, 2200, 1, NVIDIA_B200),
    ("b200", "hbm_bytes", G, 180, 1, NVIDIA_B200),
    # DGX B200: "1,440 GB total HBM3e memory and 64 TB/s HBM3e bandwidth" for 8 GPUs (a page quoting
    # nvidia.com/en-us/data-center/dgx-b200, verified with search; NVIDIA's own page is not in the
    # corpora): 8 TB/s per GPU. 35c052a had 7.7 TB/s, no datasheet's figure.
    ("b200", "hbm_bw", T / 8, 64, 1, "NVIDIA DGX B200 datasheet: 64 TB/s for 8 GPUs"),
    ("b200", "hbm_bytes", G / 8, 1440, 1, "NVIDIA DGX B200 datasheet: 1,440 GB for 8 GPUs"),
    ("b200", "scale_up.bandwidth", G, 1800, 1, NVIDIA_B200),
    ("b200", "scale_up.links", 1, 18, 1, "MLPerf inference v6.0, nebius_b200_n1: 18x 5th Gen NVLink"),
    ("mi300x", "flops.bf16", T, 1307.4, 0.1, AMD_ROCM),
    ("mi300x", "flops.fp16", T, 1307.4, 0.1, AMD_ROCM),
    ("mi300x", "flops.fp8", T, 2614.9, 0.1, AMD_ROCM),
    ("mi300x", "flops.int8", T, 2614.9, 0.1, AMD_ROCM),
    ("mi300x", "flops.tf32", T, 653.7, 0.1, AMD_ROCM),
    ("mi300x", "flops.fp32", T, 163.4, 0.1, AMD_ROCM),
    ("mi300x", "hbm_bw", T, 5.3, 0.1, AMD_ROCM),
    ("mi300x", "hbm_bytes", G, 192, 1, "ROCm docs, GPU hardware specifications: MI300X 192"),
    ("mi300x", "scale_up.links", 1, 7, 1, AMD_ROCM + ": seven Infinity Fabric links, fully connected"),
    ("mi300x", "scale_up.domain", 1, 8, 1, AMD_ROCM + ": a fully connected 8-GPU system"),
    # 128 GB/s per link both ways: from a secondary source only (wheelersnetwork.com,
    # "AMD Looks to Infinity for AI Interconnects", 2024); AMD's datasheet not re-checked.
    ("mi300x", "scale_up.link_bw", G, 64, 1, "128 GB/s per Infinity Fabric link both ways (secondary)"),
    ("tpu-v4", "flops.bf16", T, 275, 1, TPU_V4),
    ("tpu-v4", "flops.int8", T, 275, 1, TPU_V4),
    ("tpu-v4", "hbm_bytes", GIB, 32, 1, TPU_V4),
    ("tpu-v4", "hbm_bw", G, 1200, 1, TPU_V4),
    ("tpu-v4", "scale_up.domain", 1, 4096, 1, TPU_V4 + ": TPU Pod size"),
    ("tpu-v5e", "flops.bf16", T, 197, 1, TPU_V5E),
    ("tpu-v5e", "flops.int8", T, 393, 1, TPU_V5E),
    ("tpu-v5e", "hbm_bytes", G, 16, 1, TPU_V5E),
    ("tpu-v5e", "hbm_bw", G, 819, 1, TPU_V5E),
    ("tpu-v5e", "scale_up.bandwidth", G, 400, 1, TPU_V5E + ": bidirectional ICI bandwidth per chip"),
    ("tpu-v5e", "scale_up.links", 1, 4, 1, TPU_V5E + ": ICI ports per chip"),
    ("tpu-v5e", "scale_up.domain", 1, 256, 1, TPU_V5E + ": TPU Pod size"),
    ("tpu-v5e", "gpus_per_node", 1, 8, 1, TPU_V5E + ": chips per host"),
    ("tpu-v5p", "flops.bf16", T, 459, 1, TPU_V5P),
    ("tpu-v5p", "hbm_bytes", GIB, 95, 1, TPU_V5P + ": HBM capacity per chip (GiB)"),
    ("tpu-v5p", "hbm_bw", G, 2765, 1, TPU_V5P),
    ("tpu-v5p", "scale_up.bandwidth", G, 1200, 1, TPU_V5P + ": bidirectional ICI bandwidth per chip"),
    ("tpu-v5p", "scale_up.domain", 1, 8960, 1, TPU_V5P + ": chips per pod"),
    ("tpu-v5p", "network_bw", G / 8, 50, 1, TPU_V5P + ": DCN bandwidth per chip (Gbps)"),
])
def test_datasheet_numbers(key, path, unit, printed, step, source):
    assert abs(field(key, path) / unit - printed) <= step / 2, source


@pytest.mark.parametrize("key, axes", [("tpu-v4", 3), ("tpu-v5e", 2), ("tpu-v5p", 3)])
def test_tpu_interconnects_are_tori_of_the_documented_dimension(key, axes):
    # TPU v4 and v5p docs: "3D torus" (v4: "3D mesh", a torus on full cubes); v5e: "2D torus".
    s = table()[key]["scale_up"]
    assert (s["fabric"], s["topology"], len(s["torus"])) == ("ici", "torus", axes)


def test_tpu_v5p_slice_is_the_largest_documented():
    # cloud.google.com/tpu/docs/v5p: "There are 8960 chips in a single v5p Pod. The largest job that
    # can be scheduled is a 96 cube (6144 chip) job"; "The maximum v5p shape is 16x16x24 (6144
    # chips, 96 cubes)" (verified with search).
    s = table()["tpu-v5p"]["scale_up"]
    assert (s["torus"], s["reach"], s["domain"]) == ([16, 16, 24], 6144, 8960)
    # 35c052a printed "torus of 8,960 chips, torus 16x16x24", as if the slice held the pod.
    text = " ".join(run("calc", "hardware").out.split())
    assert "pod of 8,960 chips, largest slice 16x16x24 = 6,144 chips" in text
    # A collective cannot span more of ICI than one slice.
    result = run("calc", "comms", "--op", "all-reduce", "--shape", "8", "--ranks", "8192", "--hw", "v5p",
                 "--link", "ici")
    assert result.code == 1 and "6,144-chip largest 16x16x24 slice" in result.err


def test_the_issues_accelerators_are_all_bundled_and_keep_their_fields():
    assert {"h100-sxm", "h100-pcie", "h200", "a100-40gb", "a100-80gb", "b200", "mi300x", "tpu-v4",
            "tpu-v5e", "tpu-v5p"} <= set(table())
    for entry in table().values():  # what the figures and older callers read
        assert {"bf16_flops", "fp8_flops", "hbm_bytes", "hbm_bw", "nvlink_bw", "network_bw",
                "gpus_per_node", "ops_per_byte", "name", "source"} <= set(entry)


def test_the_table_fits_80_columns_names_units_and_shows_the_ridge_formula():
    result = run("calc", "hardware")
    assert result.code == 0
    assert max(len(line) for line in result.out.splitlines()) <= 80
    assert "TFLOP/s" in result.out and "GB/s" in result.out and "FLOP/B" in result.out
    assert "bf16 peak / HBM bandwidth = 9.895e14 / 3.35e12 = 295 FLOP/B" in result.out


@pytest.mark.parametrize("name, key", [
    ("h100", "h100-sxm"), ("H100", "h100-sxm"), ("H200", "h200"), ("a100", "a100-80gb"),
    ("mi300", "mi300x"), ("MI300X", "mi300x"), ("v5e", "tpu-v5e"), ("tpu-v5", None), ("b2", "b200"),
])
def test_names_resolve_by_alias_case_or_unique_prefix(name, key):
    result = run("calc", "train", "--model", "gpt2", "--gpus", "8", "--hw", name, "--json")
    if key is None:  # a prefix of both v5e and v5p
        assert result.code == 1 and "ambiguous: tpu-v5e, tpu-v5p" in result.err
    else:
        assert result.code == 0, result.err
        assert json.loads(result.out)["hardware"] == key


@pytest.mark.parametrize("command", [
    ["train", "--model", "gpt2", "--gpus", "8"], ["memory", "--model", "gpt2"], ["serve", "--model", "gpt2"],
    ["rl", "--model", "gpt2"], ["comms", "--model", "gpt2", "--dp", "2"],
    ["comms", "--op", "send", "--shape", "8", "--ranks", "2"],
])
def test_every_command_with_hw_takes_an_alias_and_suggests_a_near_miss(command):
    assert run("calc", *command, "--hw", "h100").code == 0
    miss = run("calc", *command, "--hw", "h1000")
    assert miss.code == 1
    assert "did you mean h100-sxm" in miss.err and len(miss.err.strip().splitlines()) == 1
