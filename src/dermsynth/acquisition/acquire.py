"""Get the real Fitzpatrick 17k images onto disk: download what still resolves, or import a folder or zip.

Why this module exists: the dataset ships as a metadata CSV with one URL per image, and by now most of
those URLs are dead. A study must know exactly which images it has, so every row ends with a status in
a report (``availability.csv``/``.md`` for a download, ``import.csv``/``.md`` for an import) instead of
a folder that is silently smaller than the metadata.

Both ways in write ``<images>/<md5hash>.jpg`` atomically (``files.write_bytes``), so a run killed at any
moment leaves no half file under a final name; on start they delete the temporary files a killed run
left behind, and they skip a file that is already present and decodes, so running again resumes.

The ``md5hash`` column is an identifier: the bytes served today need not hash to it. Whether they do is
recorded in ``md5_matches`` on every row that has bytes; only with ``verify_md5`` does a mismatch reject
the file (status ``md5_mismatch``).

Download statuses: ok, skipped, http_404, http_<code>, timeout, connection_error, not_an_image,
too_large, md5_mismatch, bad_scheme, no_url, plus bad_md5hash (an md5hash that is not 32 hex digits and
so cannot name a file) and error (anything unexpected; the detail names the row).
Import statuses: imported, skipped, unknown, corrupt, md5_mismatch, not_an_image_name, plus error.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from dermsynth.acquisition.http_get import HTTP_SCHEMES, fetch
from dermsynth.core import files, paths
from dermsynth.core.errors import DermsynthError

AVAILABLE = ("ok", "skipped")
IMPORTED = ("imported", "skipped")
MAX_IMPORT_BYTES = 100_000_000
REPORT_LISTED_FILES = 200

MD5HASH = re.compile(r"[0-9a-fA-F]{32}")
IMAGE_NAME = re.compile(r"(?P<md5>[0-9a-fA-F]{32})\.jpe?g", re.IGNORECASE)
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")  # files.atomic_path: .<name>.<random>.tmp

DOWNLOAD_COLUMNS = ["md5hash", "label", "fitzpatrick_scale", "url"]
IMPORT_COLUMNS = ["md5hash", "label", "fitzpatrick_scale"]
OUTCOME_COLUMNS = ["status", "detail", "bytes", "md5_matches"]


class AcquireError(DermsynthError):
    """The import source or the metadata cannot be used, or `dvc add` failed."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one row (download) or one file (import)."""

    status: str
    detail: str
    nbytes: int = 0
    md5_matches: bool | None = None
    attempts: int = 0


@dataclass(frozen=True)
class _Options:
    timeout: float
    retries: int
    backoff: float
    max_bytes: int
    verify_md5: bool


@dataclass(frozen=True)
class _Member:
    """One file of an import source: its name there and how to read its bytes."""

    name: str
    read: Callable[[], bytes]


# --- shared: files, decoding, md5 -------------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _decode(data: bytes) -> str:
    """Fully decode ``data`` as an image; return e.g. "JPEG 640x480" or raise BadImageError."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            return f"{image.format} {image.width}x{image.height}"
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise files.BadImageError(f"does not decode ({type(err).__name__}: {err})") from err


def _existing(target: Path, md5hash: str) -> tuple[Outcome | None, str]:
    """``skipped`` if ``target`` exists and decodes; else None and a note for the detail of the refetch."""
    if not target.is_file():
        return None, ""
    data = target.read_bytes()
    try:
        _decode(data)
    except files.BadImageError:
        return None, f"existing {target.name} did not decode; "
    matches = _md5(data) == md5hash.lower()
    detail = "already present and decodes" + ("" if matches else " (its md5 differs from md5hash)")
    return Outcome("skipped", detail, len(data), matches), ""


def _keep(md5hash: str, data: bytes, target: Path, verify: bool, *, ok: str, undecodable: str, where: str) -> Outcome:
    """Check that ``data`` decodes (and its md5 if asked), then write it atomically to ``target``."""
    digest = _md5(data)
    matches = digest == md5hash.lower()
    try:
        described = _decode(data)
    except files.BadImageError as err:
        return Outcome(undecodable, f"{where}: {err}; not kept", len(data), matches)
    if verify and not matches:
        detail = f"{where}: md5 of the bytes is {digest}, not {md5hash}; not kept"
        return Outcome("md5_mismatch", detail, len(data), False)
    files.write_bytes(target, data)
    return Outcome(ok, f"{where}: {described}", len(data), matches)


def _remove_stale_temps(folder: Path, is_ours: Callable[[str], bool]) -> int:
    """Delete ``.<name>.<random>.tmp`` files that files.atomic_path left in ``folder`` when a run was killed."""
    removed = 0
    for path in folder.glob(".*.tmp"):
        match = TEMP_NAME.fullmatch(path.name)
        if match and is_ours(match["name"]) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _is_image_name(name: str) -> bool:
    return IMAGE_NAME.fullmatch(name) is not None


def _metadata(metadata: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The needed columns, md5hash (and url) as stripped strings, one row per md5hash (the first)."""
    missing = [c for c in columns if c not in metadata.columns]
    if missing:
        raise AcquireError(f"metadata lacks required columns {missing} (it has {list(metadata.columns)})")
    frame = metadata[columns].copy()
    for column in ("md5hash", "url"):
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str).str.strip()
    return frame.drop_duplicates("md5hash", keep="first").reset_index(drop=True)


