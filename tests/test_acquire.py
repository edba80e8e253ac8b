"""dermsynth.acquisition.acquire against a loopback HTTP server and real folders/zips: statuses, resume, kill safety."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.acquisition import acquire
from dermsynth.core import files

TIMEOUT = 1.0  # client timeout in these tests; the slow route sleeps well past it
FAST = {"timeout": TIMEOUT, "retries": 1, "backoff": 0.01, "progress": False}


def jpeg(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def fake_md5(name: str) -> str:
    """A made-up 32-hex md5hash (the md5 of the name, never of any served bytes)."""
    return hashlib.md5(f"fake:{name}".encode()).hexdigest()


def real_md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def decodes(path: Path) -> bool:
    try:
        files.load_rgb(path)
    except files.BadImageError:
        return False
    return True


def final_files(images: Path) -> set[str]:
    return {p.name for p in images.iterdir() if not p.name.startswith(".")}


def temp_files(images: Path) -> list[str]:
    return [p.name for p in images.iterdir() if p.name.endswith(".tmp")]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "image/jpeg"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    send_length: bool = True


@dataclass
class ServerState:
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # added to every reply


class Handler(BaseHTTPRequestHandler):
    """Serves the n-th reply of a route on its n-th request (the last one from then on); counts requests."""

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        with state.lock:
            seen = state.hits[self.path]
            state.hits[self.path] += 1
        replies = state.routes.get(self.path) or [Reply(404, b"not found", "text/plain")]
        reply = replies[min(seen, len(replies) - 1)]
        time.sleep(reply.delay + state.delay)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.send_length:
                self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test) or was killed (kill test)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.state: ServerState = httpd.state  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, *replies: Reply) -> str:
        self.state.routes[path] = list(replies)
        return self.url(path)

    def reset_hits(self) -> None:
        with self.state.lock:
            self.state.hits.clear()

    def hits(self) -> Counter:
        with self.state.lock:
            return Counter(self.state.hits)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("no_proxy", "*")  # never send loopback requests through a proxy from the environment
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.jpg"


def metadata(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["md5hash", "label", "fitzpatrick_scale", "url"])


def status_of(result: pd.DataFrame) -> dict[str, str]:
    return dict(zip(result["md5hash"], result["status"], strict=True))


# --- download -----------------------------------------------------------------------------------------------------


def test_download_statuses_reports_and_resume(server: Server, tmp_path: Path) -> None:
    images, reports = tmp_path / "data" / "images", tmp_path / "reports"
    good = {f"good{i}": jpeg(i) for i in range(3)}
    flaky, throttled, truncated = jpeg(10), jpeg(11), jpeg(12)
    big = b"\xff" * 100_000
    spec = {  # name -> (url, label, fst, expected status, expected attempts)
        **{n: (server.route(f"/{n}.jpg", Reply(body=b)), "psoriasis", 1, "ok", 1) for n, b in good.items()},
        "missing": (server.url("/missing.jpg"), "psoriasis", 1, "http_404", 1),
        "forbidden": (server.route("/forbidden.jpg", Reply(403, b"no")), "psoriasis", 2, "http_403", 1),
        "broken": (server.route("/broken.jpg", Reply(503, b"down")), "psoriasis", 2, "http_503", 2),
        "slow": (server.route("/slow.jpg", Reply(body=jpeg(13), delay=3 * TIMEOUT)), "eczema", 5, "timeout", 2),
        "html": (server.route("/page.html", Reply(body=b"<html></html>", content_type="text/html")), "eczema", 5,
                 "not_an_image", 1),
        "truncated": (server.route("/cut.jpg", Reply(body=truncated[: len(truncated) // 2])), "eczema", 5,
                      "not_an_image", 1),
        "flaky": (server.route("/flaky.jpg", Reply(500, b"oops"), Reply(body=flaky)), "eczema", 6, "ok", 2),
        "throttled": (server.route("/throttled.jpg", Reply(429, b"", headers=(("Retry-After", "0"),)),
                                   Reply(body=throttled)), "eczema", 6, "ok", 2),
        "big": (server.route("/big.jpg", Reply(body=big)), "eczema", 6, "too_large", 1),
        "big_unsized": (server.route("/big2.jpg", Reply(body=big, send_length=False)), "eczema", 6, "too_large", 1),
        "refused": (closed_port_url(), "eczema", 6, "connection_error", 2),
        "ftp": ("ftp://example.org/x.jpg", "eczema", 6, "bad_scheme", 0),
        "no_url": ("", "eczema", 6, "no_url", 0),
    }  # fmt: skip
    md5 = {name: fake_md5(name) for name in spec}
    meta = metadata([(md5[n], label, fst, url) for n, (url, label, fst, _, _) in spec.items()])

    result = acquire.download(meta, images, reports, workers=4, max_bytes=50_000, **FAST)

    assert list(result.columns) == [
        "md5hash", "label", "fitzpatrick_scale", "url", "status", "detail", "bytes", "md5_matches", "attempts",
    ]  # fmt: skip
    assert status_of(result) == {md5[n]: s[3] for n, s in spec.items()}
    assert dict(zip(result["md5hash"], result["attempts"], strict=True)) == {md5[n]: s[4] for n, s in spec.items()}
    by_name = result.set_index("md5hash")
    assert "does not decode" in by_name.loc[md5["truncated"], "detail"]
    assert "text/html" in by_name.loc[md5["html"], "detail"]
    assert "Content-Length" in by_name.loc[md5["big"], "detail"]
    assert "stopped reading" in by_name.loc[md5["big_unsized"], "detail"]
    assert md5["missing"] in by_name.loc[md5["missing"], "detail"]
    assert "/missing.jpg" in by_name.loc[md5["missing"], "detail"]
    kept = {"good0": good["good0"], "good1": good["good1"], "good2": good["good2"], "flaky": flaky}
    kept["throttled"] = throttled
    assert final_files(images) == {f"{md5[n]}.jpg" for n in kept}
    for name, data in kept.items():
        assert (images / f"{md5[name]}.jpg").read_bytes() == data
        assert by_name.loc[md5[name], "bytes"] == len(data)
        assert not by_name.loc[md5[name], "md5_matches"]  # made-up md5hash values, verify_md5 off
    assert temp_files(images) == []

    counts = {"ok": 5, "http_404": 1, "http_403": 1, "http_503": 1, "timeout": 1, "not_an_image": 2}
    counts |= {"too_large": 2, "connection_error": 1, "bad_scheme": 1, "no_url": 1}
    on_disk = pd.read_csv(reports / "availability.csv", dtype=str, keep_default_na=False)
    assert on_disk["status"].value_counts().to_dict() == counts
    markdown = (reports / "availability.md").read_text()
    assert "5 of 16 images available" in markdown
    assert "| ok | 5 |" in markdown
    assert "| too_large | 2 |" in markdown
    assert "| psoriasis | 1 | 3 | 4 |" in markdown  # good0-2 of good0-2 + missing
    assert "| psoriasis | 2 | 0 | 2 |" in markdown
    assert "| eczema | 5 | 0 | 3 |" in markdown
    assert "| eczema | 6 | 2 | 7 |" in markdown

    # Second run: one kept file was damaged meanwhile and a killed run left a temp file behind.
    (images / f"{md5['good1']}.jpg").write_bytes(good["good1"][:100])
    stale = images / f".{md5['good0']}.jpg.k1ll3d_x.tmp"
    stale.write_bytes(b"half")
    server.reset_hits()
    again = acquire.download(meta, images, reports, workers=4, max_bytes=50_000, **FAST)

    hits = server.hits()
    assert all(hits[f"/{n}.jpg"] == 0 for n in ("good0", "good2", "flaky", "throttled"))
    assert hits["/good1.jpg"] == 1
    expected = {md5[n]: s[3] for n, s in spec.items()} | {md5[n]: "skipped" for n in ("good0", "good2", "flaky")}
    expected[md5["throttled"]] = "skipped"
    assert status_of(again) == expected
    assert again.set_index("md5hash").loc[md5["good0"], "attempts"] == 0
    assert not stale.exists()
    assert final_files(images) == {f"{md5[n]}.jpg" for n in kept}
    assert all(decodes(images / f"{md5[n]}.jpg") for n in kept)
    markdown = (reports / "availability.md").read_text()
    assert "| skipped | 4 |" in markdown
    assert "| ok | 1 |" in markdown


def test_md5_is_recorded_and_verified_only_when_asked(server: Server, tmp_path: Path) -> None:
    body = jpeg(20)
    url = server.route("/a.jpg", Reply(body=body))
    wrong, right = fake_md5("a"), real_md5(body)
    meta = metadata([(wrong, "psoriasis", 1, url), (right, "psoriasis", 1, url)])

    verified = acquire.download(meta, tmp_path / "v" / "images", tmp_path / "v" / "reports", verify_md5=True, **FAST)
    assert status_of(verified) == {wrong: "md5_mismatch", right: "ok"}
    assert verified["md5_matches"].tolist() == [False, True]
    assert final_files(tmp_path / "v" / "images") == {f"{right}.jpg"}

    recorded = acquire.download(meta, tmp_path / "r" / "images", tmp_path / "r" / "reports", **FAST)
    assert status_of(recorded) == {wrong: "ok", right: "ok"}
    assert recorded["md5_matches"].tolist() == [False, True]
    assert final_files(tmp_path / "r" / "images") == {f"{wrong}.jpg", f"{right}.jpg"}
    on_disk = pd.read_csv(tmp_path / "r" / "reports" / "availability.csv")
    assert on_disk["md5_matches"].tolist() == [False, True]


def test_download_needs_the_metadata_columns(tmp_path: Path) -> None:
    with pytest.raises(acquire.AcquireError, match="url"):
        acquire.download(pd.DataFrame({"md5hash": [], "label": [], "fitzpatrick_scale": []}), tmp_path, tmp_path)


KILL_SCRIPT = """
import sys
from pathlib import Path
import pandas as pd
from dermsynth.acquisition import acquire
meta = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
acquire.download(meta, Path(sys.argv[2]), Path(sys.argv[3]), workers=2, timeout=10, progress=False)
"""


def test_kill_and_resume(server: Server, tmp_path: Path) -> None:
    images, reports = tmp_path / "images", tmp_path / "reports"
    bodies = {fake_md5(f"k{i}"): jpeg(100 + i, size=48) for i in range(20)}
    meta = metadata([(m, "psoriasis", 3, server.route(f"/{m}.jpg", Reply(body=b))) for m, b in bodies.items()])
    csv = tmp_path / "meta.csv"
    meta.to_csv(csv, index=False)
    server.state.delay = 0.2

    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(csv), str(images), str(reports)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (images.is_dir() and len(final_files(images)) >= 4):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the download child stopped early or stalled: {child.communicate()[1].decode()}")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    present = {name.removesuffix(".jpg") for name in final_files(images)}
    assert 4 <= len(present) < len(bodies)
    assert all((images / f"{m}.jpg").read_bytes() == bodies[m] for m in present)  # never a half file
    missing = set(bodies) - present
    (images / f".{min(missing)}.jpg.a1b2c3d4.tmp").write_bytes(bodies[min(missing)][:50])  # as if killed mid-write
    server.reset_hits()

    result = acquire.download(meta, images, reports, workers=4, timeout=10, progress=False)

    assert server.hits() == Counter({f"/{m}.jpg": 1 for m in missing})
    assert status_of(result) == {m: "skipped" if m in present else "ok" for m in bodies}
    assert final_files(images) == {f"{m}.jpg" for m in bodies}
    assert temp_files(images) == []
    assert all((images / f"{m}.jpg").read_bytes() == b and decodes(images / f"{m}.jpg") for m, b in bodies.items())


# --- import -------------------------------------------------------------------------------------------------------


@dataclass
class Source:
    meta: pd.DataFrame
    good: dict[str, bytes]  # md5hash -> bytes expected in images/
    expected: dict[str, str]  # file name in the source -> status


def make_source(tmp_path: Path, kind: str) -> tuple[Path, Source]:
    """A folder or zip with good files (.jpg, .JPG, .jpeg, one in a subfolder), an unknown md5, odd names, a
    truncated JPEG and, in the zip, a member whose stored bytes fail the CRC check."""
    md5 = {name: fake_md5(name) for name in ("g0", "g1", "g2", "cut", "crc", "stranger")}
    good = {md5["g0"]: jpeg(30), md5["g1"]: jpeg(31), md5["g2"]: jpeg(32)}
    files = {
        f"{md5['g0']}.jpg": good[md5["g0"]],
        f"sub/{md5['g1'].upper()}.JPG": good[md5["g1"]],
        f"sub/deeper/{md5['g2']}.jpeg": good[md5["g2"]],
        f"{md5['stranger']}.jpg": jpeg(33),
        "IMG_0001.jpg": jpeg(34),
        "README.txt": b"images from the maintainers\n",
        f"{md5['cut']}.jpg": jpeg(35)[:200],
    }
    expected = {
        f"{md5['g0']}.jpg": "imported",
        f"sub/{md5['g1'].upper()}.JPG": "imported",
        f"sub/deeper/{md5['g2']}.jpeg": "imported",
        f"{md5['stranger']}.jpg": "unknown",
        "IMG_0001.jpg": "not_an_image_name",
        "README.txt": "not_an_image_name",
        f"{md5['cut']}.jpg": "corrupt",
    }
    meta = metadata([(md5[n], "psoriasis", 4, "") for n in ("g0", "g1", "g2", "cut", "crc")])
    if kind == "folder":
        source = tmp_path / "source"
        for name, data in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        return source, Source(meta, good, expected)
    source = tmp_path / "source.zip"
    crc_body = jpeg(36)
    with zipfile.ZipFile(source, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(f"{md5['crc']}.jpg", crc_body, compress_type=zipfile.ZIP_STORED)
    raw = bytearray(source.read_bytes())
    at = raw.find(crc_body) + len(crc_body) // 2
    raw[at] ^= 0xFF
    source.write_bytes(bytes(raw))
    return source, Source(meta, good, expected | {f"{md5['crc']}.jpg": "corrupt"})


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_import_folder_or_zip(tmp_path: Path, kind: str) -> None:
    source, spec = make_source(tmp_path, kind)
    images, reports = tmp_path / "images", tmp_path / "reports"

    result = acquire.import_images(source, spec.meta, images, reports, progress=False)

    assert dict(zip(result["file"], result["status"], strict=True)) == spec.expected
    assert final_files(images) == {f"{m}.jpg" for m in spec.good}
    assert all((images / f"{m}.jpg").read_bytes() == b for m, b in spec.good.items())
    assert temp_files(images) == []
    imported = result[result["status"] == "imported"]
    assert imported["label"].tolist() == ["psoriasis"] * 3
    assert imported["fitzpatrick_scale"].tolist() == [4] * 3
    assert imported["md5_matches"].tolist() == [False] * 3
    if kind == "zip":
        crc_row = result[result["file"].str.startswith(fake_md5("crc"))]
        assert "CRC" in crc_row["detail"].item()
    n_corrupt = 2 if kind == "zip" else 1
    on_disk = pd.read_csv(reports / "import.csv", dtype=str, keep_default_na=False)
    assert on_disk.loc[on_disk["status"] == "imported", "fitzpatrick_scale"].tolist() == ["4"] * 3
    assert on_disk["status"].value_counts().to_dict() == {
        "imported": 3, "not_an_image_name": 2, "unknown": 1, "corrupt": n_corrupt,
    }  # fmt: skip
    markdown = (reports / "import.md").read_text()
    assert f"{fake_md5('stranger')}.jpg | unknown" in markdown
    assert f"{fake_md5('cut')}.jpg | corrupt" in markdown
    assert "| psoriasis | 4 | 3 | 5 |" in markdown

    stale = images / f".{min(spec.good)}.jpg.zz9_kill.tmp"  # left by a killed import
    stale.write_bytes(b"half")
    again = acquire.import_images(source, spec.meta, images, reports, progress=False)
    assert not stale.exists()
    rerun = {name: "skipped" if status == "imported" else status for name, status in spec.expected.items()}
    assert dict(zip(again["file"], again["status"], strict=True)) == rerun
    assert final_files(images) == {f"{m}.jpg" for m in spec.good}


def test_import_verify_md5(tmp_path: Path) -> None:
    body = jpeg(40)
    wrong, right = fake_md5("w"), real_md5(body)
    source = tmp_path / "source"
    source.mkdir()
    (source / f"{wrong}.jpg").write_bytes(body)
    (source / f"{right}.jpg").write_bytes(body)
    meta = metadata([(wrong, "eczema", 2, ""), (right, "eczema", 2, "")])

    verified = acquire.import_images(source, meta, tmp_path / "v", tmp_path / "rv", verify_md5=True, progress=False)
    assert status_of(verified) == {wrong: "md5_mismatch", right: "imported"}
    assert final_files(tmp_path / "v") == {f"{right}.jpg"}

    recorded = acquire.import_images(source, meta, tmp_path / "r", tmp_path / "rr", progress=False)
    assert status_of(recorded) == {wrong: "imported", right: "imported"}
    assert dict(zip(recorded["md5hash"], recorded["md5_matches"], strict=True)) == {wrong: False, right: True}


def test_import_source_must_exist_and_be_a_folder_or_zip(tmp_path: Path) -> None:
    meta = metadata([])
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(acquire.AcquireError, match="not found") as caught:
        acquire.import_images(missing, meta, tmp_path / "images", tmp_path / "reports", progress=False)
    assert str(missing) in str(caught.value)
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(acquire.AcquireError, match="neither a folder nor a zip"):
        acquire.import_images(text, meta, tmp_path / "images", tmp_path / "reports", progress=False)
    assert not (tmp_path / "images").exists()


# --- versioning ---------------------------------------------------------------------------------------------------


def test_versioning_hint_names_the_dvc_commands() -> None:
    hint = acquire.versioning_hint(Path("data/images"))
    assert "dvc add data" in hint
    assert "git add data.dvc" in hint
    assert "dvc push" in hint
    assert "not inside data/" not in hint
    assert "not inside data/" in acquire.versioning_hint(Path("elsewhere/images"))


def test_dvc_add_reports_failure(tmp_path: Path) -> None:
    with pytest.raises(acquire.AcquireError, match="no data folder"):
        acquire.dvc_add(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    with pytest.raises(acquire.AcquireError, match=r"`dvc add data` failed .*DVC repo"):
        acquire.dvc_add(tmp_path)  # not a DVC repository: dvc's own message is passed on


def test_data_download_command(server: Server, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dermsynth data download` reads data/fitzpatrick17k.csv, keeps only the study's rows, reports, and hints."""
    from dermsynth import cli

    good = jpeg(7)
    rows = [
        {
            "md5hash": fake_md5("a"),
            "label": "psoriasis",
            "fitzpatrick_scale": "2",
            "url": server.route("/a.jpg", Reply(200, good)),
        },
        {"md5hash": fake_md5("b"), "label": "psoriasis", "fitzpatrick_scale": "5", "url": server.url("/gone.jpg")},
        {
            "md5hash": fake_md5("c"),
            "label": "acne",
            "fitzpatrick_scale": "3",
            "url": server.route("/c.jpg", Reply(200, good)),
        },
    ]
    (workdir / "data").mkdir()
    pd.DataFrame(rows).to_csv(workdir / "data" / "fitzpatrick17k.csv", index=False)
    assert cli.main(["data", "download", "--workers", "2", "--timeout", str(TIMEOUT), "--retries", "0"]) == 0
    out = capsys.readouterr().out
    assert "ok=1" in out
    assert "http_404=1" in out
    assert "dvc add data" in out
    assert final_files(workdir / "data" / "images") == {f"{fake_md5('a')}.jpg"}
    assert server.hits()["/c.jpg"] == 0  # acne is not one of the study's conditions
    report = pd.read_csv(workdir / "reports" / "data" / "availability.csv")
    assert sorted(report["status"]) == ["http_404", "ok"]


