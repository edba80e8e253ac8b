"""A fake OpenAI images endpoint on 127.0.0.1 for the tests, and a scripted paid run to kill.

`FakeOpenAI` serves POST /v1/images/edits from a ThreadingHTTPServer in a daemon thread. It
parses the multipart body (prompt, model, n, size, quality, image, mask), records every call,
and answers with the next scripted action or, by default, a 200 whose image has EVERY pixel
changed (inverted), so a test can see that paste-back restores the pixels outside the mask.
Each call is tied to its request key through the X-Client-Request-Id header that
`openai_backend` sends (``dermsynth-<first 32 hex of the key>-<attempt>``).

`python -m tests.fake_openai PORT CACHE` runs the 3 conditions x 16 seeds x 8 candidates plan
against a server at PORT (the kill-and-resume test starts it, SIGKILLs it, and resumes in-process).
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermsynth.generators import openai_backend as ob

CANARY = "sk-test-DERMSYNTH-CANARY-123"


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def seed_png(seed: int, size: int) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 256, (size, size, 3)))


def inverted(image_png: bytes, scale: int = 1) -> bytes:
    """The image with every pixel changed (255 - value), optionally enlarged ``scale`` times."""
    with Image.open(io.BytesIO(image_png)) as im:
        rgb = np.asarray(im.convert("RGB"))
    out = Image.fromarray(255 - rgb)
    if scale != 1:
        out = out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def image_body(image_png: bytes) -> bytes:
    return json.dumps(
        {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(image_png).decode()}]}
    ).encode()


@dataclass
class Action:
    """One scripted answer: a status with a JSON (or raw) body, optionally after a stall."""

    status: int = 200
    body: Any = None  # None: an edited image; dict: JSON; bytes: raw
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0
    scale: int = 1
    content_type: str = "application/json"


def error(status: int, code: str | None, message: str = "fake error", **headers: str) -> Action:
    err_type = "image_generation_user_error" if code == "moderation_blocked" else "server_error"
    body = {"error": {"code": code, "message": message, "type": err_type, "param": None}}
    return Action(status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Call:
    number: int
    phase: int
    prompt: str
    model: str
    n: str
    size: str
    quality: str
    key32: str
    authorized: bool
    has_mask: bool
    status: int = 0


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return {}
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary.group(1).encode()):
        head, sep, content = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if sep and name:
            fields[name.group(1).decode()] = content.removesuffix(b"\r\n")
    return fields


class FakeOpenAI:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[Call] = []
        self.script: deque[Action] = deque()
        self.default: Action | None = None  # the answer once the script is empty (None: an edited image)
        self.phase = 1
        self.lock = threading.Lock()
        self.active, self.last_seen = 0, time.monotonic()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client gone after a stall is normal
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def push(self, *actions: Action) -> None:
        with self.lock:
            self.script.extend(actions)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no request is being handled and none has arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.active == 0 and time.monotonic() - self.last_seen >= quiet:
                    return
            time.sleep(0.02)
        raise TimeoutError("the fake server did not go quiet")

    def _activity(self, delta: int) -> None:
        with self.lock:
            self.active += delta
            self.last_seen = time.monotonic()

    def successes(self, phase: int | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.status == 200 and (phase is None or c.phase == phase)]

    def _record(self, fields: dict[str, bytes], headers: Any) -> tuple[Call, Action]:
        cid = headers.get("X-Client-Request-Id", "")
        text = {k: fields.get(k, b"").decode(errors="replace") for k in ("prompt", "model", "n", "size", "quality")}
        key32 = cid.split("-")[1] if cid.count("-") == 2 else ""
        authorized = headers.get("Authorization") == f"Bearer {CANARY}"
        with self.lock:
            call = Call(
                len(self.calls) + 1, self.phase, **text, key32=key32, authorized=authorized, has_mask="mask" in fields
            )
            self.calls.append(call)
            action = self.script.popleft() if self.script else (self.default or Action())
        call.status = action.status
        return call, action

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                fake._activity(+1)
                try:
                    super().handle()
                finally:
                    fake._activity(-1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-upload: no call was made
                    return
                if self.path != "/v1/images/edits":
                    self.send_error(404)
                    return
                fields = parse_multipart(body, self.headers.get("Content-Type", ""))
                call, action = fake._record(fields, self.headers)
                time.sleep(action.stall or fake.delay)
                if action.body is None:
                    payload = image_body(inverted(fields["image"], action.scale))
                else:
                    payload = action.body if isinstance(action.body, bytes) else json.dumps(action.body).encode()
                self.send_response(action.status)
                self.send_header("Content-Type", action.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-request-id", f"req_fake_{call.number}")
                for name, value in action.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


CONDITIONS = ("psoriasis", "squamous cell carcinoma", "neutrophilic dermatoses")


def plan(seeds: int = 16, candidates: int = 8, size: int = 16) -> list[ob.EditRequest]:
    """3 conditions x ``seeds`` x ``candidates`` tiny requests (the study's shape, made small)."""
    mask = ob.box_mask(size, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    requests = []
    for c, condition in enumerate(CONDITIONS):
        for s in range(seeds):
            image = seed_png(1000 * c + s, size)
            prompt = f"Clinical photo of {condition} on dark skin (FST V-VI), same framing"
            for k in range(candidates):
                meta = {"condition": condition, "seed": s}
                requests.append(ob.EditRequest(prompt, image, mask, k, quality="low", meta=meta))
    return requests


def main(port: int, cache: str) -> None:
    client = ob.make_client(base_url=f"http://127.0.0.1:{port}/v1", timeout=10)
    ob.run_edits(plan(), client, ob.ImageCache(Path(cache)), ob.Budget(100.0), workers=4, progress=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
