"""benchmarks/speed.py: the goals' paired rounds and their verdicts (on a fake clock: no timing here)."""

import numpy as np
import pytest

from benchmarks import speed


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """A predictor whose every batch-1 run takes `cost` seconds of the clock, and logs who ran."""

    def __init__(self, name: str, cost: float, clock: Clock, log: list[str]):
        self.name, self.cost, self.clock, self.log = name, cost, clock, log

    def batches(self, texts, pairs, batch_size):
        assert batch_size == 1
        return [(np.array([i]), {"input_ids": np.array([[i]])}) for i in range(len(texts))]

    def run(self, feeds):
        self.clock.now += self.cost
        self.log.append(self.name)
        return np.zeros((1, 2), dtype=np.float32)


def test_paired_speedups_is_the_latency_ratio_per_round_with_the_order_alternating():
    clock, log = Clock(), []
    slow, fast = FakeModel("slow", 3.0, clock, log), FakeModel("fast", 1.5, clock, log)
    values = speed.paired_speedups(slow, fast, ["a", "b", "c"], None, rounds=4, clock=clock)
    assert values == [2.0, 2.0, 2.0, 2.0]
    timed = log[2:]  # after one warm-up run each
    assert len(timed) == 4 * 2 * 3
    # each model runs its examples in a row; the first model of a round alternates
    firsts = [timed[i] for i in range(0, len(timed), 6)]
    assert firsts == ["slow", "fast", "slow", "fast"]
    assert all(len(set(timed[i:i + 3])) == 1 for i in range(0, len(timed), 3))


def test_paired_speedups_follows_a_model_that_slows_down():
    clock, log = Clock(), []
    slow, fast = FakeModel("slow", 2.0, clock, log), FakeModel("fast", 1.0, clock, log)
    original = fast.run

    def slower(feeds):  # from the third round on, the fast model costs as much as the slow one
        if log.count("fast") >= 1 + 2 * 2:
            fast.cost = 2.0
        return original(feeds)

    fast.run = slower
    assert speed.paired_speedups(slow, fast, ["a", "b"], None, rounds=4, clock=clock) == [2.0, 2.0, 1.0, 1.0]


def test_median_interval_takes_the_order_statistics_of_a_95_percent_interval():
    assert speed.median_interval([float(v) for v in range(20, 0, -1)]) == (6.0, 15.0, True)
    assert speed.median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == (1.0, 6.0, True)
    # five rounds: not even the range covers the median with 95%
    assert speed.median_interval([5.0, 1.0, 3.0, 2.0, 4.0]) == (1.0, 5.0, False)


@pytest.mark.parametrize("values, verdict", [
    ([0.9] * 20, "met"),
    ([0.7] * 20, "missed"),
    ([0.7] * 10 + [0.9] * 10, "too close to call"),
    ([0.7] * 6 + [0.9] * 14, "too close to call"),  # of 20 rounds, the interval's low end is the 6th value
    ([0.7] * 5 + [0.9] * 15, "met"),
    ([0.9, 0.9, 0.9], "undetermined (too few rounds for a 95% interval)"),
])
def test_verdict_against_the_target(values, verdict):
    assert speed.verdict(values, 0.8) == verdict


def test_gemm_shares_divide_the_pass_by_the_peak_of_the_same_round(monkeypatch):
    clock, peaks = Clock(), iter([100.0, 200.0, 50.0])
    monkeypatch.setattr(speed, "gemm_peak", lambda dtype, repeats: next(peaks))

    def one_pass():
        clock.now += 2.0

    shares, achieved, measured = speed.gemm_shares(one_pass, 120.0, None, rounds=3, clock=clock)
    assert achieved == [60.0, 60.0, 60.0]
    assert measured == [100.0, 200.0, 50.0]
    assert shares == [0.6, 0.3, 1.2]


def test_goal_row_shows_median_interval_range_target_and_verdict():
    row = speed.goal_row("fused_int8", "teacher", [1.0] * 5 + [1.4] * 15)
    assert row.split(" | ")[1:] == ["teacher", "1.40", "1.40-1.40", "1.00-1.40", "1.3", "met |"]


