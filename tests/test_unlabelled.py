"""Unlabelled transfer data (data.unlabelled): read from .txt/.tsv/.csv/.jsonl files (gzip too) or a folder,
kept apart from dev and test (no leakage), capped, labelled once by the teacher, and learnt from by every
student that learns from the teacher's outputs; a student that could only use gold labels says so when
params load."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import SST2

from pipeline.data.prepare import prepare
from pipeline.errors import ConfigError, DataError
from pipeline.params.config import DataConfig, Params, deep_merge, parse_params


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def own_task(tmp_path, pair: bool = False):
    if pair:
        train = "first,second,label\na cat sat,the cat sat,yes\na dog ran,the sky,no\n"
        dev = "first,second,label\nrain falls,it is wet,yes\n"
    else:
        train = "text,label\na fine film,pos\na dull film,neg\n"
        dev = "text,label\nThe best film of the year,pos\nsad and slow,neg\n"
    folder = tmp_path / "own"
    write(folder / "train.csv", train)
    write(folder / "dev.csv", dev)
    write(folder / "test.csv", "text\nnever seen before\n" if not pair else "first,second\nq,r\n")
    return folder


def test_unlabelled_text_leaves_out_dev_test_and_train_rows_and_repeats(tmp_path):
    folder = own_task(tmp_path)
    texts = ["a witty , moving story", "the best film of the year!", "A  WITTY, moving story.", "",
             "never seen before", "a fine film", "a story of two cities", "Sad and slow."]
    source = write(tmp_path / "texts.txt.gz", "\n".join(texts) + "\n")
    dataset, summary = prepare(DataConfig(task="own", source=str(folder), unlabelled=str(source)), seed=0)
    assert dataset["unlabelled"]["text"] == ["a witty , moving story", "a story of two cities"]
    assert set(dataset["unlabelled"]["label"]) == {-1}  # no labels
    assert summary["unlabelled"] == {"source": str(source), "read": 7, "in_dev_or_test": 3, "in_train": 1,
                                     "repeated": 1, "kept": 2, "sampled": 2}
    assert summary["rows"]["unlabelled"] == 2
    assert len(dataset["train"]) == 2 and len(dataset["dev"]) == 2  # the labelled splits as they were


def test_a_folder_of_files_of_every_kind_and_a_row_cap(tmp_path):
    folder = own_task(tmp_path)
    more = tmp_path / "more"
    write(more / "a.txt", "one story\ntwo stories\n")
    write(more / "b.csv", 'text,label\n"three, with a comma",pos\nfour\t,\n')  # a label column is ignored
    write(more / "c.jsonl", '{"text": "five"}\n{"text": "six", "label": "neg"}\n')
    write(more / "README.md", "this file is not read\n")
    dataset, summary = prepare(DataConfig(task="own", source=str(folder), unlabelled=str(more)), seed=0)
    assert sorted(dataset["unlabelled"]["text"]) == sorted(["one story", "two stories", "three, with a comma",
                                                            "four", "five", "six"])
    capped, summary = prepare(DataConfig(task="own", source=str(folder), unlabelled=str(more), max_unlabelled=4),
                              seed=0)
    again, _ = prepare(DataConfig(task="own", source=str(folder), unlabelled=str(more), max_unlabelled=4), seed=0)
    assert len(capped["unlabelled"]) == 4 and capped["unlabelled"]["text"] == again["unlabelled"]["text"]
    assert summary["unlabelled"]["kept"] == 6 and summary["unlabelled"]["sampled"] == 4


def test_a_pair_task_takes_both_texts_and_refuses_one_text_per_line(tmp_path):
    folder = own_task(tmp_path, pair=True)
    cfg = dict(task="own", source=str(folder), columns={"text": "first", "text_pair": "second"})
    pairs = write(tmp_path / "pairs.tsv", "first\tsecond\nsnow falls\tit is cold\nRain falls.\tIt is wet\n")
    dataset, summary = prepare(DataConfig(**cfg, unlabelled=str(pairs)), seed=0)
    rows = dataset["unlabelled"]
    assert list(zip(rows["text"], rows["text_pair"])) == [("snow falls", "it is cold")]
    assert summary["unlabelled"]["in_dev_or_test"] == 1
    with pytest.raises(DataError, match=r"lines\.txt: a pair task's unlabelled rows need both texts; give a \.tsv, "
                                         r"\.csv or \.jsonl file with columns 'first' and 'second'"):
        prepare(DataConfig(**cfg, unlabelled=str(write(tmp_path / "lines.txt", "a\nb\n"))), seed=0)
    with pytest.raises(DataError, match=r"pairs2\.tsv:1: missing column 'second'"):
        prepare(DataConfig(**cfg, unlabelled=str(write(tmp_path / "pairs2.tsv", "first\nx\n"))), seed=0)


def test_no_unlabelled_text_changes_nothing_and_a_missing_path_is_named(tmp_path):
    folder = own_task(tmp_path)
    dataset, summary = prepare(DataConfig(task="own", source=str(folder)), seed=0)  # the default: an empty folder
    assert "unlabelled" not in dataset and "unlabelled" not in summary
    with pytest.raises(DataError, match=r"nowhere\.txt: not found \(data\.unlabelled\)"):
        prepare(DataConfig(task="own", source=str(folder), unlabelled=str(tmp_path / "nowhere.txt")), seed=0)
    with pytest.raises(DataError, match=r"texts\.docx: data\.unlabelled reads \.txt, \.tsv, \.csv, \.jsonl files"):
        prepare(DataConfig(task="own", source=str(folder), unlabelled=str(write(tmp_path / "texts.docx", "x"))), seed=0)


def logits_rows(tmp_path, origins: dict[str, int]):
    """A teacher_logits artifact with so many rows of each origin."""
    import datasets

    from pipeline.artifacts import save_dataset

    rows = {"text": [], "origin": [], "label": [], "logits": []}
    for origin, n in origins.items():
        for i in range(n):
            rows["text"].append(f"{origin} {i}")
            rows["origin"].append(origin)
            rows["label"].append(i % 2 if origin == "train" else -1)
            rows["logits"].append([0.0, 1.0])
    save_dataset(datasets.Dataset.from_dict(rows), tmp_path / "logits")
    return tmp_path / "logits"


def test_students_take_train_then_unlabelled_then_augmented_rows(tmp_path):
    from pipeline.data.batches import task_rows

    folder = logits_rows(tmp_path, {"train": 4, "unlabelled": 5, "tang": 6, "tinybert": 3})

    def origins(**kw):
        rows = task_rows(folder, "tang", seed=0, **kw)
        return {o: list(rows["origin"]).count(o) for o in ("train", "unlabelled", "tang", "tinybert")}

    assert origins(limit=7, unlabelled=True) == {"train": 4, "unlabelled": 3, "tang": 0, "tinybert": 0}
    assert origins(limit=12, unlabelled=True) == {"train": 4, "unlabelled": 5, "tang": 3, "tinybert": 0}
    assert origins(limit=None, unlabelled=True) == {"train": 4, "unlabelled": 5, "tang": 6, "tinybert": 0}
    assert origins(limit=7, unlabelled=False) == {"train": 4, "unlabelled": 0, "tang": 3, "tinybert": 0}
    uniform = origins(limit=10, unlabelled=True, augmented_rows="uniform")
    assert sum(uniform.values()) == 10 and uniform["unlabelled"] and uniform["tang"]


def test_the_teacher_labels_unlabelled_rows_once_and_augmentation_may_use_them(tmp_path, monkeypatch, tiny_teacher):
    import stages.augment
    import stages.prepare
    import stages.teacher_finetune
    import stages.teacher_logits
    from pipeline.artifacts import load_dataset_dir
    from pipeline.params.profile import render_params

    monkeypatch.chdir(tmp_path)
    dev_sentence = "It's a charming and often affecting journey."  # SST-2 dev's first, written otherwise
    write(tmp_path / "data/unlabelled/more.txt", f"a story told well\n{dev_sentence}\nsomething else entirely\n")
    params = parse_params(deep_merge(Params().model_dump(), {
        "data": {"source": str(SST2), "max_train": 30, "max_dev": 20},
        "augment": {"unlabelled": True, "tang": {"n_iter": 2, "max_examples": None,
                                                  "nltk_data": str(SST2.parents[1] / "nltk_data")}},
        "teacher": {"pretrained": str(tiny_teacher), "max_rows": 8, "batch_size": 8, "min_steps": 0}}))
    (tmp_path / "params.yaml").write_text(render_params(params))
    for main, args in ((stages.prepare.main, []), (stages.augment.main, ["tang"]),
                       (stages.teacher_finetune.main, []), (stages.teacher_logits.main, [])):
        main(args)
    prepared = load_dataset_dir("data/prepared")
    n_train, n_more = len(prepared["train"]), len(prepared["unlabelled"])
    assert (n_train, n_more) == (30, 2)
    assert json.loads((tmp_path / "reports/prepare.json").read_text())["unlabelled"]["in_dev_or_test"] == 1
    augmented = load_dataset_dir("data/augmented/tang")
    assert max(augmented["source_idx"]) >= n_train  # some augmented rows come from the unlabelled ones
    rows = load_dataset_dir("data/teacher_logits")
    origin = np.asarray(rows["origin"])
    assert list(origin[:n_train + n_more]) == ["train"] * n_train + ["unlabelled"] * n_more
    assert list(rows["source_idx"][n_train:n_train + n_more]) == [n_train, n_train + 1]
    assert list(rows["label"][n_train:]) == [-1] * (len(rows) - n_train)
    report = json.loads((tmp_path / "reports/teacher_logits.json").read_text())
    assert report["unlabelled_rows"] == 2 and report["rows"] == len(rows)


@pytest.mark.parametrize("overlay, message", [
    ({"tang": {"bilstm_nokd": {"unlabelled": True}}},
     "tang.bilstm_nokd.unlabelled: this student learns from gold labels only (weights: hard), which unlabelled rows "
     "have not; set tang.bilstm_nokd.unlabelled: false, or give it a term on the teacher's outputs"),
    ({"tinybert": {"tinybert4": {"prediction": {"weights": {"soft": 0.0}}}}},
     "tinybert.tinybert4.unlabelled: its prediction step learns from gold labels only (weights: hard)"),
    ({"distilbert": {"distil3": {"weights": {"soft": 0.0, "cosine": 0.0}}}},
     "distilbert.distil3.unlabelled: this student learns from gold labels only (weights: hard)"),
])
def test_a_student_that_cannot_learn_from_unlabelled_rows_says_so(overlay, message):
    with pytest.raises(ConfigError) as err:
        parse_params(deep_merge(Params().model_dump(), overlay))
    assert message in str(err.value)
    off = {method: {name: {"unlabelled": False} for name in students} for method, students in overlay.items()}
    parse_params(deep_merge(deep_merge(Params().model_dump(), overlay), off))  # fine once it says so itself


def test_the_results_page_quotes_the_committed_unlabelled_benchmark():
    """The gains docs/results.md quotes are those of reports/unlabelled.md (PyTorch rows)."""
    import re

    from conftest import ROOT

    table = (ROOT / "reports/unlabelled.md").read_text(encoding="utf-8")
    gains = dict(re.findall(r"^\| (\w+) dev_accuracy \| \d \| [^|]+ \| [^|]+ \| ([+-][\d.]+) \|", table, re.M))
    teacher = re.search(r"^\| teacher dev_accuracy \| \d \| ([\d.]+ ± [\d.]+) \|", table, re.M).group(1)
    page = " ".join((ROOT / "docs/results.md").read_text(encoding="utf-8").split())
    prose = page[page.index("## Unlabelled text"):page.index("little left to learn")].split("<!-- end generated -->")[1]
    quoted = dict(re.findall(r"(\w+) (?:gains |\((?=[+-]))([+-]?[\d.]+)", prose))
    assert len(quoted) >= 5 and all(float(gains[name]) == float(gain) for name, gain in quoted.items()), (quoted, gains)
    assert f"reaches {teacher}," in page
