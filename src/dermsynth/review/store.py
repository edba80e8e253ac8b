"""The reader study's SQLite store: the planned images, the readers with their orders, the answers.

Every write is one transaction (committed whole or not at all), so a reader's session killed
mid-answer loses at most the answer being sent, and resumes at the first unanswered image.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.core.errors import DermsynthError

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('real', 'synthetic')),
    label TEXT NOT NULL, fst_group TEXT NOT NULL, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS readers (name TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS orders (
    reader TEXT NOT NULL REFERENCES readers(name), position INTEGER NOT NULL,
    item INTEGER NOT NULL REFERENCES items(item), PRIMARY KEY (reader, position));
CREATE TABLE IF NOT EXISTS answers (
    reader TEXT NOT NULL REFERENCES readers(name), item INTEGER NOT NULL REFERENCES items(item),
    judged_real INTEGER NOT NULL CHECK (judged_real IN (0, 1)),
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
    condition TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', answered_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (reader, item));
"""


class ReviewError(DermsynthError, ValueError):
    """A request the study cannot take (unknown reader, an answer out of range, no plan)."""


@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place; the block is one transaction."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")  # readers (a report, an export) never block a reader's answer
        conn.executescript(SCHEMA)
        with conn:
            yield conn
    finally:
        conn.close()


def add_items(db: Path, items: pd.DataFrame) -> int:
    """Store the planned images (columns path, kind, label, fst_group, key); a planned study is never re-drawn."""
    with connect(db) as conn:
        if conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]:
            raise ReviewError(f"{db} already holds a planned study; use another review.db for a new one")
        conn.executemany(
            "INSERT INTO items (path, kind, label, fst_group, key) VALUES (?, ?, ?, ?, ?)",
            items[["path", "kind", "label", "fst_group", "key"]].itertuples(index=False),
        )
        return len(items)


def add_reader(db: Path, name: str, seed: int) -> str:
    """A new reader's token; their order of the images is a permutation drawn from (seed, name)."""
    with connect(db) as conn:
        items = [row[0] for row in conn.execute("SELECT item FROM items ORDER BY item")]
        if not items:
            raise ReviewError("no planned study yet: run `dermsynth review plan` first")
        if conn.execute("SELECT 1 FROM readers WHERE name = ?", (name,)).fetchone():
            raise ReviewError(f"reader {name!r} exists already (their link is in `dermsynth review readers`)")
        token = secrets.token_urlsafe(16)
        conn.execute("INSERT INTO readers VALUES (?, ?)", (name, token))
        rng = np.random.default_rng([seed, *name.encode()])
        order = rng.permutation(items)
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(name, i, int(item)) for i, item in enumerate(order)])
        return token


def readers(db: Path) -> list[tuple[str, str]]:
    with connect(db) as conn:
        return list(conn.execute("SELECT name, token FROM readers ORDER BY name"))


def reader_of(conn: sqlite3.Connection, token: str) -> str:
    row = conn.execute("SELECT name FROM readers WHERE token = ?", (token,)).fetchone()
    if row is None:
        raise ReviewError("unknown reader link")
    return row[0]


def next_position(db: Path, token: str) -> tuple[str, int | None, int]:
    """The reader's name, the first position without an answer (None: finished) and the number of images."""
    with connect(db) as conn:
        name = reader_of(conn, token)
        total = conn.execute("SELECT COUNT(*) FROM orders WHERE reader = ?", (name,)).fetchone()[0]
        row = conn.execute(
            "SELECT MIN(o.position) FROM orders o LEFT JOIN answers a ON a.reader = o.reader AND a.item = o.item "
            "WHERE o.reader = ? AND a.item IS NULL",
            (name,),
        ).fetchone()
        return name, row[0], total


def item_at(db: Path, token: str, position: int) -> dict:
    """The planned image at a reader's position (for the server only: never sent to the browser)."""
    with connect(db) as conn:
        name = reader_of(conn, token)
        row = conn.execute(
            "SELECT i.item, i.path, i.kind, i.label FROM orders o JOIN items i ON i.item = o.item "
            "WHERE o.reader = ? AND o.position = ?",
            (name, position),
        ).fetchone()
        if row is None:
            raise ReviewError(f"no image at position {position}")
        return dict(zip(("item", "path", "kind", "label"), row, strict=True))


def answer(db: Path, token: str, position: int, judged_real: bool, confidence: int, condition: str, note: str) -> None:
    """Record (or replace) the reader's answer for the image at ``position``, in one transaction."""
    if not 1 <= confidence <= 5:
        raise ReviewError(f"confidence must be 1-5, got {confidence}")
    item = item_at(db, token, position)["item"]
    with connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO answers (reader, item, judged_real, confidence, condition, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (reader_of(conn, token), item, int(judged_real), confidence, condition, note.strip()[:2000]),
        )


def answers(db: Path) -> pd.DataFrame:
    """Every answer with its image's truth (kind, label, fst_group) and the reader's verdict and condition."""
    with connect(db) as conn:
        return pd.read_sql_query(
            "SELECT a.reader, a.item, i.key, i.kind, i.label, i.fst_group, a.judged_real, a.confidence, a.condition, "
            "a.note, a.answered_at FROM answers a JOIN items i ON i.item = a.item ORDER BY a.reader, a.item",
            conn,
        )
