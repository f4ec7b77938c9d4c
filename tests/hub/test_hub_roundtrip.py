"""Push to a real local Hub server over HTTP with huggingface_hub's client, then load with timm.

One server for the module: dna_b is pushed to its registered repo (dna-zoo/dna_b.in1k),
a searched net (search-result JSON) to ORG/tiny-net with an ONNX artifact and an engine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app

runner = CliRunner()

DNA_B_REPO = "dna-zoo/dna_b.in1k"
NET_REPO = "acme/tiny-net"
ENGINE_GPU = "NVIDIA Jetson AGX Orin"


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory,
    local_hub,
    random_weights,
    write_search_result,
    tiny_encoding,
    write_retrain_output,
    onnx_artifact,
    engine_artifact,
):
    """A Hub with dna_b and a searched net pushed through the CLI; logs captured meanwhile."""

    import dna_zoo  # noqa: F401

    tmp = tmp_path_factory.mktemp("hub")
    mp = pytest.MonkeyPatch()
    hub_cm = local_hub(mp, tmp / "hf_push")
    server = hub_cm.__enter__()
    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        dna_b_w = random_weights(tmp / "dna_b.safetensors", "dna_b")
        result = write_search_result(tmp / "best.json")
        net_w = random_weights(tmp / "net.safetensors", "dna_net", arch=tiny_encoding(), num_classes=10)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        arts = tmp / "artifacts"
        net_w = write_retrain_output(tmp / "retrain", net_w) or net_w  # config.json beside: top-1
        onnx_artifact(arts / "onnx", result, net_w)
        engine_artifact(arts / "orin", version="10.3.0", gpu=ENGINE_GPU, cc="8.7")
        outputs = []
        for args in (
            ["hub", "push", "dna_b", "--weights", str(dna_b_w), "--repo", DNA_B_REPO],
            [
                "hub",
                "push",
                str(result),
                "--weights",
                str(net_w),
                "--repo",
                NET_REPO,
                "--artifacts",
                str(arts),
            ],
        ):
            r = runner.invoke(app, ["--debug", *args])
            assert r.exit_code == 0, r.output
            outputs.append(r.output)
        root.removeHandler(handler)
        root.setLevel(old_level)
        yield {
            "server": server,
            "mp": mp,
            "tmp": tmp,
            "dna_b_w": dna_b_w,
            "net_w": net_w,
            "result": result,
            "artifacts": arts,
            "x": x,
            "logs": records,
            "outputs": outputs,
        }
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        hub_cm.__exit__(None, None, None)
        mp.undo()


@pytest.fixture
def fresh_cache(hub, tmp_path, monkeypatch, client_env):
    client_env(monkeypatch, hub["server"].endpoint, tmp_path / "hf")
    return tmp_path / "hf" / "hub"


def net_push(hub, *extra: str) -> list[str]:
    return [
        "hub", "push", str(hub["result"]), "--weights", str(hub["net_w"]), "--repo", NET_REPO,
        "--artifacts", str(hub["artifacts"]), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_push_created_a_timm_repo(hub, token):
    repo = hub["server"].state.repos[DNA_B_REPO]
    assert {"config.json", "model.safetensors", "README.md"} <= set(repo.head.files)
    cfg = json.loads(repo.head.files["config.json"])
    assert cfg["architecture"] == "dna_b" and cfg["num_classes"] == 1000 and cfg["num_features"] == 1280
    assert cfg["pretrained_cfg"]["mean"] and "hf_hub_id" not in cfg["pretrained_cfg"]
    assert "pushed dna-zoo/dna_b.in1k" in hub["outputs"][0]
    # the token travelled only in the Authorization header
    writes = [r for r in hub["server"].state.requests if r.method == "POST"]
    assert writes and all(r.headers.get("authorization") == f"Bearer {token}" for r in writes)
    assert not any(token.encode() in r.body or token in r.path for r in hub["server"].state.requests)


@pytest.mark.slow
def test_timm_pretrained_downloads_the_pushed_dna_b(hub, fresh_cache, reference_output):
    import timm

    model = timm.create_model("dna_b", pretrained=True).eval()
    with torch.no_grad():
        out = model(hub["x"])
    torch.testing.assert_close(out, reference_output("dna_b", hub["dna_b_w"], hub["x"]), rtol=0, atol=0)
    assert (fresh_cache / "models--dna-zoo--dna_b.in1k").is_dir()


def test_searched_net_round_trip_through_hf_hub_name(hub, fresh_cache, tiny_encoding, reference_output):
    import timm

    model = timm.create_model(f"hf-hub:{NET_REPO}", pretrained=True).eval()
    assert model.num_classes == 10
    assert model.dna_arch.to_arch_def() == tiny_encoding().to_arch_def()
    with torch.no_grad():
        out = model(hub["x"])
    ref = reference_output("dna_net", hub["net_w"], hub["x"], num_classes=10)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    cfg = json.loads(hub["server"].state.repos[NET_REPO].head.files["config.json"])
    assert cfg["architecture"] == "dna_net"
    assert cfg["model_args"]["arch"]["arch_def"] == tiny_encoding().to_arch_def()


def test_repush_without_change_makes_no_commit(hub):
    server = hub["server"]
    before = {r: server.state.n_commits(r) for r in (DNA_B_REPO, NET_REPO)}
    r = runner.invoke(
        app,
        net_push(hub, "--json"),
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["committed"] is False
    assert data["commit"] == server.state.repos[NET_REPO].head.oid
    r = runner.invoke(app, ["hub", "push", "dna_b", "--weights", str(hub["dna_b_w"]), "--repo", DNA_B_REPO])
    assert r.exit_code == 0 and "up to date" in r.output, r.output
    assert {r: server.state.n_commits(r) for r in before} == before


def test_dry_run_writes_the_exact_folder_and_uploads_nothing(hub, tmp_path):
    server = hub["server"]
    n_writes = sum(x.method == "POST" for x in server.state.requests)
    out = tmp_path / "dry"
    r = runner.invoke(
        app,
        net_push(hub, "--dry-run", "--out", str(out), "--json"),
    )
    assert r.exit_code == 0, r.output
    assert sum(x.method == "POST" for x in server.state.requests) == n_writes  # read-only: nothing sent
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    remote = {k: v for k, v in server.state.repos[NET_REPO].head.files.items() if k != ".gitattributes"}
    assert local == remote
    assert set(json.loads(r.stdout)["files"]) == set(local)
    assert "trt/10.3.0/nvidia-jetson-agx-orin/model.engine" in local
    assert "onnx/tiny-net.onnx.manifest.json" in local
    # a second dry run refuses to overwrite
    r = runner.invoke(
        app,
        [
            "hub",
            "push",
            "dna_b",
            "--weights",
            str(hub["dna_b_w"]),
            "--repo",
            DNA_B_REPO,
            "--dry-run",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 1 and "already exists" in r.output


def test_card_says_what_the_issue_asks(hub):
    """The card of a net pushed from a real search result, a real export and a retrain output
    shows the figures those producers wrote, and no local path."""
    from huggingface_hub import ModelCard

    from dna_zoo.export import load_manifest
    from dna_zoo.search.result import SearchResult
    from dna_zoo.search.retrain import RetrainOutput

    files = hub["server"].state.repos[NET_REPO].head.files
    text = files["README.md"].decode()
    card = ModelCard(text)
    meta = card.data.to_dict()
    assert meta["library_name"] == "timm" and meta["license"] == "apache-2.0"
    assert "neural-architecture-search" in meta["tags"] and "onnx" in meta["tags"]
    result = SearchResult.load(hub["result"])
    lat = result.latency
    assert lat is not None and lat.estimated
    # the predicted latency: device, runtime, precision, batch, the resolution it is for, ms, estimated
    d = lat.details
    size = f"{d['input_size']}x{d['input_size']}"
    row = f"| {d['device']} | {d['runtime']} | {d['precision']} | 1 | {size} | {lat.value:.2f} | estimated"
    assert row in card.text, card.text
    # each artifact with its parity and its own measured latency
    (onnx,) = (hub["artifacts"] / "onnx").glob("*.onnx")
    m = load_manifest(onnx)
    t = m.own_timing
    assert t is not None and t.runner == "onnxruntime fp32"
    shape = m.raw["shapes"]["input"]["shape"]
    size = f"{shape[-1]}x{shape[-2]}"
    assert f"| {m.device} | onnxruntime fp32 | fp32 | 1 | {size} | {t.median_ms:.2f} | measured" in card.text
    assert f"{t.median_ms:.2f} ms (onnxruntime fp32, batch 1, measured)" in card.text
    assert f"max abs diff {m.parity['max_abs_diff']:.2g}, top-1 agreement 100.0%" in card.text
    assert "TensorRT 10.3.0, NVIDIA Jetson AGX Orin" in card.text
    # accuracy: the retrain output's measured top-1
    if (hub["tmp"] / "retrain" / "config.json").is_file():
        retrained = RetrainOutput.load(hub["tmp"] / "retrain")
        assert retrained.data.mean == (0.286,) * 3 and retrained.data.std == (0.353,) * 3
        assert f"| top-1 accuracy | {round(retrained.top1, 2)}% on fashion-mnist" in card.text
        assert meta["datasets"] == ["fashion-mnist"] and meta["metrics"] == ["accuracy"]
    # params and MACs with their convention
    assert f"| params | {result.params:,}" in card.text
    # what chose the net (a plain constrained search over a ratings file: the rating)
    assert "| chosen by | DNA search, objective rating (sum of block losses) |" in card.text
    assert f"| MACs, conv+linear | {result.macs['conv_linear']:,}" in card.text
    assert f"| MACs, all | {result.macs['all']:,}" in card.text and "MACs count multiply-adds" in card.text
    assert f'timm.create_model("hf-hub:{NET_REPO}", pretrained=True)' in card.text
    # no absolute local path anywhere in what was uploaded (card, config, manifests)
    for name, blob in files.items():
        if name.endswith((".md", ".json")):
            body = blob.decode()
            for needle in (str(hub["tmp"]), "/root", "/home", "/tmp"):
                assert needle not in body, (name, needle)
    dna_b_card = hub["server"].state.repos[DNA_B_REPO].head.files["README.md"].decode()
    assert 'timm.create_model("dna_b", pretrained=True)' in dna_b_card
    assert "4,918,180" in dna_b_card and "imagenet-1k" in dna_b_card


def test_search_result_stores_no_local_path(hub):
    """The result records the teacher by name and weights sha256, the ratings by file name."""
    from dna_zoo.search.result import SearchResult

    text = hub["result"].read_text()
    assert "/home" not in text and str(hub["tmp"]) not in text and "/tmp" not in text
    r = SearchResult.load(hub["result"])
    assert r.ratings["teacher"] == {"name": "efficientnet_b0", "weights_sha256": "0123456789abcdef"}
    assert r.ratings["file"] == "ratings.json"


def test_pull_onnx_runs_and_matches_torch(hub, fresh_cache, tmp_path, reference_output):
    from dna_zoo.export.ort import cpu_session

    r = runner.invoke(
        app, ["hub", "pull", NET_REPO, "--artifact", "onnx", "--out", str(tmp_path / "o"), "--json"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (art,) = data["artifacts"]
    assert art["format"] == "onnx" and art["parity"]["top1_agreement"] == 1.0
    assert Path(data["snapshot"]).is_relative_to(fresh_cache)
    sess = cpu_session(art["path"])  # respects ORT's shared pool if a latency build set it
    x = hub["x"][:1]
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    ref = reference_output("dna_net", hub["net_w"], x, num_classes=10)
    torch.testing.assert_close(torch.from_numpy(y), ref, rtol=1e-4, atol=1e-4)


def test_pull_engine_only_for_its_tensorrt_and_gpu(hub, fresh_cache):
    r = runner.invoke(
        app,
        [
            "hub",
            "pull",
            NET_REPO,
            "--artifact",
            "trt",
            "--trt-version",
            "10.3.0",
            "--gpu",
            ENGINE_GPU,
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    (art,) = json.loads(r.stdout)["artifacts"]
    assert art["path"].endswith("trt/10.3.0/nvidia-jetson-agx-orin/model.engine")
    for opts, why in (
        (
            ["--trt-version", "10.3.0", "--gpu", "NVIDIA A100-SXM4-80GB"],
            "TensorRT 10.3.0 on nvidia-jetson-agx-orin",
        ),
        (["--trt-version", "8.6.1", "--gpu", ENGINE_GPU], "TensorRT 10.3.0 on nvidia-jetson-agx-orin"),
    ):
        r = runner.invoke(app, ["hub", "pull", NET_REPO, "--artifact", "trt", *opts])
        assert r.exit_code == 1
        line = r.output.strip()
        assert line.startswith("error: refusing") and why in line and "\n" not in line


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="covers machines without TensorRT"
)
def test_pull_engine_here_says_why_not(hub, fresh_cache):
    r = runner.invoke(app, ["hub", "pull", NET_REPO, "--artifact", "trt"])
    assert r.exit_code == 1 and "'tensorrt' is needed" in r.output


def test_engine_with_a_mismatching_manifest_is_refused(tmp_path, engine_artifact):
    from dna_zoo.hub.artifacts import EngineMismatchError, TrtTarget, check_engine, read_manifest

    path = engine_artifact(tmp_path, version="10.3.0", gpu=ENGINE_GPU, cc="8.7")
    raw = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    raw["trt"]["compute_capability"] = [8, 7]  # the shape an older writer used
    mpath = path.with_name(path.name + ".manifest.json")
    mpath.write_text(json.dumps(raw))
    manifest = read_manifest(mpath)
    check_engine(manifest, TrtTarget("10.3.0", ENGINE_GPU, "8.7"))
    with pytest.raises(EngineMismatchError, match=r"compute capability 8\.7 != 9\.0"):
        check_engine(manifest, TrtTarget("10.3.0", ENGINE_GPU, "9.0"))


@pytest.mark.slow
def test_offline_load_from_warm_cache_in_a_fresh_process(hub, tmp_path, client_env, reference_output):
    """HF_HUB_OFFLINE=1 in a new process, the server unreachable: loads from the cache only."""
    import timm

    cache = tmp_path / "hf" / "hub"
    mp = pytest.MonkeyPatch()
    try:
        client_env(mp, hub["server"].endpoint, tmp_path / "hf")
        timm.create_model("dna_b", pretrained=True)  # warm the cache
        timm.create_model(f"hf-hub:{NET_REPO}", pretrained=True)
        r = runner.invoke(app, ["hub", "pull", NET_REPO, "--artifact", "onnx", "--quiet"])
        assert r.exit_code == 0, r.output
    finally:
        mp.undo()
    torch.save(hub["x"], tmp_path / "x.pt")
    script = textwrap.dedent(
        f"""
        import torch, timm, dna_zoo
        from typer.testing import CliRunner
        from dna_zoo.cli.main import app
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.no_grad():
            a = timm.create_model("dna_b", pretrained=True).eval()(x)
            b = timm.create_model("hf-hub:{NET_REPO}", pretrained=True).eval()(x)
        torch.save({{"a": a, "b": b}}, {str(tmp_path / "out.pt")!r})
        r = CliRunner().invoke(app, ["hub", "pull", "{NET_REPO}", "--artifact", "onnx", "--json"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["hub", "pull", "{NET_REPO}", "--artifact", "openvino"])
        print("MISSING:", r.output.strip())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(cache),
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(outs["a"], reference_output("dna_b", hub["dna_b_w"], hub["x"]), rtol=0, atol=0)
    ref_b = reference_output("dna_net", hub["net_w"], hub["x"], num_classes=10)
    torch.testing.assert_close(outs["b"], ref_b, rtol=0, atol=0)
    assert "MISSING: error:" in proc.stdout and "no 'openvino' artifact" in proc.stdout


def test_token_never_written_or_logged(hub, tmp_path, token):
    needle = token.encode()
    out = tmp_path / "dry"
    r = runner.invoke(
        app,
        net_push(hub, "--dry-run", "--out", str(out)),
    )
    assert r.exit_code == 0
    roots = [out, hub["tmp"] / "hf_push", tmp_path]
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                assert needle not in p.read_bytes(), p
    assert hub["logs"] and not any(token in m for m in hub["logs"])
    assert not any(token in o for o in hub["outputs"]) and token not in r.output
