"""The ranking benchmark's ``--nets-from``: a run that reuses a committed run's networks and
accuracies and adds seeds. Inputs are the committed results files the benchmark wrote."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ranking_decisions as rd  # noqa: E402
import ranking_decisions_analysis as rda  # noqa: E402
import ranking_tau as rt  # noqa: E402

TAU = "ranking_decisions.json"
NARROW = "ranking_decisions-narrow-fmnist32.json"
WIDE = "ranking_decisions-wide-fmnist32.json"


def _import(tmp_path: Path, **settings: object) -> tuple[rd.Settings, rt.Work, dict]:
    s = rd.Settings(**settings)  # type: ignore[arg-type]
    work = rt.Work(tmp_path / "work")
    return s, work, rd.import_nets(work, s, rt.bench_space(s.space))


def test_nets_from_takes_the_committed_picks_and_accuracies(tmp_path: Path) -> None:
    s, work, imported = _import(tmp_path, nets_from=TAU, seeds=3)
    committed = json.loads((BENCH / "results" / TAU).read_text())
    p = rd.picked_from(imported)
    assert len(p.nets) == len(committed["networks"]) == 42
    assert p.edges == committed["latency"]["band_edges_ms"]
    assert [c.key for c in p.nets[5]] == committed["networks"][5]["candidates"]
    acc = rd.imported_acc(work)
    assert acc[5] == committed["networks"][5]["acc"]
    # the state keeps it: a second open does not need the file
    assert rd.import_nets(rt.Work(tmp_path / "work"), s, rt.bench_space(s.space)) == imported
    # the queue: the verification trainings, then only the third seeds
    order = rd.training_order(p, s.seeds)
    assert len(order) == len(set(order)) == 42 * 3
    check = rd.verification(acc, s.verify_imported)
    assert check == [(0, 0), (41, 1)]
    todo = [(i, k) for i, k in order if k >= len(acc[i])]
    assert sorted(todo) == [(i, 2) for i in range(42)]


def test_the_import_tolerance_follows_the_cpu_kind(tmp_path: Path) -> None:
    """A retrained import must match exactly on the CPU kind that trained the file, and to
    CROSS_CPU_TOLERANCE on another kind; the kinds are the committed files' own records."""
    _, _, imported = _import(tmp_path, nets_from="ranking_decisions-seeds3.json", seeds=4)
    avx2 = json.loads((BENCH / "results" / "ranking_decisions-seeds3.json").read_text())["machine"]
    xeon = json.loads((BENCH / "results" / WIDE).read_text())["machine"]
    assert rda.imported_machine(imported) == avx2 and avx2["isa"] == ["avx2"]
    assert rda.same_cpu_kind(avx2, dict(avx2, cores=64))  # the core count is not the kind
    assert not rda.same_cpu_kind(avx2, xeon)
    assert not rda.same_cpu_kind(avx2, dict(avx2, isa=["avx2", "avx512f"]))  # a Zen 5 beside an AVX2 EPYC
    # the first run recorded no ISA: its kind is unknown, so never "the same"
    first = json.loads((BENCH / "results" / TAU).read_text())["machine"]
    assert "isa" not in first and not rda.same_cpu_kind(first, first)
    # a work directory made before the state copied the machine reads it from the file
    old = {k: v for k, v in imported.items() if k != "machine"}
    assert rda.imported_machine(old) == avx2
    assert rda.IMPORT_TOLERANCE < rda.CROSS_CPU_TOLERANCE <= 0.1 * 0.239  # under a tenth of the seed sd


def test_the_fourth_seed_run_keeps_the_imported_seeds() -> None:
    """The committed fourth-seed run (trained on another CPU kind than the run it imports): seeds 0-2
    are the imported ones unchanged, every net has a fourth, and its retrained checks are in tolerance."""
    four = json.loads((BENCH / "results" / "ranking_decisions-seeds4.json").read_text())
    three = json.loads((BENCH / "results" / "ranking_decisions-seeds3.json").read_text())
    assert four["space"]["identity"] == three["space"]["identity"]
    c = four["nets_from"]
    assert c["file"] == "ranking_decisions-seeds3.json" and not c["same_cpu_kind"]
    checked = {(v["net"], v["seed"]): v for v in c["retrained_to_verify"]}
    assert len(checked) == 2
    assert all(abs(v["retrained"] - v["imported"]) <= c["tolerance_points"] for v in checked.values())
    for a, b in zip(four["networks"], three["networks"], strict=True):
        assert a["candidates"] == b["candidates"] and len(a["acc"]) == 4
        for seed in range(3):  # a retrained check counts with this machine's figure, the rest as imported
            v = checked.get((a["index"], seed))
            assert a["acc"][seed] == (v["retrained"] if v else b["acc"][seed])
    nf = four["noise_floor"]
    assert math.isclose(nf["ground_truth_noise_sd"], nf["within_net_seed_sd"] / 2)  # four seeds a net


