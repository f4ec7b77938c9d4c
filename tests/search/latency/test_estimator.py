"""Estimator v2: the shipped public data and parameters, the network rows, device files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dna_zoo.errors import ConfigError, UnknownNameError
from dna_zoo.search.latency.build import resolve_spec
from dna_zoo.search.latency.devices import get_device, known_devices
from dna_zoo.search.latency.estimate import estimate_info, estimate_network_ms, estimate_table
from dna_zoo.search.latency.estimator.model import CLASSES, device_class, shipped_params
from dna_zoo.search.latency.estimator.network import Network, UnsupportedOpError, encoding_network
from dna_zoo.search.latency.estimator.public import public_data
from dna_zoo.search.latency.predict import predict
from dna_zoo.zoo import resolve_arch

BOARD = {
    "name": "my-board",
    "kind": "soc",
    "peak_gflops": {"fp32": 1000, "fp16": 8000},
    "memory_bandwidth_gbs": 60,
    "runtimes": ["tensorrt", "onnxruntime"],
    "source": "my board's data sheet",
}


def write_board(tmp_path, **changes):
    d = {**BOARD, **changes}
    d = {k: v for k, v in d.items() if v is not None}
    p = tmp_path / "board.json"
    p.write_text(json.dumps(d))
    return str(p)


def test_public_data_every_device_has_a_profile_and_every_net_is_expressible():
    data = public_data()
    assert len(data.networks) > 1000 and {"ofa", "help"} <= set(data.sources)
    used = {s.device for s in data.settings if s.device != "cpu"}  # OFA's Xeon model is not stated
    for dev in used:
        p = get_device(dev)
        assert p.source and p.peak_gflops.get("fp32") and p.memory_bandwidth_gbs
    for s in data.settings:
        assert len(s.nets) == len(s.ms) and all(n in data.networks for n in s.nets)
    # FBNet's grouped ops add a shuffle; h-swish + SE nets come from OFA: both kinds are present
    rows = [r for n in data.networks.values() for r in n.rows]
    assert any(r[0] == "mb" and r[10] == 2 for r in rows) and any(r[0] == "mb" and r[8] for r in rows)
    assert any(r[0] == "mb" and r[7] == "hswish" for r in rows)


def test_shipped_params_cover_every_class_and_quote_held_out_error():
    params = shipped_params()
    assert set(CLASSES) <= set(params.classes)
    for cls in CLASSES:
        h = params.get(cls).held_out
        assert h["mean_abs_pct_error"] > 0 and h["settings"] >= 1 and "method" in h
        assert all(v >= 0 for v in params.get(cls).coef.values())
    assert params.meta["generated_by"] == "bench/latency_public.py"


def _class_rows(cls: str):
    from dna_zoo.search.latency.estimator.fit import setting_data

    data = public_data()
    settings = [s for s in data.settings if s.device != "cpu" and device_class(get_device(s.device)) == cls]
    return setting_data(data, settings)


@pytest.mark.parametrize("cls", ["phone-cpu", "gpu"])
def test_shipped_params_are_what_the_fit_gives(cls):
    """The data file is the fit's output (with the options it records), not hand-edited numbers."""
    from dna_zoo.search.latency.estimator.fit import FitOptions, make_params

    shipped = shipped_params().get(cls)
    fit = shipped.fit
    assert set(fit) == {"tied", "dropped", "staged", "overlap", "by_architecture"}
    assert fit["overlap"] == shipped.overlap
    opts = FitOptions.of(shipped)
    assert opts.recorded() == fit
    refit = make_params(cls, _class_rows(cls), opts, ref_gflops=shipped.ref_gflops)
    np.testing.assert_allclose(refit.vector(), shipped.vector(), rtol=1e-6, atol=1e-9)
    assert set(refit.fixed_by_architecture) == set(shipped.fixed_by_architecture)
    for arch, fixed in shipped.fixed_by_architecture.items():
        np.testing.assert_allclose(
            [refit.fixed_by_architecture[arch][f] for f in fixed], list(fixed.values()), rtol=1e-6
        )
    for group in fit["tied"]:  # tied features share one coefficient
        assert len({shipped.coef[f] for f in group}) == 1
    assert all(shipped.coef[f] == 0 for f in fit["dropped"])


