"""Every CUDA / TensorRT path of dna-zoo, run once, one line per path with its figures.

Run by ``bench/gpu_check.sh`` (under 8 minutes on one modern NVIDIA GPU). A path that
cannot run here prints ``skipped: <why>``; a path that fails prints ``FAILED: <last error
line>``. It never stops at the first failure and always exits 0 once every path has been
tried (exit 1 only if the script itself breaks), so the output is the record.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DNA = [sys.executable, "-m", "dna_zoo.cli"]
KEYS = ("spearman", "tau", "error", "median", "loss", "top1", "passed", "step", "diff", "agreement", "ms")
WORK = Path(tempfile.mkdtemp(prefix="dna-gpu-check-"))
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", "460"))
T0 = time.monotonic()


def line(path: str, text: str) -> None:
    print(f"{path:<34} {text}", flush=True)


def figures(obj, prefix: str = "") -> dict:
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(figures(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float, bool, str)) and any(k in prefix.lower() for k in KEYS):
        out[prefix.rstrip(".")] = round(obj, 4) if isinstance(obj, float) else obj
    return out


def dna(path: str, *args: str, timeout: int = 120, json_out: bool = True) -> dict | None:
    """Run one `dna` command; print its figures or why it failed; returns its JSON."""
    left = BUDGET_S - (time.monotonic() - T0)
    if left < 10:
        line(path, "skipped: the 8-minute budget is spent")
        return None
    cmd = [*DNA, *args, *(["--json"] if json_out else [])]
    t = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=min(timeout, left))
    except subprocess.TimeoutExpired:
        line(path, f"FAILED: timed out after {min(timeout, left):.0f} s")
        return None
    secs = time.monotonic() - t
    if r.returncode != 0:
        err = [x for x in (r.stderr + r.stdout).splitlines() if x.strip()]
        line(path, f"FAILED (rc {r.returncode}, {secs:.0f} s): {err[-1][:200] if err else 'no output'}")
        return None
    data = None
    if json_out:
        try:
            data = json.loads(r.stdout[r.stdout.index("{") :])
        except ValueError:
            data = None
    figs = figures(data) if data else {}
    last = (r.stdout.strip().splitlines() or [""])[-1][:160]
    shown = ", ".join(f"{k}={v}" for k, v in list(figs.items())[:8]) or last
    line(path, f"ok ({secs:.0f} s): {shown}")
    return data or {}


def main() -> int:
    import torch

    cuda = torch.cuda.is_available()
    line("torch", f"{torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}")
    has_trt = importlib.util.find_spec("tensorrt") is not None
    if has_trt:
        import tensorrt

        line("tensorrt", f"tensorrt.__version__ = {tensorrt.__version__}")
    else:
        line("tensorrt", "skipped: tensorrt is not importable (pip install dna-zoo[trt])")
    if not cuda:
        for p in (
            "latency torch (cuda) + validate",
            "latency torch-compile (cuda) + validate",
            "latency tensorrt fp32 / fp16",
            "supernet 20 AMP steps + resume",
            "supernet rate (cuda)",
            "teacher on the GPU",
            "retrain 20 AMP steps",
            "onnx on ORT CUDA provider",
            "trt engines fp32/dynamic/half/int8",
        ):
            line(p, "skipped: no CUDA")
        return 0
    size = ["--input-size", "64", "--batch", "1"]
    for rt in ("torch", "torch-compile"):
        table = WORK / f"{rt}.json"
        got = dna(f"latency {rt} (cuda) build", "latency", "build", "--device", "gpu", "--runtime", rt,
                  "--out", str(table), "--no-published", *size, "--quiet", timeout=150)  # fmt: skip
        if got is not None:
            dna(f"latency {rt} (cuda) validate", "latency", "validate", "--device", "gpu", "--runtime", rt,
                "--samples", "8", "--out", str(WORK / f"{rt}.validate.json"), *size, timeout=90)  # fmt: skip
    if has_trt:
        for prec in ("fp32", "fp16"):
            dna(f"latency tensorrt {prec} build", "latency", "build", "--device", "gpu",
                "--runtime", "tensorrt", "--precision", prec, "--out", str(WORK / f"trt-{prec}.json"),
                "--no-published", *size, "--quiet", timeout=150)  # fmt: skip
    else:
        line("latency tensorrt fp32 / fp16", "skipped: tensorrt is not importable")
    teacher = WORK / "teacher.safetensors"
    dna("teacher on the GPU (AMP)", "supernet", "teacher", "--model", "mobilenetv2_050", "--epochs", "1",
        "--limit", "2048", "--out", str(teacher), timeout=90)  # fmt: skip
    run = WORK / "supernet"
    tw = ["--teacher", "mobilenetv2_050", "--teacher-weights", str(teacher)]
    common = ["--space", "small", "--data", "builtin", "--batch-size", "64", "--device", "cuda"]
    if dna("supernet 10 AMP steps", "supernet", "train", *common, *tw, "--out", str(run),
           "--max-steps", "10", "--ckpt-every", "10", timeout=120) is not None:  # fmt: skip
        dna("supernet resume to 20 steps", "supernet", "train", "--resume", str(run), "--max-steps", "20",
            timeout=120)  # fmt: skip
        dna("supernet rate (cuda)", "supernet", "rate", str(run), "--device", "cuda", "--eval-batches", "2",
            "--bn-batches", "2", timeout=120)  # fmt: skip
    dna("retrain 20 AMP steps (KD)", "retrain", "dna_a", "--epochs", "1", "--max-steps-per-epoch", "20",
        "--eval-batches", "2", "--batch-size", "64", *tw, "--out", str(WORK / "retrain"), json_out=False,
        timeout=120)  # fmt: skip
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        _ort_cuda()
    else:
        line("onnx on ORT CUDA provider", f"skipped: ORT has {ort.get_available_providers()}")
    if has_trt:
        arts = WORK / "trt"
        for name, extra in (
            ("trt engine fp32", []),
            ("trt engine fp32 --dynamic", ["--dynamic"]),
            ("trt engine --half", ["--half"]),
            ("trt engine --int8", ["--int8", "--calib-size", "64"]),
        ):
            dna(name, "export", "dna_a", "--format", "trt", *extra, "--out", str(arts / name.split()[-1]),
                "--force", timeout=150)  # fmt: skip
    else:
        line("trt engines fp32/dynamic/half/int8", "skipped: tensorrt is not importable")
    shutil.rmtree(WORK, ignore_errors=True)
    line("total", f"{time.monotonic() - T0:.0f} s")
    return 0


def _ort_cuda() -> None:
    import numpy as np
    import onnxruntime as ort
    import timm
    import torch

    import dna_zoo  # noqa: F401
    from dna_zoo.export.onnx_writer import write_onnx_file

    try:
        model = timm.create_model("dna_a").eval()
        x = torch.randn(4, 3, 224, 224)
        path = write_onnx_file(model, [x], WORK / "a.onnx", input_names=["input"], exporter="torchscript")
        sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
        y = sess.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        t = time.perf_counter()
        for _ in range(20):
            sess.run(None, {"input": x.numpy()})
        ms = (time.perf_counter() - t) / 20 * 1e3
        diff = np.abs(y - ref).max()
        line("onnx on ORT CUDA provider", f"ok: max abs diff {diff:.2e}, {ms:.2f} ms per batch of 4")
    except Exception as e:  # reported, never hidden
        line("onnx on ORT CUDA provider", f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


if __name__ == "__main__":
    sys.exit(main())
