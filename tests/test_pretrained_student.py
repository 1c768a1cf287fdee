"""A pretrained student (`init: pretrained:<Hub id | folder | package:NAME>`): any supported family, its own
tokenizer. With the teacher's tokenizer every step runs; with another one the steps that match the teacher
token by token (two-step students' step 1, LRC-BERT's COS-NCE, DistilBERT's cosine and its teacher run on
the fly) are refused when params load, naming the key, and the per-text ones (cached teacher outputs) run."""

from __future__ import annotations

import pytest
from families import save_family_model

from pipeline.errors import ConfigError
from pipeline.params.config import Params, deep_merge, parse_params


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    return {"teacher": save_family_model(root / "teacher", "bert"),
            "same": save_family_model(root / "same", "bert", head="base", hidden=16, layers=2),
            "albert": save_family_model(root / "albert", "albert", head="base"),
            "mpnet": _mpnet(root / "mpnet")}


def _mpnet(folder):
    from transformers import MPNetConfig, MPNetModel

    MPNetModel(MPNetConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64)).save_pretrained(str(folder))
    return folder


def params_with(folders, overlay):
    teacher = {"teacher": {"pretrained": str(folders["teacher"])}}
    return parse_params(deep_merge(deep_merge(Params().model_dump(), teacher), overlay))


def test_a_pretrained_student_with_the_teachers_tokenizer_runs_every_step(folders):
    params = params_with(folders, {"tinybert": {"tinybert4": {"init": f"pretrained:{folders['same']}"}},
                                   "distilbert": {"distil3": {"init": f"pretrained:{folders['same']}"}}})
    assert params.tinybert["tinybert4"].init == f"pretrained:{folders['same']}"


@pytest.mark.parametrize("overlay, message", [
    ({"tinybert": {"tinybert4": {"init": "pretrained:{albert}"}}},
     "tinybert.tinybert4.init: pretrained:{albert} has a tokenizer of its own (not teacher.pretrained's), and step 1 "
     "(tinybert_intermediate) matches the teacher token by token and layer by layer, which needs the teacher's "
     "tokenizer: set tinybert.tinybert4.intermediate.epochs: 0 to skip it; step 2, prediction-layer distillation on "
     "the cached teacher outputs (per text), works with any tokenizer"),
    ({"lrc": {"lrc4": {"init": "pretrained:{albert}", "intermediate": {"epochs": 0}}}},
     "lrc.lrc4.init: pretrained:{albert} has a tokenizer of its own (not teacher.pretrained's), and step 2's cos_nce "
     "compares the teacher token by token: set lrc.lrc4.prediction.weights.cos_nce: 0"),
    ({"distilbert": {"distil3": {"init": "pretrained:{albert}"}}},
     "distilbert.distil3.init: pretrained:{albert} has a tokenizer of its own (not teacher.pretrained's), so the "
     "teacher cannot read its token ids: set distilbert.distil3.train_on: teacher_logits"),
    ({"distilbert": {"distil3": {"init": "pretrained:{albert}", "train_on": "teacher_logits"}}},
     "set distilbert.distil3.weights.cosine: 0 (it compares hidden states token by token)"),
    ({"distilbert": {"distil3": {"init": "pretrained:{same}", "layers": [1, 3]}}},
     "distilbert.distil3: layers: the teacher layers a student copies; a student with init "
     "pretrained:{same} starts from its own (remove layers)"),
    ({"minilmv2": {"minilm4": {"init": "pretrained:{mpnet}"}}},
     "minilmv2.minilm4.init: model type 'mpnet' (MPNetModel) is not supported; supported families: bert, roberta, "
     "xlm-roberta, electra, distilbert, deberta-v2, modernbert, albert"),
    ({"minilmv2": {"minilm4": {"init": "pretrained:./no/such/folder"}}},
     "minilmv2.minilm4.init: './no/such/folder' does not exist and is not a Hub model id"),
])
def test_what_a_student_with_another_tokenizer_cannot_run_is_refused_by_key(folders, overlay, message):
    def filled(tree):
        return {k: filled(v) if isinstance(v, dict) else v.format(**folders) if isinstance(v, str) else v
                for k, v in tree.items()}

    with pytest.raises(ConfigError) as err:
        params_with(folders, filled(overlay))
    assert message.format(**folders) in str(err.value)


def test_with_its_token_steps_off_a_student_with_another_tokenizer_is_valid(folders):
    init = f"pretrained:{folders['albert']}"
    params = params_with(folders, {
        "tinybert": {"tinybert4": {"init": init, "intermediate": {"epochs": 0}}},
        "lrc": {"lrc4": {"init": init, "intermediate": {"epochs": 0}, "prediction": {"weights": {"cos_nce": 0}}}},
        "distilbert": {"distil3": {"init": init, "train_on": "teacher_logits", "weights": {"cosine": 0}}}})
    assert params.tinybert["tinybert4"].intermediate.epochs == 0
