"""What timm's own ``tests/test_models.py`` checks of every registered model, for every ``dna_*`` entry.

timm's test file is not in its wheel, so these are the same checks written for our entries
(same input sizes, same assertions): forward (and with gradient checkpointing), backward
with a new classifier, default-cfg consistency (pool size, classifier and first-conv names,
``reset_classifier``, ``num_classes=0, global_pool=''``), TorchScript, ``features_only``
(default and ``feature_cls='getter'``), ``forward_intermediates``, and torch.fx tracing
forward and backward. Its pretrained-download tests need the real Hub (offline here); the
pretrained path is tested against the local test Hub in tests/hub.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import (
    NodePathTracer,
    create_feature_extractor,
    get_graph_node_names,
)

import dna_zoo  # noqa: F401 - registers the models

NAMES = timm.list_models("dna_*")
FWD, BWD, JIT, FEAT, FX = 224, 128, 128, 96, 128


def _size(model: torch.nn.Module, target: int) -> tuple[int, int, int]:
    c, h, w = model.default_cfg["input_size"]
    return c, min(h, target), min(w, target)


def test_every_family_member_is_listed():
    assert set(NAMES) == {"dna_a", "dna_b", "dna_c", "dna_d", "dna_net"}


@pytest.mark.parametrize("name", NAMES)
def test_forward_with_defaults(name: str):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *_size(model, FWD))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1000) and not torch.isnan(out).any()
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_backward_new_classifier(name: str):
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    out = model(torch.randn(2, *_size(model, BWD)))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing and out.shape[-1] == 42 and not torch.isnan(out).any()


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_consistency(name: str):
    model = timm.create_model(name, pretrained=False).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg = model.default_cfg
    pool = cfg["pool_size"]
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert tuple(feats.shape[-2:]) == tuple(pool) and feats.shape[1] == model.num_features
        assert pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        out = model(x)
        assert out.shape == pre.shape
        model.reset_classifier(0, "")
        assert tuple(model(x).shape[-2:]) == tuple(pool)
        bare = timm.create_model(name, pretrained=False, num_classes=0, global_pool="").eval()
        assert tuple(bare(x).shape[-2:]) == tuple(pool)
    sd = model.state_dict()
    assert f"{cfg['classifier']}.weight" in timm.create_model(name).state_dict()
    assert f"{cfg['first_conv']}.weight" in sd


@pytest.mark.parametrize("name", NAMES)
def test_in_chans_and_num_classes(name: str):
    model = timm.create_model(name, pretrained=False, in_chans=1, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)


# torch 2.x deprecates torch.jit.script; timm still supports scripting and tests it, so do we.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", NAMES)
def test_torchscript(name: str):
    with timm.set_scriptable(True):
        model = timm.create_model(name, pretrained=False).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, *_size(model, JIT))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("feature_cls", [None, "getter"])
def test_features_only(name: str, feature_cls: str | None):
    kwargs = {"feature_cls": feature_cls} if feature_cls else {}
    model = timm.create_model(name, pretrained=False, features_only=True, **kwargs).eval()
    channels, reduction = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 4
    size = _size(model, FEAT)
    with torch.no_grad():
        outs = model(torch.randn(1, *size))
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reduction, outs, strict=True):
        assert o.shape[1] == c and o.shape[-1] <= math.ceil(size[-1] / r) + 1
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates(name: str):
    model = timm.create_model(name, pretrained=False).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    size = _size(model, FEAT)
    x = torch.randn(1, *size)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, output_fmt="NCHW")
        assert len(inter) == len(info.channels()) >= 3
        for c, r, o in zip(info.channels(), info.reduction(), inter, strict=True):
            assert o.shape[1] == c and o.shape[-1] <= math.ceil(size[-1] / r) + 1
        torch.testing.assert_close(final, model.forward_features(x))


def _fx(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    kw = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kw)
    train_ret = [train_nodes[-1]]
    if train:
        graph = NodePathTracer(**kw).trace(model)
        nodes = list(reversed(graph.nodes))
        outs = [n.name for n in nodes[0]._input_nodes]
        names = [n.name for n in nodes]
        train_ret = [train_nodes[-names.index(o)] for o in outs]
    return create_feature_extractor(
        model, train_return_nodes=train_ret, eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=kw
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fx_forward_and_backward(name: str):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *_size(model, FX))
    with torch.inference_mode():
        ref = model(x)
        out = torch.cat(tuple(_fx(model)(x).values()))
    assert torch.equal(out, ref)
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    out = torch.cat(tuple(_fx(model, train=True)(torch.randn(2, *_size(model, FX))).values()))
    out.mean().backward()
    assert out.shape[-1] == 42 and all(p.grad is not None for p in model.parameters())
