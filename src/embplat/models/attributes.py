"""Class attributes as label vectors: the side information zero-shot learning began with.

An AwA2 folder describes each class by 85 predicates (``predicates.txt``: ``"1\\tblack"`` per
line) and a matrix of how strongly each class has each one, in ``classes.txt`` order
(``predicate-matrix-continuous.txt``, 0–100, AwA's ``-1`` for "unknown" read as 0; or
``predicate-matrix-binary.txt``). Ingest stores the table in the data home
(:func:`store_attributes`, one folder per content, so a model keeps the table it was trained
on) and ``--vectors attributes`` uses it wherever word vectors are accepted:

- a class name (``killer+whale``, ``ankle boot``) maps to its row, as a unit vector;
- a text made only of predicate names (``"black stripes"``) maps to those predicates, so
  ``search --text`` can ask for attributes no class name states.

Attributes tell classes apart by what they look like, where a word vector of the name says
what the word co-occurs with: on Fashion-MNIST, ``coat`` and ``shirt`` differ in
``outerwear``, ``thick`` and ``collar``, which GloVe's ``coat``/``shirt`` barely encode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embplat.errors import ConfigError, DataError
from embplat.models.wordvectors import ATTRIBUTES, VectorSource, label_tokens

PREDICATES_FILE = "predicates.txt"
MATRIX_FILES = ("predicate-matrix-continuous.txt", "predicate-matrix-binary.txt")
_FOLDER = ATTRIBUTES  # the data home's folder of stored tables
_CURRENT = "current.json"


def _key(name: str) -> str:
    """A class or predicate name as looked up: lower case, words joined by ``+``."""
    return "+".join(label_tokens(name))


@dataclass(frozen=True)
class AttributeTable:
    """Classes by predicates.

    Attributes:
        classes: class names, one per matrix row.
        predicates: predicate names, one per matrix column.
        matrix: (len(classes), len(predicates)) float32, non-negative.
    """

    classes: list[str]
    predicates: list[str]
    matrix: np.ndarray

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.classes), len(self.predicates)):
            raise DataError(
                f"attribute matrix is {self.matrix.shape[0]} x {self.matrix.shape[1]}, but "
                f"{len(self.classes)} classes and {len(self.predicates)} predicates are named"
            )

    def with_row(self, name: str, values: dict[str, float]) -> AttributeTable:
        """This table plus class ``name`` with ``values`` (predicate -> value, the others 0);
        itself when ``name`` already has exactly that row.

        Raises:
            DataError: a predicate is not in the table, a value is negative or not finite,
                no value is positive, or ``name`` already has another row.
        """
        columns = {_key(p): j for j, p in enumerate(self.predicates)}
        unknown = [p for p in values if _key(p) not in columns]
        if unknown:
            raise DataError(
                f"attributes {', '.join(map(repr, unknown))} are not predicates of this table; "
                f"known: {', '.join(self.predicates)}"
            )
        bad = {p: v for p, v in values.items() if not (np.isfinite(v) and v >= 0)}
        if bad or not any(v > 0 for v in values.values()):
            raise DataError(
                f"attribute values must be finite and non-negative, at least one positive; "
                f"got {bad or values}"
            )
        row = np.zeros(len(self.predicates), np.float32)
        for predicate, value in values.items():
            row[columns[_key(predicate)]] = value
        existing = {_key(c): i for i, c in enumerate(self.classes)}.get(_key(name))
        if existing is not None:
            if np.array_equal(self.matrix[existing], row):
                return self
            raise DataError(
                f"class {name!r} already has other attributes in this table; a class keeps "
                "the row it was given (ingest a corrected predicate matrix to change it)"
            )
        return AttributeTable(
            [*self.classes, name], list(self.predicates), np.vstack([self.matrix, row[None]])
        )

    def digest(self) -> str:
        """12 hex digits identifying the table's content."""
        h = hashlib.sha256(json.dumps([self.classes, self.predicates]).encode())
        h.update(np.ascontiguousarray(self.matrix, dtype=np.float32).tobytes())
        return h.hexdigest()[:12]


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc}); fix or remove it") from exc


