"""Original DNA checkpoints and safetensors load safely; bad files are clear errors."""

import argparse
import collections

import pytest
import timm
import torch

from dna_zoo.errors import WeightsError
from dna_zoo.weights import load_weights, read_state_dict, save_safetensors

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _trained_like(name="dna_b", **kw):
    """A model whose weights (BN stats too) are not the init values."""
    torch.manual_seed(3)
    model = timm.create_model(name, **kw)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.01)
    return model.eval()


def _write_original_checkpoint(model, path, *, prefix="module.", ema_differs=True):
    """The layout the original DNA / timm-0.1 training script saved."""
    sd = collections.OrderedDict((prefix + k, v.clone()) for k, v in model.state_dict().items())
    ema = collections.OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    if ema_differs:
        # the EMA copy is the one that should be loaded: make the raw one differ from it
        for k in sd:
            if sd[k].is_floating_point():
                sd[k] += 1.0
    torch.save(
        {
            "epoch": 499,
            "arch": "DNA_b",
            "state_dict": sd,
            "state_dict_ema": ema,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.064}]},
            "args": argparse.Namespace(model="DNA_b", lr=0.064),
        },
        path,
    )


def test_original_checkpoint_loads_through_timm_pretrained(tmp_path):
    src = _trained_like()
    path = tmp_path / "DNA_b.pth.tar"
    _write_original_checkpoint(src, path)
    model = timm.create_model("dna_b", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    torch.testing.assert_close(model(X), src(X), rtol=0, atol=0)


def test_state_dict_only_checkpoint_with_module_prefix(tmp_path):
    src = _trained_like()
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    model = load_weights(timm.create_model("dna_b").eval(), path)
    torch.testing.assert_close(model(X), src(X), rtol=0, atol=0)


def test_safetensors_round_trip(tmp_path):
    src = _trained_like(num_classes=10)
    path = save_safetensors(src.state_dict(), tmp_path / "model.safetensors")
    model = load_weights(timm.create_model("dna_b", num_classes=10).eval(), path)
    torch.testing.assert_close(model(X), src(X), rtol=0, atol=0)
    model2 = timm.create_model(
        "dna_b",
        num_classes=10,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path), num_classes=10),
    ).eval()
    torch.testing.assert_close(model2(X), src(X), rtol=0, atol=0)


def test_pretrained_with_fewer_classes_keeps_the_backbone(tmp_path):
    src = _trained_like()
    path = tmp_path / "DNA_b.pth.tar"
    _write_original_checkpoint(src, path)
    model = timm.create_model(
        "dna_b", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=str(path))
    )
    torch.testing.assert_close(model.conv_head.weight, src.conv_head.weight)


@pytest.mark.parametrize("suffix", [".pth.tar", ".safetensors"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    src = timm.create_model("dna_a")
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_safetensors(src.state_dict(), good)
    else:
        torch.save({"state_dict": src.state_dict()}, good)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(WeightsError, match="corrupt"):
        read_state_dict(bad)
    with pytest.raises(WeightsError):
        timm.create_model("dna_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(bad)))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(WeightsError, match="refused for safety"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = save_safetensors(timm.create_model("dna_a").state_dict(), tmp_path / "a.safetensors")
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(timm.create_model("dna_d"), path)
    with pytest.raises(WeightsError, match="wrong shape"):
        timm.create_model("dna_d", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")
