"""How often each training case is drawn: every source of a multi-source dataset about equally often.

nnU-Net draws a batch's cases uniformly from the training cases, so a source with more photos is seen more:
in the two-source dataset (240 BioHit, 441 NTUST train cases) BioHit is 35 % of what the network sees.
:class:`SourceBalancedSampling` lists each case of a smaller source several times, which nnU-Net's data loader
turns into a proportionally higher chance of drawing it. A case's source is its name up to the first underscore
(``biohit_12`` -> ``biohit``), as the two-source datasets of ``benchmarks/`` name their cases.
"""

from __future__ import annotations

from collections import Counter


def case_source(identifier: str) -> str:
    """The source a case comes from: its name up to the first underscore (the whole name without one)."""
    return identifier.split("_", 1)[0]


def source_repeats(identifiers: list[str]) -> dict[str, int]:
    """How many times each source's cases are listed so that every source is drawn about as often as the
    largest: round(largest source's size / this source's size), at least 1."""
    sizes = Counter(case_source(i) for i in identifiers)
    largest = max(sizes.values(), default=0)
    return {source: max(1, round(largest / size)) for source, size in sizes.items()}


def balanced_identifiers(identifiers: list[str]) -> list[str]:
    """``identifiers`` with each case repeated as :func:`source_repeats` says (order kept)."""
    repeats = source_repeats(identifiers)
    return [i for i in identifiers for _ in range(repeats[case_source(i)])]


class SourceBalancedSampling:
    """Trainer mixin: training cases are drawn so that each source of the dataset is seen about equally often
    (:func:`balanced_identifiers`); validation cases are unchanged. Overrides ``do_split`` only."""

    def do_split(self):
        train, validation = super().do_split()
        balanced = balanced_identifiers(list(train))
        if len(balanced) != len(train):
            counts = Counter(case_source(i) for i in train)
            repeats = source_repeats(list(train))
            self.print_to_log_file("Source-balanced sampling: " + ", ".join(
                f"{s}: {counts[s]} cases x {repeats[s]}" for s in sorted(counts)))
        return balanced, validation