def read_numbered_names(path: Path, *, what: str = "file") -> list[str]:
    """Names of an AwA2 ``"1\\tname"`` (or bare ``name``) per line file (``classes.txt``,
    ``predicates.txt``, ``trainclasses.txt``), in file order, repeats kept (a matrix row
    each); blank lines skipped.

    Raises:
        DataError: naming the file (``what`` it is) and line of a name with spaces, or an
            unreadable file.
    """
    names = []
    for n, line in enumerate(_read_text(path, what).splitlines(), start=1):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            parts = parts[1:]
        if len(parts) > 1:
            raise DataError(
                f"{path}:{n}: expected 'number<TAB>name' or 'name', got {line!r} (names "
                "must not contain spaces; AwA2 uses '+', e.g. 'grizzly+bear')"
            )
        names.extend(parts)
    return names


def read_awa_attributes(meta_dir: Path) -> AttributeTable | None:
    """The predicate matrix beside an AwA2 ``classes.txt``, rows in its order.

    Args:
        meta_dir: the folder holding ``classes.txt``.

    Returns:
        The table, or None when the folder has no ``predicates.txt`` or no matrix file.

    Raises:
        DataError: a file is malformed: a row of the wrong length, a value that is not a
            number, fewer or more rows than classes.
    """
    predicates_file = meta_dir / PREDICATES_FILE
    matrix_file = next((meta_dir / f for f in MATRIX_FILES if (meta_dir / f).is_file()), None)
    if not predicates_file.is_file() or matrix_file is None:
        return None
    classes = read_numbered_names(meta_dir / "classes.txt", what="class file")
    predicates = read_numbered_names(predicates_file, what="predicate file")
    rows = []
    for n, line in enumerate(_read_text(matrix_file, "predicate matrix").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError as exc:
            raise DataError(f"{matrix_file}:{n}: not a row of numbers ({exc})") from exc
        if len(values) != len(predicates) or not all(np.isfinite(values)):
            raise DataError(
                f"{matrix_file}:{n}: {len(values)} values, expected {len(predicates)} finite "
                f"numbers (one per predicate of {predicates_file})"
            )
        rows.append(values)
    if len(rows) != len(classes):
        raise DataError(
            f"{matrix_file}: {len(rows)} rows, but {meta_dir / 'classes.txt'} lists "
            f"{len(classes)} classes (one row per class, in its order)"
        )
    matrix = np.clip(np.asarray(rows, dtype=np.float32), 0, None)  # AwA's -1: unknown
    return AttributeTable(list(classes), predicates, matrix)


def write_awa_attributes(meta_dir: Path, table: AttributeTable) -> None:
    """Write ``predicates.txt`` and ``predicate-matrix-continuous.txt`` as AwA2 lays them out
    (rows in ``table.classes`` order, which must be ``classes.txt``'s)."""
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / PREDICATES_FILE).write_text(
        "".join(f"{i}\t{p}\n" for i, p in enumerate(table.predicates, start=1)), encoding="utf-8"
    )
    (meta_dir / MATRIX_FILES[0]).write_text(
        "".join(" ".join(f"{v:.2f}" for v in row) + "\n" for row in table.matrix),
        encoding="utf-8",
    )


def store_attributes(
    table: AttributeTable, home: Path, *, make_current: bool = True
) -> VectorSource:
    """Keep ``table`` in the data home (a folder per content; an existing one is reused) and,
    with ``make_current``, make it what ``--vectors attributes`` means there.

    Returns:
        The source naming the stored table.
    """
    root = Path(home) / _FOLDER
    folder = root / table.digest()
    if not (folder / "matrix.npy").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".partial-"))
        try:
            (tmp / "classes.txt").write_text("\n".join(table.classes) + "\n", encoding="utf-8")
            (tmp / PREDICATES_FILE).write_text("\n".join(table.predicates) + "\n", encoding="utf-8")
            np.save(tmp / "matrix.npy", table.matrix.astype(np.float32))
            shutil.rmtree(folder, ignore_errors=True)  # a partial copy of an earlier crash
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    source = VectorSource(
        kind=ATTRIBUTES,
        path=str(folder.absolute()),
        origin=f"attributes ({len(table.predicates)} predicates, {table.digest()})",
    )
    if not make_current:
        return source
    current = root / _CURRENT
    tmp_file = current.with_suffix(".tmp")
    tmp_file.write_text(json.dumps(source.as_dict()), encoding="utf-8")
    os.replace(tmp_file, current)
    return source


