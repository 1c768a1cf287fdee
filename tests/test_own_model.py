"""The user's own model through the whole DAG: the README's recipe "Your own teacher, unlabelled text and a
pretrained student" run as written (a CSV task, a fine-tuned teacher folder taken as given, unlabelled
texts, a pretrained student folder) on tiny models, and pretrained students of other families with tokenizers of their own. Slow:
`.ci/run` runs them (`pytest -m slow`)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import (ALL_STAGES, SST2, TINY, TINY_STEPS, _drop, doc_block, dvc, epochs_alone, make_repo,
                      swept_students, tool_env)
from families import save_family_model, tokenizer_of

from pipeline.params.config import deep_merge

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WALK_THROUGH = "### Your own teacher, unlabelled text and a pretrained student"
# The tiny budget of the other e2e tests, for the default students and augmentation the walk-through runs.
BUDGET = deep_merge({k: TINY[k] for k in ("tang", "distilbert", "general_distill", "tinybert", "lrc", "export",
                                          "evaluate")},
                    {"augment": {"tang": {"n_iter": 2}}, "teacher_logits": {"batch_size": 32},
                     "minilmv2": {"minilm4": deep_merge(TINY_STEPS, {"intermediate": {"relation_heads": 2}}),
                                  **swept_students()}})
DEFAULT_STAGES = ALL_STAGES - {"augment@tinybert"}


def sst2_lines(split: str) -> list[tuple[str, str]]:
    from pipeline.artifacts import open_input

    with open_input(SST2 / f"{split}.tsv.gz") as handle:
        return [tuple(line.split("\t")) for line in handle.read().decode("utf-8").splitlines()[1:]]


def user_files(repo: Path) -> dict[str, int]:
    """What the walk-through's user brings: a CSV task (labels neg/pos), unlabelled text with some dev
    sentences in it, a fine-tuned classifier whose labels are POS/NEG in that order, a small pretrained
    model with the teacher's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    data = repo / "my_data"
    data.mkdir()
    train, dev = sst2_lines("train"), sst2_lines("dev")
    for name, rows in (("train", train[:150]), ("dev", dev[:60])):
        with open(data / f"{name}.csv", "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out)
            w.writerow(["text", "label"])
            w.writerows([(text.strip(), "pos" if label.strip() == "1" else "neg") for text, label in rows])
    leaked = [text.strip().capitalize() for text, _ in dev[10:14]]  # dev sentences, written otherwise
    (data / "unlabelled.txt").write_text("\n".join([t.strip() for t, _ in train[150:450]] + leaked) + "\n")
    tokenizer = tokenizer_of("bert")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, id2label={0: "POS", 1: "NEG"},
                        label2id={"POS": 0, "NEG": 1})
    BertForSequenceClassification(config).save_pretrained(str(repo / "my_teacher"))
    tokenizer.save_pretrained(str(repo / "my_teacher"))
    save_family_model(repo / "my_student", "bert", head="base", hidden=16, layers=2, seed=5)
    return {"leaked": len(leaked)}


