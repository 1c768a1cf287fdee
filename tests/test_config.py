"""Params: validation messages that name the key, rendering (comments once, variants as base + changes),
profiles, and the DAG rendered from the method registry."""

from pathlib import Path

import pytest
import yaml

from pipeline.augment.tinybert import TinyBERTConfig
from pipeline.errors import ConfigError
from pipeline.params.config import Params, deep_merge, load_params, parse_params
from pipeline.params.profile import main as profile_main
from pipeline.params.profile import profile_params, render_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_are_the_default_profile():
    # params.yaml is rendered from the typed defaults; a drift would make `profile default` lie.
    assert (ROOT / "params.yaml").read_text() == render_params(Params())


def test_rendered_params_round_trip_with_each_comment_once_and_variants_as_merges():
    text = render_params(Params())
    assert "p_mask: 0.1  # per word: probability of replacing it by [MASK]" in text
    assert parse_params(yaml.safe_load(text)) == Params()
    comments = [line.split("  # ", 1)[1] for line in text.splitlines() if "  # " in line and not line.startswith("#")]
    assert len(comments) == len(set(comments))  # each field's comment once
    # an ablation reads as its base plus the keys it changes
    tang = text[text.index("\ntang:"):text.index("\ntinybert:")]
    assert "  bilstm_kd: &bilstm_kd\n" in tang
    assert tang.endswith("  bilstm_nokd:\n    <<: *bilstm_kd\n    train_on: prepared\n    augmentation: null\n"
                         "    unlabelled: false\n    weights:\n      hard: 1.0\n      logit_mse: 0.0")


def test_a_change_to_a_base_reaches_its_variants():
    defaults = Params()
    text = render_params(defaults)
    start = text.index("\ntang:")
    epochs = f"    epochs: {defaults.tang['bilstm_kd'].epochs}"
    text = text[:start] + text[start:].replace(epochs, "    epochs: 7.0", 1)
    params = parse_params(yaml.safe_load(text))
    assert {name: cfg.epochs for name, cfg in params.tang.items()} == {"bilstm_kd": 7.0, "bilstm_nokd": 7.0}
    assert params.tang["bilstm_nokd"].train_on == "prepared"


def test_a_profile_student_like_another_is_that_student_as_the_profile_leaves_it(tmp_path):
    (tmp_path / "mine.yaml").write_text("tinybert:\n  tinybert4: {prediction: {max_rows: 500}}\n"
                                        "  tinybert4_b: {like: tinybert4, init: teacher_slice}\n")
    params = profile_params("mine", tmp_path)
    base, variant = params.tinybert["tinybert4"], params.tinybert["tinybert4_b"]
    assert variant.prediction == base.prediction and variant.prediction.max_rows == 500
    assert (variant.init, base.init) == ("teacher_slice", "tinybert")
    (tmp_path / "bad.yaml").write_text("tinybert:\n  tinybert4_b: {like: tinybert9}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: tinybert.tinybert4_b.like: 'tinybert9' is not a student of "
                                          r"tinybert written before it \(have: tinybert4\)"):
        profile_params("bad", tmp_path)


