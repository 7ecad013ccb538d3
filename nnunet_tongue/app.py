"""``nnunet-tongue app``: the tongue segmentation app, a local web page (Gradio), offline.

Drop one photo or many, press *Segment*: every photo's overlay, mask and cut-out, its quality flags and
tongue colour, a table of the batch, and one zip with everything (masks, cut-outs, overlays, the JSONL).
It runs :func:`nnunet_tongue.inference.segment.segment_photos`, the code of ``nnunet-tongue segment``, on the
uploaded files, so the app and the command give the same results.

Gradio (``pip install "nnunet-tongue[app]"``): it is made for ML model pages, runs without network (no
analytics, no share link unless asked), gives upload limits, per-session state with a clean-up callback
and progress bars tied to ``tqdm``. Bound to 127.0.0.1 unless ``--host`` says otherwise. Each session works in
its own temporary folder, removed when the session ends (page closed) and at exit; Gradio's copies of the
uploads and results are removed after 15 minutes and at exit.
"""


import argparse
import atexit
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from nnunet_tongue.models.packed import ModelError
from nnunet_tongue.models.store import DEFAULT_MODEL, find_model

#: largest upload accepted, per file (stated on the page)
MAX_UPLOAD_MB = 50
#: most photos segmented in one batch
MAX_PHOTOS = 500