def test_fused_int8_is_compared_with_the_plain_graph_as_served_and_as_onnxruntime_loads_it(tmp_path, monkeypatch):
    """The fused-int8 goal measures against two plain int8 graphs: the issue's baseline (the plain graph with
    onnxruntime's default load-time fusions) and the plain graph as the runtimes load it."""
    import json

    for model in ("teacher", "tinybert4"):
        (tmp_path / model).mkdir()
        info = {"kind": "hf", "fused_operators": {"Attention": 2}, "int8": {"method": "dynamic"}}
        (tmp_path / model / "export.json").write_text(json.dumps(info))
    assert speed.graph_runtimes(tmp_path / "teacher") == {
        "fp32 fused": "onnx", "int8 fused": "int8", "int8 dynamic": "int8", "fp32 plain": "onnx-plain",
        "int8 plain": "int8-plain", "int8 static": "int8-static", "int8 baseline": speed.BASELINE}
    clock, log = Clock(), []
    costs = {"teacher:int8": 1.0, "teacher:int8-plain": 1.2, "teacher:int8-baseline": 1.4,
             "tinybert4:int8": 0.5, "tinybert4:int8-plain": 0.6, "tinybert4:int8-baseline": 0.7}
    predictors = {name: FakeModel(name, cost, clock, log) for name, cost in costs.items()}
    monkeypatch.setattr(speed, "paired_speedups", lambda slow, fast, texts, pairs, rounds: [slow.cost / fast.cost] * rounds)
    rows = speed.goal_rounds(tmp_path, ["teacher", "tinybert4"], predictors, {"teacher": 2.0, "tinybert4": 1.0},
                             ["a"], None, rounds=6)
    medians = {row.split(" | ")[1]: float(row.split(" | ")[2]) for row in rows}
    assert medians == {
        "teacher, against the plain graph as onnxruntime loads it by default": 1.4,
        "teacher, against the plain graph as served": 1.2,
        "tinybert4, plain graph (FLOP ratio 2.00)": 1.0,
        "tinybert4, fused graph (FLOP ratio 2.00)": 1.0,
        "tinybert4, against the plain graph as onnxruntime loads it by default": 1.4,
        "tinybert4, against the plain graph as served": 1.2,
    }


def test_shapes_benchmark_prints_each_shape_against_the_teacher_with_its_flop_ratio(tiny_teacher, capsys):
    """benchmarks/shapes.py: heads change no FLOPs (ratio 1.00); half the layers and half the width, about 4x
    fewer; every shape gets a row with its speed-ups and shares."""
    from benchmarks import shapes

    shapes.main(["--teacher", str(tiny_teacher), "--shapes", "2x32x1x64", "1x16x2x32", "--rounds", "2",
                 "--examples", "3", "--tokens", "8", "--batch-tokens", "12"])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "x" in line.split(" | ")[0] and "shape" not in line}
    assert set(rows) == {"2x32x2x64 (teacher)", "2x32x1x64", "1x16x2x32"}
    assert rows["2x32x1x64"][3] == "1.00"  # heads split the same products: the same FLOPs
    assert float(rows["1x16x2x32"][3]) > 3.5
    assert all(len(cells) == 8 for cells in rows.values())


@pytest.mark.parametrize("text, message", [("4x312x12", "expected LAYERSxHIDDENxHEADSxINTERMEDIATE"),
                                           ("4x312x0x1200", "expected LAYERSxHIDDENxHEADSxINTERMEDIATE"),
                                           ("4x312x5x1200", "hidden size 312 is not a multiple of its 5 heads")])
def test_shapes_benchmark_names_a_bad_shape(text, message):
    from benchmarks import shapes

    with pytest.raises(SystemExit, match=message):
        shapes.parse_shape(text)


def test_shapes_benchmark_names_a_teacher_it_cannot_load(tmp_path):
    from benchmarks import shapes

    with pytest.raises(SystemExit, match="no/such/model"):
        shapes.main(["--teacher", str(tmp_path / "no/such/model")])


def test_default_shapes_are_the_student_with_fewer_heads_and_the_teacher_width_at_its_depth():
    from benchmarks.shapes import default_shapes, label
    from pipeline.params.config import StudentShape

    student = StudentShape(layers=4, hidden=312, heads=12, intermediate=1200)
    teacher = StudentShape(layers=6, hidden=384, heads=12, intermediate=1536)
    assert [label(s) for s in default_shapes(student, teacher)] == ["4x312x12x1200", "4x312x6x1200", "4x312x4x1200",
                                                                    "4x384x12x1536"]
