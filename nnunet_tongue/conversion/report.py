"""What a conversion found: problems (errors and warnings), one record per converted case, the report."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: ``file`` names it, ``fix`` says what to do about it."""

    severity: str  # ERROR or WARNING
    file: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class CaseRecord:
    """One converted case: where it came from, how it was stored, what was done to it."""

    case_id: str
    subset: str  # "train" (imagesTr/labelsTr) or "test" (imagesTs/labelsTs)
    source_image: str
    source_mask: str
    original_width: int
    original_height: int
    stored_width: int
    stored_height: int
    scale: float  # stored / original side length; 1.0 when not resized
    inverted: bool = False  # the mask was detected as inverted (and fixed unless --on-inverted keep)
    specks: int = 0  # stray tongue regions besides the main one (before any --clean-specks)
    notes: list[str] = field(default_factory=list)


@dataclass
class ConversionReport:
    """The outcome of :func:`~nnunet_tongue.conversion.convert.convert_dataset`.

    ``dataset_folder`` is the written dataset, or ``None`` when nothing was written (errors or dry run).
    """

    source: str
    layout: str
    dataset_name: str
    target_folder: Path
    dataset_folder: Path | None = None
    cases: list[CaseRecord] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, problems: list[Problem]) -> None:
        """File each problem under errors or warnings."""
        for p in problems:
            (self.errors if p.severity == ERROR else self.warnings).append(p)

    def summary(self) -> str:
        n_train = sum(c.subset == "train" for c in self.cases)
        n_test = len(self.cases) - n_train
        if self.dataset_folder is not None:
            head = f"wrote {self.dataset_folder}"
        elif self.errors:
            head = f"FAILED, nothing written to {self.target_folder}"
        else:
            head = f"dry run, nothing written (would write {self.target_folder})"
        done = "converted" if self.dataset_folder is not None else "without errors"
        return (
            f"{head}\n{len(self.cases)} cases {done} ({n_train} training, {n_test} test) from {self.source} "
            f"[layout: {self.layout}] in {self.seconds:.1f} s; {len(self.errors)} error(s), "
            f"{len(self.warnings)} warning(s)"
        )

    def to_text(self) -> str:
        """The human-readable report: summary, then every error and every warning with its fix."""
        lines = [self.summary()]
        for title, problems in (("ERRORS", self.errors), ("WARNINGS", self.warnings)):
            if problems:
                lines += ["", f"{title} ({len(problems)}):"] + [f"  - {p}" for p in sorted(problems, key=_order)]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "layout": self.layout,
            "dataset_name": self.dataset_name,
            "dataset_folder": None if self.dataset_folder is None else str(self.dataset_folder),
            "seconds": round(self.seconds, 3),
            "errors": [asdict(p) for p in sorted(self.errors, key=_order)],
            "warnings": [asdict(p) for p in sorted(self.warnings, key=_order)],
            "cases": [asdict(c) for c in self.cases],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)


class ConversionError(ValueError):
    """The input has errors; nothing was written. ``report`` lists every problem found."""

    def __init__(self, report: ConversionReport):
        super().__init__(report.to_text())
        self.report = report


def display_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (how problems name files), else absolute."""
    path = Path(path).absolute()
    try:
        return path.relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path)


def _order(p: Problem) -> tuple[str, str]:
    return (p.file, p.message)
