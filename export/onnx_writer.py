"""Writing ONNX files: the one torch -> ONNX export every part of dna-zoo uses.

The export formats, the latency tables (one small graph per candidate block) and the
pipeline all write through :func:`write_onnx_file`; :func:`replicate_graph` puts ``k``
renamed copies of a graph side by side (latency tables time marginal costs that way).

Two torch exporters:

- ``"dynamo"``: torch's supported, ``torch.export``-based exporter (opset >= 18, dynamic
  axes as ``dynamic_shapes``, one file: ``external_data=False``);
- ``"torchscript"``: the deprecated TorchScript-based one (``dynamo=False``). Callers that
  keep it say why where they call it (measured: same parity, far shorter export time; see
  ``LEGACY_REASON``). Its deprecation notices are expected there and filtered by message.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch

from dna_zoo.errors import DnaZooError

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
DYNAMO_MIN_OPSET = 18
#: Why the call sites keep the TorchScript exporter (figures in bench/results/onnx_exporters.md).
LEGACY_REASON = (
    "the torch.export-based exporter gives the same parity but takes 6-10x the export time "
    "on dna_b and 15-50x on a tiny net (a latency table exports hundreds of small graphs)"
)
_LEGACY_NOTICES = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)


class OnnxExportError(DnaZooError, RuntimeError):
    """torch could not export the model, or the result does not pass onnx.checker."""


def write_onnx_file(
    module: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int = 17,
    exporter: Exporter = "dynamo",
    check: bool = True,
    hint: str = "run with --debug for the traceback",
) -> Path:
    """Export ``module(*inputs)`` to one self-contained ``.onnx`` file at ``path``.

    ``dynamic_axes`` maps input/output names to ``{dim: name}``; with ``"dynamo"`` the input
    entries become ``dynamic_shapes`` (outputs follow). ``check`` runs ``onnx.checker``.
    """
    path = Path(path)
    module = module.eval()
    call = (module, tuple(inputs), str(path))
    names = {"input_names": list(input_names), "output_names": list(output_names) if output_names else None}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if exporter == "torchscript":
                for notice in _LEGACY_NOTICES:
                    warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
                torch.onnx.export(
                    *call,
                    **names,
                    dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()} or None,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            elif exporter == "dynamo":
                torch.onnx.export(
                    *call,
                    **names,
                    dynamic_shapes=_dynamic_shapes(input_names, dynamic_axes or {}),
                    opset_version=max(opset, DYNAMO_MIN_OPSET),
                    dynamo=True,
                    external_data=False,
                    optimize=True,
                    verbose=False,
                )
            else:
                raise ValueError(f"unknown ONNX exporter {exporter!r}")
    except Exception as e:  # the exporters raise many types; the message is what matters
        raise OnnxExportError(
            f"torch could not export the model to ONNX opset {opset}: {str(e).splitlines()[0][:200]}",
            hint=hint,
        ) from e
    leftovers = [p for p in path.parent.iterdir() if p != path and p.name.startswith(path.name + ".")]
    leftovers = [p for p in leftovers if p.suffix == ".data"]
    if leftovers:
        raise OnnxExportError(f"the exporter wrote external data ({leftovers[0].name}); expected one file")
    if check:
        import onnx

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as e:
            raise OnnxExportError(f"onnx.checker rejects the exported model: {str(e)[:200]}") from e
    return path


def _dynamic_shapes(
    input_names: Sequence[str], axes: Mapping[str, Mapping[int, str]]
) -> tuple[dict[int, object] | None, ...] | None:
    """``dynamic_axes`` of the inputs as ``torch.export`` dims (one ``Dim`` per axis name)."""
    if not any(name in axes for name in input_names):
        return None
    dims: dict[str, object] = {}
    out: list[dict[int, object] | None] = []
    for name in input_names:
        spec = axes.get(name)
        if not spec:
            out.append(None)
            continue
        out.append({int(i): dims.setdefault(n, torch.export.Dim(n, min=1)) for i, n in spec.items()})
    return tuple(out)


def replicate_graph(src: Path, k: int, dst: Path) -> Path:
    """``k`` renamed copies of an ONNX graph side by side in one model (own inputs, outputs, weights)."""
    import onnx
    from onnx import compose, helper

    m = onnx.load(str(src))
    parts = [compose.add_prefix(m, f"c{i}_") for i in range(k)]
    graph = helper.make_graph(
        nodes=[n for p in parts for n in p.graph.node],
        name="copies",
        inputs=[x for p in parts for x in p.graph.input],
        outputs=[y for p in parts for y in p.graph.output],
        initializer=[t for p in parts for t in p.graph.initializer],
        value_info=[v for p in parts for v in p.graph.value_info],
    )
    model = helper.make_model(graph, opset_imports=m.opset_import, ir_version=m.ir_version)
    onnx.save(model, str(dst))
    return dst


def is_fp16_graph(path: Path) -> bool:
    """Whether the graph at ``path`` carries fp16 weights (as :func:`convert_fp16` writes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def convert_fp16(src: Path, dst: Path) -> Path:
    """An fp16 copy of the fp32 graph at ``src`` with fp32 inputs and outputs kept.

    ONNX Runtime's converter (``onnxruntime.transformers.float16``, ``keep_io_types``) adds
    the input casts after the nodes that read them, so the nodes are put back in
    topological order before the file is checked and written. TensorRT 11 builds
    strongly typed networks only: an FP16 engine comes from a graph like this one.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from dna_zoo.io import atomic_write_bytes

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _sort_topologically(model.graph)
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(dst), model.SerializeToString())
    return Path(dst)


def _sort_topologically(graph) -> None:
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise DnaZooError("the fp16 graph has a cycle or a dangling input; cannot order its nodes")
        for n in ready:
            known.update(n.output)
        ordered += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
