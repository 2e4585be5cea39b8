"""Bad input through the CLI: one clear line (or a partial answer), never a traceback."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from embplat.cli.app import app

pytestmark = pytest.mark.reliability

runner = CliRunner()
COMMON = ["--encoder", "tiny_cnn", "--backend", "exact"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data home; one torch thread keeps the tiny encoder deterministic and quick."""
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(threads)


def invoke(*args: str):
    result = runner.invoke(app, [*COMMON, *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def one_error_line(result) -> str:
    """The single red line a failed command printed (stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def ingested(home: Path, bmp_tree: Path, imagefactory) -> Path:
    """The bmp tree, plus entries that must be skipped, ingested once; returns the tree."""
    cats = bmp_tree / "cats"
    (cats / "cats_0.bmp").replace(os.fsdecode(os.fsencode(cats) + b"/caf\xe9.bmp"))
    (cats / "self").symlink_to(".")
    (cats / "a.bmp").symlink_to("b.bmp")
    (cats / "b.bmp").symlink_to("a.bmp")
    (cats / "dangling.bmp").symlink_to("nowhere.bmp")
    Image.new("L", (100_000, 1), 200).save(bmp_tree / "coffee" / "wide.png", optimize=True)
    return bmp_tree


def test_ingest_skips_bad_names_links_and_elongated_images(ingested: Path) -> None:
    r = invoke("ingest", str(ingested), "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["scanned"], summary["added"], summary["embedded"]) == (6, 5, 5)
    warned = "\n".join(summary["warnings"])
    assert "caf\\xe9.bmp: name is not valid UTF-8" in warned
    assert "cats/self: symlink loop" in warned and "cats/a.bmp: symlink loop" in warned
    assert "dangling.bmp: broken symlink" in warned
    [(path, reason)] = summary["skipped"]
    assert path.endswith("coffee/wide.png") and "aspect ratio of 100000:1" in reason
    # skipped at registration, so a re-run neither retries nor embeds it: nothing pending
    again = json.loads(invoke("ingest", str(ingested), "--json").stdout)
    assert (again["added"], again["already"], again["embedded"]) == (0, 5, 0)
    assert [path for path, _ in again["skipped"]] == [path]


def test_classify_answers_good_images_and_reports_bad_ones(ingested: Path, tmp_path) -> None:
    assert invoke("ingest", str(ingested)).exit_code == 0
    good = str(ingested / "coffee" / "coffee_1.bmp")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    missing = str(tmp_path / "missing.jpg")
    r = invoke("classify", good, str(corrupt), missing, good, "--k", "3", "--json")
    assert r.exit_code == 1, r.output
    entries = json.loads(r.stdout)
    assert [e["source"] for e in entries] == [good, str(corrupt), missing, good]
    assert entries[0]["label"] == entries[3]["label"] == "coffee"
    assert "not an image Pillow can read" in entries[1]["error"]
    assert entries[2] == {"source": missing, "error": "does not exist"}

    r = invoke("classify", good, str(corrupt), "--k", "3")
    assert r.exit_code == 1 and "coffee" in r.stdout
    assert one_error_line(r).startswith(f"error: {corrupt}: not an image Pillow can read")

    r = invoke("classify", str(corrupt), missing)  # nothing answered
    assert r.exit_code == 1
    assert [line.split(":")[1].strip() for line in r.stderr.splitlines()] == [
        str(corrupt),
        missing,
    ]
    assert "Exit status" in invoke("classify", "--help").stdout


def test_search_filters_are_checked(ingested: Path) -> None:
    line = one_error_line(invoke("search", "--image", "x.jpg", "--split", "bogus"))
    assert line == "error: --split must be one of train, valid, test, got 'bogus'"
    line = one_error_line(invoke("evaluate", "--split", "bogus"))
    assert line == "error: --split must be one of train, valid, test, got 'bogus'"
    line = one_error_line(invoke("evaluate", "--reference", "trian"))
    assert line == "error: --reference must be one of train, valid, test, got 'trian'"
    assert invoke("ingest", str(ingested)).exit_code == 0
    query = str(ingested / "cats" / "cats_1.bmp")
    r = invoke("search", "--image", query, "--class", "nope")
    assert r.exit_code == 1 and "matches class='nope'" in one_error_line(r)
    assert "holds no enrolled images yet" not in r.stderr
    r = invoke("classify", query, "--show", "-1")
    assert r.exit_code == 2 and "--show" in r.output


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_home_that_is_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    home = blocker if where == "file" else blocker / "sub" / "home"
    monkeypatch.setenv("EMBPLAT_HOME", str(home))
    line = one_error_line(invoke("classes", "list"))
    assert f"data home {home}" in line and "a file, not a folder" in line
    monkeypatch.delenv("EMBPLAT_HOME")
    line = one_error_line(invoke("--home", str(home), "classes", "list"))  # the flag too
    assert f"data home {home}" in line


@pytest.mark.parametrize("damage", ["truncate", "garbage", "classes-page"])
def test_damaged_catalog_is_one_line_naming_it(ingested: Path, home: Path, damage: str) -> None:
    assert invoke("ingest", str(ingested)).exit_code == 0
    catalog = home / "catalog.sqlite3"
    gc.collect()  # close the pooled connections of the commands run in this process
    with closing(sqlite3.connect(catalog)) as conn:  # move the WAL into the file, as on exit
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'classes'")
        page = (root.fetchone()[0] - 1) * conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(catalog.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data[:] = b"\x13" * len(data)
    else:  # only the classes table: the schema check passes, the first query fails
        data[page : page + 512] = b"\x13" * 512
    catalog.write_bytes(bytes(data))
    for args in (("classes", "list"), ("ingest", str(ingested))):
        line = one_error_line(invoke(*args))
        assert f"catalog {catalog} is damaged" in line and "restore it from a backup" in line


def test_bad_word_vector_file_is_one_line(home: Path, tmp_path: Path) -> None:
    vec = tmp_path / "words.vec"
    vec.write_text("2 3\ncat 1 0 0\ndog 0.5 NaN 0\n")
    line = one_error_line(invoke("vectors", "load", str(vec)))
    assert line == (
        f"error: {vec} line 3: 'NaN' is not a finite number; fix or delete that line "
        "(expected 'word v1 v2 ...' with decimal numbers)"
    )


def test_unwritable_index_folder_is_one_line_and_the_rerun_recovers(
    home: Path, bmp_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index folder refusing writes mid-ingest (permissions, a full or read-only disk)."""
    import errno

    from embplat.retrieval.exact import ExactIndex

    real_flush = ExactIndex.flush

    def refused(self: ExactIndex) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(ExactIndex, "flush", refused)
    result = runner.invoke(app, [*COMMON, "ingest", str(bmp_tree)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "cannot write" in line and "Permission denied" in line and str(home) in line
    monkeypatch.setattr(ExactIndex, "flush", real_flush)
    del result  # its exception chain still references the failed run's index handle
    gc.collect()  # the failed run's handle holds the folder's lock until collected (or exit)
    again = invoke("ingest", str(bmp_tree), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    status = json.loads(invoke("status", "--json").stdout)
    assert status["points"] == status["embedded"] == summary["added"] + summary["already"]
