"""The whole DAG for what the default suite covers once: a teacher of each other family (RoBERTa,
XLM-RoBERTa, ELECTRA, DistilBERT, DeBERTa-v3, ModernBERT, ALBERT, each with a tokenizer of its kind), a
regression task (STS-B) and 3-class tasks (pairs and single sentences), every method each time. Slow (a
few minutes each): `make test` leaves them out, `.ci/run` runs them (`pytest -m slow`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ALL_STAGES, REPORT_ROWS, SHARED, SST2, dvc, make_repo, needs_shared, tool_env
from families import FAMILIES, save_family_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def family_teacher(folder: Path, family: str) -> Path:
    """A tiny random classifier of a family, saved with a tokenizer of that family's kind (tests/families.py)."""
    return save_family_model(folder, family)


def run_dag(root: Path, teacher: Path, overlay: dict) -> tuple[Path, dict]:
    repo = make_repo(root, teacher, overlay)
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(repo, "repro").stdout))
    assert ran == ALL_STAGES
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == REPORT_ROWS
    return repo, metrics


def predict(repo: Path, model: str, *texts: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "pipeline", "predict", f"exports/{model}", "--json", "--runtime", "int8",
                          *texts], cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "bert"])
def test_a_teacher_of_every_family_runs_every_method(tmp_path, family):
    """Every method on a teacher of each family with a tokenizer of its kind (sentencepiece vocabularies and
    their special tokens, a BPE, no token types); ModernBERT's layers cannot be sliced, so its general
    students start from random weights."""
    teacher = family_teacher(tmp_path / "teacher", family)
    overlay = {"general_distill": {"init": "random"}} if family == "modernbert" else {}
    repo, metrics = run_dag(tmp_path / "run", teacher, overlay)
    distil3 = json.loads((repo / "models/students/distil3/config.json").read_text())
    assert distil3["model_type"] == family  # a DistilBERT-style student copies the teacher's own layers
    general = json.loads((repo / "models/general/tinybert/config.json").read_text())
    assert general["model_type"] == "bert" and general["hidden_size"] == 16
    student_vocab = json.loads((repo / "models/students/tinybert4/tokenizer.json").read_text())["model"]["type"]
    assert student_vocab == json.loads((teacher / "tokenizer.json").read_text())["model"]["type"]  # the teacher's
    assert {r["label"] for r in predict(repo, "tinybert4", "a fine film", "a dull one")} <= {"negative", "positive"}
    assert all(row["dev_accuracy"] >= 0 for row in metrics["models"].values())


@needs_shared
def test_a_regression_task_runs_every_method(tmp_path, tiny_teacher):
    repo, metrics = run_dag(tmp_path, tiny_teacher, {"data": {"task": "stsb", "source": "../shared/data/glue/STS-B",
                                                             "max_train": 80, "max_dev": 40}})
    assert metrics["main_metric"] == "dev_pearson"
    assert all({"dev_pearson", "dev_spearman"} <= set(row) for row in metrics["models"].values())
    logits = json.loads((repo / "data/teacher_logits/meta.json").read_text())
    assert logits["rows"] > 80
    (score,) = predict(repo, "bilstm_kd", "A man plays.\tA man is playing.")
    assert isinstance(score["score"], float) and "label" not in score
    card = (repo / "exports/lrc4/README.md").read_text()
    assert "regression model (a score)" in card and "argmax agreement" not in card


def three_classes(folder: Path, pairs: bool) -> Path:
    """A 3-class task of your own: STS-B pairs by similarity (low / mid / high), or SST-2 sentences by
    length (short / medium / long), written as CSV."""
    import csv

    from pipeline.artifacts import open_input

    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out)
            if pairs:
                w.writerow(["first", "second", "similarity"])
                lines = (SHARED / f"glue/STS-B/{split}.tsv").read_text(encoding="utf-8").splitlines()[1:201]
                for line in lines:
                    f = line.split("\t")
                    score = float(f[-1])
                    w.writerow([f[7], f[8], "low" if score < 1.7 else "mid" if score < 3.4 else "high"])
            else:
                w.writerow(["sentence", "length"])
                with open_input(SST2 / f"{split}.tsv.gz") as handle:
                    lines = handle.read().decode().splitlines()[1:201]
                for line in lines:
                    n = len(line.split("\t")[0].split())
                    w.writerow([line.split("\t")[0], "short" if n < 8 else "medium" if n < 20 else "long"])
    return folder


@needs_shared
@pytest.mark.parametrize("pairs", [True, False])
def test_a_three_class_task_runs_every_method(tmp_path, tiny_teacher, pairs):
    source = three_classes(tmp_path / "data", pairs)
    columns = {"text": "first", "text_pair": "second", "label": "similarity"} if pairs else \
        {"text": "sentence", "label": "length"}
    repo, metrics = run_dag(tmp_path / "run", tiny_teacher, {"data": {"task": "three", "source": str(source),
                                                                      "columns": columns, "max_train": 120}})
    task = json.loads((repo / "data/prepared/meta.json").read_text())["task"]
    assert task["labels"] == (["high", "low", "mid"] if pairs else ["long", "medium", "short"])
    assert task["metrics"] == ["accuracy", "f1_macro"] and task["is_pair"] == pairs
    assert all("dev_f1_macro" in row for row in metrics["models"].values())
    bilstm = json.loads((repo / "models/students/bilstm_kd/config.json").read_text())
    assert bilstm["model"]["num_labels"] == 3 and bilstm["model"]["is_pair"] == pairs
    from pipeline.artifacts import load_dataset_dir
    from pipeline.tasks import Task, imbalanced

    rare = imbalanced(Task.from_json(task), load_dataset_dir(repo / "data/prepared")["train"]["label"])
    recalls = {k for row in metrics["models"].values() for k in row if k.startswith("dev_recall_")}
    assert recalls == ({f"dev_recall_{label}" for label in task["labels"]} if rare else set())
    assert ("## Recall of each class" in (repo / "reports/report.md").read_text()) == rare
    text = "A man plays.\tA man is playing." if pairs else "a long , long film about nothing in particular"
    (record,) = predict(repo, "distil3", text)
    assert set(record["probabilities"]) == set(task["labels"])


def test_a_teacher_that_cannot_learn_is_reported_as_near_the_baseline(tmp_path, tiny_teacher):
    """Random labels: nothing to learn, for the teacher or anyone; the report says so, naming the keys."""
    import csv
    import random

    from conftest import BILSTM_STAGES, BILSTMS_ONLY

    from pipeline.artifacts import open_input

    folder = tmp_path / "noise"
    folder.mkdir()
    rng = random.Random(0)
    for split in ("train", "dev"):
        with open_input(SST2 / f"{split}.tsv.gz") as handle:
            lines = handle.read().decode().splitlines()[1:161]
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out)
            w.writerow(["text", "label"])
            w.writerows([(line.split("\t")[0], rng.choice(["a", "b"])) for line in lines])
    repo = make_repo(tmp_path / "run", tiny_teacher, {**BILSTMS_ONLY, "data": {"task": "noise", "source": str(folder)}})
    proc = dvc(repo, "repro")
    assert set(re.findall(r"Running stage '([^']+)'", proc.stdout)) == BILSTM_STAGES
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    near = [w for w in metrics["warnings"] if w.startswith("teacher: dev_accuracy")]
    assert near and "the students can inherit nothing" in near[0] and "teacher.min_steps" in near[0]
    assert metrics["baseline"]["predicts"] in ("a", "b") and "**Warnings**" in (repo / "reports/report.md").read_text()
    assert near[0] in proc.stdout + proc.stderr  # the stage log says it too
