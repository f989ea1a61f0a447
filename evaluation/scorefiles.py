"""Score files (CSV) of the verification, retrieval, triplet and SSR/PA protocols, read and
checked: every error names the file, the row and the column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

EXTRA = "\0extra"  # where csv puts the values of a row longer than the header


def read_csv(path: Path, columns: list[str]) -> list[dict]:
    """Rows of a score CSV, each checked to be complete; errors name the file, row and column."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a CSV file with columns {', '.join(columns)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a BOM is not part of the header
            reader = csv.DictReader(f, restkey=EXTRA)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise ValueError(f"score file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV ({error})") from None
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: the header repeats a column ({', '.join(header)})")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(header) or 'no header'})")
    if not rows:
        raise ValueError(f"{path}: no rows")
    for number, row in enumerate(rows, 2):
        if EXTRA in row:
            raise ValueError(f"{path}, row {number}: {len(header) + len(row[EXTRA])} values for "
                             f"{len(header)} columns")
        if any(row[c] is None for c in header):
            given = sum(row[c] is not None for c in header)
            raise ValueError(f"{path}, row {number}: {given} values for {len(header)} columns")
    return rows


def numbers(rows: list[dict], column: str, path: Path) -> np.ndarray:
    values = []
    for number, row in enumerate(rows, 2):
        text = row[column].strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{path}, row {number}, column {column!r}: {text!r} is not a number") from None
        if not np.isfinite(value):
            raise ValueError(f"{path}, row {number}, column {column!r}: {text!r} is not a finite number")
        values.append(value)
    return np.array(values)


def labels(rows: list[dict], path: Path) -> np.ndarray:
    for number, row in enumerate(rows, 2):
        if row["label"].strip() not in ("0", "1"):
            raise ValueError(f"{path}, row {number}, column 'label': {row['label']!r} is not 0 (different) or "
                             "1 (same)")
    return np.array([int(r["label"]) for r in rows])


def unique_ids(rows: list[dict], item: str, column: str, path: Path) -> dict[str, str]:
    """item name → its instance id; one item with two ids is an error naming both rows."""
    ids, first = {}, {}
    for number, row in enumerate(rows, 2):
        name, value = row[item], row[column]
        if name in ids and ids[name] != value:
            raise ValueError(f"{path}: {item} {name!r} has {column} {ids[name]!r} in row {first[name]} and "
                             f"{value!r} in row {number}")
        ids.setdefault(name, value)
        first.setdefault(name, number)
    return ids


def retrieval_matrix(rows: list[dict], path: Path) -> tuple[np.ndarray, list[str], list[str], list[str], list[str]]:
    scores = numbers(rows, "score", path)
    query_ids, gallery_ids = unique_ids(rows, "query", "query_id", path), unique_ids(rows, "gallery", "gallery_id", path)
    queries, gallery = list(query_ids), list(gallery_ids)
    qi, gi = {q: i for i, q in enumerate(queries)}, {g: i for i, g in enumerate(gallery)}
    matrix = np.full((len(queries), len(gallery)), np.nan)
    seen = {}
    for number, (row, score) in enumerate(zip(rows, scores), 2):
        pair = (row["query"], row["gallery"])
        if pair in seen:
            raise ValueError(f"{path}: query {pair[0]!r} and gallery {pair[1]!r} are scored twice "
                             f"(rows {seen[pair]} and {number})")
        seen[pair] = number
        matrix[qi[pair[0]], gi[pair[1]]] = score
    if np.isnan(matrix).any():
        q, g = np.argwhere(np.isnan(matrix))[0]
        raise ValueError(f"{path}: no score for query {queries[q]!r} and gallery {gallery[g]!r} "
                         f"({int(np.isnan(matrix).sum())} pairs missing)")
    instances = set(gallery_ids.values())
    lonely = [q for q in queries if query_ids[q] not in instances]
    if lonely:
        raise ValueError(f"{path}: {len(lonely)} queries have no gallery item of their instance, first "
                         f"{lonely[0]!r} (query_id {query_ids[lonely[0]]!r})")
    return matrix, queries, gallery, [query_ids[q] for q in queries], [gallery_ids[g] for g in gallery]
