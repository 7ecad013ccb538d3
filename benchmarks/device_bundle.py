"""Pack what a run on a lent GPU machine needs into ``.device/`` (git-ignored), within its 64 MiB per call.

That machine (one H100/H200, 16 cores) has Python 3.12 with PyTorch, timm and the scientific stack, but not
nnU-Net and its helpers, and reaches no package index. This script, run here beside ``../shared``:

1. resolves nnunet-tongue's runtime requirements from this environment's installed metadata (the versions
   tested here), drops those the GPU image already has (``DEVICE_IMAGE``: the image's package list) and
   downloads the rest as wheels for the device's Python (manylinux x86-64); packages published only as
   sdists (medpy, acvl-utils: pure Python) are built into wheels here. nnunet-tongue itself travels as the
   checkout (its wheel would carry the 20 MB bundled model a second time);
2. leaves out ``OMITTED`` and writes import stubs for ``STUBS`` (why: see there);
3. data, one of:
   - ``--two-source WORKDIR``: the two-source dataset that ``benchmarks/bundled_model.py`` trains on (both
     sources' ``train`` cases at 192 px, as ``benchmarks/cross_dataset.py`` prepares them in WORKDIR), its
     photos as lossless WebP (a third smaller than PNG; unpacked to the same pixels there), and its stock plans;
   - ``--biohit``: ``../shared/data``'s ``biohit/`` and ``biohit_split.json``, for the GPU tier (54 MB: no
     longer fits beside the checkout with its bundled model);
4. prints the total against the transfer limit and stops if it is over.

    python benchmarks/device_bundle.py --two-source benchmarks/runs/cross_dataset/cpu   # bundled recipe on the GPU
    python benchmarks/device_bundle.py --python-version 3.11 --out /tmp/bundle311 --two-source ...  # a local dry run

``benchmarks/device_run.sh`` installs the bundle there and runs the GPU checks and trainings.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from biohit_benchmark import BIOHIT  # ../shared/data beside the checkout
from cross_dataset import dataset_name
from packaging.requirements import Requirement
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20

#: the GPU machine's image, as its package list gives it (installed; never carried)
DEVICE_IMAGE = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions huggingface-hub pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson
six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

#: module -> (its distribution, submodules imported by name, why it is only imported on this path).
#: The 54 MB of BioHit photos leave about 12 MiB of a call's 64 MiB for wheels; these three (61 MB) are
#: imported when nnU-Net starts but never called for a 2D PNG dataset. A stub answers every attribute with
#: a placeholder that raises if it is used, so a path that does need one fails loudly, never silently.
STUBS = {
    "SimpleITK": ("simpleitk", [], "nnU-Net's SimpleITKIO; PNG photos are read by NaturalImage2DIO"),
    "nibabel": ("nibabel", ["orientations"], "nnU-Net's NibabelIO, for NIfTI files only"),
    "cc3d": ("connected-components-3d", [], "acvl-utils' connected components, used by nnU-Net's own "
             "post-processing search, not by training, prediction or `nnunet-tongue segment`"),
}
#: required by some metadata, not imported on the path the device run takes (its dry run, in
#: docs/benchmarks.md, runs that path without them): tifffile only tries imagecodecs; graphviz, yacs and
#: dicom2nifti serve other nnU-Net commands; unittest2/future are batchgenerators' legacy helpers; blosc2
#: imports pydantic only for its remote-array client
OMITTED = {"imagecodecs", "graphviz", "yacs", "dicom2nifti", "unittest2", "linecache2", "traceback2", "future",
           "argparse", "pydantic"}
ROOTS = ["nnunet-tongue"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def to_carry(roots: list[str]) -> dict[str, str]:
    """{distribution: installed version} that ``roots`` need at run time (extras left out), less what the
    device image has, what is stubbed and what is omitted (nor what only those need)."""
    skip = DEVICE_IMAGE | OMITTED | {dist for dist, _, _ in STUBS.values()}
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = normalise(todo.pop())
        if name in found or name in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed here: run `pip install -e .` first")
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def fetch_wheel(name: str, version: str, python_version: str, dest: Path) -> None:
    """Download a binary wheel for the device, or build a pure-Python one here when only an sdist exists."""
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)]
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                f"--python-version={python_version}", "--implementation=cp", *platforms,
                "--platform=manylinux2014_x86_64", "--platform=any", "-d", str(dest), f"{name}=={version}"]
    if subprocess.run(download, capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp, f"{name}=={version}"],
                       check=True, capture_output=True)
        wheel = next(Path(tmp).glob("*.whl"))
        if not wheel.name.endswith("-none-any.whl"):
            raise SystemExit(f"{name} {version} has no {python_version} wheel and builds a compiled one here: "
                             "it cannot travel; add it to OMITTED with a reason or find a wheel")
        shutil.move(str(wheel), dest / wheel.name)


STUB_SOURCE = '''"""Import stub for runs on the lent GPU machine only (benchmarks/device_bundle.py): not {package}.