@pytest.mark.parametrize("overlay, message", [
    ({"augment": {"tang": {"p_mask": 1.5}}},
     "params.yaml: augment.tang.p_mask: Input should be less than or equal to 1 (got 1.5)"),
    ({"augment": {"tang": {"p_ng": -0.1}}}, "augment.tang.p_ng: Input should be greater than or equal to 0"),
    ({"augment": {"tang": {"n_iter": "many"}}}, "augment.tang.n_iter: Input should be a valid integer"),
    ({"augment": {"tang": {"p_mask": 0.6, "p_pos": 0.6}}}, "augment.tang: p_mask + p_pos must be <= 1 (got 0.6 + 0.6)"),
    ({"augment": {"tang": {"p_mask_typo": 0.1}}}, "augment.tang.p_mask_typo: unknown key"),
    ({"augment": {"tinybert": {"p_replace": 1.4}}}, "augment.tinybert.p_replace: Input should be less than or equal to 1"),
    ({"augment": {"methods": ["tang", "eda"]}}, "augment.methods: Value error, unknown augmentation 'eda'; methods: tang, tinybert"),
    ({"augment": {"methods": ["tinybert"]}},
     "lrc.lrc4.augmentation: 'tang' is not in augment.methods ['tinybert'] (add it there, or choose one of them, or null)"),
    ({"tang": {"bilstm_nokd": {"augmentation": "tang"}}},
     "tang.bilstm_nokd: Value error, augmentation: 'tang' needs train_on: teacher_logits"),
    ({"teacher": {"epochs": 0}}, "teacher.epochs: Input should be greater than 0"),
    ({"data": {"task": "my task"}}, "data.task: a task name is letters, digits, - and _ (got 'my task')"),
    ({"data": {"metrics": ["pearson"]}},
     "data: metrics ['pearson'] do not fit a classification task (data.problem); use accuracy, f1, f1_macro, mcc"),
    ({"data": {"task": "stsb", "metrics": ["accuracy"]}}, "data: metrics ['accuracy'] do not fit a regression task"),
    ({"data": {"problem": "regression", "labels": ["low", "high"]}},
     "data: labels: a regression task has a numeric score, not labels"),
    ({"data": {"task": "intents", "labels": ["book", "book"]}},
     "data: labels: a classification task needs two or more distinct labels"),
    ({"data": {"task": "intents", "labels": ["low", "mid", "high", "high", "low"]}},
     "data: labels: each label once, in id order (high, low repeated)"),
    ({"data": {"task": "mnli", "metrics": ["f1", "accuracy"]}},
     "data: metrics: f1 is binary F1 (label 1 against label 0); with 3 labels use f1_macro"),
    ({"data": {"problem": "ranking"}}, "data.problem: Input should be 'classification' or 'regression'"),
    ({"tang": {"bilstm_kd": {"weights": {"hard": -1}}}},
     "tang.bilstm_kd.weights.hard: Input should be greater than or equal to 0"),
    ({"tang": {"bilstm_kd": {"weights": {"alpha": 0.5}}}},
     "tang.bilstm_kd.weights: unknown loss term 'alpha'; this step's terms are hard, logit_mse"),
    ({"tinybert": {"tinybert4": {"intermediate": {"weights": {"attn": 1.0}}}}},
     "tinybert.tinybert4.intermediate.weights: unknown loss term 'attn'; this step's terms are embedding, hidden, "
     "attention"),
    ({"tang": {"bilstm_nokd": {"weights": {"logit_mse": 1.0}}}},
     "tang.bilstm_nokd: Value error, weights.logit_mse needs teacher logits (train_on: teacher_logits)"),
    ({"tang": {"bilstm_kd": {"train_on": "augmented"}}},
     "tang.bilstm_kd.train_on: Input should be 'prepared' or 'teacher_logits'"),
    ({"tang": {}, "distilbert": {}, "tinybert": {}, "minilmv2": {}, "lrc": {}}, "at least one student is required"),
    ({"distilbert": {"bilstm_kd": {}}}, "student 'bilstm_kd' is in both distilbert and tang; names must be unique"),
    ({"tinybert": {"tinybert4": {"init": "pretrained"}}},
     "tinybert.tinybert4.init: must be one of distilbert, minilmv2, tinybert (a general_distill objective), "
     "teacher_slice, random or pretrained:<Hub id | folder | package:NAME> (got 'pretrained')"),
    ({"tinybert": {"tinybert4": {"init": "distilbert"}}},
     "tinybert.tinybert4.init: 'distilbert' is not in general_distill.objectives ['tinybert', 'minilmv2']"),
    ({"minilmv2": {"minilm4": {"shape": {"layers": 5, "heads": 6}}}},
     "minilmv2.minilm4.shape: a student cut from general_distill@minilmv2 (4x384x12x768) must fit inside it: layers "
     "5 > 4"),
    ({"minilmv2": {"minilm4": {"shape": {"heads": 8}}}},
     "minilmv2.minilm4.shape: a student cut from general_distill@minilmv2 (4x384x12x768) must fit inside it: heads 8 "
     "must divide its 12"),
    ({"minilmv2": {"minilm4": {"init": "pretrained:prajjwal1/bert-tiny", "shape": {"layers": 1}}}},
     "minilmv2.minilm4.shape: a pretrained student has its own shape"),
    ({"minilmv2": {"minilm4": {"init": "teacher_slice", "shape": {"heads": 5}}}},
     "minilmv2.minilm4.shape: hidden size 384 is not a multiple of its 5 heads"),
    ({"tinybert": {"tinybert4": {"init": "random", "shape": {"depth": 2}}}},
     "tinybert.tinybert4.shape.depth.[key]: Input should be 'layers', 'hidden', 'heads' or 'intermediate'"),
    ({"lrc": {"x": {"intermediate": {"cos_nce": {"negatives": "memory_bank"}}}}},
     "lrc.x.intermediate.cos_nce: Value error, k (the memory bank size) is required with negatives: memory_bank"),
    ({"lrc": {"x": {"prediction": {"epsilon": -1}}}},
     "lrc.x.prediction.epsilon: Input should be greater than or equal to 0"),
    ({"tinybert": {"bad name": {}}}, "tinybert.bad name: a student name is letters, digits and underscores"),
    ({"general_distill": {"objectives": ["tinybert", "tinybert"]}}, "general_distill.objectives: each objective once"),
    ({"general_distill": {"objectives": ["bert"]}},
     "general_distill.objectives: unknown objective 'bert'; objectives: distilbert, minilmv2, tinybert"),
    ({"general_distill": {"student": {"layers": 0}}}, "general_distill.student.layers: Input should be greater than 0"),
    ({"general_distill": {"student": {"heads": 5}}},
     "general_distill: student: hidden size 384 is not a multiple of its 5 heads"),
    ({"general_distill": {"minilmv2": {"student": {"heads": 5}}}},
     "general_distill: minilmv2.student: hidden size 384 is not a multiple of its 5 heads"),
    ({"general_distill": {"tinybert": {"student": {"head": 4}}}},
     "general_distill.tinybert.student.head.[key]: Input should be 'layers', 'hidden', 'heads' or 'intermediate'"),
    ({"surprise": 1}, "surprise: unknown key"),
    ({"processes": 3}, "teacher.batch_size: 64 does not split evenly over processes: 3; make it a multiple of 3"),
    ({"processes": 2, "tinybert": {"tinybert4": {"prediction": {"batch_size": 33}}}},
     "tinybert.tinybert4.prediction.batch_size: 33 does not split evenly over processes: 2"),
    ({"processes": 0}, "processes: a positive number of processes, or auto (got 0)"),
    ({"teacher": {"pretrained": "./no/such/model"}},
     "teacher.pretrained: './no/such/model' does not exist and is not a Hub model id"),
    ({"teacher": {"pretrained": "package:no_such_package"}},
     "teacher.pretrained: package 'no_such_package' is not installed"),
])
def test_bad_params_name_the_key(overlay, message):
    raw = deep_merge(Params().model_dump(), overlay)
    for section, students in overlay.items():
        if students == {}:
            raw[section] = {}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert message.replace("Value error, ", "") in str(err.value)


