"""Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol on a pipe: open a
page, collect its console errors and every request it makes, and take a screenshot.

The protocol runs on file descriptors 3 (commands in) and 4 (replies and events out), JSON messages ended
by a NUL byte (`--remote-debugging-pipe`): no port is opened. The browser is started with every network
path closed (a proxy on a dead loopback port, host resolution off, no background services), so a page
that asked for anything beyond its own file and data: URLs would show it as a request that failed.

    with Browser(chromium_path(), tmp / "profile") as browser:
        page = browser.open(Path("report.html"))
        assert not page.console_errors and not page.outside_requests and not is_blank(page.screenshot)
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--mute-audio",
    "--proxy-server=127.0.0.1:9",  # nothing listens there: any request fails at once
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1280,1600",
    "--remote-debugging-pipe",
]
LOCAL_SCHEMES = ("file:", "data:")


def chromium_path() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@dataclass
class PageLoad:
    """What one page did while it loaded."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def outside_requests(self) -> list[str]:
        """Requests for anything but the page's own file and its inline data."""
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


def is_blank(png: bytes) -> bool:
    """True for a screenshot that is (nearly) one colour: fewer than 0.1% of its pixels differ from the
    most common one (a line of text on an empty page is 0.3%)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = image.width * image.height
    top = max(count for count, _ in image.getcolors(maxcolors=pixels))
    return pixels - top < 0.001 * pixels


class Browser:
    """One headless Chromium; `open` loads a page in a fresh tab and reports what it did."""

    def __init__(self, executable: str, profile: Path, *, timeout: float = 60.0):
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile.parent / "chromium.log"
        commands_in, self._to_browser = os.pipe()
        self._from_browser, replies_out = os.pipe()
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        actions = [
            (os.POSIX_SPAWN_DUP2, commands_in, 3),
            (os.POSIX_SPAWN_DUP2, replies_out, 4),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        argv = [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        self.pid = os.posix_spawn(executable, argv, os.environ, file_actions=actions, setsid=True)
        for fd in (commands_in, replies_out, log):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.pid is None:
            return
        try:
            self.call("Browser.close")
        except (OSError, TimeoutError, RuntimeError):
            pass
        deadline = time.monotonic() + 10
        ended = False
        while not ended and time.monotonic() < deadline:
            ended = os.waitpid(self.pid, os.WNOHANG) != (0, 0)
            time.sleep(0 if ended else 0.05)
        if not ended:
            os.killpg(self.pid, signal.SIGKILL)  # its own process group (setsid): its helpers too
            os.waitpid(self.pid, 0)
        os.close(self._to_browser)
        os.close(self._from_browser)
        self.pid = None

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer in {self.timeout:.0f} s (log: {self.log_path})")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed its pipe (log: {self.log_path})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
            self._events.append(self._message(deadline))

    def open(self, page: Path, *, settle: float = 0.5) -> PageLoad:
        """Load `page` in a new tab; its console errors, requests and a screenshot of the whole page."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        self._events.clear()
        url = page.resolve().as_uri()
        self.call("Page.navigate", {"url": url}, session)
        self._wait_for("Page.loadEventFired", session)
        deadline = time.monotonic() + settle  # late console messages and requests
        while time.monotonic() < deadline:
            try:
                self._events.append(self._message(deadline))
            except TimeoutError:
                break
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        shot = self.call(  # the whole page, not only the window
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session
        )
        load = PageLoad(url, screenshot=base64.b64decode(shot["data"]))
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                load.console_errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                load.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                load.console_errors.append(params["entry"].get("text", ""))
        self.call("Target.closeTarget", {"targetId": target})
        return load
