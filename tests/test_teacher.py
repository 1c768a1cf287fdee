"""The teacher as given (teacher.finetune: false): a classifier the user fine-tuned is checked against the task
(outputs, label names matched case-insensitively and reordered, or mapped by teacher.labels), evaluated on dev
and saved as models/teacher without any training; what does not fit is one clear error naming both label
sets and the key to set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SST2

from pipeline.errors import ConfigError
from pipeline.params.config import Params, deep_merge, parse_params
from pipeline.tasks import Task, preset_task
from pipeline.training.teacher import output_order

SST = preset_task("sst2")  # labels negative, positive; raw 0, 1


@pytest.mark.parametrize("names, mapping, order", [
    (["negative", "positive"], None, [0, 1]),
    (["POSITIVE", "Negative"], None, [1, 0]),  # by name, case aside, in the task's order
    (["1", "0"], None, [1, 0]),  # the raw values the data writes
    (["LABEL_0", "LABEL_1"], {"negative": "LABEL_1", "positive": "label_0"}, [1, 0]),
    (["LABEL_0", "LABEL_1"], {"negative": "0", "positive": "1"}, [0, 1]),  # output ids
])
def test_the_models_outputs_are_matched_to_the_tasks_labels(names, mapping, order):
    assert output_order(names, SST, mapping) == order


@pytest.mark.parametrize("names, task, mapping, message", [
    (["LABEL_0", "LABEL_1"], SST, None,
     "teacher.pretrained: the model's 2 output(s) (LABEL_0, LABEL_1) do not name the task's labels (negative, "
     "positive); set teacher.labels to map each task label to the model's label or output id, e.g. teacher.labels: "
     "{negative: LABEL_0, positive: LABEL_1}"),
    (["neg", "neutral", "pos"], SST, None,
     "teacher.pretrained: the model's 3 output(s) (neg, neutral, pos), but task sst2 has 2 labels (negative, "
     "positive); give a model fine-tuned for these labels, or set teacher.finetune: true to train a head"),
    (["a", "b"], preset_task("stsb"), None, "task stsb is a regression (one output: a score)"),
    (["LABEL_0", "LABEL_1"], SST, {"negative": "LABEL_0"}, "teacher.labels: maps the task's labels (negative, "
                                                           "positive); positive is not mapped"),
    (["LABEL_0", "LABEL_1"], SST, {"negative": "LABEL_0", "positive": "LABEL_7"},
     "teacher.labels: positive: 'LABEL_7' is not one of the model's 2 output(s)"),
    (["LABEL_0", "LABEL_1"], SST, {"negative": "0", "positive": "LABEL_0"},
     "teacher.labels: two task labels map to the same output"),
])
def test_a_head_that_does_not_fit_the_task_names_both_label_sets_and_the_key(names, task, mapping, message):
    with pytest.raises(ConfigError) as err:
        output_order(names, task, mapping)
    assert message in str(err.value)


def test_a_regression_teacher_has_one_output():
    assert output_order(["LABEL_0"], Task("scores", "regression", ("score",), ("pearson",), True)) == [0]


def test_teacher_labels_only_with_a_teacher_taken_as_given():
    with pytest.raises(ConfigError, match="teacher: labels: maps the labels of a teacher taken as given"):
        parse_params({"teacher": {"labels": {"negative": "LABEL_0"}}})


def given_teacher(folder, id2label: dict[int, str], head: bool = True):
    """A tiny fine-tuned classifier as a user has it: its own label names, in its own order."""
    from families import tokenizer_of
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tokenizer = tokenizer_of("bert")
    torch.manual_seed(3)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, id2label=id2label,
                        label2id={v: k for k, v in id2label.items()})
    model = BertForSequenceClassification(config) if head else BertModel(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def run_teacher_stage(tmp_path, monkeypatch, teacher, **teacher_keys):
    import stages.prepare
    import stages.teacher_finetune
    from pipeline.params.profile import render_params

    tmp_path.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    params = parse_params(deep_merge(Params().model_dump(), {
        "data": {"source": str(SST2), "max_train": 20, "max_dev": 40},
        "teacher": {"pretrained": str(teacher), "finetune": False, **teacher_keys}}))
    (tmp_path / "params.yaml").write_text(render_params(params))
    stages.prepare.main([])
    stages.teacher_finetune.main([])


def test_a_teacher_taken_as_given_is_reordered_evaluated_and_saved_untrained(tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from pipeline.artifacts import load_dataset_dir
    from pipeline.models.hf import load_tokenizer
    from pipeline.tasks import compute_metrics
    from pipeline.training.inference import classifier_logits

    teacher = given_teacher(tmp_path / "mine", {0: "POSITIVE", 1: "NEGATIVE"})
    run_teacher_stage(tmp_path / "run", monkeypatch, teacher)
    saved = AutoModelForSequenceClassification.from_pretrained("models/teacher").eval()
    original = AutoModelForSequenceClassification.from_pretrained(str(teacher)).eval()
    assert saved.config.id2label == {0: "negative", 1: "positive"}
    for (name, a), (_, b) in zip(saved.bert.state_dict().items(), original.bert.state_dict().items()):
        assert torch.equal(a, b), name  # not trained
    dev = load_dataset_dir("data/prepared")["dev"]
    tokenizer = load_tokenizer(str(teacher))
    mine = classifier_logits(original, tokenizer, dev["text"], progress=False)
    theirs = classifier_logits(saved, tokenizer, dev["text"], progress=False)
    np.testing.assert_allclose(theirs, mine[:, ::-1], atol=1e-6)  # output 0 is now the task's label 0, negative
    report = json.loads((tmp_path / "run/reports/teacher.json").read_text())
    expected = compute_metrics(SST, mine[:, ::-1], np.asarray(dev["label"]))["accuracy"]
    assert report["finetuned"] is False and report["reordered"] is True
    assert report["outputs"] == {"negative": "NEGATIVE", "positive": "POSITIVE"}
    assert report["dev_accuracy"] == pytest.approx(expected, abs=1e-4) and report["dev_rows"] == 40
    assert json.loads((tmp_path / "run/reports/history/teacher.json").read_text()) == []
    assert not (tmp_path / "run/checkpoints").exists()


def test_a_pretrained_encoder_is_not_a_teacher_to_take_as_given(tmp_path, monkeypatch, capsys):
    teacher = given_teacher(tmp_path / "encoder", {0: "negative", 1: "positive"}, head=False)
    with pytest.raises(SystemExit) as exc:
        run_teacher_stage(tmp_path / "run", monkeypatch, teacher)
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and "has no trained classification head (no classifier.bias, classifier.weight in " \
                                   "its weights)" in err[-1] and "set teacher.finetune: true" in err[-1]
    assert not any("classifier" in line for line in err[:-1])  # transformers' own report of missing weights stays quiet
    assert not (tmp_path / "run/models/teacher").exists()


def test_unmatched_labels_stop_the_stage_until_teacher_labels_maps_them(tmp_path, monkeypatch, capsys):
    teacher = given_teacher(tmp_path / "mine", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(SystemExit):
        run_teacher_stage(tmp_path / "run", monkeypatch, teacher)
    assert "set teacher.labels to map each task label" in capsys.readouterr().err
    assert not (tmp_path / "run/models/teacher").exists()
    run_teacher_stage(tmp_path / "run2", monkeypatch, teacher, labels={"negative": "LABEL_1", "positive": "LABEL_0"})
    report = json.loads((tmp_path / "run2/reports/teacher.json").read_text())
    assert report["outputs"] == {"negative": "LABEL_1", "positive": "LABEL_0"}
