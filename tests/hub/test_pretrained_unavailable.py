"""``timm.create_model("dna_b", pretrained=True)`` when the weights cannot be had: one clear,
fast error; and from a warm cache it loads with the Hub down or offline mode on."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from typer.testing import CliRunner

import dna_zoo  # noqa: F401 - registers the models
from dna_zoo.cli.main import app
from dna_zoo.errors import DnaZooError, WeightsUnavailableError

REPO = "dna-zoo/dna_b.in1k"
DOWN = "http://127.0.0.1:9"  # nothing listens there


def _error(**kwargs) -> tuple[WeightsUnavailableError, float]:
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        timm.create_model("dna_b", pretrained=True, **kwargs)
    return info.value, time.monotonic() - start


def _says_how_to_load_the_original(err: WeightsUnavailableError) -> None:
    text = str(err)
    assert isinstance(err, OSError) and isinstance(err, DnaZooError)
    assert err.repo_id == REPO and REPO in text and "\n" not in text
    assert 'pretrained_cfg_overlay=dict(file="DNA_b.pth.tar")' in text and "dna hub convert" in text


def test_unreachable_hub_and_empty_cache_fails_at_once(tmp_path, monkeypatch, client_env):
    client_env(monkeypatch, DOWN, tmp_path / "hf")
    err, seconds = _error()
    _says_how_to_load_the_original(err)
    assert "not reachable" in str(err) and DOWN in str(err) and "not in the local cache" in str(err)
    assert seconds < 10  # huggingface_hub alone retries for about 40 s per file


def test_offline_and_empty_cache(tmp_path, monkeypatch, client_env):
    client_env(monkeypatch, DOWN, tmp_path / "hf", offline=True)
    err, _ = _error(features_only=True)
    _says_how_to_load_the_original(err)
    assert "offline mode is on (HF_HUB_OFFLINE)" in str(err)


def test_repo_missing_on_the_hub(tmp_path, monkeypatch, local_hub):
    with local_hub(monkeypatch, tmp_path / "hf") as server:
        err, _ = _error()
        _says_how_to_load_the_original(err)
        assert "does not exist" in str(err) and server.endpoint in str(err)


@pytest.mark.slow
def test_warm_cache_loads_with_the_hub_down_or_offline(
    tmp_path, monkeypatch, client_env, local_hub, random_weights, reference_output, set_offline
):
    weights = random_weights(tmp_path / "dna_b.safetensors", "dna_b")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = reference_output("dna_b", weights, x)
    home = tmp_path / "hf"
    with local_hub(monkeypatch, home):
        r = CliRunner().invoke(app, ["hub", "push", "dna_b", "--weights", str(weights), "--repo", REPO])
        assert r.exit_code == 0, r.output
        with torch.no_grad():
            torch.testing.assert_close(timm.create_model("dna_b", pretrained=True).eval()(x), ref)
    client_env(monkeypatch, DOWN, home)  # same cache, the Hub gone
    with torch.no_grad():
        torch.testing.assert_close(timm.create_model("dna_b", pretrained=True).eval()(x), ref)
        set_offline(monkeypatch, True)
        torch.testing.assert_close(timm.create_model("dna_b", pretrained=True).eval()(x), ref)
