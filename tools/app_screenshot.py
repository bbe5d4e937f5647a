"""Browser check of ``avseg app``: open the page in headless Chromium, run one segmentation, save a screenshot.

    python tools/app_screenshot.py --model avseg-demo/runs/demo/final --out docs/app.png

Starts the app on 127.0.0.1 (a free port), starts Debian's ``chromium`` headless
(installed with apt-get when missing) and drives the page over the DevTools
protocol (a minimal WebSocket client, standard library only): click the first
synthetic example, keep "muted audio" as the comparison, click Segment, wait
for the agreement line, seek the videos to ``--seek`` seconds, and save a
full-page screenshot. Without ``--model`` it uses an untrained tiny TeSO (the
page works, the masks are noise). Everything stops by itself, bounded by
``--timeout``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


class DevTools:
    """The Chrome DevTools protocol over one WebSocket (RFC 6455 text frames; client frames masked)."""

    def __init__(self, url: str, timeout: float):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self._exactly(1)
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.calls = 0

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _send(self, text: str) -> None:
        payload = text.encode()
        size = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
        if size >= 1 << 16:
            raise ValueError("DevTools messages this script sends are small")
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._exactly(2)
            size = second & 0x7F
            if size >= 126:
                size = int.from_bytes(self._exactly(2 if size == 126 else 8), "big")
            mask = self._exactly(4) if second & 0x80 else None
            data = self._exactly(size)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = first & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0, 1, 2):
                message += data
                if first & 0x80:
                    return message.decode()

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self._send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self.calls:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails'].get('text')} ({expression[:80]})")
        return result["result"].get("value")

    def wait_for(self, expression: str, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"gave up after {seconds:.0f}s waiting for {what}")


CLICK_FIRST_EXAMPLE = """(() => {
  const item = document.querySelector('[data-testid="dataset-cell-0-1"]');
  if (!item) return false;
  item.click();
  return true;
})()"""
VIDEO_READY = "!!document.querySelector('#video video') && !!document.querySelector('#cues textarea')?.value"
RESULT_READY = """(() => {
  const status = document.querySelector('#status')?.innerText || '';
  const agreement = document.querySelector('#agreement')?.innerText || '';
  return status.includes('Error') ? 'error: ' + status : (agreement.includes('Agreement') ? agreement : '');
})()"""
SEEK_OVERLAYS = """(seconds) => Promise.all([...document.querySelectorAll('video')].map(v => new Promise(done => {
  if (!v.duration) { done(false); return; }
  v.pause(); v.addEventListener('seeked', () => done(true), {once: true}); v.currentTime = Math.min(seconds, v.duration);
  setTimeout(() => done(false), 5000);
}))).then(r => r.filter(x => x).length)"""


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    print("installing Debian's chromium (apt-get)", flush=True)
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return shutil.which("chromium") or sys.exit("chromium is still missing after apt-get install")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_untrained_model(folder: Path) -> Path:
    import torch

    from avseg.config import load_recipe
    from avseg.engine.demo import DEMO_RECIPE
    from avseg.models.registry import save_system_info
    from avseg.models.teso import TeSO, TeSOConfig

    torch.manual_seed(0)
    TeSO(TeSOConfig.tiny(text_dim=384, audio_dim=64)).save_pretrained(folder)
    save_system_info(folder, load_recipe(DEMO_RECIPE))
    return folder


def page_target(port: int, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("chromium did not open its DevTools port")


def drive(devtools: DevTools, url: str, out: Path, width: int, timeout: float, seek: float) -> str:
    devtools.call("Page.enable")
    devtools.call("Page.navigate", url=url)
    devtools.wait_for("!!document.querySelector('#segment')", 60, "the page to load")
    devtools.wait_for(CLICK_FIRST_EXAMPLE, 30, "the examples")
    devtools.wait_for(VIDEO_READY, 60, "the example video in the upload box")
    devtools.evaluate("document.querySelector('#segment').click()")
    result = devtools.wait_for(RESULT_READY, timeout, "the segmentation")
    if result.startswith("error: "):
        raise RuntimeError(f"the page reported {result}")
    time.sleep(2)  # let the result videos load their first frames
    devtools.evaluate(f"({SEEK_OVERLAYS})({seek})")
    height = devtools.evaluate("Math.ceil(document.documentElement.scrollHeight)")
    devtools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    time.sleep(1)
    shot = devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    save_png(base64.b64decode(shot["data"]), out)
    return result


def save_png(data: bytes, out: Path, limit: int = 300_000) -> None:
    """Save the screenshot; a page of flat colours fits in a 256-colour palette when the full one is too big."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    if len(data) > limit:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(buffer, "PNG", optimize=True)
        data = buffer.getvalue()
    out.write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder for the page (default: an untrained tiny TeSO)")
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--seek", type=float, default=0.5, help="the moment of the videos shown (seconds)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for the segmentation")
    args = parser.parse_args()
    from avseg.app.scratch import process_temporary_folder

    chromium = chromium_binary()
    with process_temporary_folder("avseg-screenshot-") as scratch:  # Gradio's and torch's temporary files too
        from avseg.app.server import SegmentApp

        model = args.model or str(tiny_untrained_model(Path(scratch) / "teso"))
        with SegmentApp([model], device="cpu") as app:
            url = app.launch("127.0.0.1", free_port(), block=False)
            port = free_port()
            browser = subprocess.Popen(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", f"--remote-debugging-port={port}",
                 f"--user-data-dir={scratch}/profile", f"--window-size={args.width},1000", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                devtools = DevTools(page_target(port, 60), timeout=args.timeout)
                result = drive(devtools, url, args.out, args.width, args.timeout, args.seek)
            finally:
                browser.terminate()
                browser.wait(timeout=30)
    print(f"{args.out}: {result}")


if __name__ == "__main__":
    main()
