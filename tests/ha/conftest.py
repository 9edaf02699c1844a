"""Fixtures: the real `doorbell-bridge demo` binary as the peer, and a TCP relay to cut its link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Home Assistant imports custom integrations from a `custom_components` package on sys.path.
sys.path.insert(0, str(ROOT / "ha_integration"))

BINARY = Path(os.environ.get("DOORBELL_BRIDGE_BIN", ROOT / "target" / "release" / "doorbell-bridge"))

pytest_plugins = ["pytest_homeassistant_custom_component"]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Lets Home Assistant load custom_components/doorbell_bridge."""


# What Home Assistant logs when it reports an integration's use of something going away
# (helpers/frame.py `report_usage`, deprecated constants, deprecated config entry patterns).
REPORT = re.compile(r"Detected (that )?(custom )?integration|deprecat|will stop working|no longer supported", re.I)
OURS = re.compile(r"doorbell_bridge")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def reports_and_errors(records: list[logging.LogRecord], allowed: list[re.Pattern[str]]) -> list[str]:
    """Log lines that fail a test: any ERROR (or worse), and any report about this integration."""
    bad = []
    for r in records:
        try:
            msg = r.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is itself worth failing on
            msg = str(r.msg)
        text = f"{r.name}: {msg}"
        if any(p.search(text) for p in allowed):
            continue
        is_report = r.levelno >= logging.WARNING and REPORT.search(msg) and (OURS.search(text) or OURS.search(r.pathname))
        if r.levelno >= logging.ERROR or is_report:
            bad.append(f"{r.levelname} {text}"[:2000])
    return bad


@pytest.fixture(autouse=True)
def fail_on_reports_and_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Home Assistant's deprecation reports and ERROR logs fail the test (a test that provokes an
    error on purpose names it with `@pytest.mark.allow_log("regex")`)."""
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    yield
    root.removeHandler(handler)
    root.setLevel(old_level)
    allowed = [re.compile(p) for m in request.node.iter_markers("allow_log") for p in m.args]
    bad = reports_and_errors(handler.records, allowed)
    if bad:
        pytest.fail("Home Assistant reported problems with this integration:\n" + "\n".join(bad), pytrace=False)


@dataclass
class Bridge:
    """A running `doorbell-bridge demo`."""

    data_dir: Path
    http_port: int
    rtsp_port: int
    sim_url: str
    proc: subprocess.Popen
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def token(self) -> str:
        creds = json.loads((self.data_dir / "credentials.json").read_text())
        return creds["api_token"]

    @property
    def bridge_id(self) -> str:
        return (self.data_dir / "bridge_id").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _start(data_dir: Path, http_port: int = 0, rtsp_port: int = 0, extra: list[str] | None = None) -> Bridge:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: run `cargo build --release` first")
    data_dir.mkdir(parents=True, exist_ok=True)
    out = data_dir.parent / f"{data_dir.name}.stdout"
    err = data_dir.parent / f"{data_dir.name}.stderr"
    args = [
        str(BINARY),
        "demo",
        "--http-port",
        str(http_port),
        "--rtsp-port",
        str(rtsp_port),
        "--sim-port",
        "0",
        "--data-dir",
        str(data_dir),
        *(extra or []),
    ]
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(args, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "Simulated doorbell" in text and "/api/status" in text:
            break
        if proc.poll() is not None:
            pytest.fail(f"doorbell-bridge demo exited: {err.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("doorbell-bridge demo did not start in 30 s")
    http = int(re.search(r"http://127\.0\.0\.1:(\d+)/api/status", text).group(1))
    sim = re.search(r"Simulated doorbell\s+(http://\S+)", text).group(1).rstrip("/")
    m = re.search(r"rtsp://127\.0\.0\.1:(\d+)/", text)
    rtsp = int(m.group(1)) if m else (rtsp_port or 8564)
    return Bridge(data_dir=data_dir, http_port=http, rtsp_port=rtsp, sim_url=sim, proc=proc, args=args)


@pytest.fixture
def start_bridge(tmp_path: Path, socket_enabled: None) -> Iterator[Callable[..., Bridge]]:
    """Starts bridges on ephemeral ports; all are stopped at the end of the test."""
    started: list[Bridge] = []

    def start(name: str = "bridge", http_port: int = 0, rtsp_port: int = 0, extra: list[str] | None = None) -> Bridge:
        b = _start(tmp_path / name, http_port, rtsp_port, extra)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def bridge(start_bridge: Callable[..., Bridge]) -> Bridge:
    """One demo bridge with the default settings."""
    return start_bridge()


def restart(bridge: Bridge) -> None:
    """Stops the bridge and starts it again on the same HTTP port and data dir."""
    bridge.stop()
    args = list(bridge.args)
    args[args.index("--http-port") + 1] = str(bridge.http_port)
    args[args.index("--rtsp-port") + 1] = str(bridge.rtsp_port)
    out = bridge.data_dir.parent / f"{bridge.data_dir.name}.stdout"
    err = bridge.data_dir.parent / f"{bridge.data_dir.name}.stderr"
    out.write_text("")
    with open(out, "wb") as o, open(err, "ab") as e:
        bridge.proc = subprocess.Popen(args, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "Simulated doorbell" in text:
            bridge.sim_url = re.search(r"Simulated doorbell\s+(http://\S+)", text).group(1).rstrip("/")
            return
        if bridge.proc.poll() is not None:
            pytest.fail(f"restart failed: {err.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    pytest.fail("restart timed out")


class Relay:
    """A TCP relay between Home Assistant and the bridge, so a test can hold or cut the link
    while both ends stay real."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        pair = (w, uw)
        self._conns.add(pair)
        for src, dst, hold in ((r, uw, False), (ur, w, True)):
            t = asyncio.create_task(self._pipe(src, dst, hold))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool) -> None:
        try:
            while data := await src.read(65536):
                if hold:
                    await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    def hold(self) -> None:
        """Bytes from the bridge wait (a stalled network)."""
        self.flowing.clear()

    def cut(self) -> None:
        """Drops every relayed connection (held bytes are lost) and lets new ones flow."""
        for a, b in list(self._conns):
            a.transport.abort()
            b.transport.abort()
        self._conns.clear()
        for t in list(self._tasks):
            t.cancel()
        self.flowing.set()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.sleep(0)


@pytest.fixture
async def relay_to(socket_enabled: None) -> AsyncIterator[Callable[[int], asyncio.Future]]:
    relays: list[Relay] = []

    async def make(port: int) -> Relay:
        r = Relay(port)
        await r.start()
        relays.append(r)
        return r

    yield make
    for r in relays:
        await r.close()
