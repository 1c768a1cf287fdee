from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, deep_merge, load_params, parse_params, render_params
from pipeline.errors import ConfigError
from pipeline.profile import main as profile_main
from pipeline.profile import profile_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_are_the_default_profile():
    # params.yaml is rendered from the typed defaults; a drift would make `profile default` lie.
    assert (ROOT / "params.yaml").read_text() == render_params(Params())


def test_rendered_params_round_trip_and_carry_comments():
    text = render_params(Params())
    assert "p_mask: 0.1  # per word: probability of replacing it by [MASK]" in text
    assert parse_params(yaml.safe_load(text)) == Params()


@pytest.mark.parametrize("overlay, message", [
    ({"augment": {"p_mask": 1.5}}, "params.yaml: augment.p_mask: Input should be less than or equal to 1 (got 1.5)"),
    ({"augment": {"p_ng": -0.1}}, "augment.p_ng: Input should be greater than or equal to 0"),
    ({"augment": {"n_iter": "many"}}, "augment.n_iter: Input should be a valid integer"),
    ({"augment": {"p_mask": 0.6, "p_pos": 0.6}}, "augment: p_mask + p_pos must be <= 1 (got 0.6 + 0.6)"),
    ({"augment": {"p_mask_typo": 0.1}}, "augment.p_mask_typo: unknown key"),
    ({"teacher": {"epochs": 0}}, "teacher.epochs: Input should be greater than 0"),
    ({"data": {"task": "cola2"}}, "data.task: unknown task 'cola2'; known: mrpc, sst2"),
    ({"students": {"bilstm_kd": {"alpha": 2}}}, "students.bilstm_kd.alpha: Input should be less than or equal to 1"),
    ({"students": {"bilstm_kd": {"train_on": "augmented"}}},
     "students.bilstm_kd.train_on: Input should be 'prepared' or 'teacher_logits'"),
    ({"students": {}, "distil": {}, "twostep": {}}, "at least one student (students, distil or twostep) is required"),
    ({"distil": {"bilstm_kd": {}}}, "student 'bilstm_kd' is in both students and distil; names must be unique"),
    ({"twostep": {"t": {"init": "pretrained"}}}, "twostep.t.method: must be one of tinybert, minilmv2, lrc"),
    ({"twostep": {"tinybert4": {"init": "pretrained"}}},
     "twostep.tinybert4.init: Input should be 'tinybert', 'minilmv2', 'distilbert' or 'random'"),
    ({"twostep": {"tinybert4": {"init": "distilbert"}}},
     "twostep.tinybert4.init: 'distilbert' is not in general_distill.objectives ['tinybert', 'minilmv2']"),
    ({"twostep": {"x": {"method": "lrc", "intermediate": {"cos_nce": {"negatives": "memory_bank"}}}}},
     "twostep.x.intermediate.cos_nce: k (the memory bank size) is required with negatives: memory_bank"),
    ({"twostep": {"x": {"method": "lrc", "prediction": {"epsilon": -1}}}},
     "twostep.x.prediction.epsilon: Input should be greater than or equal to 0"),
    ({"general_distill": {"objectives": ["tinybert", "tinybert"]}}, "general_distill.objectives: each objective once"),
    ({"general_distill": {"student": {"layers": 0}}}, "general_distill.student.layers: Input should be greater than 0"),
    ({"surprise": 1}, "surprise: unknown key"),
    ({"teacher": {"pretrained": "./no/such/model"}},
     "teacher.pretrained: './no/such/model' does not exist and is not a Hub model id"),
    ({"teacher": {"pretrained": "package:no_such_package"}},
     "teacher.pretrained: package 'no_such_package' is not installed"),
])
def test_bad_params_name_the_key(overlay, message):
    raw = deep_merge(Params().model_dump(), overlay) if "students" not in overlay or overlay["students"] else overlay
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert message in str(err.value)


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


def test_partial_params_fill_in_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("augment:\n  n_iter: 3\n")
    params = load_params(path)
    assert params.augment.n_iter == 3 and params.augment.p_mask == 0.1 and "bilstm_kd" in params.students


def test_profiles(tmp_path, monkeypatch):
    ci = profile_params("ci", ROOT / "profiles")
    full = profile_params("full", ROOT / "profiles")
    assert ci.data.max_train <= 500 and ci.students["bilstm_kd"].epochs < Params().students["bilstm_kd"].epochs
    assert full.data.max_train is None
    assert (full.augment.n_iter, full.augment.p_mask, full.augment.p_pos, full.augment.p_ng) == (20, 0.1, 0.1, 0.25)
    for params in (Params(), ci, full):  # every method, compared like for like: same rows, epochs and lr
        assert {name: cfg.method for name, cfg in params.twostep.items()} == {
            "tinybert4": "tinybert", "tinybert4_nogd": "tinybert", "tinybert4_noaug": "tinybert",
            "minilm4": "minilmv2", "lrc4": "lrc"}
        assert params.twostep["minilm4"].init == "minilmv2" and params.twostep["lrc4"].init == "tinybert"
        like_for_like = {"max_rows", "epochs", "learning_rate", "batch_size"}
        for step in ("intermediate", "prediction"):
            budgets = {name: getattr(params.twostep[name], step).model_dump(include=like_for_like)
                       for name in ("tinybert4", "minilm4", "lrc4")}
            assert len({str(b) for b in budgets.values()}) == 1, budgets
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


def test_unknown_student_name_is_rejected_before_any_work(tmp_path, monkeypatch, capsys):
    import stages.task_distill

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(render_params(Params()))
    with pytest.raises(SystemExit) as exc:
        stages.task_distill.main(["bilstm_typo"])
    assert exc.value.code == 2
    assert "students.bilstm_typo: no such student in params (have: bilstm_kd, bilstm_nokd)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]  # nothing written


def test_foreach_stage_without_its_argument_lists_the_choices():
    from pipeline.stage import only_argument

    assert only_argument(["lrc4"], "prediction", "student", "two-step students", Params().twostep) == "lrc4"
    with pytest.raises(ConfigError, match=r"usage: python -m stages.prediction <student>; two-step students: "
                                          r"tinybert4, tinybert4_nogd, tinybert4_noaug, minilm4, lrc4$"):
        only_argument([], "prediction", "student", "two-step students", Params().twostep)
