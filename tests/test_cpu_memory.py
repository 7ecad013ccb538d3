"""CPU training memory: a step's freed activations are reused by the next step instead of mapped afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

STEP_FAULTS = """
import resource, sys
import torch
from nnunet_tongue.training.cpu_memory import reuse_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
x = torch.randn(4, 32, 256, 256)  # 33.5 MB: above the largest block glibc keeps by default (32 MB)
def step_faults() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.nn.functional.leaky_relu(conv(x)).sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(sum([step_faults() for _ in range(6)][1:]))
"""


def faults_of_repeated_steps(mode: str) -> int:
    """Page faults of five training steps of one conv layer after a first step, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_reuse_freed_memory_spares_repeated_steps_most_page_faults():
    assert 4 * faults_of_repeated_steps("reuse") < faults_of_repeated_steps("default")
