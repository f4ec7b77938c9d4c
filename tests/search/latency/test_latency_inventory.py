"""The device inventory and the table look-ups `dna latency` commands print."""

from __future__ import annotations

import pytest

from dna_zoo.errors import ConfigError
from dna_zoo.search.latency.cache import complete_path
from dna_zoo.search.latency.cost import measured_table, network_table
from dna_zoo.search.latency.devices import inventory
from dna_zoo.zoo import resolve_arch


def test_inventory_counts_cached_tables_and_names_a_broken_one(fake_table, tiny_space, tiny_spec):
    spec = tiny_spec()
    path = complete_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    fake_table(tiny_space(), spec).save(path)
    broken = path.with_name("broken.json")
    broken.write_text("{not json")
    inv = inventory()
    by_name = {d["name"]: d for d in inv["devices"]}
    assert by_name["cpu"]["measured_tables"] == 1 and by_name["jetson-orin-nano"]["measured_tables"] == 0
    good = [t for t in inv["tables"] if t["path"] == str(path)]
    assert good and good[0]["entries"] == len(fake_table(tiny_space(), spec).entries)
    assert any(t["path"] == str(broken) and "error" in t for t in inv["tables"])
    assert inv["runtimes"]["onnxruntime"] == "installed" and inv["cache"] == str(path.parents[1])


def test_measured_table_is_required_and_network_table_falls_back_to_an_estimate(tiny_spec):
    spec = tiny_spec()
    with pytest.raises(ConfigError, match="no measured latency table") as e:
        measured_table(spec)
    assert "dna latency build --device cpu --runtime onnxruntime" in e.value.one_line()
    est = network_table(spec, resolve_arch("dna_a"))
    assert est.estimated
