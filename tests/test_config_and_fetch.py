"""Job configs (YAML, overrides, errors) and dataset fetching (checksums, idempotence, offline errors)."""

from __future__ import annotations

import json
import shutil

import pytest

from recagent.errors import ConfigError, DatasetNotFoundError, RecagentError
from recagent.paths import dataset_dir, recagent_home
from recagent.tools.data import fetch, load_dataset
from recagent.tools.data.fetch import MANIFEST, _manifest_ok
from recagent.tools.recommenders.registry import TrainJobConfig


def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("dataset: ml-100k\nmodel: sasrec\nparams:\n  max_len: 20\n")
    cfg = TrainJobConfig.from_yaml(path).with_overrides(["params.dropout=0.1", "params.n_layers=3"])
    assert cfg.params == {"max_len": 20, "dropout": 0.1, "n_layers": 3}
    cfg.to_yaml(tmp_path / "saved.yaml")
    assert TrainJobConfig.from_yaml(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["params.dropout=2"], "params.dropout: Input should be less than 1"),
        (["params.layers=3"], "params.layers: Extra inputs are not permitted (valid params of sasrec: seed, max_len"),
        (["model=transformer"], "unknown model 'transformer'"),
        (["surprise=1"], "surprise: Extra inputs are not permitted"),
        (["noequals"], "must look like key=value"),
    ],
)
def test_config_errors_are_one_clear_line(overrides, fragment):
    with pytest.raises(ConfigError) as exc:
        TrainJobConfig.build(model="sasrec").with_overrides(overrides)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        TrainJobConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainJobConfig.from_yaml(tmp_path / "bad.yaml")


def test_home_comes_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RECAGENT_HOME", str(tmp_path))
    assert recagent_home() == tmp_path.resolve()
    assert dataset_dir("ml-100k") == tmp_path.resolve() / "datasets" / "ml-100k"


def test_fetch_is_idempotent_and_detects_corruption(real_ml100k_dir, monkeypatch):
    # a verified copy in the cache is reused without any download
    shutil.copytree(real_ml100k_dir, dataset_dir("ml-100k"))
    monkeypatch.setenv("RECAGENT_OFFLINE", "1")
    monkeypatch.setenv("RECAGENT_RECBOLE_WHEEL", "/nonexistent.whl")
    assert fetch("ml-100k") == dataset_dir("ml-100k")
    manifest = json.loads((dataset_dir("ml-100k") / MANIFEST).read_text())
    assert manifest["files"] and all(len(v) == 64 for v in manifest["files"].values())
    # a changed file fails its checksum, so the cache no longer counts and a refetch is attempted
    victim = next(iter(manifest["files"]))
    with (dataset_dir("ml-100k") / victim).open("a") as fh:
        fh.write("tampered\n")
    assert _manifest_ok(dataset_dir("ml-100k")) is None
    with pytest.raises(RecagentError, match=r"could not fetch ml-100k: .*RECAGENT_OFFLINE=1.*nonexistent\.whl"):
        fetch("ml-100k")
    assert (dataset_dir("ml-100k") / victim).is_file()  # a failed fetch leaves the old folder alone


def test_fetch_rejects_a_wheel_with_the_wrong_checksum(tmp_path, monkeypatch):
    import zipfile

    fake = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "user_id:token\n")
    monkeypatch.setenv("RECAGENT_OFFLINE", "1")
    monkeypatch.setenv("RECAGENT_RECBOLE_WHEEL", str(fake))
    with pytest.raises(RecagentError, match="checksum mismatch for recbole==1.2.1"):
        fetch("ml-100k")
    assert not dataset_dir("ml-100k").exists()


def test_unknown_and_missing_datasets_say_what_to_do():
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'ml-20m'; known: ml-100k"):
        fetch("ml-20m")
    with pytest.raises(DatasetNotFoundError, match="run: recagent data fetch ml-100k"):
        load_dataset("ml-100k")  # RECAGENT_HOME is an empty temp folder here
