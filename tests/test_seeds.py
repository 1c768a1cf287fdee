"""benchmarks/seeds.py: every model's main metric over several seeds, each seed a DVC experiment."""

from __future__ import annotations

import pytest
from conftest import BILSTMS_ONLY, dvc, make_repo


def test_summary_is_mean_and_sample_spread_per_model_best_first():
    from benchmarks.seeds import markdown, summarize

    rows = [{"experiment": "seed-0", "seed": 0, "teacher dev_accuracy": 0.80, "bilstm_kd dev_accuracy": 0.70,
             "bilstm_kd retention": 0.875},
            {"experiment": "seed-1", "seed": 1, "teacher dev_accuracy": 0.84, "bilstm_kd dev_accuracy": 0.72,
             "bilstm_kd retention": 0.857},
            {"experiment": "seed-2", "seed": 2, "teacher dev_accuracy": 0.82, "bilstm_kd dev_accuracy": None,
             "bilstm_kd retention": None}]
    table = summarize(rows)
    assert [r["column"] for r in table] == ["teacher dev_accuracy", "bilstm_kd dev_accuracy", "bilstm_kd retention"]
    teacher = table[0]
    assert (teacher["n"], teacher["min"], teacher["max"]) == (3, 0.80, 0.84)
    assert teacher["mean"] == pytest.approx(0.82) and teacher["std"] == pytest.approx(0.02)  # sample std
    assert table[1]["n"] == 2 and table[1]["std"] == pytest.approx(0.0141421, rel=1e-4)
    assert "| teacher dev_accuracy | 3 | 0.8200 | 0.0200 | 0.8000 | 0.8400 |" in markdown(table, [0, 1, 2])


def test_two_models_differ_only_where_the_gap_exceeds_both_spreads():
    from benchmarks.seeds import differences, differences_markdown

    def stats(column, mean, std):
        return {"column": column, "n": 3, "mean": mean, "std": std, "min": mean - std, "max": mean + std}

    table = [stats("teacher dev_accuracy", 0.870, 0.002), stats("tiny dev_accuracy", 0.855, 0.004),
             stats("mini dev_accuracy", 0.851, 0.006), stats("tiny retention", 0.98, 0.01)]
    pairs = {(p["better"], p["worse"]): p for p in differences(table)}
    assert set(pairs) == {("teacher", "tiny"), ("teacher", "mini"), ("tiny", "mini")}  # retention is not a metric pair
    assert pairs[("teacher", "tiny")]["different"] and pairs[("teacher", "tiny")]["gap"] == pytest.approx(0.015)
    assert not pairs[("tiny", "mini")]["different"]  # a 0.4-point gap against a 0.6-point spread
    assert pairs[("tiny", "mini")]["spread"] == pytest.approx(0.006)
    text = differences_markdown(differences(table))
    assert "| dev_accuracy | tiny | mini | 0.40 | 0.60 | no: within the spread |" in text
    assert "| dev_accuracy | teacher | tiny | 1.50 | 0.40 | yes |" in text


@pytest.mark.slow
def test_the_script_runs_each_seed_as_an_experiment_and_leaves_the_workspace(tiny_teacher, tmp_path, capsys):
    from benchmarks.seeds import main

    repo = make_repo(tmp_path, tiny_teacher, BILSTMS_ONLY)
    before = (repo / "params.yaml").read_text()
    main(["--repo", str(repo), "--seeds", "1", "2"])
    out = capsys.readouterr().out
    assert "Over seeds 1, 2" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("| bilstm_kd dev_accuracy |"))
    assert line.split("|")[2].strip() == "2"  # both seeds measured
    assert (repo / "params.yaml").read_text() == before and not (repo / "models" / "students").exists()
    assert "| bilstm_kd dev_accuracy |" in (repo / "reports" / "seeds.md").read_text()
    assert "seed-1" in dvc(repo, "exp", "list").stdout
    # --existing summarises those experiments again without running any, and names one that never ran
    listed = dvc(repo, "exp", "list").stdout
    main(["--repo", str(repo), "--seeds", "1", "2", "--existing", "--out", "reports/again.md"])
    assert dvc(repo, "exp", "list").stdout == listed
    assert (repo / "reports" / "again.md").read_text() == (repo / "reports" / "seeds.md").read_text()
    with pytest.raises(SystemExit, match="no experiment named seed-3"):
        main(["--repo", str(repo), "--seeds", "1", "3", "--existing"])