def _with_outcomes(frame: pd.DataFrame, outcomes: list[Outcome]) -> pd.DataFrame:
    result = frame.copy()
    result["status"] = [o.status for o in outcomes]
    result["detail"] = [o.detail for o in outcomes]
    result["bytes"] = pd.Series([o.nbytes for o in outcomes], index=result.index, dtype="int64")
    result["md5_matches"] = pd.Series([o.md5_matches for o in outcomes], index=result.index, dtype="boolean")
    return result


# --- download -----------------------------------------------------------------------------------------------------


def _download_row(md5hash: str, url: str, images: Path, opts: _Options) -> Outcome:
    if MD5HASH.fullmatch(md5hash) is None:
        return Outcome("bad_md5hash", f"{md5hash!r}: not 32 hex digits, cannot name a file ({url})")
    target = paths.image_file(images, md5hash)
    skipped, note = _existing(target, md5hash)
    if skipped is not None:
        return skipped
    if not url:
        return Outcome("no_url", f"{md5hash}: no url in the metadata")
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as err:  # e.g. "Invalid IPv6 URL"
        return Outcome("bad_url", f"{md5hash}: {url}: {err}")
    if scheme not in HTTP_SCHEMES:
        return Outcome("bad_scheme", f"{md5hash}: {url}: scheme {scheme!r} is not http or https")
    reply, attempts = fetch(url, opts.timeout, opts.max_bytes, opts.retries, opts.backoff)
    where = f"{note}{md5hash}: {url}"
    if reply.status:
        return Outcome(reply.status, f"{where}: {reply.detail}", attempts=attempts)
    if not reply.content_type.strip().lower().startswith("image/"):
        kind = reply.content_type or "no content type"
        return Outcome("not_an_image", f"{where}: served {kind}, not image/*", len(reply.body), None, attempts)
    outcome = _keep(md5hash, reply.body, target, opts.verify_md5, ok="ok", undecodable="not_an_image", where=where)
    return Outcome(outcome.status, outcome.detail, outcome.nbytes, outcome.md5_matches, attempts)


def _safe_download_row(md5hash: str, url: str, images: Path, opts: _Options) -> Outcome:
    """A file that cannot be read or written (permissions, a full disk) becomes status ``error`` for its row.

    Network failures and bad input are statuses already (http_get, the checks above); anything
    else is a bug in this code and surfaces with its traceback instead of hiding as a row.
    """
    try:
        return _download_row(md5hash, url, images, opts)
    except OSError as err:
        return Outcome("error", f"{md5hash}: {url}: {type(err).__name__}: {err}")


def _download_all(rows: pd.DataFrame, images: Path, opts: _Options, workers: int, progress: bool) -> list[Outcome]:
    outcomes: list[Outcome] = [Outcome("error", "not run")] * len(rows)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {
            pool.submit(_safe_download_row, md5hash, url, images, opts): i
            for i, (md5hash, url) in enumerate(zip(rows["md5hash"], rows["url"], strict=True))
        }
        available = 0
        with tqdm(total=len(futures), desc="download", unit="img", disable=not progress) as bar:
            for future in as_completed(futures):
                outcome = future.result()
                outcomes[futures[future]] = outcome
                available += outcome.status in AVAILABLE
                bar.set_postfix(available=available, refresh=False)
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: finish the requests in flight, start no more
    return outcomes