def test_load_params_errors(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("augment: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(bad)
    # plain YAML keeps the second block: a smoke run would silently lose its row limits
    bad.write_text("data:\n  max_train: 100\nseed: 1\ndata:\n  task: sst2\n")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml: not valid YAML: key 'data' appears twice.*line 4"):
        load_params(bad)


def test_a_profile_with_a_repeated_section_is_refused(tmp_path):
    (tmp_path / "mine.yaml").write_text("data:\n  max_train: 100\n  max_dev: 50\ndata:\n  seed: 3\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: not valid YAML: .*key 'data' appears twice"):
        profile_params("mine", tmp_path)


def test_partial_params_fill_in_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("augment:\n  tang:\n    n_iter: 3\n")
    params = load_params(path)
    assert params.augment.tang.n_iter == 3 and params.augment.tang.p_mask == 0.1 and "bilstm_kd" in params.tang
    assert params.augment.tinybert.n_iter == TinyBERTConfig().n_iter


def test_profiles(tmp_path, monkeypatch):
    ci = profile_params("ci", ROOT / "profiles")
    full = profile_params("full", ROOT / "profiles")
    assert ci.data.max_train <= 500 and ci.tang["bilstm_kd"].epochs < Params().tang["bilstm_kd"].epochs
    assert full.data.max_train is None
    assert (full.processes, full.precision, Params().processes) == ("auto", "auto", 1)  # a process per GPU there
    for gpus in (2, 4, 8):  # its training batches split over a machine's GPUs
        parse_params({**full.model_dump(), "processes": gpus})
    tang, tinybert = full.augment.tang, full.augment.tinybert
    assert (tang.n_iter, tang.p_mask, tang.p_pos, tang.p_ng) == (20, 0.1, 0.1, 0.25)
    assert (tinybert.n_iter, tinybert.p_replace, tinybert.k) == (20, 0.4, 15)  # the paper's settings
    ablations = profile_params("ablations", ROOT / "profiles")
    shipped = {"bilstm_kd": "tang", "bilstm_nokd": "tang", "distil3": "distilbert", "tinybert4": "tinybert",
               "minilm4": "minilmv2", "lrc4": "lrc"}
    tinybert_ablations = {"tinybert4_nogd": "tinybert", "tinybert4_slice": "tinybert", "tinybert4_noaug": "tinybert"}
    all_students = shipped | tinybert_ablations
    # the ablations profile's budget samples fewer rows than train has: w/o DA would be tinybert4 itself there,
    # and the third cell samples train + augmented rows alike instead
    at_budget = shipped | {"tinybert4_nogd": "tinybert", "tinybert4_slice": "tinybert", "tinybert4_uniform": "tinybert"}
    # (params, its students, LRC-BERT's share of the others' step-2 rows: a third at the default budget, where
    # its step costs 2.8x theirs)
    ci_students = all_students | {"minilm_2x312x6x600": "minilmv2"}  # a frontier point, cut from minilm4's start
    for params, students, lrc_share in ((Params(), shipped, 3), (ci, ci_students, 1), (full, all_students, 1),
                                        (ablations, at_budget, 3)):
        assert {name: method.name for name, (method, _) in params.students().items()} == students
        assert params.minilmv2["minilm4"].init == "minilmv2" and params.lrc["lrc4"].init == "tinybert"
        # every method compared like for like: the same rows, epochs, learning rate and batch
        like_for_like = {"max_rows", "epochs", "learning_rate", "batch_size", "warmup_ratio"}
        for step in ("intermediate", "prediction"):
            budgets = [getattr(cfg, step).model_dump(include=like_for_like)
                       for name, (method, cfg) in params.students().items() if method.name in ("tinybert", "minilmv2")]
            lrc = getattr(params.lrc["lrc4"], step).model_dump(include=like_for_like)
            if step == "prediction" and lrc["max_rows"] is not None:
                lrc["max_rows"] *= lrc_share
            assert len({str(b) for b in budgets + [lrc]}) == 1, budgets + [lrc]
        expected = {"tinybert4_nogd": ("random", "tang", "top_up"), "tinybert4_slice": ("teacher_slice", "tang", "top_up"),
                    "tinybert4_noaug": ("tinybert", None, "top_up"),
                    "tinybert4_uniform": ("tinybert", "tang", "uniform")}  # each its base plus the one key it changes
        for name in set(students) & set(expected):
            cfg = params.tinybert[name]
            assert (cfg.init, cfg.augmentation, cfg.augmented_rows) == expected[name]
            assert (cfg.intermediate, cfg.prediction) == (params.tinybert["tinybert4"].intermediate,
                                                          params.tinybert["tinybert4"].prediction)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "params.yaml"
    profile_main(["full", "--output", str(out)])
    assert load_params(out) == full
    with pytest.raises(SystemExit) as exc:
        profile_main(["no_such_profile", "--output", str(out)])
    assert exc.value.code == 2 and load_params(out) == full  # the old file survives


def test_teacher_folder_without_a_model_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=f"teacher.pretrained: '{tmp_path}' is not a model folder"):
        parse_params({"teacher": {"pretrained": str(tmp_path)}})


@pytest.mark.parametrize("argv, message", [
    (["tang", "bilstm_typo"], "tang.bilstm_typo: no such student in params (have: bilstm_kd, bilstm_nokd)"),
    (["bert", "x"], "unknown method 'bert'; methods: distilbert, lrc, minilmv2, tang, tinybert"),
    (["tinybert", "tinybert4"], "tinybert has steps intermediate, prediction"),
    (["tinybert", "tinybert4", "final"], "tinybert has steps intermediate, prediction"),
    ([], "usage: python -m stages.distill <method> <student> [<step>]"),
])
def test_a_bad_stage_argument_is_rejected_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    import stages.distill

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(render_params(Params()))
    with pytest.raises(SystemExit) as exc:
        stages.distill.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]  # nothing written


