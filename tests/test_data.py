"""Readers (atomic, ML-100K, ML-1M, tables), validation errors, splits and leakage checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recagent.errors import DataFormatError
from recagent.tools.data import (
    LeakageError,
    LeaveOneOutSplit,
    TableMapping,
    leave_one_out,
    load_dataset,
    read_atomic,
    read_movielens_1m,
    read_movielens_raw,
    read_table,
)
from recagent.tools.data.synthetic import write_atomic


def _write(path, text):
    path.write_text(text)
    return path


def test_atomic_round_trip(synthetic, tmp_path):
    write_atomic(synthetic, tmp_path / "synthetic")
    ds = read_atomic(tmp_path / "synthetic")
    assert ds.n_items == synthetic.n_items and ds.n_users == synthetic.n_users
    assert len(ds.interactions) == len(synthetic.interactions)
    assert ds.items.titles == synthetic.items.titles
    assert ds.items.genres == synthetic.items.genres
    assert np.array_equal(ds.items.years, synthetic.items.years)
    # same external (user, item, time) triples
    a = {(synthetic.users.ids[u], synthetic.items.ids[i], t) for u, i, t in zip(*_cols(synthetic))}
    b = {(ds.users.ids[u], ds.items.ids[i], t) for u, i, t in zip(*_cols(ds))}
    assert a == b


def _cols(ds):
    return ds.interactions.users, ds.interactions.items, ds.interactions.timestamps


@pytest.mark.parametrize(
    ("inter", "line", "fragment"),
    [
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t10\n1\t2\n", 3, "expected 3 tab-separated fields"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t1\tsoon\n", 2, "'timestamp' must be a number"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t1\tnan\n", 2, "must be finite"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t99\t10\n", 2, "item '99' is not in the item file"),
        ("user_id\titem_id:token\ttimestamp:float\n1\t1\t10\n", 1, "lacks a type"),
        ("user_id:token\tthing:token\ttimestamp:float\n1\t1\t10\n", 1, "no item field"),
        ("", 1, "file is empty"),
    ],
)
def test_atomic_errors_name_file_and_line(tmp_path, inter, line, fragment):
    d = tmp_path / "bad"
    d.mkdir()
    _write(d / "bad.inter", inter)
    _write(d / "bad.item", "item_id:token\tmovie_title:token_seq\n1\tA\n2\tB\n")
    with pytest.raises(DataFormatError) as exc:
        read_atomic(d)
    assert exc.value.line == line
    assert exc.value.path.endswith(".inter")
    assert fragment in str(exc.value)


def test_atomic_item_errors(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    _write(d / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t10\n")
    _write(d / "x.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\n1\tA\t1999\n1\tB\t2000\n")
    with pytest.raises(DataFormatError, match=r"x\.item, line 3: duplicate item id '1'"):
        read_atomic(d)
    _write(d / "x.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\n1\tA\tlong ago\n")
    with pytest.raises(DataFormatError, match=r"line 2: cannot read a year"):
        read_atomic(d)


def test_atomic_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        read_atomic(tmp_path)


def test_year_in_title_repairs_garbled_year(tmp_path):
    d = tmp_path / "y"
    d.mkdir()
    _write(d / "y.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t10\n1\t2\t11\n")
    _write(
        d / "y.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tLand Before Time III (1995)\tV\tAnimation\n2\tX\tunknown\tunknown\n",
    )
    ds = read_atomic(d)
    assert ds.items.titles[0] == "Land Before Time III" and ds.items.years[0] == 1995
    assert ds.items.years[1] == 0 and ds.items.genres[1] == ()


def test_movielens_raw(tmp_path):
    genres = ["unknown", "Action", "Comedy"]
    _write(tmp_path / "u.genre", "\n".join(f"{g}|{i}" for i, g in enumerate(genres)) + "\n")
    _write(tmp_path / "u.data", "1\t10\t5\t100\n1\t11\t3\t200\n2\t10\t4\t150\n")
    _write(
        tmp_path / "u.item",
        "10|Heat (1995)|01-Jan-1995||url|0|1|0\n11|Usual Suspects, The (1995)|01-Jan-1995||url|0|0|1\n",
    )
    _write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    ds = read_movielens_raw(tmp_path)
    assert ds.items.titles == ["Heat", "Usual Suspects, The"]
    assert ds.items.genres == [("Action",), ("Comedy",)]
    assert ds.users.features["occupation"] == ["technician", "other"]
    assert load_dataset(tmp_path).n_items == 2  # detected by folder contents
    _write(tmp_path / "u.item", "10|Heat (1995)|01-Jan-1995||url|0|1\n")
    with pytest.raises(DataFormatError, match=r"u\.item, line 1: expected 8"):
        read_movielens_raw(tmp_path)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("u.data", "1\t10\t5\t100\n\n1\t11\t3\n", r"u\.data, line 3: expected 4 tab-separated fields, got 3"),
        ("u.item", "\n10|Heat (1995)|x||url|0|1|0|1\n", r"u\.item, line 2: expected 8 '\|'-separated fields, got 9"),
        ("u.user", "1|24|M|technician|85711\n2|53|F\n", r"u\.user, line 2: expected 5 '\|'-separated fields, got 3"),
        ("u.data", None, r"u\.data.*file not found"),
    ],
)
def test_movielens_raw_errors_name_file_line_and_width(tmp_path, name, text, message):
    # blank lines are skipped but still counted, so the line number is the file's own
    _write(tmp_path / "u.genre", "unknown|0\nAction|1\nComedy|2\n")
    _write(tmp_path / "u.data", "1\t10\t5\t100\n")
    _write(tmp_path / "u.item", "10|Heat (1995)|01-Jan-1995||url|0|1|0\n")
    _write(tmp_path / "u.user", "1|24|M|technician|85711\n")
    if text is None:
        (tmp_path / name).unlink()
    else:
        _write(tmp_path / name, text)
    with pytest.raises(DataFormatError, match=message):
        read_movielens_raw(tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_reader_with_mapping(tmp_path, suffix):
    df = pd.DataFrame(
        {"uid": ["a", "a", "b"], "iid": ["x", "y", "x"], "when": ["2020-01-01", "2020-01-02", "2020-01-03"]}
    )
    path = tmp_path / f"events{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    items = tmp_path / "items.csv"
    pd.DataFrame({"iid": ["x", "y"], "name": ["X", "Y"], "year": ["1999", "2001"], "tags": ["A|B", "B"]}).to_csv(
        items, index=False
    )
    m = TableMapping(user="uid", item="iid", timestamp="when", item_title="name", item_year="year", item_genres="tags")
    ds = read_table(path, m, items=items)
    assert ds.n_users == 2 and ds.n_items == 2
    assert ds.items.genres == [("A", "B"), ("B",)]
    assert ds.interactions.timestamps[1] > ds.interactions.timestamps[0]
    with pytest.raises(DataFormatError, match="missing column 'user_id'"):
        read_table(path)


def test_table_reader_bad_timestamp(tmp_path):
    path = _write(tmp_path / "e.csv", "user_id,item_id,timestamp\na,x,1\nb,y,yesterday-ish\n")
    with pytest.raises(DataFormatError, match=r"e\.csv, line 3: timestamp 'yesterday-ish'"):
        read_table(path)


def test_leave_one_out_takes_last_events_by_time(synthetic, synthetic_split):
    inter = synthetic.interactions
    for u in range(synthetic.n_users):
        rows = np.flatnonzero(inter.users == u)
        order = rows[np.lexsort((inter.rows[rows], inter.timestamps[rows]))]
        assert synthetic_split.test.items[synthetic_split.test.users == u].tolist() == [inter.items[order[-1]]]
        assert synthetic_split.valid.items[synthetic_split.valid.users == u].tolist() == [inter.items[order[-2]]]
    assert len(synthetic_split.train) + 2 * synthetic.n_users == len(inter)
    case = synthetic_split.cases("test")[0]
    assert case.target not in case.history.tolist()
    assert case.history[-1] == synthetic_split.valid.items[synthetic_split.valid.users == case.user][0]


def test_ties_keep_file_order_and_short_users_stay_in_training(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    _write(
        d / "t.inter",
        "user_id:token\titem_id:token\ttimestamp:float\n1\ta\t5\n1\tb\t5\n1\tc\t5\n1\td\t5\n2\ta\t1\n2\tb\t2\n",
    )
    split = leave_one_out(read_atomic(d))
    ids = split.dataset.items.ids
    assert [ids[i] for i in split.test.items] == ["d"] and [ids[i] for i in split.valid.items] == ["c"]
    assert split.summary() == {"train": 4, "valid": 1, "test": 1}  # user 2 (two events) trains only


def test_leakage_check_catches_overlap_and_time_travel(synthetic_split):
    s = synthetic_split
    leaky = LeaveOneOutSplit(s.dataset, s.train.concat([s.train, s.test.take(np.arange(1))]), s.valid, s.test)
    with pytest.raises(LeakageError, match="test rows also appear in training"):
        leaky.check_no_leakage()
    early = s.test.take(np.arange(len(s.test)))
    object.__setattr__(early, "timestamps", early.timestamps - 1e9)
    with pytest.raises(LeakageError, match="older than that user's training events"):
        LeaveOneOutSplit(s.dataset, s.train, s.valid, early).check_no_leakage()


def test_real_ml100k(ml100k, ml100k_split):
    assert (ml100k.n_users, ml100k.n_items, len(ml100k.interactions)) == (943, 1682, 100_000)
    assert ml100k_split.summary() == {"train": 98_114, "valid": 943, "test": 943}
    heat = ml100k.items.index_of["6"]  # item ids are the GroupLens ids
    assert ml100k.items.display(0) == "Toy Story (1995)"
    assert ml100k.items.description(0) == "Toy Story (1995): Animation, Children's, Comedy"
    assert len(ml100k.items.all_genres) == 18 and heat >= 0
    ml100k_split.check_no_leakage()


# ---------------------------------------------------------------- GroupLens ML-1M (*.dat, '::', Latin-1)

ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "11::American President, The (1995)::Comedy|Drama|Romance\n"
    "29::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n"
    "50::Usual Suspects, The (1995)::Crime|Thriller\n"
    "260::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "2355::Bug's Life, A (1998)::Animation|Children's|Comedy\n"
    "3114::Toy Story 2 (1999)::Animation|Children's|Comedy\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117-1234\n4::M::45::7::02460\n"
# each user's items in time order; ratings.dat lists them newest first, so file order is not time order
ML1M_HISTORIES = {
    "1": ["1193", "1", "2355", "3114", "260", "29"],
    "2": ["11", "50", "1193", "260"],
    "3": ["29", "1", "3114", "2355", "50"],
    "4": ["260", "50", "11"],
}


def _ml1m_ratings() -> str:
    lines = []
    for user, items in ML1M_HISTORIES.items():
        for k, item in reversed(list(enumerate(items))):
            lines.append(f"{user}::{item}::{1 + (k + int(user)) % 5}::{978300000 + 1000 * int(user) + 60 * k}\n")
    return "".join(lines)


def _write_ml1m(folder, **replace):
    """The ML-1M layout in Latin-1, as in the GroupLens archive; ``replace`` swaps a file's text."""
    folder.mkdir(exist_ok=True)
    files = {"ratings.dat": _ml1m_ratings(), "movies.dat": ML1M_MOVIES, "users.dat": ML1M_USERS, **replace}
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("latin-1"))
    return folder