def test_staged_fit_takes_fixed_costs_from_batch_1_and_throughput_from_batched_settings():
    from dna_zoo.search.latency.estimator.fit import FIXED_FEATURES, FitOptions, fit_coef
    from dna_zoo.search.latency.estimator.model import FEATURES

    rows = _class_rows("gpu")
    single = [sd for sd in rows if sd.setting.batch == 1]
    assert single and len(single) < len(rows)
    opts = FitOptions("scaled", tied=[FIXED_FEATURES[:3]], staged=True)
    staged = fit_coef(rows, opts, ref_gflops=12150.0)
    fixed = [FEATURES.index(f) for f in FIXED_FEATURES]
    # the fixed costs depend on the batch-1 settings alone ...
    np.testing.assert_allclose(staged[fixed], fit_coef(single, opts, ref_gflops=12150.0)[fixed], rtol=1e-9)
    # ... and are host-scale costs (tens of microseconds per kernel, under a ms per inference)
    assert (
        10 < staged[FEATURES.index("conv_kernels")] < 200 and 0 < staged[FEATURES.index("per_inference")] < 2
    )
    # the batched settings move the throughput terms (grouped 1x1 + shuffle is slow on these GPUs)
    assert staged[FEATURES.index("grouped")] > 2
    # a joint fit lets the batched settings pull the fixed costs away from the batch-1 fit
    joint = fit_coef(rows, dataclasses.replace(opts, staged=False), ref_gflops=12150.0)
    assert not np.allclose(joint[fixed], staged[fixed], rtol=1e-3)
    # the overlap model keeps the batch-1 fixed costs and refits only the throughput terms
    overlap = fit_coef(rows, dataclasses.replace(opts, overlap=True), ref_gflops=12150.0)
    np.testing.assert_allclose(overlap[fixed], staged[fixed], rtol=1e-9)
    assert not np.allclose(np.delete(overlap, fixed), np.delete(staged, fixed), rtol=1e-3)
    with pytest.raises(ValueError, match="staged"):
        FitOptions("scaled", overlap=True)
    with pytest.raises(ValueError, match="overlap"):
        FitOptions("scaled", staged=True, by_architecture=True)
    with pytest.raises(ValueError, match="unknown estimator features"):
        FitOptions("scaled", tied=[("dense", "no_such_feature")])
    with pytest.raises(ValueError, match="fixed_cost"):
        FitOptions("per-device")


def test_gpu_fixed_costs_by_architecture_come_from_that_architectures_batch_1_settings():
    """Batch-1 latency on these GPUs is host / driver bound: the Turing cards pay less per kernel
    than the Pascal ones, whatever their peak; a device of a fitted architecture pays its
    architecture's (absolute) fixed costs, any other the class-wide (scaled) ones."""
    from dataclasses import replace

    from dna_zoo.search.latency.estimator.fit import fixed_by_architecture
    from dna_zoo.search.latency.estimator.model import FEATURES, coef_for, specs_for

    gpu = shipped_params().get("gpu")
    assert gpu.fit["by_architecture"] and set(gpu.fixed_by_architecture) == {"pascal", "turing"}
    assert (
        gpu.fixed_by_architecture["turing"]["conv_kernels"]
        < gpu.fixed_by_architecture["pascal"]["conv_kernels"]
    )
    rows = _class_rows("gpu")
    turing = [sd for sd in rows if sd.specs.architecture == "turing"]
    assert {sd.profile.name for sd in turing} == {"rtx-2080-ti", "titan-rtx"}
    # the architecture's costs depend on its own batch-1 settings only
    i = FEATURES.index("conv_kernels")
    only_turing_b1 = [sd for sd in turing if sd.setting.batch == 1]
    assert fixed_by_architecture(only_turing_b1, tied=gpu.fit["tied"])["turing"][i] == pytest.approx(
        gpu.fixed_by_architecture["turing"]["conv_kernels"]
    )
    s2080 = specs_for(get_device("rtx-2080-ti"), "fp32")
    assert (
        gpu.unit(s2080) == 1.0
        and coef_for(gpu, s2080)[i] == gpu.fixed_by_architecture["turing"]["conv_kernels"]
    )
    # an architecture the fit has no batch-1 data for (Volta: the V100 is batch 64 only) falls back
    v100 = specs_for(get_device("v100"), "fp32")
    assert v100.architecture == "volta" and gpu.unit(v100) == pytest.approx(gpu.ref_gflops / v100.fp32_gflops)
    assert coef_for(gpu, v100)[i] == gpu.coef["conv_kernels"]
    assert coef_for(gpu, replace(s2080, architecture=None))[i] == gpu.coef["conv_kernels"]
    # an estimated table records the coefficients the device was priced with
    spec = resolve_spec("rtx-2080-ti", "torch", precision="fp32")
    method = estimate_table(None, spec, include_published=False, networks=[resolve_arch("dna_a")]).method
    assert method["coefficients"]["conv_kernels"] == gpu.fixed_by_architecture["turing"]["conv_kernels"]
    assert method["fixed_cost"] == "absolute" and method["fixed_cost_unit"] == 1.0