def test_file_errors_become_a_row_status_and_bugs_surface(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that refuses a write is the row's `error`; a bad URL is `bad_url`; our own bug is not hidden as a row."""
    url = server.route("/full.jpg", Reply(body=jpeg(50)))
    good, ipv6 = fake_md5("full"), fake_md5("ipv6")
    meta = metadata([(good, "psoriasis", 1, url), (ipv6, "psoriasis", 1, "http://[::1/broken.jpg")])

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(files, "write_bytes", disk_full)
    result = acquire.download(meta, tmp_path / "images", tmp_path / "reports", **FAST)
    assert status_of(result) == {good: "error", ipv6: "bad_url"}
    detail = dict(zip(result["md5hash"], result["detail"], strict=True))
    assert detail[good].startswith(f"{good}: {url}: OSError")
    assert "No space left on device" in detail[good]
    assert "Invalid IPv6 URL" in detail[ipv6]

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug in our code")

    monkeypatch.setattr(acquire, "_keep", bug)
    with pytest.raises(KeyError, match="a bug in our code"):
        acquire.download(meta.iloc[:1], tmp_path / "images2", tmp_path / "reports2", **FAST)
    source = tmp_path / "source"
    source.mkdir()
    (source / f"{good}.jpg").write_bytes(jpeg(51))
    with pytest.raises(KeyError, match="a bug in our code"):
        acquire.import_images(source, meta, tmp_path / "images3", tmp_path / "reports3", progress=False)
