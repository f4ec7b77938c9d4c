"""Devices, roofline estimates, runtimes that cannot run here, and the CLI's bad-input paths."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dna_zoo.arch import Layer, Op
from dna_zoo.errors import MissingDependencyError, UnknownNameError
from dna_zoo.search.latency.build import resolve_spec
from dna_zoo.search.latency.cost import latency_cost_for
from dna_zoo.search.latency.devices import get_device, identify, known_devices
from dna_zoo.search.latency.estimate import Roofline, item_ms
from dna_zoo.search.latency.items import Item
from dna_zoo.search.latency.runtimes import RuntimeOptions, TensorRT, get_runtime
from dna_zoo.search.space import paper_space

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app_(), list(args))


def app_():
    from dna_zoo.cli.main import app

    return app


def test_device_profiles_carry_specs_and_sources():
    devs = known_devices()
    for name in ("cpu", "gpu", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "cortex-a76"):
        assert name in devs
    assert get_device("jetson").name.startswith("jetson-orin")  # alias (or the detected board on a Jetson)
    assert get_device("phone").name == "cortex-a76" and get_device("agx-orin").name == "jetson-agx-orin"
    for p in devs.values():
        assert p.source
        if not p.local:
            assert p.peak_gflops["fp32"] > 0 and p.memory_bandwidth_gbs > 0
    nano, agx = devs["jetson-orin-nano"], devs["jetson-agx-orin"]
    assert agx.peak_gflops["fp16"] > nano.peak_gflops["fp16"] > nano.peak_gflops["fp32"]
    ident = identify(devs["cpu"])
    assert ident.details["logical_cpus"] >= 1 and ident.description
    with pytest.raises(UnknownNameError, match="jetson-orin-nano"):
        get_device("jetsn-orin-nano")


def test_building_for_a_remote_device_elsewhere_says_how_to_measure_it():
    with pytest.raises(Exception, match="dna latency build --device jetson-agx-orin --runtime tensorrt"):
        identify(get_device("jetson-agx-orin"))


def test_estimate_is_marked_estimated_everywhere():
    cost = latency_cost_for(paper_space(), device="jetson", runtime="tensorrt", precision="fp16")[0]
    assert cost.estimated is True and cost.source.startswith("estimated")
    assert cost.table.estimated and all(e.source == "estimated" for e in cost.table.entries.values())
    assert (
        "dna latency build --device jetson-orin-nano --runtime tensorrt --precision fp16"
        in cost.table.method["warning"]
    )
    assert cost.fixed_cost() > 0
    # faster device, smaller estimate; fp16 faster than fp32. Per layer never slower, not always
    # faster: at batch 1 a small layer can be launch-bound on both, and a GPU-class estimate
    # charges each kernel max(launch, device time)
    agx = latency_cost_for(paper_space(), device="agx-orin", runtime="trt", precision="fp16")[0]
    nano32 = latency_cost_for(paper_space(), device="jetson", runtime="trt", precision="fp32")[0]
    cands = list(paper_space().block_candidates(2, depth=2))
    for c in cands:
        assert agx.cost(c) <= cost.cost(c) <= nano32.cost(c)
    totals = [sum(m.cost(c) for c in cands) for m in (agx, cost, nano32)]
    assert totals[0] < totals[1] < totals[2]


def test_roofline_orders_layers_sensibly():
    roof = Roofline(100.0, 50.0, 20.0, 5.0, 4, "test")
    small = Item("a", "layer", 40, 28, Layer(Op("ir", 3, 3, 0.25), 40, 1))
    wide = Item("b", "layer", 40, 28, Layer(Op("ir", 3, 6, 0.25), 40, 1))
    big_k = Item("c", "layer", 40, 28, Layer(Op("ir", 7, 6, 0.25), 40, 1))
    assert item_ms(small, roof) < item_ms(wide, roof) < item_ms(big_k, roof)


def test_tensorrt_missing_is_a_clear_install_line():
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; this checks the message where it is not")
    except ImportError:
        pass
    rt = get_runtime("trt", RuntimeOptions(precision="fp16"), device="gpu")
    with pytest.raises(MissingDependencyError, match=r"pip install 'dna-zoo\[trt\]'"):
        rt.check()


def test_tensorrt_engine_runs_a_layer(tmp_path, tiny_space):
    pytest.importorskip(
        "tensorrt", reason="TensorRT is not installable on these machines (no NVIDIA index, no GPU)"
    )
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs an NVIDIA GPU")
    from dna_zoo.search.latency.items import items_for
    from dna_zoo.search.latency.measurement import measure_item
    from dna_zoo.timing import TimingConfig

    spec = resolve_spec("gpu", "tensorrt", precision="fp16", input_size=32)
    item = items_for(tiny_space(), spec, include_published=False)[3]
    entry = measure_item(
        item, spec, TensorRT(RuntimeOptions(precision="fp16")), tmp_path, timing=TimingConfig.quick()
    )
    assert entry.runs > 0


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_devices_json():
    r = invoke("latency", "devices", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    names = {d["name"] for d in data["devices"]}
    assert {"cpu", "jetson-orin-nano", "cortex-a76"} <= names
    assert data["runtimes"]["onnxruntime"] == "installed"
    assert data["tables"] == []  # the test cache is empty


@pytest.mark.parametrize(
    "args,expected",
    [
        (["build", "--device", "tpu-v9"], "unknown device 'tpu-v9'"),
        (["build", "--device", "cpu", "--runtime", "tflite"], "unknown runtime 'tflite'"),
        (
            ["predict", "dna_b", "--device", "cpu", "--runtime", "tensorrt"],
            "runtimes for cpu: onnxruntime, torch",
        ),
        (["build", "--device", "jetson", "--runtime", "tensorrt"], "pip install 'dna-zoo[trt]'"),
        (["build", "--device", "cpu", "--runtime", "ort", "--precision", "fp16"], "precision 'fp16'"),
        (["predict", "dna_q"], "unknown DNA model 'dna_q'"),
        (["validate", "--device", "cpu", "--input-size", "48"], "no measured latency table"),
        (["build", "--device", "jetson", "--estimate"], "--out"),
    ],
)
def test_cli_bad_input_is_one_line(args, expected):
    r = invoke("latency", *args)
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and expected in r.output
    assert "Traceback" not in r.output


def test_cli_unknown_runtime_lists_known_ones():
    r = invoke("latency", "build", "--runtime", "tflite")
    assert r.exit_code == 1 and "onnxruntime" in r.output and "tensorrt" in r.output


def test_cli_corrupt_or_foreign_table(tmp_path, fake_table, tiny_space, tiny_spec):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dna-zoo-latency-table", "version": 1, "spec": {')
    r = invoke("latency", "predict", "dna_b", "--table", str(bad))
    assert r.exit_code == 1 and "not a valid latency table" in r.output
    other = fake_table(tiny_space(), tiny_spec()).save(tmp_path / "t32.json")  # made for 32px
    r = invoke("latency", "predict", "dna_b", "--table", str(other))
    assert r.exit_code == 1 and "input_size is 32, wanted 224" in r.output and "--force" in r.output
    assert bad.read_text().endswith("{") and other.is_file()  # inputs untouched


def test_cli_predict_estimated_for_jetson():
    r = invoke("latency", "predict", "dna_b", "--device", "jetson", "--precision", "fp16", "--json")
    assert r.exit_code == 0, r.output
    (data,) = json.loads(r.stdout)  # one object per network
    assert data["estimated"] is True and data["latency_ms"] > 0
    assert (
        "dna latency build --device jetson-orin-nano --runtime tensorrt --precision fp16" in data["warning"]
    )
    r = invoke("latency", "predict", "dna_b", "--device", "jetson", "--precision", "fp16")
    assert r.exit_code == 0 and "ESTIMATED" in r.stdout and "warning:" in r.stderr


def test_cli_estimate_written_to_out(tmp_path):
    out = tmp_path / "nx.json"
    r = invoke(
        "latency",
        "build",
        "--device",
        "orin-nx",
        "--runtime",
        "tensorrt",
        "--precision",
        "fp16",
        "--estimate",
        "--out",
        str(out),
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["estimated"] is True
    from dna_zoo.search.latency.table import LatencyTable

    t = LatencyTable.load(out, expect=resolve_spec("jetson-orin-nx", "tensorrt", precision="fp16"))
    assert t.estimated and len(t.entries) == 77
