"""The pinned-hashes check of .ci/run: one pins file per CPU kind and precision."""

from __future__ import annotations

import json

import pinned_hashes  # tests/ is on the path, as for conftest


def test_each_machine_kind_is_checked_against_its_own_pins(tmp_path, monkeypatch, capsys):
    files = {"models/teacher/model.safetensors": "a" * 32}
    monkeypatch.setattr(pinned_hashes, "PINNED", tmp_path)
    monkeypatch.setattr(pinned_hashes, "model_files", lambda repo, outs: dict(files))
    for kind in ({"cpu": "AMD-AVX2", "precision": "fp32"}, {"cpu": "Intel-AVX512-AMX", "precision": "bf16"}):
        monkeypatch.setattr(pinned_hashes, "machine", lambda kind=kind: kind)
        assert pinned_hashes.main(["check"]) == 0 and "no pins for this machine" in capsys.readouterr().out
        assert pinned_hashes.main(["pinned"]) == 1  # .ci/run then forces a whole second run
        assert pinned_hashes.main(["update"]) == 0
        assert pinned_hashes.main(["pinned"]) == 0
        assert json.loads(pinned_hashes.pins_for(kind).read_text())["machine"] == kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ci_profile.AMD-AVX2-fp32.json",
                                                         "ci_profile.Intel-AVX512-AMX-bf16.json"]
    assert pinned_hashes.main(["check"]) == 0 and "all 1 pinned files as pinned" in capsys.readouterr().out
    files["models/students/new/model.safetensors"] = "c" * 32  # a student added since: listed, not failed
    assert pinned_hashes.main(["check"]) == 0 and "1 files not pinned" in capsys.readouterr().out
    files["models/teacher/model.safetensors"] = "b" * 32  # a weight moved: this kind's check fails
    assert pinned_hashes.main(["check"]) == 1 and "models/teacher/model.safetensors" in capsys.readouterr().out
    del files["models/teacher/model.safetensors"]  # and so does a pinned file that is gone
    assert pinned_hashes.main(["check"]) == 1 and "models/teacher/model.safetensors" in capsys.readouterr().out


def test_the_machine_kind_names_the_vendor_and_amx(monkeypatch):
    """Vendors and AMX pick other kernels, which round otherwise: each is a kind of its own."""
    import torch

    def kind(name, amx):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": name, "amx_bf16": amx})
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        return pinned_hashes.machine()["cpu"]

    assert kind("Intel Xeon", True) == "Intel-AVX512-AMX"
    assert kind("Intel Xeon", False) == "Intel-AVX512"
    assert kind("AMD EPYC 9R14", False) == "AMD-AVX512"
    assert kind("", False) == "unknown-AVX512"
