"""Start-up time of the app: from the command to the first page served.

    python benchmarks/app_startup.py -m <model folder> [--runs 3]

Starts ``nnunet-tongue app -m MODEL --port P`` as a user would, polls http://127.0.0.1:P/ until it answers
200, prints the seconds per run (median last), then stops the app. The model is loaded on the first
*Segment*, not at start-up.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def once(model: Path) -> float:
    port = free_port()
    started = time.perf_counter()
    app = subprocess.Popen([str(Path(sys.executable).parent / "nnunet-tongue"), "app", "-m", str(model),
                            "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200:
                    return time.perf_counter() - started
            except OSError:
                if app.poll() is not None:
                    raise SystemExit(f"the app exited with {app.returncode}")
                time.sleep(0.05)
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    times = [once(args.model) for _ in range(args.runs)]
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "-"
    print(" ".join(f"{t:.1f}" for t in times), f"median {statistics.median(times):.1f} s (load average {load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