def run(repo: Path, line: str) -> subprocess.CompletedProcess:
    args = shlex.split(line)
    proc = subprocess.run([sys.executable, "-m", *args[2:]] if args[:2] == ["python", "-m"] else
                          [sys.executable, "-m", "dvc", *args[1:]], cwd=repo, env=tool_env(), capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_distil_your_own_model_as_the_readme_recipe_says(tmp_path):
    from pipeline.params.config import parse_params, read_yaml
    from pipeline.params.profile import render_params

    placeholder = save_family_model(tmp_path / "placeholder", "bert")
    repo = make_repo(tmp_path, placeholder)  # its params are rewritten by the walk-through's profile
    brought = user_files(repo)
    (repo / "profiles/mine.yaml").write_text(doc_block(WALK_THROUGH, "yaml"))
    profile, repro, predict = [line.split("  #")[0].strip() for line in doc_block(WALK_THROUGH, "bash").splitlines()
                               if line.strip()]
    assert (profile, repro) == ("python -m pipeline profile mine", "dvc repro")
    run(repo, profile)
    raw = _drop(deep_merge(read_yaml(repo / "params.yaml"), BUDGET))
    params = parse_params(epochs_alone(raw, BUDGET))  # a tiny budget on top
    (repo / "params.yaml").write_text(render_params(params))
    ran = set(re.findall(r"Running stage '([^']+)'", run(repo, repro).stdout))
    assert ran == DEFAULT_STAGES

    reports = repo / "reports"
    teacher = json.loads((reports / "teacher.json").read_text())
    assert teacher["finetuned"] is False and teacher["outputs"] == {"neg": "NEG", "pos": "POS"} and teacher["reordered"]
    prepared = json.loads((reports / "prepare.json").read_text())
    assert prepared["task"]["labels"] == ["neg", "pos"] and prepared["rows"]["train"] == 150
    assert prepared["unlabelled"]["in_dev_or_test"] == brought["leaked"] and prepared["unlabelled"]["kept"] > 250
    logits = json.loads((reports / "teacher_logits.json").read_text())
    assert logits["unlabelled_rows"] == prepared["unlabelled"]["kept"]
    step1 = json.loads((reports / "steps/tinybert4/intermediate.json").read_text())
    assert step1["init"] == "pretrained:my_student" and step1["rows"]["unlabelled"] > 0
    assert json.loads((repo / "models/students/tinybert4/config.json").read_text())["hidden_size"] == 16
    assert json.loads((reports / "students/bilstm_nokd.json").read_text())["rows"] == {"train": 150}
    assert json.loads((reports / "students/bilstm_kd.json").read_text())["rows"]["unlabelled"] > 0
    metrics = json.loads((reports / "metrics.json").read_text())
    assert {"teacher", "tinybert4", "tinybert4:int8"} <= set(metrics["models"])
    out = run(repo, predict).stdout
    assert re.search(r"\b(neg|pos)\b", out), out


def test_pretrained_students_of_other_families_and_tokenizers_run_through_the_dag(tmp_path, tiny_teacher):
    """Beside a BERT teacher: an ALBERT student with its own sentencepiece tokenizer (step 1 skipped), a
    DeBERTa-v3 one with LRC-BERT's per-text terms only, a ModernBERT one as the DistilBERT-style student (cached
    logits, no cosine), a narrower BERT with the teacher's tokenizer through both MiniLMv2 steps."""
    students = tmp_path / "students"
    init = {f: f"pretrained:{save_family_model(students / f, f, head='base', seed=7)}"
            for f in ("albert", "deberta-v2", "modernbert")}
    init["bert"] = f"pretrained:{save_family_model(students / 'bert', 'bert', head='base', hidden=24, seed=7)}"
    overlay = {
        "tinybert": {"tinybert4": {"init": init["albert"], "intermediate": {"epochs": 0}}},
        "lrc": {"lrc4": {"init": init["deberta-v2"], "intermediate": {"epochs": 0},
                         "prediction": {"weights": {"cos_nce": 0.0}}}},
        "distilbert": {"distil3": {"init": init["modernbert"], "train_on": "teacher_logits",
                                   "weights": {"cosine": 0.0}}},
        "minilmv2": {"minilm4": {"init": init["bert"], "intermediate": {"relation_heads": 2}}},
        "general_distill": {"objectives": []},  # no student needs general distillation
    }
    repo = make_repo(tmp_path / "run", tiny_teacher, overlay)
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(repo, "repro").stdout))
    assert not any(s.startswith("general_distill") for s in ran) and "export" in ran and "evaluate" in ran
    kinds = {name: json.loads((repo / f"models/students/{name}/config.json").read_text())["model_type"]
             for name in ("tinybert4", "lrc4", "distil3", "minilm4")}
    assert kinds == {"tinybert4": "albert", "lrc4": "deberta-v2", "distil3": "modernbert", "minilm4": "bert"}
    assert json.loads((repo / "reports/steps/tinybert4/intermediate.json").read_text())["trained"] is False
    minilm = json.loads((repo / "reports/steps/minilm4/intermediate.json").read_text())
    assert minilm["init"] == init["bert"] and minilm["train_rows"] > 0  # the teacher's tokenizer: step 1 runs
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert {"tinybert4:onnx", "lrc4:onnx", "distil3:onnx", "minilm4:onnx"} <= set(metrics["models"])
    for name in ("tinybert4", "distil3"):  # served with their own tokenizers
        out = subprocess.run([sys.executable, "-m", "pipeline", "predict", f"exports/{name}", "--json", "a fine film"],
                             cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and json.loads(out.stdout)["label"] in ("negative", "positive"), out.stderr[-2000:]
    assert yaml.safe_load((repo / "params.yaml").read_text())["tinybert"]["tinybert4"]["init"] == init["albert"]