def test_nets_from_refuses_another_space(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--space narrow-fmnist32"):
        _import(tmp_path, nets_from=NARROW)
    assert not (tmp_path / "work" / "state.json").exists()


def test_nets_from_refuses_other_settings(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="retrain_epochs"):
        _import(tmp_path, nets_from=TAU, retrain_epochs=6)


@pytest.mark.parametrize("name", ["no-such-results.json", "ranking_pooled.json"])
def test_nets_from_refuses_a_file_that_is_not_a_run(tmp_path: Path, name: str) -> None:
    with pytest.raises(SystemExit, match="not a complete ranking_decisions results file"):
        _import(tmp_path, nets_from=name)


def test_new_fields_keep_older_runs_work_directories() -> None:
    # the committed narrow run's work directory name (bench/results/ranking_decisions-narrow-fmnist32.json)
    committed = json.loads((BENCH / "results" / NARROW).read_text())
    assert committed["work_dir"].endswith(rd.Settings(space="narrow-fmnist32").tag())
    assert rd.Settings(seeds=3).tag() != rd.Settings().tag()
    assert set(rd.LATER_FIELDS) <= {f.name for f in dataclasses.fields(rd.Settings)}


def test_noise_floor_with_a_third_seed() -> None:
    committed = json.loads((BENCH / "results" / TAU).read_text())
    acc = {n["index"]: n["acc"] for n in committed["networks"]}
    y = np.array([np.mean(v) for v in acc.values()])
    band = np.array([n["band"] for n in committed["networks"]])
    two = rda.noise_floor(acc, y, band, resamples=200)
    assert math.isclose(two["within_net_seed_sd"], committed["noise_floor"]["within_net_seed_sd"])
    assert "signal_to_ground_truth_noise" not in two
    # a third seed equal to the mean of the first two: the pooled sd falls to sqrt(1/2) of it
    three = {i: [*v, float(np.mean(v))] for i, v in acc.items()}
    nf = rda.noise_floor(three, y, band, resamples=200)
    assert nf["nets_with_three_seeds"] == 42
    assert math.isclose(nf["within_net_seed_sd"], two["within_net_seed_sd"] / math.sqrt(2))
    assert math.isclose(nf["ground_truth_noise_sd"], nf["within_net_seed_sd"] / math.sqrt(3))
    lo, hi = nf["signal_to_ground_truth_noise_ci95"]
    assert lo < nf["signal_to_ground_truth_noise"] < hi
    # mixed seed counts pool by degrees of freedom
    mixed = {0: [1.0, 2.0], 1: [1.0, 2.0, 3.0]}
    assert math.isclose(rda.pooled_seed_sd([np.array(v) for v in mixed.values()]), math.sqrt((0.5 + 2.0) / 3))


def test_bench_spaces_keep_the_committed_identities() -> None:
    """Adding a space (``wide-fmnist32``: a fourth depth) leaves the committed runs' spaces as they were."""
    for name in (TAU, NARROW, WIDE):
        committed = json.loads((BENCH / "results" / name).read_text())
        assert rt.bench_space(committed["space"]["name"]).identity == committed["space"]["identity"]
    wide, tau = rt.bench_space("wide-fmnist32"), rt.bench_space()
    assert [len(list(wide.block_candidates(b))) for b in range(4)] == [6 + 6**2 + 6**3 + 6**4] * 4
    assert len(list(tau.block_candidates(0))) == 6 + 6**2 + 6**3
    assert wide.identity != tau.identity
    with pytest.raises(SystemExit, match="unknown bench space 'nosuch'"):
        rt.bench_space("nosuch")


def test_the_wide_run_is_of_its_space_and_settings() -> None:
    committed = json.loads((BENCH / "results" / WIDE).read_text())
    assert committed["work_dir"].endswith(rd.Settings(space="wide-fmnist32").tag())
    assert len(committed["networks"]) == 42
    # the floor for the noise figure: at least 10 nets with a second seed
    assert sum(len(n["acc"]) >= 2 for n in committed["networks"]) >= 10


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--space", "nosuch"],
            "unknown bench space 'nosuch' (one of tau-fmnist32, narrow-fmnist32, wide-fmnist32)",
        ),
        (
            ["--space", "narrow-fmnist32", "--nets-from", "ranking_decisions-seeds3.json", "--seeds", "4"],
            "--nets-from ranking_decisions-seeds3.json is of bench space tau-fmnist32 (54464294ede4e308), "
            "this run's is narrow-fmnist32 (9b6705eed2a7d5c3): pass --space tau-fmnist32",
        ),
    ],
)
def test_a_refused_run_is_one_line_and_makes_no_work_directory(
    tmp_path: Path, args: list[str], line: str
) -> None:
    import subprocess

    work = tmp_path / "work"
    cmd = [sys.executable, str(BENCH / "ranking_decisions.py"), *args, "--work", str(work)]
    done = subprocess.run([*cmd, "--phase", "analyse"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [line]
    assert not work.exists()
