"""A static HTML contact sheet for reviewing synthetic candidates: each seed beside its candidates.

A clinician opens one file in any browser, with no server and no access to the repository:
thumbnails are embedded as data URIs, and each candidate shows its scores and whether the
automatic ranking (or the reviewer's decision) keeps it. The file names shown are the ones
to write into the decisions CSV.
"""

from __future__ import annotations

import base64
import html
import io as _io
from pathlib import Path

import pandas as pd

from dermsynth.core import files

THUMB = 160
STYLE = (
    "body{font-family:sans-serif;margin:1em} table{border-collapse:collapse} "
    "td{vertical-align:top;padding:4px;border-bottom:1px solid #ccc;font-size:11px} "
    f"img{{display:block;width:{THUMB}px;height:{THUMB}px;object-fit:contain}} "
    ".keep{outline:3px solid #2a2} .reject{outline:3px solid #c22;opacity:.6} .seed{background:#eef}"
)


def thumbnail(path: Path) -> str:
    """A PNG data URI of the image, at most THUMB pixels on its longer side."""
    image = files.load_rgb(path)
    image.thumbnail((THUMB, THUMB))
    buf = _io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def candidate_cell(row: pd.Series, folder: Path) -> str:
    state = "keep" if row["selected"] else ("reject" if str(row.get("decision", "")).startswith("reject") else "")
    to_seed = row.get("distance_to_seed")
    caption = (
        f"{html.escape(row['file'])}<br>score {row['score']:.2f} | ITA {row['ita']:.0f} "
        f"{'in' if row['in_band'] else 'OUT of'} band<br>test pHash dist {row['nearest_test_phash']}"
        + (f" | to seed {to_seed:.3f}" if to_seed is not None and to_seed == to_seed else "")
        + f"<br>{html.escape(str(row.get('decision', '')))}"
    )
    return (
        f'<td><img class="{state}" src="{thumbnail(folder / row["file"])}" alt="{html.escape(row["file"])}">'
        f"{caption}</td>"
    )


def render(scored: pd.DataFrame, seed_images: Path, candidates: Path, title: str) -> str:
    rows = []
    for seed_md5, block in scored.groupby("seed_md5hash", sort=True):
        first = block.iloc[0]
        seed = (
            f'<td class="seed"><img src="{thumbnail(seed_images / f"{seed_md5}.jpg")}" alt="seed {seed_md5}">'
            f"seed {seed_md5[:10]}<br>{html.escape(first['label'])}, {first['seed_group']}<br>"
            f"{html.escape(str(first.get('prompt', '')))}</td>"
        )
        cells = "".join(candidate_cell(row, candidates) for _, row in block.sort_values("candidate").iterrows())
        rows.append(f"<tr>{seed}{cells}</tr>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(scored)} candidates from {scored['seed_md5hash'].nunique()} seeds. Green: kept; red: rejected. "
        "Record decisions (accept/reject/note) per file name in the decisions CSV.</p>"
        f"<table>{''.join(rows)}</table></body></html>"
    )
