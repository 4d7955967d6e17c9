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


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: a connection there is refused


def _ml1m_source(monkeypatch, **changes):
    """Swap fields of the ml-1m source (its URL, its checksum) for this test only."""
    from dataclasses import replace

    from recagent.tools.data import KNOWN

    known = KNOWN["ml-1m"]
    monkeypatch.setitem(KNOWN, "ml-1m", replace(known, sources=(replace(known.sources[0], **changes),)))


def _leftovers():
    parent = dataset_dir("ml-1m").parent
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_ml1m_is_known_with_the_grouplens_checksum():
    from recagent.tools.data import KNOWN

    (source,) = KNOWN["ml-1m"].sources
    assert source.location == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert source.archive_md5 == "c4d9eecfca2ab87c1945afe126590906"  # the MD5 GroupLens publishes
    assert set(source.members.values()) == {"ratings.dat", "movies.dat", "users.dat"}


def test_ml1m_fetch_without_a_connection_is_one_line_and_leaves_nothing(monkeypatch, capsys):
    from recagent.cli import main

    # as for ml-100k: RECAGENT_OFFLINE=1 stops before the network
    monkeypatch.setenv("RECAGENT_OFFLINE", "1")
    with pytest.raises(
        RecagentError, match=r"could not fetch ml-1m: https://files\.grouplens\.org/.*RECAGENT_OFFLINE=1"
    ):
        fetch("ml-1m")
    monkeypatch.delenv("RECAGENT_OFFLINE")
    # the real download code up to a refused connection (a closed port on this machine, never the internet)
    _ml1m_source(monkeypatch, location=f"http://127.0.0.1:{_closed_port()}/ml-1m.zip")
    assert main(["data", "fetch", "ml-1m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not fetch ml-1m: http://127.0.0.1:") and "refused" in err
    assert "\n" not in err and "Traceback" not in err
    assert not dataset_dir("ml-1m").exists() and _leftovers() == []  # no half-written folder


ML1M_ZIP = {
    "ml-1m/ratings.dat": "1::29::5::978300760\n1::1::3::978300761\n1::11::4::978300762\n2::1::5::978300763\n",
    "ml-1m/movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "11::American President, The (1995)::Comedy|Drama|Romance\n"
    "29::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n",
    "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::55117-1234\n",
    "ml-1m/README": "not extracted\n",
}


def _zip_bytes(members: dict[str, str]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text.encode("latin-1"))
    return buf.getvalue()


class _Response:
    """What urlopen returns, serving ``data`` (or failing part way, like a dropped connection)."""

    def __init__(self, data: bytes, drop: bool = False):
        self.data, self.drop = data, drop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self):
        import http.client

        if self.drop:
            raise http.client.IncompleteRead(self.data[:100], len(self.data) - 100)
        return self.data


def test_ml1m_fetch_checks_the_md5_then_loads_by_name(monkeypatch):
    import hashlib
    import urllib.request

    archive = _zip_bytes(ML1M_ZIP)
    urls = []

    def serve(drop=False):
        def urlopen(url, timeout=None):
            urls.append(url)
            return _Response(archive, drop)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    serve()  # an archive that is not the published one fails the MD5 check
    with pytest.raises(
        RecagentError, match=r"checksum mismatch for https://files\.grouplens\.org/datasets/movielens/ml-1m\.zip"
    ):
        fetch("ml-1m")
    assert urls == ["https://files.grouplens.org/datasets/movielens/ml-1m.zip"] and _leftovers() == []
    _ml1m_source(monkeypatch, archive_md5=hashlib.md5(archive).hexdigest())
    serve(drop=True)  # the connection drops part way: one clear error, nothing written
    with pytest.raises(RecagentError, match=r"could not fetch ml-1m: .*IncompleteRead"):
        fetch("ml-1m")
    assert _leftovers() == []
    serve()
    assert fetch("ml-1m") == dataset_dir("ml-1m")
    manifest = json.loads((dataset_dir("ml-1m") / MANIFEST).read_text())
    assert manifest["format"] == "movielens-1m" and set(manifest["files"]) == {"ratings.dat", "movies.dat", "users.dat"}
    assert _leftovers() == ["ml-1m"]
    ds = load_dataset("ml-1m")
    assert (ds.name, ds.n_users, ds.n_items, len(ds.interactions)) == ("ml-1m", 2, 3, 4)
    assert ds.items.titles[ds.items.index_of["29"]] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert ds.users.features["zip_code"] == ["48067", "55117-1234"]
    assert fetch("ml-1m") == dataset_dir("ml-1m") and len(urls) == 3  # a verified copy: no download again