Imported here by {why}. Every attribute is a placeholder that raises when it is used.
"""


class _Unavailable:
    def __init__(self, name):
        self._name = name

    def _fail(self, *args, **kwargs):
        raise RuntimeError(f"{{self._name}} is used, but this run has only the import stub of benchmarks/"
                           "device_bundle.py: this code path needs the real package")

    __call__ = __getitem__ = __iter__ = __bool__ = _fail

    def __getattr__(self, attribute):
        self._fail()


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Unavailable(f"{{__name__}}.{{name}}")
'''


def write_stubs(stubs: Path) -> None:
    for module, (_, submodules, why) in STUBS.items():
        package = stubs / module
        package.mkdir(parents=True)
        for name in ["__init__", *submodules]:
            (package / f"{name}.py").write_text(STUB_SOURCE.format(package=module, why=why))


def pack_two_source(workdir: Path, out: Path) -> None:
    """The two-source raw dataset of ``workdir`` (symbolic links resolved) into ``out``: photos as lossless WebP,
    masks and dataset.json as they are, and the stock plans made here (the run there checks that it plans the
    same)."""
    raw, plans = workdir / "raw" / dataset_name("both"), workdir / "preprocessed" / dataset_name("both")
    if not (raw / "dataset.json").is_file() or not (plans / "nnUNetPlans.json").is_file():
        raise SystemExit(f"no prepared two-source dataset in {workdir}: run `python benchmarks/bundled_model.py` "
                         "(or cross_dataset.py's preparation) there first")
    (out / "imagesTr").mkdir(parents=True)
    for photo in sorted((raw / "imagesTr").glob("*.png")):
        with Image.open(photo) as image:
            image.save(out / "imagesTr" / f"{photo.stem}.webp", lossless=True, quality=100, method=4)
    shutil.copytree(raw / "labelsTr", out / "labelsTr", symlinks=False)
    shutil.copy2(raw / "dataset.json", out / "dataset.json")
    shutil.copy2(plans / "nnUNetPlans.json", out / "nnUNetPlans.json")


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / ".device", help="bundle folder (default .device, git-ignored)")
    p.add_argument("--python-version", default="3.12", help="the device's Python (3.12)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--two-source", type=Path, metavar="WORKDIR",
                      help="carry WORKDIR's two-source dataset (bundled_model.py's, e.g. benchmarks/runs/"
                           "cross_dataset/cpu) for the `bundled` step")
    data.add_argument("--biohit", type=Path, nargs="?", const=BIOHIT, metavar="DATA",
                      help=f"carry DATA's BioHit photos for the `tier` and `long` steps (default {BIOHIT})")
    args = p.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    wheels, stubs = args.out / "wheels", args.out / "stubs"
    wheels.mkdir(parents=True)
    carried = {name: version for name, version in to_carry(ROOTS).items() if name != "nnunet-tongue"}
    for name, version in sorted(carried.items()):
        fetch_wheel(name, version, args.python_version, wheels)
        print(f"wheel: {name} {version}")
    write_stubs(stubs)
    if args.two_source:
        pack_two_source(args.two_source, args.out / "two_source")
    elif args.biohit:
        if not (args.biohit / "biohit" / "images").is_dir():
            raise SystemExit(f"no BioHit at {args.biohit}: pass its folder to --biohit")
        shutil.copytree(args.biohit / "biohit", args.out / "data" / "biohit")
        shutil.copy2(args.biohit / "biohit_split.json", args.out / "data" / "biohit_split.json")
    tree = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                          check=True).stdout.decode().split("\0")
    total = size_of(args.out) + sum((REPO / f).stat().st_size for f in tree if f and (REPO / f).is_file())
    print(f"{args.out}: {size_of(args.out) / 2**20:.1f} MiB (wheels {size_of(wheels) / 2**20:.1f}); with the "
          f"working tree about {total / 2**20:.1f} MiB of the {LIMIT // 2**20} MiB a call may carry")
    if total > LIMIT:
        raise SystemExit("over the transfer limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
