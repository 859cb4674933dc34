"""`written_paths` lists exactly what the prepare stage writes: config validation trusts it to tell a path
prepare will write from a typo of one."""

from __future__ import annotations

import os

from swirl.stages.prepare import PrepareConfig, run_prepare, written_paths


def test_written_paths_are_exactly_what_prepare_writes(tmp_path, monkeypatch):
    import swirl.models.packaged as packaged

    def convert(name: str, path: str, overwrite: bool = False) -> str:  # the real one takes ~33 s
        os.makedirs(path)
        open(os.path.join(path, "config.json"), "w").close()
        return path

    monkeypatch.setattr(packaged, "convert_packaged_model", convert)
    toy = {f"{w}_{s}": 2 for w in ("arithmetic", "twohop") for s in ("train", "dev", "test", "test_seen")}
    cfg = PrepareConfig.model_validate(
        {
            "synthetic": {
                "dir": str(tmp_path / "synthetic"),
                "gsm8k_train": 2,
                "gsm8k_test": 2,
                "hotpotqa_train": 2,
                "hotpotqa_test": 2,
            },
            "toy_worlds": {"dir": str(tmp_path / "toy"), **toy},
            "model": {"path": str(tmp_path / "smollm2")},
            "tiny_model": {"path": str(tmp_path / "tiny"), "vocab_size": 300},
        }
    )
    listed = written_paths(cfg)
    assert len(listed) == 4 + 8 + 2
    assert os.listdir(tmp_path) == []  # listing writes nothing

    assert run_prepare(cfg) == listed
    data_files = {
        os.path.join(d, f)
        for top in ("synthetic", "toy")
        for d, _, files in os.walk(tmp_path / top)
        for f in files
        if not f.startswith("_")  # the settings stamps (_synthetic.json, _toyworld.json)
    }
    models = {str(tmp_path / "smollm2"), str(tmp_path / "tiny")}
    assert sorted(os.listdir(tmp_path)) == ["smollm2", "synthetic", "tiny", "toy"]
    assert data_files | models == set(listed.values())  # every listed path is written, and nothing else
    assert all(os.path.getsize(p) for p in data_files)