def test_overlap_model_charges_the_longer_of_launch_and_device_time():
    """Per kernel: the sum of launch and device time is the linear model; overlap takes the max."""
    from dataclasses import replace

    from dna_zoo.search.latency.estimator.fit import FIXED_FEATURES
    from dna_zoo.search.latency.estimator.model import features, network_ms, specs_for
    from dna_zoo.search.latency.estimator.network import kernels

    ofa = next(s for s in public_data().settings if s.label == "ofa:1080ti@b64")
    ks = kernels(public_data().networks[ofa.nets[-1]].rows)
    gpu = shipped_params().get("gpu")
    assert gpu.overlap
    # the class-wide fixed costs (not the Pascal ones), so the coefficient vectors here apply as they are
    specs = replace(specs_for(get_device("gtx-1080-ti"), "fp32"), architecture=None)
    additive = replace(gpu, overlap=False)
    launch_only = replace(
        additive, coef={**dict.fromkeys(gpu.coef, 0.0), **{f: gpu.coef[f] for f in FIXED_FEATURES}}
    )
    device_only = replace(additive, coef={**gpu.coef, **dict.fromkeys(FIXED_FEATURES, 0.0)})
    ms = {}
    for batch in (1, 64):
        linear = float(features(ks, specs, batch=batch, unit=gpu.unit(specs)) @ additive.vector())
        assert network_ms(ks, specs, additive, batch=batch) == pytest.approx(linear, rel=1e-12)
        launch, device = (network_ms(ks, specs, p, batch=batch) for p in (launch_only, device_only))
        ms[batch] = both = network_ms(ks, specs, gpu, batch=batch)
        assert max(launch, device + gpu.coef["per_inference"] * gpu.unit(specs)) <= both < linear
        ms[batch, "launch"], ms[batch, "device"] = launch, device
    # batch 1 is mostly launch-bound (launch costs hide most device time), batch 64 mostly device-bound
    assert ms[1] < ms[1, "launch"] + 0.5 * ms[1, "device"]
    assert ms[64] < ms[64, "device"] + 0.5 * ms[64, "launch"]


def test_jetson_class_is_the_gpu_fit_with_absolute_fixed_costs():
    params = shipped_params()
    gpu, jetson = params.get("gpu"), params.get("jetson-gpu")
    np.testing.assert_array_equal(gpu.vector(), jetson.vector())
    assert gpu.fixed_cost == "scaled" and jetson.fixed_cost == "absolute" and gpu.overlap and jetson.overlap
    assert jetson.fixed_by_architecture == gpu.fixed_by_architecture
    assert "jetson-tx2" not in gpu.fitted_on and "TX2" in jetson.held_out["method"]


def test_tx2_profile_is_its_default_power_mode_and_maxn_is_its_own_profile():
    """OFA does not say which nvpmodel mode its TX2 ran: the default (mode 3) is assumed."""
    default, maxn = get_device("tx2"), get_device("jetson-tx2-maxn")
    assert default.name == "jetson-tx2" and "PM_CONFIG DEFAULT=3" in default.source
    assert default.peak_gflops["fp32"] == pytest.approx(256 * 2 * 1.12, abs=0.1)  # GPU capped at 1120 MHz
    assert default.memory_bandwidth_gbs == pytest.approx(128 / 8 * 2 * 1.6)  # EMC capped at 1600 MHz
    assert maxn.peak_gflops["fp32"] == pytest.approx(256 * 2 * 1.3) and maxn.memory_bandwidth_gbs > 59
    assert default.architecture == maxn.architecture == "pascal" and not maxn.board_match


