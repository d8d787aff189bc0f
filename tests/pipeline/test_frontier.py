"""The frontier rule on hand-made records: who ships, why the others do not, and which one is the default."""
import pytest

from kit.convert.frontier import Point, choose_default, dominance, frontier
from kit.core.errors import KitError


def _p(name: str, size: int, gz: int, us: float | None, top1: float | None = 0.95, metric: str = "top1") -> Point:
    return Point(name, size, gz, us, metric if top1 is not None else None, top1)


def test_a_slower_larger_artifact_is_dominated_and_the_reason_says_by_whom_and_how():
    points = [_p("int8", 280_192, 30_086, 3.1), _p("int8-sparse", 290_000, 31_002, 34.2)]
    f = frontier(points)
    assert f.shipped == ["int8"] and list(f.reasons) == ["int8-sparse"]
    why = f.reasons["int8-sparse"]
    assert why.startswith("larger on disk than int8 (290,000 vs 280,192 B)"), why
    assert "larger gzipped (31,002 vs 30,086 B)" in why and "slower (34.2 µs vs 3.1 µs)" in why
    assert "no more accurate (top-1 95.00% vs 95.00%, test split)" in why


def test_smaller_on_disk_but_slower_and_larger_gzipped_is_a_trade_off_both_ship():
    """`kit demo`'s int8 / int8-sparse: the sparse file is 3.9x smaller on disk, so nothing beats it on every axis."""
    points = [_p("int8", 280_192, 30_086, 3.1), _p("int8-sparse", 72_632, 31_002, 34.2)]
    f = frontier(points, "balanced")
    assert f.shipped == ["int8", "int8-sparse"] and not f.reasons
    assert f.default == "int8"  # 3.9 x 1.0 x 1.0 against 1.0 x 1.03 x 11.0
    assert frontier(points, "size").default == "int8-sparse"


def test_latency_within_timing_noise_is_a_tie():
    dense, sparse = _p("float32", 20_212, 4_059, 2.6), _p("float32-sparse", 4_364, 3_189, 2.3)
    f = frontier([dense, sparse])
    assert f.shipped == ["float32-sparse"]
    why = f.reasons["float32"]
    assert why.startswith("larger on disk than float32-sparse (20,212 vs 4,364 B)")
    assert "as fast within timing noise (2.6 µs vs 2.3 µs)" in why
    # beyond the noise, the faster dense file is a point of its own
    assert frontier([_p("float32", 20_212, 4_059, 20.0), _p("float32-sparse", 4_364, 3_189, 40.0)]).reasons == {}


def test_a_more_accurate_artifact_is_never_dominated_by_a_smaller_faster_one():
    f = frontier([_p("float32", 20_000, 18_000, 9.0, 0.9136), _p("int8", 6_000, 5_000, 3.0, 0.9109)])
    assert f.shipped == ["float32", "int8"]
    f = frontier([_p("float32", 20_000, 18_000, 9.0, 0.9109), _p("int8", 6_000, 5_000, 3.0, 0.9109)])
    assert f.shipped == ["int8"] and "no more accurate (top-1 91.09% vs 91.09%, test split)" in f.reasons["float32"]


def test_lower_mse_is_better():
    a, b = _p("float32", 9_000, 8_000, 5.0, 0.010, "mse"), _p("int8", 9_000, 8_000, 5.0, 0.012, "mse")
    assert frontier([b, a]).shipped == ["float32"]
    assert frontier([b, a]).reasons["int8"].startswith("less accurate than float32 (MSE 0.012 vs 0.01, test split)")


def test_artifacts_tied_on_every_axis_ship_once():
    f = frontier([_p("float32", 1_000, 900, 2.0), _p("float32-sparse", 1_000, 900, 2.1)])
    assert f.shipped == ["float32"]
    assert f.reasons["float32-sparse"].startswith("no smaller on disk than float32 (1,000 vs 1,000 B)")
    assert frontier([_p("float32", 1_000, 900, 2.1), _p("float32-sparse", 1_000, 900, 2.0)]).shipped == [
        "float32-sparse"]  # the lower median, then the one built first
    assert frontier([_p("a", 1_000, 900, 2.0), _p("b", 1_000, 900, 2.0)]).shipped == ["a"]
    # three ties whose medians chain past the noise (1.0 and 2.5 are apart, 1.6 is near both): one ships
    tied = [_p("b", 1_000, 900, 2.5), _p("c", 1_000, 900, 1.6), _p("a", 1_000, 900, 1.0)]
    assert frontier(tied).shipped == ["a"]


def test_an_artifact_whose_latency_was_not_measured_is_not_compared_on_latency():
    a, b = _p("float32", 1_000, 900, 2.0), _p("float32-sparse", 2_000, 1_800, None)
    assert dominance(a, b, a_first=True) is None and frontier([a, b]).shipped == ["float32", "float32-sparse"]
    # nothing timed at all (a target that is not timed on this host): size and figure still decide
    assert frontier([_p("a", 1_000, 900, None), _p("b", 2_000, 1_800, None)]).shipped == ["a"]


def test_each_objective_picks_its_own_default():
    small = _p("int8-sparse", 10_000, 8_000, 50.0)
    fast = _p("float32", 100_000, 60_000, 5.0)
    middle = _p("int8", 20_000, 12_000, 8.0)
    points = [fast, middle, small]
    assert frontier(points).shipped == ["float32", "int8", "int8-sparse"]
    chosen = {o: frontier(points, o) for o in ("size", "latency", "balanced")}
    assert {o: f.default for o, f in chosen.items()} == {"size": "int8-sparse", "latency": "float32",
                                                        "balanced": "int8"}
    assert "smallest on disk (10,000 B)" in chosen["size"].why_default
    assert "fastest (5.0 µs median" in chosen["latency"].why_default
    assert "2.00x the smallest on disk, 1.50x the smallest gzipped, 1.60x the fastest" in chosen["balanced"].why_default
    assert choose_default([], "size") == (None, "nothing ships")
    with pytest.raises(KitError, match="unknown objective"):
        frontier(points, "speed")


def test_latency_ties_go_to_the_smaller_file():
    name, why = choose_default([_p("float32", 20_000, 4_000, 2.0), _p("float32-sparse", 4_000, 3_000, 2.4)],
                               "latency")
    assert name == "float32-sparse" and "within timing noise" in why


def test_a_lone_candidate_ships_untimed_and_says_why():
    """One correct artifact has nothing to be compared with: no child process times it, its note says so."""
    from kit.convert.artifacts import Artifact
    from kit.convert.frontier import ship_frontier
    from kit.core.artifact import Format, RuntimeCheck

    check = RuntimeCheck("litert", loads=True, samples=4, top1=0.9, agreement=1.0)
    lone = Artifact(path="", sha256="0" * 64, bytes=100, name="int8", format=Format("int8", "dense"), gzip_bytes=90,
                    shipped=True, reason="runs correctly on litert", checks=[check], content=b"not a model")
    decision = ship_frontier([lone], ("litert",), "classification", "balanced", x=None, log=lambda *_: None)
    assert lone.shipped and lone.default and decision.shipped == ["int8"]
    assert lone.latency_us is None and lone.latency_note.startswith("not timed: the only candidate")
