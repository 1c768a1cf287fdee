"""The DAG end to end through `dvc repro`, on a copy of the repository with tiny settings.

`built` is the repository after one full `dvc repro` (made once per module); tests that only read use
it, tests that change something work on their own copy of it, so each test runs alone or in any order.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (ALL_STAGES, REPORT_ROWS, STUDENTS, TINY, TWOSTEP, doc_block, dvc, git, make_repo, tool_env,
                      write_params)

from pipeline.params.config import deep_merge

pytestmark = pytest.mark.e2e


def set_params(repo: Path, overlay: dict) -> None:
    """Tiny params + overlay, keeping the repo's (tiny) teacher."""
    teacher = yaml.safe_load((repo / "params.yaml").read_text())["teacher"]["pretrained"]
    write_params(repo, deep_merge(deep_merge(TINY, {"teacher": {"pretrained": teacher}}), overlay))


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout))


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_teacher) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("e2e"), tiny_teacher)
    proc = dvc(repo, "repro")
    assert ran(proc) == ALL_STAGES
    return repo


@pytest.fixture
def repo(built, tmp_path) -> Path:
    """A copy of the built repository (data, models, DVC cache and all) for a test that changes it."""
    shutil.copytree(built.parent, tmp_path / "copy", symlinks=True)
    return tmp_path / "copy" / "repo"