def download(
    metadata: pd.DataFrame,
    images: Path,
    reports: Path,
    *,
    workers: int = 8,
    timeout: float = 20.0,
    retries: int = 3,
    backoff: float = 0.5,
    max_bytes: int = 20_000_000,
    verify_md5: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Fetch every row's url into ``images/<md5hash>.jpg``; write reports/availability.{csv,md}.

    Resumable: a file already present that decodes is ``skipped`` without a request. ``retries`` is the
    number of tries after the first, on timeouts, connection errors, 429 and 5xx. Returns one row per
    md5hash (the first, if the metadata repeats one) with md5hash, label, fitzpatrick_scale, url, status,
    detail, bytes, md5_matches (NA where no bytes were checked) and attempts (requests made).
    """
    images, reports = Path(images), Path(reports)
    rows = _metadata(metadata, DOWNLOAD_COLUMNS)
    images.mkdir(parents=True, exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(images, _is_image_name)
    opts = _Options(timeout, max(0, retries), backoff, max_bytes, verify_md5)
    outcomes = _download_all(rows, images, opts, workers, progress)
    result = _with_outcomes(rows, outcomes)
    result["attempts"] = pd.Series([o.attempts for o in outcomes], index=result.index, dtype="int64")
    result = result[[*DOWNLOAD_COLUMNS, *OUTCOME_COLUMNS, "attempts"]]
    available = set(result.loc[result["status"].isin(AVAILABLE), "md5hash"])
    _write_reports(reports, "availability", result, _download_markdown(result, available, len(metadata)))
    return result


# --- import -------------------------------------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise ValueError(f"larger than {MAX_IMPORT_BYTES} bytes")
    return data


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as handle:  # reads (and CRC-checks) this member only
        data = handle.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise ValueError(f"larger than {MAX_IMPORT_BYTES} bytes")
    return data


@contextmanager
def _source_members(source: Path) -> Iterator[list[_Member]]:
    """The files of a folder (recursively) or the members of a zip, each read only when asked."""
    if not source.exists():
        raise AcquireError(f"{source}: import source not found (expected a folder or a .zip of <md5hash>.jpg files)")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        yield [_Member(p.relative_to(source).as_posix(), partial(_read_file, p)) for p in files]
        return
    if not zipfile.is_zipfile(source):
        raise AcquireError(f"{source}: import source is neither a folder nor a zip archive")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as err:
        raise AcquireError(f"{source}: cannot open the zip archive ({err})") from err
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        yield [_Member(info.filename, partial(_read_zip_member, archive, info)) for info in infos]


def _import_member(member: _Member, known: dict[str, str], images: Path, verify_md5: bool) -> tuple[str, Outcome]:
    """(md5hash or "", outcome) for one source file."""
    match = IMAGE_NAME.fullmatch(PurePosixPath(member.name).name)
    if match is None:
        return "", Outcome("not_an_image_name", f"{member.name}: not named <md5hash>.jpg; ignored")
    md5hash = known.get(match["md5"].lower())
    if md5hash is None:
        return match["md5"], Outcome("unknown", f"{member.name}: {match['md5']} is not in the metadata; not imported")
    target = paths.image_file(images, md5hash)
    skipped, note = _existing(target, md5hash)
    if skipped is not None:
        return md5hash, skipped
    try:
        data = member.read()
    except Exception as err:  # zip: BadZipFile (CRC), zlib.error, EOFError, NotImplementedError, RuntimeError...
        return md5hash, Outcome("corrupt", f"{member.name}: cannot read ({type(err).__name__}: {err}); not imported")
    where = f"{note}{member.name}"
    return md5hash, _keep(md5hash, data, target, verify_md5, ok="imported", undecodable="corrupt", where=where)


def _safe_import_member(member: _Member, known: dict[str, str], images: Path, verify_md5: bool) -> tuple[str, Outcome]:
    """A file that cannot be read or written becomes status ``error`` for its member; a bug surfaces."""
    try:
        return _import_member(member, known, images, verify_md5)
    except OSError as err:
        return "", Outcome("error", f"{member.name}: {type(err).__name__}: {err}")


def import_images(
    source: Path,
    metadata: pd.DataFrame,
    images: Path,
    reports: Path,
    *,
    verify_md5: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Import ``<md5hash>.jpg`` files from a folder or zip into ``images/``; write reports/import.{csv,md}.

    Returns one row per source file: md5hash, label, fitzpatrick_scale, file, status, detail, bytes,
    md5_matches. Unknown names and files that do not decode are reported, never imported.
    """
    source, images, reports = Path(source), Path(images), Path(reports)
    rows = _metadata(metadata, IMPORT_COLUMNS)
    known = {m.lower(): m for m in rows["md5hash"] if MD5HASH.fullmatch(m)}
    with _source_members(source) as members:
        images.mkdir(parents=True, exist_ok=True)
        reports.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(images, _is_image_name)
        results = [
            _safe_import_member(member, known, images, verify_md5)
            for member in tqdm(members, desc="import", unit="file", disable=not progress)
        ]
    files = pd.DataFrame({"md5hash": [md5 for md5, _ in results], "file": [m.name for m in members]})
    labels = rows.astype({"label": object, "fitzpatrick_scale": object})  # stay 4, not 4.0, beside unknown files
    labelled = files.merge(labels, on="md5hash", how="left")[[*IMPORT_COLUMNS, "file"]]
    result = _with_outcomes(labelled, [outcome for _, outcome in results])
    present = {m for m in known.values() if paths.image_file(images, m).is_file()}
    _write_reports(reports, "import", result, _import_markdown(result, rows, present, source))
    return result


# --- reports ------------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _status_counts(result: pd.DataFrame) -> list[str]:
    counts = result["status"].value_counts().sort_index()
    return _table(["status", "count"], counts.items())


def _availability(rows: pd.DataFrame, available: set[str]) -> list[str]:
    """Available vs total per label x fitzpatrick_scale."""
    frame = rows[["md5hash", "label", "fitzpatrick_scale"]].copy()
    frame["available"] = frame["md5hash"].isin(available).astype(int)
    frame["label"] = frame["label"].astype(str)
    frame["fitzpatrick_scale"] = frame["fitzpatrick_scale"].astype(str)
    grouped = frame.groupby(["label", "fitzpatrick_scale"], sort=True)["available"].agg(["sum", "size"])
    body = [(r.label, r.fitzpatrick_scale, int(r.sum), int(r.size)) for r in grouped.reset_index().itertuples()]
    return _table(["label", "fitzpatrick_scale", "available", "total"], body)


def _md5_line(result: pd.DataFrame) -> str:
    checked = result["md5_matches"].dropna()
    return f"md5 of the bytes equals md5hash for {int(checked.sum())} of {len(checked)} files with bytes checked."


def _download_markdown(result: pd.DataFrame, available: set[str], metadata_rows: int) -> str:
    lines = [
        "# Image availability (download)",
        "",
        f"{len(available)} of {len(result)} images available (ok or skipped); "
        f"{metadata_rows} metadata rows, {len(result)} distinct md5hash.",
        _md5_line(result),
        "",
        "## Rows per status",
        "",
        *_status_counts(result),
        "",
        "## Available per label and Fitzpatrick type",
        "",
        *_availability(result, available),
    ]
    return "\n".join(lines) + "\n"


def _import_markdown(result: pd.DataFrame, rows: pd.DataFrame, present: set[str], source: Path) -> str:
    rejected = result[result["status"].isin(["unknown", "corrupt", "md5_mismatch", "error"])]
    listed = [(row.file, row.status, row.detail) for row in rejected.head(REPORT_LISTED_FILES).itertuples()]
    lines = [
        "# Image import",
        "",
        f"Source: `{source}`, {len(result)} files; "
        f"{int(result['status'].isin(IMPORTED).sum())} imported or already present.",
        _md5_line(result),
        "",
        "## Files per status",
        "",
        *_status_counts(result),
        "",
        "## Files not imported (unknown, corrupt, md5_mismatch, error)",
        "",
        *(_table(["file", "status", "detail"], listed) if listed else ["None."]),
    ]
    if len(rejected) > REPORT_LISTED_FILES:
        lines += ["", f"... and {len(rejected) - REPORT_LISTED_FILES} more (see import.csv)."]
    lines += ["", "## Present in images/ per label and Fitzpatrick type", "", *_availability(rows, present)]
    return "\n".join(lines) + "\n"


def _write_reports(reports: Path, stem: str, frame: pd.DataFrame, markdown: str) -> None:
    names = {f"{stem}.csv", f"{stem}.md"}
    _remove_stale_temps(reports, names.__contains__)
    files.write_csv(reports / f"{stem}.csv", frame)
    files.write_text(reports / f"{stem}.md", markdown)


# --- versioning ---------------------------------------------------------------------------------------------------


def versioning_hint(images_root: Path) -> str:
    """What to run so the acquired images are versioned (data/ is tracked as a whole by data.dvc)."""
    text = (
        f"Images are in {images_root}. Version them with DVC, from the repository root,\n"
        "so that every run and every collaborator uses the same files:\n"
        "  dvc add data\n"
        "  git add data.dvc\n"
        "  dvc push\n"
    )
    if "data" not in Path(images_root).parts:
        text += f"Note: {images_root} is not inside data/, which is the folder data.dvc tracks.\n"
    return text


def dvc_add(root: Path) -> None:
    """Run ``dvc add data`` in ``root`` (the repository root); raise AcquireError with dvc's stderr on failure."""
    root = Path(root)
    if not (root / "data").is_dir():
        raise AcquireError(f"{root / 'data'}: no data folder to version")
    command = [sys.executable, "-m", "dvc", "add", "data"]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    except OSError as err:
        raise AcquireError(f"cannot run `dvc add data` in {root}: {err}") from err
    if done.returncode != 0:
        message = done.stderr.strip() or done.stdout.strip()
        raise AcquireError(f"`dvc add data` failed in {root} (exit {done.returncode}): {message}")