# ---------------------------------------------------------------- the DAG
def test_the_frontier_profile_sweeps_shapes_and_widths_of_the_shipped_recipes():
    frontier = profile_params("frontier", ROOT / "profiles")
    students = frontier.students()
    swept = {name: cfg for name, (_, cfg) in students.items() if name.startswith(("minilm_", "bilstm_")) and
             name not in ("bilstm_kd", "bilstm_nokd")}
    assert set(swept) == {"minilm_1x384x12x768", "minilm_2x384x12x768", "minilm_3x384x12x768", "minilm_2x384x6x768",
                          "minilm_4x192x12x384", "minilm_2x192x6x384", "bilstm_64", "bilstm_300"}
    minilm4, bilstm_kd = frontier.minilmv2["minilm4"], frontier.tang["bilstm_kd"]
    assert minilm4.shape == {}
    assert frontier.model_dump(exclude={"minilmv2", "tang"}) == Params().model_dump(exclude={"minilmv2", "tang"})
    assert frontier.minilmv2["minilm4"] == Params().minilmv2["minilm4"]  # the default's students as they are
    for name, cfg in swept.items():
        base = minilm4 if name.startswith("minilm_") else bilstm_kd
        axis = "shape" if name.startswith("minilm_") else "hidden"
        assert cfg.model_dump(exclude={axis}) == base.model_dump(exclude={axis})  # only the swept key differs
    assert frontier.minilmv2["minilm_2x192x6x384"].shape == {"layers": 2, "hidden": 192, "heads": 6,
                                                             "intermediate": 384}
    assert frontier.tang["bilstm_300"].hidden == 300


