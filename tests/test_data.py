import json
from pathlib import Path

import pytest
from conftest import MRPC, SST2, needs_shared

from pipeline.artifacts import atomic_path, save_dataset
from pipeline.data.prepare import prepare, subsample
from pipeline.data.readers import read_raw
from pipeline.errors import DataError
from pipeline.params.config import DataConfig
from pipeline.text import split_words, words


def read(cfg: DataConfig) -> dict:
    """Every split with its labels resolved as prepare resolves them (no subsampling)."""
    from pipeline.data.policies import label_ids
    from pipeline.data.prepare import resolve_task

    raw = read_raw(cfg)
    task = resolve_task(cfg, raw["train"])
    return {name: label_ids(rows, task) for name, rows in raw.items()}


def cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), max_train=None, **kw)


def write(folder, name, text, encoding="utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reads_real_sst2():
    splits = read(cfg(SST2))
    assert {k: len(v["text"]) for k, v in splits.items()} == {"train": 67349, "dev": 872, "test": 1821}
    assert splits["train"]["text"][0] == "hide new secretions from the parental units"  # trailing space stripped
    assert set(splits["train"]["label"]) == {0, 1}
    assert set(splits["test"]["label"]) == {-1}  # GLUE test has no labels
    assert all(p is None for p in splits["dev"]["text_pair"])


@needs_shared
def test_reads_real_mrpc_with_bom_and_quotes():
    splits = read(cfg(MRPC, task="mrpc"))
    assert {k: len(v["text"]) for k, v in splits.items()} == {"train": 3668, "dev": 408, "test": 1725}
    first = splits["train"]
    assert first["text"][0].startswith("Amrozi accused his brother") and '"the witness"' in first["text"][0]
    assert first["text_pair"][0].startswith("Referring to him as only")
    assert first["label"][0] == 1


def test_prepare_subsamples_deterministically():
    a, summary = prepare(DataConfig(source=str(SST2), max_train=100, max_dev=50), seed=1)
    b, _ = prepare(DataConfig(source=str(SST2), max_train=100, max_dev=50), seed=1)
    c, _ = prepare(DataConfig(source=str(SST2), max_train=100, max_dev=50), seed=2)
    assert len(a["train"]) == 100 and len(a["dev"]) == 50 and len(a["test"]) == 1821
    assert a["train"]["text"][:] == b["train"]["text"][:] != c["train"]["text"][:]
    assert summary["rows"] == {"train": 100, "dev": 50, "test": 1821}
    assert sum(summary["label_counts"]["train"].values()) == 100


def test_subsample_keeps_all_when_limit_is_large():
    rows = {"text": ["a", "b"], "label": [0, 1]}
    assert subsample(rows, 5, 0) is rows and subsample(rows, None, 0) is rows


@pytest.mark.parametrize("train, message", [
    ("sentence\tlabel\ngood\t1\nbad\t7\n", "train.tsv:3: label '7' is not one of the sst2 labels"),
    ("sentence\tlabel\ngood\t1\nbad\t0\textra\n", "train.tsv:3: expected 2 tab-separated fields, got 3"),
    ("text\tlabel\ngood\t1\n", "train.tsv:1: missing column 'sentence'"),
    ("sentence\tgold\ngood\t1\n", "train.tsv:1: missing label column 'label'"),
    ("sentence\tlabel\ngood\t1\n   \t0\n", "train.tsv:3: empty text in column 'sentence'"),
    ("", "train.tsv: empty file"),
    ("sentence\tlabel\n", "train.tsv: no data rows"),
    (b"sentence\tlabel\ngood\t1\nbad \xff\xfe\t0\n", "train.tsv:3: not UTF-8 text"),
])
def test_bad_tsv_rows_name_file_and_line(tmp_path, train, message):
    write(tmp_path, "train.tsv", train)
    write(tmp_path, "dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError) as err:
        read(cfg(tmp_path))
    assert message in str(err.value)


def test_missing_folder_and_split(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        read(cfg(tmp_path / "nowhere"))
    write(tmp_path, "train.tsv", "sentence\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match=r"no dev file \(dev\.\{tsv\|csv\|jsonl\}, or \.gz\)"):
        read(cfg(tmp_path))


def test_bom_header_and_label_names(tmp_path):
    write(tmp_path, "train.tsv", "\ufeffsentence\tlabel\ngood film\tpositive\n")
    write(tmp_path, "dev.tsv", "sentence\tlabel\nbad film\t0\n")
    splits = read(cfg(tmp_path))
    assert splits["train"]["label"] == [1] and splits["dev"]["label"] == [0]


def test_csv_and_jsonl_with_custom_columns(tmp_path):
    write(tmp_path, "train.csv", 'review,stars\n"great, really",1\nawful,0\n')
    write(tmp_path, "dev.jsonl", '{"review": "fine", "stars": 1}\n\n{"review": "meh", "stars": "0"}\n')
    splits = read(cfg(tmp_path, columns={"text": "review", "label": "stars"}))
    assert splits["train"]["text"] == ["great, really", "awful"] and splits["train"]["label"] == [1, 0]
    assert splits["dev"]["label"] == [1, 0]


def test_csv_and_jsonl_errors(tmp_path):
    write(tmp_path, "train.csv", "sentence,label\nok,1\nbad,1,surplus\n")
    write(tmp_path, "dev.jsonl", '{"sentence": "x", "label": 1}\n{broken\n')
    with pytest.raises(DataError, match="train.csv:3: expected 2 comma-separated fields, got 3$"):
        read(cfg(tmp_path))
    write(tmp_path, "train.csv", "sentence,label\nok,1\nno separator\n")
    with pytest.raises(DataError, match="train.csv:3: expected 2 comma-separated fields, got 1$"):
        read(cfg(tmp_path))
    write(tmp_path, "train.csv", "sentence,label\nok,1\n")
    with pytest.raises(DataError, match="dev.jsonl:2: not valid JSON"):
        read(cfg(tmp_path))


def test_two_files_for_one_split_are_an_error_not_a_silent_choice(tmp_path):
    write(tmp_path, "train.tsv", "sentence\tlabel\nok\t1\nbad\t0\n")
    write(tmp_path, "train.csv", "text,label\nok,1\nbad,0\n")
    write(tmp_path, "dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=r"train.tsv and train.csv are both there; keep one, or choose the format "
                                        r"with data.format"):
        read(cfg(tmp_path))
    assert read(cfg(tmp_path, format="glue"))["train"]["text"] == ["ok", "bad"]


def test_csv_quoted_fields_span_lines_and_an_unclosed_quote_is_found_where_it_opens(tmp_path):
    write(tmp_path, "train.csv", 'sentence,label\n"two\nlines, ""quoted""",1\n\nnext,0\n')
    write(tmp_path, "dev.csv", "sentence,label\nfine,1\n")
    splits = read(cfg(tmp_path))
    assert splits["train"]["text"] == ['two\nlines, "quoted"', "next"] and splits["train"]["label"] == [1, 0]
    # the wrong line of a later error would send the user to the wrong row
    write(tmp_path, "dev.csv", 'sentence,label\nfine,1\n"two\nlines",1\nbad,1,x\n')
    with pytest.raises(DataError, match="dev.csv:5: expected 2 comma-separated fields, got 3$"):
        read(cfg(tmp_path))
    write(tmp_path, "dev.csv", 'sentence,label\nfine,1\n"unclosed,0\nmore,1\nlast "one",0\nend,1\n')
    with pytest.raises(DataError, match=r"dev.csv:3: malformed CSV \(',' expected after '\"'\) \(a quoted field "
                                        r"runs from here to line 5: an unclosed quote\?\)"):
        read(cfg(tmp_path))
    write(tmp_path, "dev.csv", 'sentence,label\nfine,1\n"unclosed,0\nmore,1\n')
    with pytest.raises(DataError, match=r"dev.csv:3: malformed CSV \(unexpected end of data\) \(a quoted field "
                                        r"runs from here to line 4: an unclosed quote\?\)"):
        read(cfg(tmp_path))


def test_pair_task_needs_both_columns(tmp_path):
    write(tmp_path, "train.tsv", "Quality\t#1 String\n1\tonly one side\n")
    write(tmp_path, "dev.tsv", "Quality\t#1 String\t#2 String\n1\ta\tb\n")
    with pytest.raises(DataError, match="train.tsv:1: missing column '#2 String'"):
        read(cfg(tmp_path, task="mrpc"))


def test_hub_source_goes_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(name, config):
        calls.append((name, config))
        part = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]})
        return datasets.DatasetDict({"train": part, "validation": part})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    splits = read(DataConfig(source="nyu-mll/glue", hub_config="sst2"))
    assert calls == [("nyu-mll/glue", "sst2")] and splits["dev"]["label"] == [1, 0]


def test_hub_unreachable_is_a_clear_error():
    with pytest.raises(DataError, match="cannot load Hub dataset 'no-such-org/no-such-set'"):
        read(DataConfig(source="no-such-org/no-such-set"))


def test_atomic_path_keeps_old_artifact_on_failure(tmp_path):
    target = tmp_path / "artifact"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "v").write_text("half")
            raise RuntimeError("killed")
    assert (target / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # no temporary left behind


def test_save_dataset_writes_meta(tmp_path):
    import datasets

    save_dataset(datasets.Dataset.from_dict({"a": [1]}), tmp_path / "ds", meta={"rows": 1})
    assert json.loads((tmp_path / "ds" / "meta.json").read_text()) == {"rows": 1}
    assert datasets.load_from_disk(str(tmp_path / "ds"))["a"][:] == [1]


def test_word_tokens():
    assert split_words("it 's over-the-top , isn't it ?") == ["it", "'s", "over-the-top", ",", "isn't", "it", "?"]
    assert words("The [MASK] Film") == ["the", "[", "mask", "]", "film"]


POLICY_TRAIN = "sentence\tlabel\ngood\t1\n \t0\ngood\t1\n" + "x" * 50 + "\t0\nbad\t0\n"


@pytest.mark.parametrize("policies, rows, counts", [
    ({"empty_text": "drop"}, ["good", "good", "x" * 40, "bad"], {"dropped_empty": 1, "duplicate_rows": 1,
                                                                 "truncated_long": 1}),
    ({"empty_text": "drop", "duplicates": "drop", "long_text": "drop"}, ["good", "bad"],
     {"dropped_empty": 1, "duplicate_rows": 1, "dropped_duplicate": 1, "dropped_long": 1}),
])
def test_row_policies_apply_and_are_counted(tmp_path, policies, rows, counts):
    write(tmp_path, "train.tsv", POLICY_TRAIN)
    write(tmp_path, "dev.tsv", "sentence\tlabel\nfine\t1\n")
    _, summary = prepare(DataConfig(source=str(tmp_path), max_chars=40, **policies), seed=0)
    splits = read(DataConfig(source=str(tmp_path), max_chars=40, **policies))
    assert splits["train"]["text"] == rows
    assert summary["policies"]["train"] == counts and summary["rows"]["train"] == len(rows)


@pytest.mark.parametrize("policies, message", [
    ({}, "train.tsv:3: empty text in column 'sentence' (data.empty_text: fail)"),
    ({"empty_text": "drop", "duplicates": "fail"}, "train.tsv:4: duplicate of line 2 (data.duplicates: fail)"),
    ({"empty_text": "drop", "long_text": "fail"},
     "train.tsv:5: text in column 'sentence' has 50 characters, over data.max_chars=40 (data.long_text: fail)"),
])
def test_row_policies_that_fail_name_the_line(tmp_path, policies, message):
    write(tmp_path, "train.tsv", POLICY_TRAIN)
    write(tmp_path, "dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError) as err:
        read(DataConfig(source=str(tmp_path), max_chars=40, **policies))
    assert message in str(err.value)


def test_all_rows_dropped_is_an_error(tmp_path):
    write(tmp_path, "train.tsv", "sentence\tlabel\n \t1\n")
    write(tmp_path, "dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match="train.tsv: no data rows left after the data.\\* policies"):
        read(DataConfig(source=str(tmp_path), empty_text="drop"))


@needs_shared
def test_the_embedded_defaults_are_the_public_files_unchanged():
    """The repository ships its default inputs gzip-compressed; read, they are the public files."""
    from conftest import EMBEDDED, SHARED

    embedded, public = read(cfg(SST2)), read(cfg(SHARED / "glue" / "SST-2"))
    assert embedded == public
    from pipeline.training.general import read_corpus

    assert read_corpus(EMBEDDED / "corpus/wikitext-2-raw/wiki.test.raw.gz") == read_corpus(
        SHARED / "corpus/wikitext-2-raw/wiki.test.raw")


def test_default_params_read_nothing_outside_the_repository():
    from conftest import ROOT

    from pipeline.params.config import Params

    params = Params()
    for path in (params.data.source, params.augment.tang.nltk_data, params.general_distill.corpus):
        assert not Path(path).is_absolute() and (ROOT / path).resolve().is_relative_to(ROOT), path
        assert (ROOT / path).exists(), path


def test_gzip_compressed_splits_are_read_like_plain_ones(tmp_path):
    import gzip

    write(tmp_path / "plain", "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    write(tmp_path / "plain", "dev.tsv", "sentence\tlabel\nfine\t1\n")
    (tmp_path / "gz").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "gz" / f"{name}.gz").write_bytes(gzip.compress((tmp_path / "plain" / name).read_bytes()))
    assert read(cfg(tmp_path / "gz")) == read(cfg(tmp_path / "plain"))
    (tmp_path / "gz" / "train.tsv.gz").write_bytes(gzip.compress(b"sentence\tlabel\ngood\t1\nbad\t9\n"))
    with pytest.raises(DataError, match=r"train\.tsv\.gz:3: label '9'"):
        read(cfg(tmp_path / "gz"))
