"""The DAG end to end through `dvc repro`, on a copy of the repository with tiny settings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import deep_merge

from conftest import ALL_STAGES, REPORT_ROWS, STUDENTS, TINY, TWOSTEP, dvc, make_repo, tool_env, write_params

pytestmark = pytest.mark.e2e

def set_params(repo: Path, overlay: dict) -> None:
    """Tiny params + overlay, keeping the repo's (tiny) teacher."""
    teacher = yaml.safe_load((repo / "params.yaml").read_text())["teacher"]["pretrained"]
    write_params(repo, deep_merge(deep_merge(TINY, {"teacher": {"pretrained": teacher}}), overlay))


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_teacher) -> Path:
    return make_repo(tmp_path_factory.mktemp("e2e"), tiny_teacher)


def test_repro_builds_every_artifact(repo):
    proc = dvc(repo, "repro")
    assert ran(proc) == ALL_STAGES
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == REPORT_ROWS
    for name, row in metrics["models"].items():
        assert 0.0 <= row["dev_accuracy"] <= 1.0 and row["parameters"] > 0 and row["latency_ms_b1"] > 0
    assert metrics["models"]["teacher"]["retention"] == 1.0
    report = (repo / "reports/report.md").read_text()
    assert all(f"| {row['model']} | {row['runtime']} |" in report for row in metrics["models"].values())
    for plot in ("accuracy_latency", "size", "training_curves"):
        assert (repo / f"reports/plots/{plot}.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["pareto_front"] and set(metrics["pareto_front"]) <= REPORT_ROWS
    assert "Pareto front" in report
    for name in {"teacher"} | STUDENTS:
        folder = repo / "exports" / name
        assert (folder / "model.onnx").is_file() and (folder / "model.int8.onnx").is_file()
        assert json.loads((folder / "export.json").read_text())["onnx"]["max_abs_diff"] <= 1e-4
        card = (folder / "README.md").read_text()
        assert "## Metrics" in card and "## How to load" in card
    card = (repo / "exports/tinybert4/README.md").read_text()
    assert "dev_accuracy (int8)" in card and "latency_ms_b1 (onnx)" in card and "TinyBERT" in card
    counts = json.loads((repo / "reports/augment.json").read_text())
    assert counts["source_examples"] == 120 and counts["kept"] > 0
    logits = json.loads((repo / "data/teacher_logits/meta.json").read_text())
    assert logits["rows"] == 120 + counts["kept"]
    for student in STUDENTS:
        assert (repo / "models/students" / student / "model.safetensors").is_file()
    for objective in ("tinybert", "minilmv2"):
        general = json.loads((repo / f"reports/general_distill/{objective}.json").read_text())
        assert general["objective"] == objective and general["sequences"] == 16
    steps = {name: json.loads((repo / f"reports/intermediate/{name}.json").read_text()) for name in TWOSTEP}
    assert steps["tinybert4"]["init"] == "tinybert" and steps["tinybert4"]["train_rows"] > 120  # + augmented
    assert steps["minilm4"]["init"] == "minilmv2" and steps["minilm4"]["method"] == "minilmv2"
    assert steps["lrc4"]["method"] == "lrc" and steps["lrc4"]["train_rows"] == steps["tinybert4"]["train_rows"]
    lrc = json.loads((repo / "reports/students/lrc4.json").read_text())
    assert lrc["train_rows"] == json.loads((repo / "reports/students/tinybert4.json").read_text())["train_rows"]
    assert "LRC-BERT" in (repo / "exports/lrc4/README.md").read_text()
    assert "MiniLMv2" in (repo / "exports/minilm4/README.md").read_text()
    assert "up to date" in dvc(repo, "status").stdout


def test_transformer_students_load_with_plain_transformers(repo):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    for name in ("tinybert4", "distil3", "minilm4", "lrc4"):
        folder = str(repo / "models/students" / name)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
        assert classify("a gorgeous , witty film")[0]["label"] in ("negative", "positive")
    assert AutoModelForSequenceClassification.from_pretrained(str(repo / "models/students/tinybert4")).config \
        .num_hidden_layers == 2
    assert AutoModelForSequenceClassification.from_pretrained(str(repo / "models/students/distil3")).config \
        .num_hidden_layers == 1  # half of the tiny teacher's 2 layers


def test_changing_tinybert_step2_reruns_only_step2_and_evaluate(repo):
    overlay = deep_merge(TINY, {"twostep": {"tinybert4": {"prediction": {"temperature": 2.0}}}})
    kept = {f: f.read_bytes() for f in [repo / "params.yaml", repo / "dvc.lock", *(repo / "reports").rglob("*")]
            if f.is_file()}
    set_params(repo, overlay)
    assert ran(dvc(repo, "repro")) == {"prediction@tinybert4", "evaluate"}
    for f, data in kept.items():  # back without rerunning: params, lock and uncached reports, then the cache
        f.write_bytes(data)
    dvc(repo, "checkout")
    assert "up to date" in dvc(repo, "status").stdout


def quality_snapshot(repo: Path) -> dict:
    """Everything a rerun must reproduce: artifact hashes and every non-timing metric."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    hashes = {f"{stage}:{out['path']}": out.get("md5")
              for stage, entry in lock.items() for out in entry.get("outs", [])
              if not out["path"].startswith(("checkpoints", "reports", "exports"))}  # cards hold speeds
    timing = re.compile(r"seconds|per_second|latency|throughput|speedup|pareto")
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not timing.search(k)}
        return obj
    reports = {str(p.relative_to(repo)): strip(json.loads(p.read_text()))
               for p in sorted((repo / "reports").rglob("*.json")) if "history" not in p.parts}
    return {"hashes": hashes, "reports": reports}


def test_same_params_and_seed_give_the_same_artifacts_and_metrics(repo):
    # Every stage kind once, both general objectives, and the two-step methods with randomness of
    # their own (LRC-BERT's negatives and perturbation; MiniLMv2). TinyBERT's steps run the same
    # Trainer loop and row sampling; the ablations and evaluate run the same code as what is forced here.
    targets = ("prediction@minilm4", "prediction@lrc4", "task_distill@bilstm_kd")
    before = quality_snapshot(repo)
    proc = dvc(repo, "repro", "--force", *targets)
    assert ran(proc) == {"prepare", "augment", "teacher_finetune", "teacher_logits", "general_distill@tinybert",
                         "general_distill@minilmv2", "task_distill@bilstm_kd"} | {
        f"{step}@{name}" for name in ("minilm4", "lrc4") for step in ("intermediate", "prediction")}
    assert quality_snapshot(repo) == before


def test_two_repros_in_one_workspace_do_not_corrupt_it(repo):
    procs = [subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--force", "-s", "evaluate"], cwd=repo,
                              env=tool_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outputs
    loser = outputs[[p.returncode for p in procs].index(codes[1])]
    # DVC's repo lock ("Unable to acquire lock") or its per-output lock ("... is busy, it is being blocked by")
    assert "Unable to acquire lock" in loser or "is being blocked by" in loser, loser
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == REPORT_ROWS
    assert "up to date" in dvc(repo, "status").stdout


def test_changing_one_student_reruns_only_it_and_evaluate(repo):
    overlay = deep_merge(TINY, {"students": {"bilstm_kd": {"hidden": 12}}})
    set_params(repo, overlay)
    proc = dvc(repo, "repro")
    assert ran(proc) == {"task_distill@bilstm_kd", "evaluate"}
    config = json.loads((repo / "models/students/bilstm_kd/config.json").read_text())
    assert config["model"]["hidden"] == 12


def test_bad_params_fail_the_stage_with_the_key_and_write_nothing(repo):
    # DVC removes a stage's outputs before running it; the stage must then fail before writing any.
    set_params(repo, deep_merge(TINY, {"augment": {"n_iter": 2}}))
    text = (repo / "params.yaml").read_text().replace("p_mask: 0.1", "p_mask: 1.5")
    (repo / "params.yaml").write_text(text)
    proc = dvc(repo, "repro", check=False)
    assert proc.returncode != 0
    assert "augment.p_mask: Input should be less than or equal to 1 (got 1.5)" in proc.stdout + proc.stderr
    assert not (repo / "reports/augment.json").exists() and not (repo / "data/augmented").exists()
    assert not list((repo / "data").glob(".*tmp*")) and not list((repo / "reports").glob(".*tmp*"))
    assert (repo / "data/prepared/meta.json").is_file()  # upstream artifacts are untouched
