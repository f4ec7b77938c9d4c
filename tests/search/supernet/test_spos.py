"""The SPOS-style single-path supernet: paths are real networks, BN recalibration, determinism."""

from __future__ import annotations

import pytest
import torch

from dna_zoo.arch import Layer, Op
from dna_zoo.errors import ConfigError
from dna_zoo.search.space import BlockSpec, SearchSpace
from dna_zoo.search.supernet.data import DataSource, FashionMNIST
from dna_zoo.search.supernet.spos import (
    SinglePathSupernet,
    SposConfig,
    SposRateConfig,
    SposSampler,
    candidates_of,
    path_of,
    rate_paths,
    recalibrate_bn,
    train_spos,
)

OPS = (Op("ir", 3, 1, 0.0), Op("ir", 5, 3, 0.25))


def tiny_space() -> SearchSpace:
    return SearchSpace(
        "tiny",
        blocks=(BlockSpec(8, 2, (1, 2)), BlockSpec(16, 1, (1, 2))),
        ops=OPS,
        stem_size=8,
        first_layer=Layer(Op("ds", 3, 1, 0.0), 8, 1),
        num_features=32,
    )


def _perturb_bn(model: torch.nn.Module) -> None:
    """Give every BN non-trivial statistics and affine weights (fresh ones are identities)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_path_forward_equals_extracted_standalone_network():
    sp = tiny_space()
    net = SinglePathSupernet(sp, num_classes=10, zero_init=False)
    _perturb_bn(net)
    net.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outs = {}
    for path in [((0,), (1, 0)), ((1, 1), (0,)), ((0, 1), (1, 1))]:
        alone = net.extract(path).eval()
        assert type(alone).__name__ == "EfficientNet"
        assert [len(s) for s in alone.blocks] == [1, *[len(p) for p in path]]
        with torch.no_grad():
            ref = net(x, path)
            got = alone(x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        outs[path] = ref
    # different paths are different networks (the comparison above is not trivially true)
    a, b = list(outs.values())[:2]
    assert (a - b).abs().max() > 1e-3
    # candidates <-> paths round-trip; a path outside the space is a clear error
    path = ((0, 1), (1,))
    assert path_of(sp, candidates_of(sp, path)) == path
    with pytest.raises(ConfigError):
        net(x, ((0, 0, 0), (1,)))


def test_bn_recalibration_sets_batch_statistics_and_leaves_supernet_alone():
    sp = tiny_space()
    net = SinglePathSupernet(sp, num_classes=10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    alone = net.extract(((1,), (0, 1)))
    bn = alone.bn1
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(8, 3, 32, 32, generator=g) * 2 + 1 for _ in range(2)]
    recalibrate_bn(alone, batches)
    assert not alone.training
    # the stem BN now holds the plain average of the two batches' statistics
    with torch.no_grad():
        feats = [alone.conv_stem(x.contiguous(memory_format=torch.channels_last)) for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    assert (bn.running_var - 1).abs().max() > 0.1  # fresh BN had var 1
    stats = bn.running_var.clone()
    recalibrate_bn(alone, batches)  # deterministic: same batches, same statistics
    torch.testing.assert_close(bn.running_var, stats)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])


@pytest.mark.slow
def test_training_is_deterministic_under_a_seed_and_rates_real_data():
    sp = tiny_space()
    data = DataSource(FashionMNIST("train", input_size=32, limit=160))
    held = DataSource(FashionMNIST("test", input_size=32, limit=64))
    sampler = SposSampler(sp, seed=3)
    paths = [sampler.path(s) for s in range(40)]
    assert paths[:5] == [SposSampler(sp, seed=3).path(s) for s in range(5)]
    assert {len(p[0]) for p in paths} == {1, 2} and len(set(paths)) > 5
    cfg = SposConfig(epochs=2, batch_size=32, seed=3, max_steps=6)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        net = SinglePathSupernet(sp, num_classes=10)
        res = train_spos(net, data, cfg)
        assert res.steps == 6 and res.last_loss > 0
        states.append(net.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k])
    init = SinglePathSupernet(sp, num_classes=10).state_dict()
    assert any((init[k] - states[0][k]).abs().max() > 0 for k in init if init[k].is_floating_point())
    rows = rate_paths(net, [paths[0], paths[1]], data, held, SposRateConfig(bn_batches=2, batch_size=32))
    assert len(rows) == 2 and all(0.0 <= r["top1"] <= 100.0 and r["loss"] > 0 for r in rows)
    with pytest.raises(ConfigError):
        SposConfig(sampling="greedy")