@pytest.mark.parametrize("sweep, message", [
    ({"s": {"like": "nobody", "shape": ["2x384x12x768"]}}, "sweep.s.like: 'nobody' is not a student of this profile"),
    ({"s": {"like": "minilm4", "shape": ["2x384x12"]}},
     "sweep.s.shape: shape '2x384x12': expected LAYERSxHIDDENxHEADSxINTERMEDIATE of positive integers"),
    ({"s": {"like": "minilm4", "shape": ["2x384x5x768"]}}, "hidden size 384 is not a multiple of its 5 heads"),
    ({"s": {"like": "bilstm_kd", "hidden": [64], "shape": ["2x384x12x768"]}}, "sweep.s: give one axis, a list of values"),
    ({"s": {"like": "bilstm_kd", "hidden": 64}}, "sweep.s: give one axis, a list of values"),
    ({"s": {"like": "minilm4", "shape": ["5x384x12x768"]}},
     "minilmv2.s_5x384x12x768.shape: a student cut from general_distill@minilmv2 (4x384x12x768) must fit inside it"),
])
def test_a_bad_sweep_names_its_key(tmp_path, sweep, message):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"sweep": sweep}))
    with pytest.raises(ConfigError) as err:
        profile_params("mine", tmp_path)
    assert message in str(err.value) and str(tmp_path / "mine.yaml") in str(err.value)
    with pytest.raises(ConfigError, match="sweep: a profile's section, not a params key"):  # in params.yaml
        parse_params({"sweep": sweep})


