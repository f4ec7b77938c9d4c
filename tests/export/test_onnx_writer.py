"""The one ONNX writer: both torch exporters on a real timm net, checked through real ORT sessions."""

import warnings

import numpy as np
import onnx
import pytest
import timm
import torch

import dna_zoo  # noqa: F401
from dna_zoo.export.onnx_writer import DYNAMO_MIN_OPSET, OnnxExportError, replicate_graph, write_onnx_file
from dna_zoo.export.ort import cpu_session, session_options
from dna_zoo.search.space import small_space


@pytest.fixture(scope="module")
def net():
    space = small_space()
    enc = space.to_encoding([next(space.block_candidates(b)) for b in range(len(space.blocks))])
    m = timm.create_model("dna_net", arch=enc, num_classes=10).eval()
    with torch.no_grad():  # move BatchNorm off its identity init so the logits are not ~0
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _export(net, path, exporter):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_onnx_file(
            net,
            (torch.randn(1, 3, 32, 32),),
            path,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            exporter=exporter,
        )
    return [w for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_both_exporters_match_torch_with_a_dynamic_batch(net, tmp_path, exporter):
    path = tmp_path / "net.onnx"
    assert _export(net, path, exporter) == []  # no deprecation notice escapes our call
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # one self-contained file
    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == (17 if exporter == "torchscript" else DYNAMO_MIN_OPSET)
    sess = cpu_session(path, threads=2)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            ref = net(x).numpy()
        out = sess.run(None, {"input": x.numpy()})[0]
        assert out.shape == (batch, 10) and np.abs(ref).max() > 1e-2
        assert np.abs(out - ref).max() < 1e-4


def test_copies_side_by_side_run_each_on_their_own_inputs(net, tmp_path):
    one = write_onnx_file(
        net, (torch.randn(1, 3, 32, 32),), tmp_path / "one.onnx", input_names=["x0"], exporter="torchscript"
    )
    two = replicate_graph(one, 2, tmp_path / "two.onnx")
    sess = cpu_session(two, session_options(1))
    a, b = (np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(2))
    names = [i.name for i in sess.get_inputs()]
    assert names == ["c0_x0", "c1_x0"]
    out_a, out_b = sess.run(None, dict(zip(names, (a, b), strict=True)))
    single = cpu_session(one, threads=1)
    np.testing.assert_allclose(out_a, single.run(None, {"x0": a})[0], atol=1e-5)
    np.testing.assert_allclose(out_b, single.run(None, {"x0": b})[0], atol=1e-5)


@pytest.mark.filterwarnings("ignore:Exporting to ONNX opset version 99")
def test_an_export_torch_refuses_is_one_clear_error(net, tmp_path):
    with pytest.raises(OnnxExportError, match="opset 99"):
        write_onnx_file(
            net, (torch.randn(1, 3, 32, 32),), tmp_path / "bad.onnx", input_names=["x"], opset=99,
            exporter="torchscript",
        )  # fmt: skip
