import json

import pytest
from typer.testing import CliRunner

from dna_zoo.cli.main import app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("dna-zoo ")


def test_models_table_and_json():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    for name in ("dna_a", "dna_b", "dna_c", "dna_d"):
        assert name in r.stdout
    assert "conv+linear" in r.stdout
    r = runner.invoke(app, ["models", "--json"])
    data = json.loads(r.stdout)
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["dna_b"]["params"] == 4_918_180
    assert round(by_name["dna_b"]["macs_conv_linear"] / 1e6) == 392
    assert round(by_name["dna_d"]["macs_all"] / 1e6) == 610
    assert by_name["dna_c"]["published_top1"] == 77.8


def test_info_per_stage(tmp_path):
    r = runner.invoke(app, ["info", "dna_b", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    stages = [s for s in data["stages"] if isinstance(s["stage"], int)]
    assert [s["out_chs"] for s in stages] == [16, 24, 40, 80, 96, 192, 320]
    assert sum(s["params"] for s in data["stages"]) == data["total"]["params"] == 4_918_180
    r = runner.invoke(app, ["info", "dna_b"])
    assert r.exit_code == 0 and "total" in r.stdout


def test_info_of_a_searched_net_file(tmp_path):
    from dna_zoo.models import published_encoding

    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"arch": published_encoding("dna_a").to_dict()}))
    r = runner.invoke(app, ["info", str(p), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"]["params"] == 4_243_318


@pytest.mark.parametrize(
    "args,expect",
    [
        (["info", "dna_bb"], "did you mean dna_b"),
        (["info", "nonexistent.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, expect):
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0]
    assert "Traceback" not in r.output


def test_debug_shows_the_exception():
    r = runner.invoke(app, ["--debug", "info", "dna_bb"])
    assert r.exit_code != 0
    assert r.exception is not None and "dna_bb" in str(r.exception)


@pytest.mark.slow
def test_demo_runs_the_zoo():
    r = runner.invoke(app, ["demo", "--zoo", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["zoo"]
    assert [row["model"] for row in rows] == ["dna_a", "dna_b", "dna_c", "dna_d"]
    assert all(row["output_finite"] and row["latency_ms_torch_eager_bs1"] > 0 for row in rows)
