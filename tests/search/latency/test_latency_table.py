"""Latency table files: round trip, strict loading, missing entries, keys, additivity."""

from __future__ import annotations

import json
import random

import pytest

from dna_zoo.arch import network_keys
from dna_zoo.models import published_encoding
from dna_zoo.search.latency.cost import LatencyCost, latency_cost_for
from dna_zoo.search.latency.items import items_for, random_network, space_items
from dna_zoo.search.latency.predict import predict, summed_ms
from dna_zoo.search.latency.table import LatencyTable, LatencyTableError, MissingEntriesError, TableSpec
from dna_zoo.search.space import paper_space, small_space


def test_round_trip(tmp_path, fake_table, tiny_space, tiny_spec):
    space, spec = tiny_space(), tiny_spec()
    t = fake_table(space, spec)
    p = t.save(tmp_path / "t.json")
    back = LatencyTable.load(p, expect=spec)
    assert back.to_dict() == t.to_dict()
    assert back.entries == t.entries and back.calibration == t.calibration
    assert [f.name for f in tmp_path.iterdir()] == ["t.json"]  # no temp file left behind


def test_refuses_corrupt_and_foreign_files(tmp_path, fake_table, tiny_space, tiny_spec):
    spec = tiny_spec()
    good = fake_table(tiny_space(), spec).to_dict()
    cases = {
        "truncated": json.dumps(good)[:200],
        "foreign": json.dumps({"format": "dna-zoo-ratings", "version": 1}),
        "future": json.dumps({**good, "version": 99}),
        "bad_entry": json.dumps({**good, "entries": {"k": {"median_ms": "x", "source": "measured"}}}),
        "negative": json.dumps({**good, "entries": {"k": {"median_ms": -1, "source": "measured"}}}),
        "mixed": json.dumps({**good, "entries": {"k": {"median_ms": 1, "source": "estimated"}}}),
        "no_calibration": json.dumps({k: v for k, v in good.items() if k != "calibration"}),
    }
    for name, text in cases.items():
        p = tmp_path / f"{name}.json"
        p.write_text(text)
        with pytest.raises(LatencyTableError):
            LatencyTable.load(p, expect=spec)
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "field,value",
    [
        ("device", "jetson-orin-nano"),
        ("runtime", "torch"),
        ("precision", "fp16"),
        ("input_size", 64),
        ("batch", 8),
    ],
)
def test_refuses_table_of_another_setting_unless_forced(
    tmp_path, field, value, fake_table, tiny_space, tiny_spec
):
    spec = tiny_spec()
    other = TableSpec(**{**spec.to_dict(), field: value})
    p = fake_table(tiny_space(), spec).save(tmp_path / "t.json")
    with pytest.raises(LatencyTableError, match=f"{field} is"):
        LatencyTable.load(p, expect=other)
    assert LatencyTable.load(p, expect=other, force=True).spec == spec  # forced: still says what it is


def test_refuses_table_measured_on_another_machine(tmp_path, fake_table, tiny_space, tiny_spec):
    spec = tiny_spec()
    t = fake_table(tiny_space(), spec)
    t.device_identity = {"name": "cpu", "description": "Some Other CPU (64 logical CPUs, aarch64)"}
    p = t.save(tmp_path / "t.json")
    here = fake_table(tiny_space(), spec).device_identity
    with pytest.raises(LatencyTableError, match="Some Other CPU"):
        LatencyTable.load(p, expect=spec, identity=here)
    # the cost-model factory checks the identity of the local device too
    with pytest.raises(LatencyTableError, match="measured on"):
        latency_cost_for(tiny_space(), device="cpu", runtime="ort", input_size=32, table=p)[0]
    assert latency_cost_for(tiny_space(), device="cpu", runtime="ort", input_size=32, table=p, force=True)[0]


def test_missing_entry_is_an_error_naming_the_keys(fake_table, tiny_space, tiny_spec):
    space, spec = tiny_space(), tiny_spec()
    t = fake_table(space, spec)
    enc = random_network(space, random.Random(0))
    keys = network_keys(enc, input_size=32)
    del t.entries[keys[2]], t.entries[keys[-1]]
    with pytest.raises(MissingEntriesError) as e:
        predict(t, enc)
    assert set(e.value.missing) == {keys[2], keys[-1]}
    assert keys[2] in str(e.value) and keys[-1] in str(e.value)
    with pytest.raises(MissingEntriesError):
        LatencyCost(space, t)
    # a network outside the table's space (DNA-b's widths) is refused the same way
    with pytest.raises(MissingEntriesError, match="i96"):
        summed_ms(fake_table(space, spec), published_encoding("dna_b"))


@pytest.mark.parametrize("space_name", ["small", "tiny", "paper"])
def test_entries_are_exactly_the_keys_networks_use(space_name, tiny_space, tiny_spec):
    """One place defines a layer: the build's entries are the arch module's keys, no more, no less."""
    make_space = {"small": small_space, "tiny": tiny_space, "paper": paper_space}[space_name]
    space = make_space()
    spec = tiny_spec(input_size=224)
    entries = {it.key for it in space_items(space, spec)}
    used: set[str] = set()
    rng = random.Random(1)
    for _ in range(300):
        used |= set(network_keys(random_network(space, rng), input_size=224))
    assert used <= entries
    # every entry is reachable: the union over every candidate of every block
    reachable = {network_keys(random_network(space, rng), input_size=224)[0]} | {
        k for k in used if k.startswith(("ds_", "head_"))
    }
    from dna_zoo.arch import layer_key

    for b in range(len(space.blocks)):
        for cand in space.block_candidates(b):
            reachable |= {layer_key(i.layer, i.in_chs, i.in_res) for i in space.layer_instances(cand, 224)}
    assert reachable == entries
    if make_space is paper_space:
        assert len(entries) == 69  # 11 x 6 op configurations + stem, first layer, head
        with_dna = {it.key for it in items_for(space, spec)}
        for name in ("dna_a", "dna_b", "dna_c", "dna_d"):
            assert set(network_keys(published_encoding(name))) <= with_dna


def test_latency_cost_is_additive_and_equals_prediction(fake_table, tiny_space, tiny_spec):
    space, spec = tiny_space(), tiny_spec()
    t = fake_table(space, spec)
    cost = LatencyCost(space, t)
    assert cost.estimated is False and "measured" in cost.source
    rng = random.Random(3)
    for _ in range(10):
        enc = random_network(space, rng)
        cands = space.from_encoding(enc)
        pred = predict(t, enc)
        assert cost.network_cost(enc) == pytest.approx(pred.total_ms)
        assert cost.fixed_cost() + sum(cost.cost(c) for c in cands) == pytest.approx(pred.total_ms)
        assert sum(pred.stages.values()) == pytest.approx(pred.total_ms)
        assert pred.total_ms == pytest.approx(1.1 * summed_ms(t, enc) + 0.05)