def test_movielens_1m_layout(tmp_path):
    folder = _write_ml1m(tmp_path / "ml-1m")
    assert "é".encode("latin-1") in (folder / "movies.dat").read_bytes()  # really Latin-1, not UTF-8
    ds = load_dataset(folder)  # detected by folder contents, as u.data is for ML-100K
    assert ds.name == "ml-1m" and (ds.n_users, ds.n_items, len(ds.interactions)) == (4, 8, 18)
    items = ds.items
    assert items.ids == ["1", "11", "29", "50", "260", "1193", "2355", "3114"]  # the GroupLens ids
    i = items.index_of
    assert items.titles[i["11"]] == "American President, The" and items.years[i["11"]] == 1995
    assert items.titles[i["29"]] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert items.display(i["29"]) == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert items.titles[i["260"]] == "Star Wars: Episode IV - A New Hope" and items.years[i["260"]] == 1977
    assert items.genres[i["1"]] == ("Animation", "Children's", "Comedy")
    assert items.description(i["1"]) == "Toy Story (1995): Animation, Children's, Comedy"
    assert "Children's" in items.all_genres and "Sci-Fi" in items.all_genres
    users = ds.users
    assert users.ids == ["1", "2", "3", "4"]
    assert users.features["zip_code"] == ["48067", "70072", "55117-1234", "02460"]
    assert users.features["gender"][0] == "F" and users.features["age"][1] == "56"
    assert users.features["occupation"][2] == "15"
    first = ds.interactions  # the first line of ratings.dat: user 1's newest rating, of item 29
    assert (users.ids[first.users[0]], items.ids[first.items[0]]) == ("1", "29")
    assert first.ratings[0] == 2.0 and first.timestamps[0] == 978301300.0
    assert read_movielens_1m(folder, name="x").name == "x"
    assert read_movielens_1m(_write_ml1m(tmp_path / "nousers", **{"users.dat": ""})).users.features == {}


