import json

import pytest

from dna_zoo.arch import (
    ArchEncoding,
    Layer,
    Op,
    iter_layers,
    layer_key,
    load_encoding,
    network_keys,
)
from dna_zoo.errors import ArchitectureError
from dna_zoo.models import PUBLISHED, published_encoding, published_models


@pytest.mark.parametrize("name", PUBLISHED)
def test_arch_def_round_trip_is_exact(name):
    arch_def = published_models()["models"][name]["arch_def"]
    enc = ArchEncoding.from_arch_def(arch_def)
    assert enc.to_arch_def() == arch_def
    again = ArchEncoding.from_dict(json.loads(enc.to_json()))
    assert again == enc


def test_repeat_expands_and_merges():
    enc = ArchEncoding.from_arch_def([["ir_r3_k5_s2_e3_c40_se0.25"]])
    assert [lay.stride for lay in enc.stages[0]] == [2, 1, 1]
    assert enc.to_arch_def() == [["ir_r3_k5_s2_e3_c40_se0.25"]]
    two = ArchEncoding.from_arch_def([["ir_r1_k5_s1_e3_c40_se0.25", "ir_r1_k5_s2_e3_c40_se0.25"]])
    assert len(two.to_arch_def()[0]) == 2


def test_iter_layers_tracks_channels_and_resolution():
    insts = list(iter_layers(published_encoding("dna_b"), 224))
    assert insts[0].in_chs == 32 and insts[0].in_res == 112
    assert insts[-1].layer.out_chs == 320 and insts[-1].out_res == 7
    assert len(insts) == 21


def test_keys_are_distinct_per_config():
    keys = network_keys(published_encoding("dna_a"))
    assert keys[0].startswith("stem") and keys[-1].startswith("head")
    a = layer_key(Layer(Op("ir", 3, 6), 40, 2), 24, 56)
    b = layer_key(Layer(Op("ir", 5, 6), 40, 2), 24, 56)
    assert a != b and "k3" in a and "e6" in a and "r56" in a


@pytest.mark.parametrize(
    "bad",
    [
        "ir_r1_k3_s2_e6_se0.25",
        "xx_r1_k3_c16",
        "ir_r1_k4_s1_e6_c16",
        "ir_r1_k3_s3_e6_c16",
        "ir_r1_k3_s1_e6_c16_noskip",
    ],
)
def test_bad_block_strings_are_clear_errors(bad):
    with pytest.raises(ArchitectureError):
        ArchEncoding.from_arch_def([[bad]])


def test_op_names_round_trip():
    for op in (Op("ir", 7, 3, 0.25), Op("ds", 3, 1, 0.25), Op("ir", 5, 6, 0.0)):
        assert Op.parse(op.name) == op


def test_load_encoding_sources(tmp_path):
    enc = published_encoding("dna_c")
    p = tmp_path / "net.json"
    p.write_text(json.dumps({"arch": enc.to_dict(), "other": 1}))
    assert load_encoding(p) == enc
    assert load_encoding(enc.to_json()) == enc
    with pytest.raises(ArchitectureError):
        load_encoding(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchitectureError):
        load_encoding(tmp_path / "bad.json")


def test_iter_parts_walks_stem_layers_head_with_the_shapes_each_part_sees():
    from dna_zoo.arch import iter_layers, iter_parts, network_keys, part_key
    from dna_zoo.models import published_encoding

    enc = published_encoding("dna_b")
    parts = list(iter_parts(enc, 224, in_chans=3))
    layers = list(iter_layers(enc, 224))
    assert [p.kind for p in parts] == ["stem"] + ["layer"] * len(layers) + ["head"]
    assert (parts[0].in_chs, parts[0].in_res, parts[0].out_chs) == (3, 224, enc.stem_size)
    assert [p.inst for p in parts[1:-1]] == layers
    head = parts[-1]
    assert (head.in_chs, head.in_res, head.out_chs) == (layers[-1].layer.out_chs, 7, enc.num_features)
    assert network_keys(enc) == [part_key(p) for p in parts]