def current_attributes(home: Path) -> VectorSource:
    """The attribute table last stored in ``home``.

    Raises:
        ConfigError: none was stored.
    """
    record = Path(home) / _FOLDER / _CURRENT
    if not record.is_file():
        raise ConfigError(
            f"no class attributes in the data home {home}: ingest an AwA2 folder whose "
            f"classes.txt has {PREDICATES_FILE} and {MATRIX_FILES[0]} (or "
            f"{MATRIX_FILES[1]}) beside it"
        )
    return VectorSource.from_dict(json.loads(record.read_text(encoding="utf-8")))


def load_table(folder: Path) -> AttributeTable:
    """A table stored by :func:`store_attributes`.

    Raises:
        ConfigError: the folder is missing or incomplete.
    """
    try:
        classes = (folder / "classes.txt").read_text(encoding="utf-8").split("\n")[:-1]
        predicates = (folder / PREDICATES_FILE).read_text(encoding="utf-8").split("\n")[:-1]
        matrix = np.load(folder / "matrix.npy")
    except OSError as exc:
        raise ConfigError(
            f"class attributes {folder} are missing or incomplete ({exc}); ingest the "
            "dataset with its predicate files again"
        ) from exc
    return AttributeTable(classes, predicates, matrix)


class AttributeVectors:
    """Label vectors from an :class:`AttributeTable` (a ``WordVectors`` with ``phrase``)."""

    def __init__(self, source: VectorSource, table: AttributeTable):
        self.source, self.table = source, table
        self.dim = len(table.predicates)
        self._rows = {_key(c): i for i, c in enumerate(table.classes)}
        self._columns = {_key(p): j for j, p in enumerate(table.predicates)}

    def vector(self, token: str) -> np.ndarray | None:
        """The row of the class named ``token``, or None."""
        row = self._rows.get(_key(token))
        return None if row is None else self.table.matrix[row]

    def phrase(self, text: str) -> np.ndarray:
        """Unit (dim,) vector of a class name (its row) or of predicate names (those set).

        Raises:
            DataError: ``text`` is neither; or the class has no attribute set.
        """
        key = _key(text)
        row = self._rows.get(key)
        if row is not None:
            vec = self.table.matrix[row].astype(np.float32)
        else:
            columns = [self._columns.get(t) for t in key.split("+") if t]
            if not columns or None in columns:
                raise DataError(
                    f"{text!r} is neither a class of {self.source.label} nor made of its "
                    f"predicates (such as {', '.join(self.table.predicates[:4])}); classes "
                    f"known: {', '.join(self.table.classes[:12])}"
                    f"{'...' if len(self.table.classes) > 12 else ''} (a new zero-shot class: "
                    "`classes add NAME --zero-shot --attributes ...`)"
                )
            vec = np.zeros(self.dim, np.float32)
            vec[[c for c in columns if c is not None]] = 1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0:
            raise DataError(f"class {text!r} has no attribute set in {self.source.label}")
        return vec / norm


def attribute_vectors(source: VectorSource) -> AttributeVectors:
    """Open a stored table (``open_vectors`` for the ``attributes`` kind)."""
    return AttributeVectors(source, load_table(Path(source.path)))


def parse_attribute_values(spec: str) -> dict[str, float]:
    """``"footwear=100,open=80,straps"`` -> predicate -> value (a bare name means 100, AwA's
    scale).

    Raises:
        ConfigError: an entry is empty or its value is not a number (a bad option value).
    """
    values: dict[str, float] = {}
    for entry in spec.split(","):
        name, sep, value = entry.strip().partition("=")
        if not name.strip():
            raise ConfigError(f"attributes {spec!r}: an entry names no predicate")
        try:
            values[name.strip()] = float(value) if sep else 100.0
        except ValueError as exc:
            raise ConfigError(f"attributes {spec!r}: {value!r} is not a number") from exc
    return values
