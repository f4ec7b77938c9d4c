"""Open an exported artifact as a :class:`~dna_zoo.export.runners.Runner`, after checking
it against its manifest (sha256 of every file; for an engine, the machine it was built for)."""

from __future__ import annotations

from pathlib import Path

from dna_zoo.errors import DataError
from dna_zoo.export.artifact import read_manifest, verify_files
from dna_zoo.export.runners import DEFAULT_THREADS, Runner, openvino_runner, ort_runner


def load_runner(path: str | Path, *, threads: int | None = DEFAULT_THREADS) -> Runner:
    """A runner for an exported artifact, checked against its manifest (sha256, machine)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"artifact {path} does not exist")
    manifest = read_manifest(path)
    verify_files(path, manifest)
    fmt = manifest.get("format")
    label = manifest.get("label", fmt)
    if fmt in ("onnx", "onnx-int8") or (fmt == "engine" and path.suffix == ".onnx"):
        return ort_runner(path, threads=threads, name=label)
    if fmt == "openvino":
        execution = manifest.get("runtime", {}).get("openvino", {}).get("INFERENCE_PRECISION_HINT", "f32")
        return openvino_runner(path, threads=threads, name=label, execution=execution)
    if fmt == "engine":
        from dna_zoo.export.trt import engine_runner  # TensorRT only when an engine is opened

        return engine_runner(path, manifest)
    raise DataError(f"{path}: unknown artifact format {fmt!r} in its manifest")