def test_unsupported_ops_are_named():
    with pytest.raises(UnsupportedOpError, match="'attention'"):
        Network("n", 32, (("attention", 8, 16, 16),))
    with pytest.raises(UnsupportedOpError, match="activation gelu"):
        Network("n", 32, (("conv", 32, 3, 16, 3, 1, 1, "gelu", 1),))


@pytest.mark.parametrize("device", ["jetson-orin-nano", "cortex-a76", "rtx-2080-ti", "xeon-gold-6240"])
def test_estimated_table_adds_up_to_the_whole_network_estimate(device):
    prof = get_device(device)
    spec = resolve_spec(device, prof.runtimes[0], precision="fp32", batch=2)
    enc = resolve_arch("dna_b")
    table = estimate_table(None, spec, include_published=False, networks=[enc])
    assert table.estimated and table.method["kind"] == "calibrated-roofline-v2"
    pred = predict(table, enc).total_ms
    assert pred == pytest.approx(estimate_network_ms(encoding_network(enc), spec), rel=1e-9)
    bigger = estimate_network_ms(encoding_network(resolve_arch("dna_d")), spec)
    assert bigger > pred  # DNA-d has more work than DNA-b on every device
    info = table.method["estimate"]
    assert info["device_class"] == device_class(prof) and info["held_out_error"]["mean_abs_pct_error"] > 0
    assert info["measure_command"].startswith(f"dna latency build --device {device}")


def test_orin_family_and_super_mode_are_profiles():
    devs = known_devices()
    for name in (
        "jetson-orin-nano",
        "jetson-orin-nano-super",
        "jetson-orin-nx",
        "jetson-agx-orin",
        "jetson-tx2",
    ):
        assert device_class(devs[name]) == "jetson-gpu"
    assert devs["jetson-orin-nano-super"].peak_gflops["fp16"] > devs["jetson-orin-nano"].peak_gflops["fp16"]


def test_device_file_gives_a_calibrated_estimate(tmp_path):
    path = write_board(tmp_path)
    prof = get_device(path)
    assert prof.name == "my-board" and device_class(prof) == "jetson-gpu"
    assert get_device("my-board") is prof  # known by name for the rest of the process
    spec = resolve_spec(path, "tensorrt", precision="fp16")
    assert spec.device == "my-board"
    ms = estimate_network_ms(encoding_network(resolve_arch("dna_a")), spec)
    assert ms > 0 and estimate_info(spec)["held_out_error"] is not None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"memory_bandwidth_gbs": None}, "memory_bandwidth_gbs"),
        ({"memory_bandwidth_gbs": -3}, "memory_bandwidth_gbs"),
        ({"peak_gflops": {"fp32": -1}}, "peak_gflops.fp32"),
        ({"peak_gflops": {"fp64": 10}}, "peak_gflops.fp64"),
        ({"source": None}, "source"),
        ({"kind": "fpga"}, "kind"),
        ({"runtimes": ["tensorflow"]}, "runtimes"),
        ({"launch_overhead_us": -1}, "launch_overhead_us"),
        ({"class": "tpu"}, "class"),
        ({"architecture": "fermi2"}, "architecture"),
    ],
)
def test_bad_device_file_names_the_field(tmp_path, changes, field):
    path = write_board(tmp_path, **changes)
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        get_device(path)


def test_unknown_precision_and_unlisted_runtime_are_clear(tmp_path):
    path = write_board(tmp_path)
    with pytest.raises(ConfigError, match="precision 'int8'"):
        resolve_spec(path, "tensorrt", precision="int8")
    with pytest.raises(UnknownNameError, match="runtime for device 'my-board'"):
        resolve_spec(path, "torch")


def test_card_latency_note_quotes_the_held_out_error():
    from dna_zoo.hub.card import estimate_note

    spec = resolve_spec("jetson-orin-nano", "tensorrt", precision="fp16")
    info = estimate_info(spec)
    note = estimate_note(info)
    assert f"mean {info['held_out_error']['mean_abs_pct_error']}%" in note
    assert info["measure_command"] in note