def test_repro_builds_every_artifact_and_reports_what_the_exports_do(built):
    metrics = json.loads((built / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == REPORT_ROWS
    rows = metrics["models"]
    teacher = rows["teacher"]
    for name, row in rows.items():
        export = json.loads((built / "exports" / row["model"] / "export.json").read_text())
        assert row["dev_accuracy"] == export["quality"][row["runtime"]]["dev_accuracy"]
        assert row["retention"] == round(row["dev_accuracy"] / teacher["dev_accuracy"], 4)
        assert row["compression"] == round(teacher["parameters"] / row["parameters"], 2)
        same = rows[name.replace(row["model"], "teacher", 1)]  # the teacher in the same runtime
        assert same["runtime"] == row["runtime"]
        assert row["speedup_b1"] == round(same["latency_ms_b1"] / row["latency_ms_b1"], 2)
        assert row["model_speedup_throughput"] == round(row["model_throughput_b32"] / same["model_throughput_b32"], 2)
        assert row["parameters"] == export["parameters"] and row["onnx_parity_max_abs_diff"] <= 1e-4
    # the quality an export reports is what its runtime computes on the prepared dev split
    import datasets

    from pipeline.artifacts import texts_of
    from pipeline.serving.runtimes import load_export
    from pipeline.tasks import compute_metrics, preset_task

    dev = datasets.load_from_disk(str(built / "data/prepared"))["dev"]
    for name in ("tinybert4", "bilstm_kd:int8"):
        model, _, runtime = name.partition(":")
        logits = load_export(built / "exports" / model, runtime or "torch").logits(*texts_of(dev, False), 128)
        assert rows[name]["dev_accuracy"] == round(
            compute_metrics(preset_task("sst2"), logits, np.asarray(dev["label"]))["accuracy"], 4)
    report = (built / "reports/report.md").read_text()
    assert all(f"| {row['model']} | {row['runtime']} |" in report for row in rows.values())
    assert metrics["pareto_front"] and set(metrics["pareto_front"]) <= REPORT_ROWS
    # the pick (the ci profile's rule: the most accurate student), served from selected/
    selection = json.loads((built / "reports/selection.json").read_text())
    students = {n: r for n, r in rows.items() if r["model"] != "teacher"}
    assert selection["row"] == max(students, key=lambda n: (students[n]["dev_accuracy"], -students[n]["latency_ms_b1"]))
    assert json.loads((built / "selected/selection.json").read_text())["row"] == selection["row"]
    assert (built / "selected/export.json").read_bytes() == (built / "exports" / selection["model"] / "export.json").read_bytes()
    assert f"**{selection['model']}**" in (built / "reports/selection.md").read_text()
    for name in {"teacher"} | STUDENTS:
        folder = built / "exports" / name
        assert (folder / "model.onnx").is_file() and (folder / "model.int8.onnx").is_file()
        card = (folder / "README.md").read_text()
        assert f"| dev_accuracy (int8) | {rows[name if name == 'teacher' else f'{name}:int8']['dev_accuracy']} |" in card \
            if name != "teacher" else "| dev_accuracy (torch) |" in card
    assert "TinyBERT" in (built / "exports/tinybert4/README.md").read_text()
    assert "LRC-BERT" in (built / "exports/lrc4/README.md").read_text()
    assert "MiniLMv2" in (built / "exports/minilm4/README.md").read_text()
    counts = json.loads((built / "reports/augment/tang.json").read_text())
    assert counts["source_examples"] == 120 and counts["kept"] > 0
    tinybert = json.loads((built / "reports/augment/tinybert.json").read_text())
    assert tinybert["candidates_from"] == "word vectors only (no masked LM)" and tinybert["kept"] > 0
    assert json.loads((built / "reports/teacher.json").read_text())["train_rows"] == 100  # teacher.max_rows
    logits = json.loads((built / "data/teacher_logits/meta.json").read_text())
    assert logits["rows"] == 120 + counts["kept"] + tinybert["kept"]  # every train row, both augmentations
    assert logits["augmented_rows"] == {"tang": counts["kept"], "tinybert": tinybert["kept"]}
    for objective in ("tinybert", "minilmv2"):
        general = json.loads((built / f"reports/general_distill/{objective}.json").read_text())
        assert general["objective"] == objective and general["sequences"] == 16
    steps = {name: json.loads((built / f"reports/steps/{name}/intermediate.json").read_text()) for name in TWOSTEP}
    assert steps["tinybert4"]["init"] == "tinybert" and steps["tinybert4"]["train_rows"] == 120 + counts["kept"]
    assert steps["minilm4"]["init"] == "minilmv2" and steps["minilm4"]["method"] == "minilmv2"
    assert steps["minilm4"]["augmentation"] == "tinybert" and steps["minilm4"]["train_rows"] == 120 + tinybert["kept"]
    assert steps["lrc4"]["method"] == "lrc" and steps["lrc4"]["train_rows"] == steps["tinybert4"]["train_rows"]
    history = json.loads((built / "reports/history/tinybert4_intermediate.json").read_text())
    assert {"loss/embedding", "loss/hidden", "loss/attention"} <= set(history[0])  # every term logged
    assert "up to date" in dvc(built, "status").stdout


def test_transformer_students_load_with_plain_transformers(built):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    for name in ("tinybert4", "distil3", "minilm4", "lrc4"):
        folder = str(built / "models/students" / name)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
        assert classify("a gorgeous , witty film")[0]["label"] in ("negative", "positive")
    assert AutoModelForSequenceClassification.from_pretrained(str(built / "models/students/tinybert4")).config \
        .num_hidden_layers == 2
    assert AutoModelForSequenceClassification.from_pretrained(str(built / "models/students/distil3")).config \
        .num_hidden_layers == 1  # half of the tiny teacher's 2 layers


def test_changing_an_evaluate_param_reruns_only_evaluate(repo):
    set_params(repo, {"evaluate": {"repeats": 2}})
    assert ran(dvc(repo, "repro")) == {"evaluate", "select"}


def test_changing_one_student_or_one_step_reruns_only_it_export_and_evaluate(repo):
    # one change of each kind in one repro: neither the other BiLSTM nor TinyBERT's first step reruns
    set_params(repo, {"tang": {"bilstm_kd": {"hidden": 12}},
                      "tinybert": {"tinybert4": {"prediction": {"temperature": 2.0}}}})
    assert ran(dvc(repo, "repro")) == {"tang@bilstm_kd", "tinybert_prediction@tinybert4", "export", "evaluate",
                                       "select"}
    config = json.loads((repo / "models/students/bilstm_kd/config.json").read_text())
    assert config["model"]["hidden"] == 12


def quality_snapshot(repo: Path) -> dict:
    """Everything a rerun must reproduce: artifact hashes and every non-timing metric."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    hashes = {f"{stage}:{out['path']}": out.get("md5") for stage, entry in lock.items()
              for out in entry.get("outs", []) if not out["path"].startswith(("reports", "selected"))}
    timing = re.compile(r"seconds|per_second|latency|throughput|speedup|pareto")

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not timing.search(k)}
        return obj
    reports = {str(p.relative_to(repo)): strip(json.loads(p.read_text()))
               for p in sorted((repo / "reports").rglob("*.json")) if "history" not in p.parts}
    return {"hashes": hashes, "reports": reports}


def test_same_params_and_seed_give_the_same_artifacts_and_metrics(repo):
    # In fresh processes: every stage kind once, both augmenters and general objectives (the two-step stages
    # read models/general), the two-step method with randomness of its own (LRC-BERT's negatives and
    # perturbation) and the exports (no timings in them). The other students run the same training driver
    # and row sampling; that each training stage reproduces its weights in one process is test_resume's (an
    # uninterrupted run against a resumed one).
    before = quality_snapshot(repo)
    proc = dvc(repo, "repro", "--force", "lrc_prediction@lrc4", "tang@bilstm_kd")
    assert ran(proc) == {"prepare", "augment@tang", "augment@tinybert", "teacher_finetune", "teacher_logits",
                         "general_distill@tinybert", "general_distill@minilmv2", "lrc_intermediate@lrc4",
                         "lrc_prediction@lrc4", "tang@bilstm_kd"}
    assert ran(dvc(repo, "repro", "--force", "--single-item", "export")) == {"export"}
    assert quality_snapshot(repo) == before


def test_a_second_repro_in_a_busy_workspace_fails_and_touches_nothing(repo):
    from dvc.repo import Repo

    snapshot = {f: f.read_bytes() for f in [repo / "dvc.lock", *(repo / "reports").rglob("*")] if f.is_file()}
    with Repo(str(repo)) as busy, busy.lock:  # a repro in progress holds this lock
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--force", "-s", "evaluate"], cwd=repo,
                              env=tool_env(), text=True, capture_output=True, timeout=300)
    assert proc.returncode != 0
    assert "Unable to acquire lock" in proc.stdout + proc.stderr
    assert {f: f.read_bytes() for f in snapshot} == snapshot
    assert "up to date" in dvc(repo, "status").stdout


def test_bad_params_fail_the_stage_with_the_key_and_write_nothing(repo):
    # DVC removes a stage's outputs before running it; the stage must then fail before writing any.
    set_params(repo, {"augment": {"tang": {"n_iter": 2}}})
    text = (repo / "params.yaml").read_text().replace("p_mask: 0.1", "p_mask: 1.5")
    (repo / "params.yaml").write_text(text)
    proc = dvc(repo, "repro", check=False)
    assert proc.returncode != 0
    assert "augment.tang.p_mask: Input should be less than or equal to 1 (got 1.5)" in proc.stdout + proc.stderr
    assert not (repo / "reports/augment/tang.json").exists() and not (repo / "data/augmented/tang").exists()
    assert not list((repo / "data").glob(".*tmp*")) and not list((repo / "reports").glob(".*tmp*"))
    assert (repo / "data/prepared/meta.json").is_file()  # upstream artifacts are untouched


# ---------------------------------------------------------------- extending it, as docs/extending.md says

EXTENDING = "docs/extending.md"


def changed_files(repo: Path) -> set[str]:
    return {line[3:] for line in git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()}


def stale(repo: Path) -> set[str]:
    """The stages `dvc status` finds out of date."""
    return {line.strip().rstrip(":") for line in dvc(repo, "status").stdout.splitlines()
            if line and not line.startswith((" ", "\t")) and line.strip().endswith(":")}


def edit(repo: Path, overrides: dict) -> None:
    """Set keys in params.yaml as a user editing it would (validated by the repo's own code)."""
    code = ("import json, pathlib, sys; from pipeline.params.profile import edit_params; p = pathlib.Path('params.yaml'); "
            "p.write_text(edit_params(p.read_text(), json.loads(sys.argv[1]))[1])")
    subprocess.run([sys.executable, "-c", code, json.dumps(overrides)], cwd=repo, env=tool_env(), check=True)


def test_add_a_loss_term_as_the_docs_say(repo):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the built pipeline")
    subprocess.run(["git", "apply", "-"], input=doc_block("## Add a loss term", "diff", EXTENDING), cwd=repo,
                   text=True, check=True)
    edit(repo, {"distilbert": {"distil3": {"weights": {"logit_mse": 0.5}}}})
    assert changed_files(repo) == {"pipeline/methods/distilbert.py", "params.yaml"}
    assert ran(dvc(repo, "repro", "distilbert@distil3")) == {"distilbert@distil3"}
    assert stale(repo) == {"export", "evaluate"}  # what `dvc repro` runs next (select follows what they write)
    history = json.loads((repo / "reports/history/distil3.json").read_text())
    assert all("loss/logit_mse" in h for h in history if "loss" in h)


def test_add_a_method_as_the_docs_say(repo):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the built pipeline")
    (repo / "pipeline/methods/cosine.py").write_text(doc_block("## Add a method", "python", EXTENDING))
    subprocess.run([sys.executable, "-m", "pipeline", "dag"], cwd=repo, env=tool_env(), check=True, capture_output=True)
    example = yaml.safe_load(doc_block("## Add a method", "yaml", EXTENDING))
    assert list(example) == ["cosine"]
    with (repo / "params.yaml").open("a") as params:  # the docs' students, on this test's tiny budget
        params.write(yaml.safe_dump({"cosine": {"cosine4": {"intermediate": {"epochs": 1.0, "batch_size": 16},
                                                            "prediction": {"batch_size": 16, "min_steps": 0}}}}))
    subprocess.run([sys.executable, "-m", "pipeline", "profile", "--fill"], cwd=repo, env=tool_env(), check=True,
                   capture_output=True)
    assert changed_files(repo) == {"pipeline/methods/cosine.py", "dvc.yaml", "params.yaml"}
    assert ran(dvc(repo, "repro", "cosine_prediction@cosine4")) == {"cosine_intermediate@cosine4",
                                                                    "cosine_prediction@cosine4"}
    assert stale(repo) == {"export", "evaluate"}  # which take every student of the registry
    history = json.loads((repo / "reports/history/cosine4_intermediate.json").read_text())
    assert all("loss/cosine" in h for h in history if "loss" in h)


def test_peers_benchmark_runs_tinybert_steps_in_ours_and_textbrewer_on_the_same_rows(built, tmp_path):
    out = tmp_path / "peers.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--rows", "48", "--step2-rows", "64",
                           "--out", str(out)], cwd=built, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in out.read_text().splitlines() if line.startswith("| ") and not line.startswith("| step")}
    for step, n in (("intermediate", 48), ("prediction", 64)):
        ours, theirs = rows[(step, "ours")], rows[(step, "textbrewer")]
        assert ours[0] == theirs[0] == f"{n}"  # the same rows
        assert ours[1] == theirs[1] == f"{-(-n // 16)}"  # the same optimizer steps (TINY's batch 16)
        assert ours[4] == "1.0" and float(theirs[4]) > 0  # rows/s against ours
    assert 0 <= float(rows[("prediction", "ours")][5]) <= 100 and 0 <= float(rows[("prediction", "textbrewer")][5]) <= 100
    assert rows[("both", "torchdistill")][-1].startswith("not run")


def test_the_pick_benchmark_times_the_pick_against_the_teacher_in_its_runtime(built, tmp_path):
    out = tmp_path / "pick.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.pick", "--rounds", "6", "--samples", "4", "--goal", "1000",
                           "--out", str(out)], cwd=built, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pick = json.loads((built / "selected/selection.json").read_text())
    row = [c.strip() for c in out.read_text().splitlines()[-1].split("|")[1:-1]]
    assert row[:2] == [pick["model"], pick["runtime"]] and float(row[3]) > 0
    assert row[-1] == "missed"  # no student of the teacher's shape family is 1000x faster