def test_movielens_1m_leave_one_out_by_time(tmp_path):
    ds = load_dataset(_write_ml1m(tmp_path / "ml-1m"))
    split = leave_one_out(ds)
    split.check_no_leakage()
    assert split.summary() == {"train": 10, "valid": 4, "test": 4}
    users, items = ds.users.ids, ds.items.ids
    for part, back in ((split.test, 1), (split.valid, 2)):
        got = {users[u]: items[i] for u, i in zip(part.users, part.items)}
        assert got == {u: h[-back] for u, h in ML1M_HISTORIES.items()}
    case = split.cases("test")[0]
    assert [items[i] for i in case.history] == ML1M_HISTORIES[users[case.user]][:-1]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "ratings.dat",
            "1::1193::5::978300760\n\n1::661::3\n",
            r"ratings\.dat, line 3: expected 4 '::'-separated fields, got 3",
        ),
        ("ratings.dat", "1::1193::5::978300760::x\n", r"ratings\.dat, line 1: expected 4 '::'-separated fields, got 5"),
        (
            "ratings.dat",
            "1::1193::5::978300760\nu2::1193::5::978300760\n",
            r"ratings\.dat, line 2: UserID must be an integer, got 'u2'",
        ),
        ("ratings.dat", "1::11.5::5::978300760\n", r"ratings\.dat, line 1: MovieID must be an integer, got '11.5'"),
        ("ratings.dat", "1::1193::five::978300760\n", r"ratings\.dat, line 1: column 'Rating' must be a number"),
        ("ratings.dat", "1::999::5::978300760\n", r"ratings\.dat, line 1: item '999' is not in the item file"),
        ("movies.dat", "1::Toy Story (1995)\n", r"movies\.dat, line 1: expected 3 '::'-separated fields, got 2"),
        (
            "movies.dat",
            "1::Toy Story (1995)::Animation\nToy::Story (1995)::Comedy\n",
            r"movies\.dat, line 2: MovieID must be an integer, got 'Toy'",
        ),
        (
            "movies.dat",
            ML1M_MOVIES + "1::Toy Story again (1995)::Comedy\n",
            r"movies\.dat, line 9: duplicate MovieID '1'",
        ),
        ("users.dat", "1::F::1::10\n", r"users\.dat, line 1: expected 5 '::'-separated fields, got 4"),
        (
            "users.dat",
            "1::F::1::10::48067\none::M::56::16::70072\n",
            r"users\.dat, line 2: UserID must be an integer, got 'one'",
        ),
        ("movies.dat", None, r"movies\.dat: file not found"),
    ],
)
def test_movielens_1m_errors_name_file_and_line(tmp_path, name, text, message):
    folder = _write_ml1m(tmp_path / "ml-1m")
    if text is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(text.encode("latin-1"))
    with pytest.raises(DataFormatError, match=message) as exc:
        load_dataset(folder)
    assert exc.value.path.endswith(name) and "\n" not in str(exc.value)


