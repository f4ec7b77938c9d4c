import random

import pytest
import timm

import dna_zoo  # noqa: F401
from dna_zoo.complexity import count_params, encoding_cost
from dna_zoo.errors import ConfigError, UnknownNameError
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import Candidate, SearchSpace, get_space, paper_space, small_space
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost


def _random_choice(space, rng):
    return [rng.choice(list(space.block_candidates(b))) for b in range(len(space.blocks))]


def test_paper_space_size():
    s = paper_space()
    assert [s.num_candidates(b) for b in range(6)] == [36, 1548, 1548, 1548, 1548, 6]
    assert s.num_candidates() == 6234


@pytest.mark.parametrize("space", [paper_space(), small_space()], ids=lambda s: s.name)
def test_costs_are_additive_and_match_the_built_model(space):
    rng = random.Random(0)
    params, macs = ParamsCost(space), MacsCost(space)
    for _ in range(3):
        choice = _random_choice(space, rng)
        enc = space.to_encoding(choice)
        total = params.fixed_cost() + sum(params.cost(c) for c in choice)
        assert total == params.network_cost(enc) == encoding_cost(enc).params
        assert total == count_params(timm.create_model("dna_net", arch=enc))
        assert macs.fixed_cost() + sum(macs.cost(c) for c in choice) == encoding_cost(enc).macs
        assert space.from_encoding(enc) == choice


def test_space_round_trip_and_identity(tmp_path):
    s = paper_space()
    p = s.save(tmp_path / "space.json")
    again = SearchSpace.load(p)
    assert again == s and again.identity == s.identity
    assert small_space().identity != s.identity
    assert get_space(str(p)) == s


def test_candidate_keys_round_trip():
    s = small_space()
    for c in list(s.block_candidates(1))[:10]:
        assert Candidate.parse(c.key) == c


def test_bad_spaces_and_candidates():
    with pytest.raises(UnknownNameError):
        get_space("defualt")
    with pytest.raises(ConfigError):
        small_space().check_candidate(Candidate(0, tuple(paper_space().ops[:3])))
    with pytest.raises(ConfigError):
        get_space("missing.json")


def test_ratings_round_trip_and_validation(tmp_path):
    s = small_space()
    losses = {c.key: float(i) for b in range(len(s.blocks)) for i, c in enumerate(s.block_candidates(b))}
    r = Ratings(space=s, losses=losses, input_size=32)
    p = r.save(tmp_path / "ratings.json")
    back = Ratings.load(p)
    assert back.losses == losses and back.space == s and not back.missing()
    p.write_text(p.read_text().replace('"e6_k3_se0.25"', '"e6_k7_se0.25"', 1))
    with pytest.raises(ConfigError):
        Ratings.load(p)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ConfigError):
        Ratings.load(tmp_path / "junk.json")
