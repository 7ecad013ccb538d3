"""nnU-Net's three folders under one root, and its console scripts run there: for the demo, tests and benchmarks.

:class:`NnUNetWorkspace` gives ``raw``, ``preprocessed`` and ``results`` below ``root``, the environment the
stock commands run in (those folders, the short-budget trainers on ``nnUNet_extTrainer``, a CPU-friendly
worker count) and :meth:`NnUNetWorkspace.run`, which echoes a command, runs this environment's console
script and keeps its output in a log or returns it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tongue.registration import BUDGET_TRAINER_FOLDER, ENV_TRAINERS


class CommandFailed(SystemExit):
    """A console script exited non-zero; the message names it, its exit status and the end of its output."""


def console_script(name: str, environ: dict | None = None) -> str:
    """Path of a console script of this Python environment (``nnUNetv2_train``, ``nnunet-tongue``, ...)."""
    path = (environ or os.environ).get("PATH", "")
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), path]))
    if found is None:
        raise CommandFailed(f"{name} not found beside {sys.executable} or on PATH: install the project first")
    return found


@dataclass
class NnUNetWorkspace:
    """nnU-Net's folders below ``root`` and the environment its commands run in.

    ``processes``: nnU-Net's worker processes (``nnUNet_def_n_proc`` and ``nnUNet_n_proc_DA``) unless the
    caller's environment sets them (None: nnU-Net's own defaults); ``extra``: more environment variables.
    """

    root: Path
    processes: int | None = 2
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def folders(self) -> dict[str, str]:
        """The three nnU-Net path variables for this workspace."""
        return {"nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
                "nnUNet_results": str(self.results)}

    def environment(self) -> dict[str, str]:
        """``os.environ`` with this workspace's folders, worker counts, the budget trainers' folder and
        :attr:`extra`."""
        env = dict(os.environ)
        if self.processes:
            env.setdefault("nnUNet_def_n_proc", str(self.processes))
            env.setdefault("nnUNet_n_proc_DA", str(self.processes))
        trainers = [p for p in env.get(ENV_TRAINERS, "").split(os.pathsep) if p]
        # the product trainers come from the start-up hook (nnunet_tongue.pth) of the scripts' interpreter
        trainers += [BUDGET_TRAINER_FOLDER] if BUDGET_TRAINER_FOLDER not in trainers else []
        env.update(self.folders(), **{ENV_TRAINERS: os.pathsep.join(trainers)})
        env.update({k: str(v) for k, v in self.extra.items()})
        return env

    def create(self) -> "NnUNetWorkspace":
        for folder in (self.raw, self.preprocessed, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def run(self, *command: str, log: Path | None = None, timeout: float | None = None,
            check: bool = True, echo: bool = False) -> subprocess.CompletedProcess:
        """Run a console script of this environment in the workspace's environment.

        With ``log`` the output is appended there (and the command line before it), else it is captured
        in the result. ``check``: raise :class:`CommandFailed` (with the output's end) on a non-zero exit.
        """
        if echo:
            print(f"$ {shlex.join(command)}", flush=True)
        argv = [console_script(command[0]), *command[1:]]
        if log is None:
            proc = subprocess.run(argv, env=self.environment(), capture_output=True, text=True, timeout=timeout)
            output = f"{proc.stdout}\n{proc.stderr}"
        else:
            with open(log, "a") as f:
                f.write(f"\n$ {shlex.join(command)}\n")
                f.flush()
                proc = subprocess.run(argv, env=self.environment(), stdout=f, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            output = f"(log: {log})\n" + log.read_text()[-3000:]
        if check and proc.returncode != 0:
            raise CommandFailed(f"{shlex.join(command)} failed (exit {proc.returncode}):\n{output[-6000:]}")
        return proc