def test_movielens_1m_bad_line_is_one_cli_line(tmp_path, capsys):
    from recagent.cli import main

    folder = _write_ml1m(tmp_path / "ml-1m", **{"users.dat": "1::F::1::10::48067::extra\n"})
    assert main(["data", "info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "users.dat, line 1: expected 5 '::'-separated fields, got 6" in err and "Traceback" not in err
    assert main(["data", "info", str(_write_ml1m(tmp_path / "ok")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == {"train": 10, "valid": 4, "test": 4}


def test_every_tool_runs_on_the_movielens_1m_layout(tmp_path):
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS, build_registry
    from recagent.tools.recommenders import MODELS

    ds = load_dataset(_write_ml1m(tmp_path / "ml-1m"))
    split = leave_one_out(ds)
    models = {}
    for name, cls in MODELS.items():
        models[name] = cls(cls.config_cls(**({"max_epochs": 2} if name in ("bpr", "sasrec") else {})))
        models[name].fit(split, show_progress=False)
    registry = build_registry(ToolEnv(ds, split, models, ToolEnvConfig(dataset="ml-1m")).session())

    def ids(name, args):
        out = registry.call(name, args)
        assert out.ok, (name, out.error)
        return [it["item_id"] for it in out.result["items"]]

    called = set()
    for name, args in [
        ("search_items", {"query": "lost children in a strange city", "k": 3}),
        ("popular_items", {"genre": "Children's", "k": 3, "save_as": "kids"}),
        ("retrieve_for_user", {"user_id": 1, "k": 2}),
        ("similar_items", {"item_ids": [1], "k": 3}),
        ("rank_items", {"user_id": 2, "item_ids": [1, 29, 2355], "k": 3}),
        ("rank_by_preference", {"user_id": 2, "candidates": "kids", "prefer_genres": ["Comedy"], "k": 3}),
        ("get_candidates", {"name": "kids", "k": 3}),
    ]:
        assert set(ids(name, args)) <= set(ds.items.ids), name
        called.add(name)
    assert set(ids("popular_items", {"genre": "Children's", "k": 10})) == {"1", "2355", "3114"}
    assert ids("filter_items", {"genres": ["Sci-Fi"], "year_min": 1990, "k": 5}) == ["29"]
    assert not {"1193", "1", "2355", "3114"} & set(ids("retrieve_for_user", {"user_id": 1, "model": "sasrec", "k": 4}))
    called |= {"filter_items", "retrieve_for_user"}
    out = registry.call("get_item", {"title": "City of Lost Children"})
    assert out.ok and out.result["item"]["item_id"] == "29" and "Cité" in out.result["item"]["title"]
    out = registry.call("get_item", {"title": "La Cité des enfants perdus"})  # the original-language title
    assert out.ok and (out.result["item"]["item_id"], out.result["match"]) == ("29", "exact")
    assert registry.call("get_item", {"item_id": 11}).result["item"]["title"] == "American President, The"
    history = registry.call("get_user_history", {"user_id": 3}).result  # training only: valid and test stay hidden
    assert [it["item_id"] for it in history["items"]] == ML1M_HISTORIES["3"][:-2]
    called |= {"get_item", "get_user_history"}
    assert called == {fn.__name__ for fn in TOOL_FUNCTIONS}
