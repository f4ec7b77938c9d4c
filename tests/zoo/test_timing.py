"""The one interleaved-timing loop (dna_zoo.timing): order of runs, round counts, early stop."""

from __future__ import annotations

from dna_zoo.timing import TimingConfig, sample_rounds, stable, time_rounds


def _recording(log: list[str], names: str):
    return [lambda n=n: log.append(n) for n in names]


def test_interleaved_run_by_run_without_rotation():
    log: list[str] = []
    cfg = TimingConfig(warmup=1, runs_per_round=2, min_rounds=2, max_rounds=2)
    rounds = time_rounds(_recording(log, "ab"), cfg)
    assert log == list("ab" + "abab" + "abab")  # warm-up pass, then two rounds of two passes
    assert len(rounds) == 2 and all(len(r) == 2 and min(r) >= 0 for r in rounds)


def test_fixed_rounds_run_each_contender_consecutively_in_rotated_order():
    log: list[str] = []
    samples = sample_rounds(_recording(log, "abc"), TimingConfig.fixed(rounds=3, runs=2, warmup=0))
    assert "".join(log) == "aabbcc" + "bbccaa" + "ccaabb"
    assert [[len(s) for s in r] for r in samples] == [[2, 2, 2]] * 3


def test_until_stops_after_min_rounds_and_max_rounds_caps():
    cfg = TimingConfig(warmup=0, runs_per_round=1, min_rounds=3, max_rounds=10, max_seconds=60)
    assert len(time_rounds(_recording([], "a"), cfg, until=lambda rs: True)) == 3
    assert len(time_rounds(_recording([], "a"), cfg, until=lambda rs: False)) == 10


def test_stable_needs_three_values_and_a_tight_spread():
    assert not stable([1.0, 1.0], 0.5)
    assert stable([1.0] * 5, 0.01)
    assert not stable([1.0, 2.0, 3.0, 4.0, 5.0], 0.01)
