"""Teacher stage mapping from feature_info, validation, and clear errors for bad teachers."""

from __future__ import annotations

import pytest
import timm
import torch

from dna_zoo.errors import ConfigError, UnknownNameError, WeightsError
from dna_zoo.search.space import SearchSpace, paper_space, small_space
from dna_zoo.search.supernet.model import Supernet
from dna_zoo.search.supernet.teacher import StageMap, Teacher, load_teacher, space_reductions
from dna_zoo.weights import save_safetensors


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny tensors; 2 threads spin-wait on a loaded shared CPU


def test_b7_mapping_is_the_papers():
    """The paper: student block i imitates EfficientNet-B7 stage i+1 (48, 80, ... 640 channels)."""
    t = Teacher(timm.create_model("tf_efficientnet_b7"), paper_space(), input_size=32, name="b7")
    assert t.stage_map == StageMap(1, (2, 3, 4, 5, 6, 7))
    assert t.stage_channels == [32, 48, 80, 160, 224, 384, 640]
    # reductions from feature_info: listed levels keep theirs, extra blocks take the next level's
    assert [s.reduction for s in t.stages] == [2, 2, 4, 8, 16, 16, 32, 32]
    assert space_reductions(paper_space()) == [2, 4, 8, 16, 16, 32, 32]


def test_features_are_one_pass_and_match_map():
    model = timm.create_model("mobilenetv2_050")
    t = Teacher(model, small_space(), input_size=32)
    feats = t.features(torch.randn(2, 3, 32, 32))
    assert [f.shape[1] for f in feats] == t.stage_channels
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 2, 1, 1]
    # a supernet built for these channels takes feats[b] and outputs feats[b + 1]'s shape
    sn = Supernet(small_space(), t.stage_channels)
    for b in range(len(sn.blocks)):
        for d in sn.block(b).depths:
            assert sn.block(b)(feats[b], (0,) * d).shape == feats[b + 1].shape
    # stage-by-stage: only the stages one block needs
    part = t.features(torch.randn(2, 3, 32, 32), upto=2)
    assert [p.shape[1] for p in part] == t.stage_channels[2:4]


def test_incompatible_teacher_names_the_mismatch():
    with pytest.raises(ConfigError, match=r"resnet18 does not fit space 'default'.*reduction 32"):
        Teacher(timm.create_model("resnet18"), paper_space(), input_size=32, name="resnet18")


def test_space_with_other_strides_does_not_fit():
    d = small_space().to_dict()
    d["blocks"][3]["stride"] = 2  # needs reductions 2,4,8,16,32,32,32: the teacher has two r32 stages
    d["blocks"][4]["stride"] = 1
    with pytest.raises(
        ConfigError, match=r"does not fit space 'small': no stage at reduction 32 left for block 3"
    ):
        Teacher(timm.create_model("mobilenetv2_050"), SearchSpace.from_dict(d), input_size=32, name="mnv2")


def test_stage_map_override_is_validated():
    model = timm.create_model("mobilenetv2_050")
    t = Teacher(model, small_space(), input_size=32, stage_map="1,2,3,4,5,6,7")
    assert t.stage_map.stages == (1, 2, 3, 4, 5, 6, 7)
    with pytest.raises(ConfigError, match=r"block 0 needs reduction 4 .* teacher stage 1 has reduction 2"):
        Teacher(model, small_space(), input_size=32, stage_map="0,1,2,3,5,6,7")
    with pytest.raises(ConfigError, match="increasing"):
        Teacher(model, small_space(), input_size=32, stage_map="1,2,3,5,4,6,7")
    with pytest.raises(ConfigError, match="gives 5 target stages"):
        Teacher(model, small_space(), input_size=32, stage_map="1,2,3,4,5,6")
    with pytest.raises(ConfigError, match="cannot parse"):
        StageMap.parse("1,x")


def test_load_teacher_local_weights_and_bad_names(tmp_path):
    model = timm.create_model("mobilenetv2_050", num_classes=10)
    wpath = save_safetensors(model.state_dict(), tmp_path / "t.safetensors")
    t = load_teacher("mobilenetv2_050", small_space(), weights=wpath, input_size=32)
    assert not any(p.requires_grad for p in t.model.parameters()) and not t.model.training
    assert t.identity()["weights_sha256"] and t.identity()["stage_map"] == [1, 2, 3, 4, 5, 6, 7]
    for name, p in t.model.state_dict().items():
        torch.testing.assert_close(p, model.state_dict()[name])
    with pytest.raises(UnknownNameError, match="efficientnet_b0"):
        load_teacher("efficientnet_b00", small_space(), weights=wpath)
    with pytest.raises(WeightsError, match="does not exist"):
        load_teacher("mobilenetv2_050", small_space(), weights=tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError):
        load_teacher("resnet18", small_space(), weights=wpath)  # weights of another model


def test_demo_teacher_is_trained_saved_and_cached(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dna_zoo.cli.main import app
    from dna_zoo.search.supernet.data import fashion_mnist_dir
    from dna_zoo.search.supernet.teacher_train import train_teacher

    if not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)")
    monkeypatch.setenv("DNA_ZOO_CACHE", str(tmp_path / "cache"))
    kw = {"epochs": 1, "batch_size": 32, "limit": 128, "eval_limit": 64}
    res = train_teacher("mobilenetv2_050", **kw)
    assert not res.cached and res.path.is_file() and res.path.parent == tmp_path / "cache" / "teachers"
    assert 0.0 <= res.top1 <= 100.0
    again = train_teacher("mobilenetv2_050", **kw)
    assert again.cached and again.path == res.path and again.top1 == pytest.approx(res.top1, abs=1e-2)
    # a file of the previous version records the accuracy as a fraction: read as percent
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(res.path), "pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "top1"}
    save_file(load_file(str(res.path)), str(res.path), metadata={**meta, "accuracy": f"{res.top1 / 100:.4f}"})
    assert train_teacher("mobilenetv2_050", **kw).top1 == pytest.approx(res.top1, abs=1e-2)
    # the weights load as a teacher (classifier size read from the file)
    t = load_teacher("mobilenetv2_050", small_space(), weights=res.path)
    assert t.model.get_classifier().out_features == 10
    out = CliRunner().invoke(
        app, ["supernet", "teacher", "--model", "mobilenetv2_050", "--out", str(res.path)]
    )
    assert out.exit_code == 1 and "already exists" in out.output
    out = CliRunner().invoke(app, ["supernet", "teacher", "--data", str(tmp_path)])
    assert out.exit_code == 1 and "built-in data only" in out.output