def test_dvc_yaml_is_the_rendering_of_the_registry():
    from pipeline.orchestration.dag import all_stages, render

    assert (ROOT / "dvc.yaml").read_text() == render(all_stages())


def test_a_hub_dataset_is_no_dependency_of_prepare_and_a_local_folder_is(tmp_path):
    from pipeline.orchestration.dag import prepare_inputs

    params = tmp_path / "params.yaml"
    (tmp_path / "my_data").mkdir()
    for source, fmt, listed in [("my_data", "auto", True), ("nyu-mll/glue", "auto", False), ("glue", "auto", False),
                                ("../shared/glue", "auto", True), ("my_data", "hub", False)]:
        params.write_text(yaml.safe_dump({"data": {"source": source, "format": fmt}}))
        assert ("${data.source}" in prepare_inputs(params)) is listed, (source, fmt)
        assert "${data.unlabelled}" in prepare_inputs(params)


def test_each_stage_lists_the_code_it_runs_and_not_other_methods():
    from pipeline.orchestration.dag import all_stages

    stages = {s.name: s for s in all_stages()}
    augment = stages["augment"].code  # each method's own file, found by its name; what they share; the tokeniser
    assert {"pipeline/augment/${item}.py", "pipeline/augment/base.py", "pipeline/text.py"} <= set(augment)
    assert {f for f in augment if f.startswith("pipeline/augment/")} == {"pipeline/augment/${item}.py",
                                                                        "pipeline/augment/base.py"}
    assert {"pipeline/methods/tang.py", "pipeline/models/bilstm.py", "pipeline/training/driver.py",
            "pipeline/text.py"} <= set(stages["tang"].code)
    shared = {"pipeline/methods/recipes.py", "pipeline/methods/twostep.py"}  # what method files share
    assert {f for f in stages["tang"].code if f.startswith("pipeline/methods/")} - shared == {"pipeline/methods/tang.py"}
    assert "pipeline/methods/lrc.py" not in stages["tinybert_intermediate"].code
    general = stages["general_distill"].code  # each objective's own method file, found by its name
    assert "pipeline/methods/${item}.py" in general
    assert {f for f in general if f.startswith("pipeline/methods/")} - shared == {"pipeline/methods/${item}.py"}
    assert "pipeline/params/config.py" not in stages["prepare"].code  # plumbing: its effect comes through params.yaml
    assert {"pipeline/serving/export.py", "pipeline/serving/card.py", "pipeline/serving/runtimes.py"} <= set(stages["export"].code)
    assert stages["evaluate"].params == ["evaluate"]  # an evaluate-only change reruns evaluate only
    assert "exports" in stages["evaluate"].deps and stages["export"].outs == ["exports"]


def test_the_readme_lists_every_method_of_the_registry():
    from pipeline.methods import methods

    intro = (ROOT / "README.md").read_text(encoding="utf-8").split("## Set-up")[0]
    for name, method in methods().items():
        assert f"**{method.title}** (`{name}`)" in intro, name


# ---------------------------------------------------------------- what every stage entry point shares
def test_a_stage_logs_its_time_and_peak_memory_and_turns_a_user_error_into_one_line(tmp_path, monkeypatch, caplog,
                                                                                       capsys):
    import logging
    import re

    from pipeline.errors import DataError
    from pipeline.orchestration.stage import stage

    monkeypatch.setenv("DISTILL_PARAMS", str(ROOT / "params.yaml"))
    caplog.set_level(logging.INFO, logger="pipeline")
    seen = []
    stage(lambda params, args: seen.append((params.seed, args)))(["x"])
    assert seen and seen[0][1] == ["x"]
    line = next(r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "finished in" in r.getMessage())
    megabytes = int(re.search(r"peak memory ([\d,]+) MB", line).group(1).replace(",", ""))
    assert 50 < megabytes < 100_000  # this process's resident peak, in MB (a Python with torch loaded)

    def bad(params, args):
        raise DataError("data/train.tsv:3: label '7' is not one of the sst2 labels")

    with pytest.raises(SystemExit) as stopped:
        stage(bad)([])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: data/train.tsv:3: label '7' is not one of the sst2 labels\n"
