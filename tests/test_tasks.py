"""Tasks by params: the GLUE presets read their official files, a task of your own is declared (or read
from train), regression and multi-class labels, metrics, and bad task params or data named clearly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SHARED, needs_shared

from pipeline.data.prepare import prepare
from pipeline.errors import DataError
from pipeline.params.config import DataConfig
from pipeline.tasks import GLUE, Task, compute_metrics, f1_macro, mcc, pearson, preset_task, spearman


def write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# GLUE's official layouts, a few rows each (the real files are what ../shared has for SST-2, MRPC, STS-B)
GLUE_FILES = {
    "cola": ({"train.tsv": "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n",
              "dev.tsv": "gj04\t1\t\tThe sailors rode the breeze.\nc_13\t0\t*\tThe more we study.\n",
              "test.tsv": "index\tsentence\n0\tBill whistled past the house.\n"},
             ("unacceptable", "acceptable"), ("mcc", "accuracy"), False),
    "mnli": ({"train.tsv": "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
                           "0\t1\tA man eats.\tA person eats.\tentailment\tentailment\n"
                           "1\t2\tA man eats.\tNobody eats.\tcontradiction\tcontradiction\n"
                           "2\t3\tA man eats.\tHe is hungry.\tneutral\tneutral\n",
              "dev_matched.tsv": "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
                                 "0\t4\tIt rains.\tIt is wet.\tentailment\tentailment\n",
              "dev_mismatched.tsv": "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
                                    "0\t5\tShe sings.\tShe is silent.\tcontradiction\tcontradiction\n",
              "test_matched.tsv": "index\tpromptID\tsentence1\tsentence2\n0\t6\tA dog.\tAn animal.\n"},
             ("entailment", "neutral", "contradiction"), ("accuracy",), True),
    "qnli": ({"train.tsv": "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tentailment\n"
                           "1\tWhen?\tBlue.\tnot_entailment\n",
              "dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhere?\tHere.\tentailment\n"},
             ("entailment", "not_entailment"), ("accuracy",), True),
    "rte": ({"train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tC.\tentailment\n",
             "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tD.\tD.\tentailment\n"},
            ("entailment", "not_entailment"), ("accuracy",), True),
    "wnli": ({"train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n1\tC.\tD.\t0\n",
              "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tE.\tF.\t1\n"},
             ("not_entailment", "entailment"), ("accuracy",), True),
    "qqp": ({"train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tHow?\tHow so?\t1\n"
                          "1\t3\t4\tWhy?\tWhen?\t0\n",
             "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t5\t6\tWho?\tWho is?\t1\n"},
            ("not_duplicate", "duplicate"), ("f1", "accuracy"), True),
}


@pytest.mark.parametrize("name", list(GLUE_FILES))
def test_a_glue_preset_needs_only_its_name_and_folder(tmp_path, name):
    files, labels, metrics, is_pair = GLUE_FILES[name]
    dataset, summary = prepare(DataConfig(task=name, source=str(write(tmp_path, files)), max_train=None), seed=0)
    task = Task.from_json(summary["task"])
    assert task == preset_task(name)
    assert (task.labels, task.metrics, task.is_pair) == (labels, metrics, is_pair)
    assert all(0 <= x < len(labels) for x in dataset["train"]["label"])
    if name == "cola":  # headerless train/dev; a test file with a header
        assert dataset["train"]["text"][1] == "They drank the pub." and dataset["train"]["label"] == [1, 0]
        assert dataset["test"]["label"] == [-1]
    if name == "mnli":  # dev is dev_matched; dev_mismatched is its own labelled split
        assert set(dataset) == {"train", "dev", "dev_mismatched", "test"}
        assert dataset["dev_mismatched"]["label"] == [2] and dataset["train"]["label"] == [0, 2, 1]


def test_every_glue_task_has_a_preset():
    assert set(GLUE) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert preset_task("stsb").regression and preset_task("stsb").metrics == ("pearson", "spearman")
    assert preset_task("mrpc").metrics[0] == "f1" and preset_task("cola").metrics[0] == "mcc"


@needs_shared
def test_stsb_is_a_regression_by_its_name_alone():
    dataset, summary = prepare(DataConfig(task="stsb", source=str(SHARED / "glue/STS-B"), max_train=50), seed=0)
    task = Task.from_json(summary["task"])
    assert task.regression and task.num_labels == 1 and task.is_pair
    scores = dataset["train"]["label"]
    assert all(0.0 <= x <= 5.0 for x in scores) and len(set(scores)) > 5
    assert summary["label_counts"]["train"]["scored"] == 50


def test_a_task_of_your_own_reads_its_labels_from_train_in_a_recorded_order(tmp_path):
    folder = write(tmp_path / "intents", {
        "train.csv": "utterance,intent\nbook a table,restaurant\nplay jazz,music\nwake me at 7,alarm\nplay rock,music\n",
        "dev.csv": "utterance,intent\nplay blues,music\nset an alarm,alarm\n"})
    cfg = DataConfig(task="intents", source=str(folder), columns={"text": "utterance", "label": "intent"},
                     max_train=None)
    dataset, summary = prepare(cfg, seed=0)
    task = Task.from_json(summary["task"])
    assert task.labels == ("alarm", "music", "restaurant") and task.metrics == ("accuracy", "f1_macro")
    assert dataset["train"]["label"] == [2, 1, 0, 1] and dataset["dev"]["label"] == [1, 0]
    assert summary["label_counts"]["train"] == {"alarm": 1, "music": 2, "restaurant": 1}
    declared = DataConfig(task="intents", source=str(folder), columns={"text": "utterance", "label": "intent"},
                          labels=["restaurant", "music", "alarm"], metrics=["f1_macro", "mcc"], max_train=None)
    dataset, summary = prepare(declared, seed=0)
    assert Task.from_json(summary["task"]).labels == ("restaurant", "music", "alarm")
    assert dataset["train"]["label"] == [0, 1, 2, 1]


def test_numeric_labels_are_ordered_as_numbers_and_a_regression_reads_floats(tmp_path):
    folder = write(tmp_path / "stars", {"train.jsonl": "".join(f'{{"text": "r{i}", "label": {s}}}\n'
                                                               for i, s in enumerate([10, 2, 1, 2]))})
    write(folder, {"dev.jsonl": '{"text": "x", "label": 1}\n'})
    _, summary = prepare(DataConfig(task="stars", source=str(folder), max_train=None), seed=0)
    assert Task.from_json(summary["task"]).labels == ("1", "2", "10")
    dataset, summary = prepare(DataConfig(task="stars", source=str(folder), problem="regression", max_train=None), 0)
    assert dataset["train"]["label"] == [10.0, 2.0, 1.0, 2.0] and Task.from_json(summary["task"]).num_labels == 1


@pytest.mark.parametrize("train, dev, overrides, message", [
    ("text,label\na,x\nb,y\n", "text,label\nc,z\n", {}, "dev.csv:2: label 'z' is not one of the own labels (x, y)"),
    ("text,label\na,x\nb,x\n", "text,label\nc,x\n", {},
     "train.csv: the label column holds 1 distinct value(s) ['x']; a classification task needs two or more"),
    ("text,label\na,1.5\nb,oops\n", "text,label\nc,2\n", {"problem": "regression"},
     "train.csv:3: label 'oops' is not a number (a regression task's target)"),
    ("text,label\na,x\nb,y\nc,z\n", "text,label\nc,x\n", {"metrics": ["f1"]},
     "train.csv: 3 labels ['x', 'y', 'z'], but data.metrics has f1, which is binary; use f1_macro"),
    ("text,label\na,x\nb,\n", "text,label\nc,x\n", {}, "train.csv:3: empty label in column 'label'"),
])
def test_bad_task_data_names_the_file_and_line(tmp_path, train, dev, overrides, message):
    folder = write(tmp_path / "own", {"train.csv": train, "dev.csv": dev})
    with pytest.raises(DataError) as err:
        prepare(DataConfig(task="own", source=str(folder), max_train=None, **overrides), seed=0)
    assert message in str(err.value)


def test_a_bad_task_in_params_stops_the_prepare_stage_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import stages.prepare
    from pipeline.params.config import Params, deep_merge, parse_params
    from pipeline.params.profile import render_params

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "own", {"train.csv": "text,label\na,x\nb,y\n", "dev.csv": "text,label\nc,z\n"})
    params = parse_params(deep_merge(Params().model_dump(), {"data": {"task": "own", "source": "own"}}))
    (tmp_path / "params.yaml").write_text(render_params(params))
    with pytest.raises(SystemExit) as exc:
        stages.prepare.main([])
    assert exc.value.code == 2 and "error: own/dev.csv:2: label 'z'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own", "params.yaml"]  # no data/, no reports/


# ---------------------------------------------------------------- metrics
def test_multiclass_metrics_against_worked_values():
    gold = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # per class F1: class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1, fn 0 -> 0.8; class 2: tp 1, fn 1 -> 2/3
    assert f1_macro(pred, gold) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Gorodkin's MCC: c = 4, s = 6, p = (2, 3, 1), t = (2, 2, 2)
    expected = (4 * 6 - (2 * 2 + 3 * 2 + 1 * 2)) / math.sqrt((36 - (4 + 9 + 1)) * (36 - 12))
    assert mcc(pred, gold) == pytest.approx(expected)
    assert mcc(gold, gold) == pytest.approx(1.0)


def test_regression_metrics_against_worked_values():
    gold = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    pred = np.array([1.1, 1.9, 3.2, 3.9, 10.0])  # monotone, not linear
    assert spearman(pred, gold) == pytest.approx(1.0)
    assert pearson(pred, gold) == pytest.approx(np.corrcoef(pred, gold)[0, 1]) and pearson(pred, gold) < 0.95
    assert spearman(np.array([1, 2, 2, 3.0]), np.array([1, 2, 3, 4.0])) == pytest.approx(0.9486833, rel=1e-6)
    task = preset_task("stsb")
    metrics = compute_metrics(task, pred[:, None], np.array([*gold[:4], np.nan, ]))  # the unscored row is left out
    assert metrics == {"pearson": pytest.approx(pearson(pred[:4], gold[:4])), "spearman": pytest.approx(1.0)}


def test_prepared_meta_records_the_task(tmp_path):
    from pipeline.tasks import prepared_task

    folder = write(tmp_path / "own", {"train.csv": "text,label\na,x\nb,y\n", "dev.csv": "text,label\nc,y\n"})
    dataset, summary = prepare(DataConfig(task="own", source=str(folder)), seed=0)
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared/meta.json").write_text(json.dumps(summary))
    assert prepared_task(tmp_path / "prepared") == Task("own", "classification", ("x", "y"), ("accuracy", "f1_macro"),
                                                         False, ("x", "y"))
