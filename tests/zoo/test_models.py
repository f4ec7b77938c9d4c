"""Every registered DNA model behaves as a timm model."""

import pytest
import timm
import torch

import dna_zoo  # noqa: F401 - registers the models
from dna_zoo.complexity import Cost, count_macs, count_params, encoding_cost, stage_costs
from dna_zoo.models import PUBLISHED, published_encoding, published_models

EXPECTED_PARAMS = {"dna_a": 4_243_318, "dna_b": 4_918_180, "dna_c": 5_273_896, "dna_d": 6_409_486}
SMALL = 64  # resolution for the per-model forward/backward checks (CPU time)


def test_registry_lists_the_family():
    names = timm.list_models("dna_*")
    assert set(PUBLISHED) <= set(names) and "dna_net" in names
    # the one list (data/published.json) and the timm entrypoints agree exactly
    assert set(timm.list_models(module="models")) == {*PUBLISHED, "dna_net"}
    assert PUBLISHED == tuple(published_models()["models"])
    assert set(timm.list_pretrained("dna_*")) >= {f"{n}.in1k" for n in PUBLISHED}


@pytest.mark.parametrize("name", PUBLISHED)
def test_param_count_is_exact(name):
    model = timm.create_model(name)
    assert count_params(model) == EXPECTED_PARAMS[name]
    assert encoding_cost(published_encoding(name)).params == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", PUBLISHED)
def test_stage_costs_add_up_to_the_network(name):
    enc = published_encoding(name)
    rows = stage_costs(enc, input_size=160, in_chans=1, num_classes=10)
    assert rows[0].stage == "stem" and rows[-1].stage == "head"
    assert sum(r.layers for r in rows[1:-1]) == enc.num_layers
    total = encoding_cost(enc, input_size=160, in_chans=1, num_classes=10)
    assert sum((r.cost for r in rows), start=Cost()) == total


@pytest.mark.parametrize("name", ["dna_a", "dna_d"])
def test_analytic_macs_match_the_flop_counter(name):
    model = timm.create_model(name)
    cost = encoding_cost(published_encoding(name))
    assert count_macs(model) == cost.macs_as("conv_linear")
    assert count_macs(model, convention="all") == cost.macs_as("all")


@pytest.mark.parametrize("name", PUBLISHED)
def test_forward_backward(name):
    model = timm.create_model(name, num_classes=7)
    x = torch.randn(2, 3, SMALL, SMALL)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", PUBLISHED)
def test_default_cfg_matches_the_state_dict(name):
    model = timm.create_model(name)
    cfg = model.pretrained_cfg
    for key in (
        "input_size",
        "crop_pct",
        "interpolation",
        "mean",
        "std",
        "first_conv",
        "classifier",
        "license",
    ):
        assert key in cfg
    sd = model.state_dict()
    assert f"{cfg['first_conv']}.weight" in sd
    assert f"{cfg['classifier']}.weight" in sd
    assert cfg["hf_hub_id"] == f"dna-zoo/{name}.in1k"


@pytest.mark.parametrize("name", PUBLISHED)
def test_features_only_matches_feature_info(name):
    model = timm.create_model(name, features_only=True).eval()
    feats = model(torch.randn(1, 3, SMALL, SMALL))
    info = model.feature_info
    assert [f.shape[1] for f in feats] == info.channels()
    assert [SMALL // f.shape[-1] for f in feats] == info.reduction()


@pytest.mark.parametrize("name", PUBLISHED)
def test_forward_intermediates_all_stages(name):
    model = timm.create_model(name).eval()
    enc = published_encoding(name)
    feats = model.forward_intermediates(
        torch.randn(1, 3, SMALL, SMALL), indices=7, extra_blocks=True, intermediates_only=True
    )
    assert [f.shape[1] for f in feats] == [stage[-1].out_chs for stage in enc.stages]


def test_in_chans_num_classes_reset_classifier():
    model = timm.create_model("dna_b", num_classes=10, in_chans=1)
    assert model(torch.randn(1, 1, SMALL, SMALL)).shape == (1, 10)
    model.reset_classifier(3)
    assert model(torch.randn(1, 1, SMALL, SMALL)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 1, SMALL, SMALL)).shape == (1, 1280)


def test_dna_net_builds_any_encoding_and_equals_published():
    enc = published_encoding("dna_b")
    a = timm.create_model("dna_b")
    b = timm.create_model("dna_net", arch=enc.to_dict())
    assert a.state_dict().keys() == b.state_dict().keys()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, SMALL, SMALL)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_dna_net_without_arch_is_dna_b():
    a = timm.create_model("dna_b")
    b = timm.create_model("dna_net")
    assert b.dna_arch == published_encoding("dna_b")
    assert a.state_dict().keys() == b.state_dict().keys()
    assert b.pretrained_cfg.get("hf_hub_id") is None  # untrained: no weights of its own