_ROOT = Path(tempfile.mkdtemp(prefix="nnunet_tongue_app_"))
atexit.register(shutil.rmtree, _ROOT, True)
#: Gradio's own copies of uploads and results: under the app's folder, removed at exit and after 15 minutes
os.environ.setdefault("GRADIO_TEMP_DIR", str(_ROOT / "gradio"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


class Models:
    """Loaded models, one per (folder, device), shared by the sessions; one batch at a time uses a model."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self._loaded: dict[str, object] = {}
        self.lock = threading.Lock()

    def get(self, model: str):
        """The model named ``model`` (see ``nnunet-tongue models``) or in folder ``model``, loaded once."""
        from nnunet_tongue.inference.segmenter import TongueSegmenter

        key = str(find_model(os.path.expanduser(model)).resolve())
        if key not in self._loaded:
            self._loaded[key] = TongueSegmenter(key, device=self.device)
        return self._loaded[key]


def _new_session_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="session_", dir=_ROOT))


def _remove_session(state: dict | None) -> None:
    if state and state.get("folder"):
        shutil.rmtree(state["folder"], ignore_errors=True)


def _rows(records: list[dict]) -> list[list]:
    rows = []
    for r in records:
        if r["status"] != "ok":
            rows.append([r["name"], "failed", None, "", "", r["error"]])
            continue
        lab = ", ".join(f"{v:.1f}" for v in r["mean_lab"]) if r["mean_lab"] else ""
        rows.append([r["name"], "ok", round(100 * r["tongue_area_fraction"], 2), ", ".join(r["flags"]), lab, ""])
    return rows


def segment_batch(files: list[str] | None, model_folder: str, state: dict | None, models: Models):
    """The *Segment* button: uploaded files -> (state, gallery, table, zip, photo, overlay, mask, cut-out, message)."""
    import gradio as gr

    from nnunet_tongue.inference.segment import OutputFullError, segment_photos

    if not files:
        raise gr.Error("Drop one or more photos first (JPEG, PNG, BMP, TIFF or WebP).")
    if len(files) > MAX_PHOTOS:
        raise gr.Error(f"{len(files)} photos: at most {MAX_PHOTOS} per batch; segment the rest in another batch.")
    state = state or {"folder": str(_new_session_folder()), "runs": 0}
    state["runs"] += 1
    run = Path(state["folder"]) / f"run_{state['runs']}"
    photos, out = run / "photos", run / "segmented"
    photos.mkdir(parents=True)
    for f in files:
        name = Path(f).name
        if (photos / name).exists():
            raise gr.Error(f"two uploads are named {name}: rename one (their outputs would have the same name).")
        shutil.copyfile(f, photos / name)
    try:
        with models.lock:
            segmenter = models.get((model_folder or "").strip() or DEFAULT_MODEL)
            report = segment_photos([photos], out, segmenter, progress=True)
    except (ModelError, ValueError, FileNotFoundError, OutputFullError) as error:
        raise gr.Error(str(error)) from None
    archive = shutil.make_archive(str(run / "tongue_segmentation"), "zip", out)
    records = [*report.records, *({"name": Path(f.photo).stem, "status": "failed", "error": f.error}
                                  for f in report.failures)]
    state["records"], state["out"], state["photos"] = report.records, str(out), str(photos)
    gallery = [(str(out / r["overlay"]), f"{r['name']}" + (f" — {', '.join(r['flags'])}" if r["flags"] else ""))
               for r in report.records]
    message = (f"{len(report.records)} of {report.n_photos} photo(s) segmented in {report.seconds:.1f} s"
               + (f"; {len(report.failures)} failed (see the table)" if report.failures else ""))
    return (state, gallery, _rows(records), archive, *_views(state, 0), message)


def _views(state: dict, index: int) -> tuple:
    """Photo, overlay, mask and cut-out of the ``index``-th segmented photo (None when there is none)."""
    records = state.get("records") or []
    if not 0 <= index < len(records):
        return None, None, None, None
    r, out = records[index], Path(state["out"])
    return str(Path(state["photos"]) / Path(r["photo"]).name), str(out / r["overlay"]), str(out / r["mask"]), \
        str(out / r["cutout"])


def build_app(model_folder: str | None = None, device: str = "auto"):
    """The app's page (a ``gradio.Blocks``); ``model_folder``: the model offered first."""
    import gradio as gr

    models = Models(device)
    with gr.Blocks(title="Tongue segmentation", analytics_enabled=False, delete_cache=(300, 900)) as app:
        gr.Markdown("# Tongue segmentation\nDrop photos of tongues, press **Segment**. Research and tongue-photo "
                    "analysis only, not a medical device. Photos stay on this computer; the session's files "
                    f"are deleted when you close the page. Up to {MAX_UPLOAD_MB} MB per photo, "
                    f"{MAX_PHOTOS} photos per batch.")
        state = gr.State(None, delete_callback=_remove_session)
        with gr.Row():
            model = gr.Textbox(value=model_folder or DEFAULT_MODEL, label="Model (name or folder)", scale=4,
                               placeholder=f"{DEFAULT_MODEL} (bundled), a name from `nnunet-tongue models`, or "
                                           "nnUNet_results/Dataset501_Tongue/nnUNetTrainerTUNet__nnUNetPlans__2d")
            go = gr.Button("Segment", variant="primary", scale=1, elem_id="segment")
        files = gr.File(file_count="multiple", label="Photos", elem_id="photos",
                        file_types=[".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp"])
        message = gr.Markdown(elem_id="message")
        with gr.Row():
            photo = gr.Image(label="Photo", type="filepath", interactive=False)
            overlay = gr.Image(label="Overlay", type="filepath", interactive=False)
            mask = gr.Image(label="Mask", type="filepath", interactive=False)
            cutout = gr.Image(label="Cut-out", type="filepath", interactive=False)
        gallery = gr.Gallery(label="All photos (click one to see it above)", columns=6, height="auto")
        table = gr.Dataframe(headers=["photo", "status", "tongue area (%)", "quality flags", "mean L*a*b*",
                                      "error"], label="Results", interactive=False, elem_id="results")
        download = gr.File(label="Everything as one zip (masks, cut-outs, overlays, segment.jsonl)",
                           elem_id="download")

        def run(uploaded, folder, current, progress=gr.Progress(track_tqdm=True)):  # the bar follows tqdm
            return segment_batch(uploaded, folder, current, models)

        go.click(run, [files, model, state], [state, gallery, table, download, photo, overlay, mask, cutout, message],
                 concurrency_limit=1)

        def select(current, evt: gr.SelectData):
            return _views(current or {}, evt.index)

        gallery.select(select, [state], [photo, overlay, mask, cutout])
    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet-tongue app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", default=DEFAULT_MODEL,
                   help="model offered on the page: a name from `nnunet-tongue models` or a model folder "
                        f"(nnUNet_results/DatasetXXX/Trainer__Plans__2d); default the bundled {DEFAULT_MODEL}")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0: the network)")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    p.add_argument("-device", "--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('nnunet-tongue app: error: the app needs Gradio: pip install "nnunet-tongue[app]"', file=sys.stderr)
        return 2
    try:
        find_model(args.model)
    except ModelError as error:
        print(f"nnunet-tongue app: error: {error}", file=sys.stderr)
        return 2
    app = build_app(args.model, args.device)
    app.queue().launch(server_name=args.host, server_port=args.port, max_file_size=f"{MAX_UPLOAD_MB}mb",
                       show_error=True, quiet=True, prevent_thread_lock=True)
    print(f"nnunet-tongue app: open {app.local_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        app.close()
    return 0
