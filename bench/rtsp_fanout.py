#!/usr/bin/env python3
"""RTSP fan-out benchmark: Doorbell Bridge and a GStreamer RTSP proxy (rtspsrc feeding
gst-rtsp-server, bench/gst_rtsp_proxy.py) side by side in one run, both relaying the same
simulated doorbell stream (examples/rtsp_sim.rs: H.264 and AAC sound), measured with the same
clients, which set up every track (video and audio).

    cargo build --release --bin doorbell-bridge --example rtsp_sim
    python3 bench/rtsp_fanout.py [--samples 30] [--viewers 10,50] [--window 10] [--rounds 5]

Measures, per proxy:
  * time from sending PLAY to the first RTP packet of a keyframe (IDR or SPS), for new viewers
    joining at random moments of the 2 s GOP (p50, p95, max);
  * CPU (% of one core) of the proxy process over a window while N viewers play, and its peak
    RSS (VmHWM). CPU time is the sum of the process's threads' run time in nanoseconds
    (/proc/PID/task/*/schedstat); if a thread came or went during the window, the 10 ms-tick
    user+system figure of /proc/PID/stat is used instead. The windows alternate between the
    proxies (in random order each round), and the table gives the median over the rounds.
Each proxy keeps one extra viewer connected throughout, so both have their camera session open.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRIDGE = os.path.join(ROOT, "target/release/doorbell-bridge")
SIM = os.path.join(ROOT, "target/release/examples/rtsp_sim")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def is_key(pkt):
    if len(pkt) < 13:
        return False
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10 and len(pkt) >= off + 4:
        off += 4 + 4 * int.from_bytes(pkt[off + 2:off + 4], "big")
    p = pkt[off:]
    if not p:
        return False
    t = p[0] & 0x1F
    if t in (5, 7):
        return True
    if t == 28 and len(p) > 1:
        return bool(p[1] & 0x80) and (p[1] & 0x1F) in (5, 7)
    if t == 24:
        i = 1
        while i + 2 < len(p):
            n = int.from_bytes(p[i:i + 2], "big")
            if p[i + 2] & 0x1F in (5, 7):
                return True
            i += 2 + n
    return False


class Client:
    def __init__(self, url):
        self.url = url
        rest = url.split("://", 1)[1]
        hostport, _, _ = rest.partition("/")
        self.host, port = hostport.split(":")
        self.port = int(port)
        self.cseq = 0
        self.buf = b""
        self.session = None

    async def connect(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    async def _fill(self):
        d = await self.r.read(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d

    async def item(self):
        """('rtp', channel, bytes) or ('resp', status, headers, body)."""
        while True:
            if self.buf[:1] == b"$" and len(self.buf) >= 4:
                n = int.from_bytes(self.buf[2:4], "big")
                if len(self.buf) >= 4 + n:
                    ch, pkt = self.buf[1], self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return ("rtp", ch, pkt)
            elif self.buf and self.buf[:1] != b"$":
                i = self.buf.find(b"\r\n\r\n")
                if i >= 0:
                    head = self.buf[:i].decode("latin1")
                    hdrs = {}
                    for line in head.split("\r\n")[1:]:
                        k, _, v = line.partition(":")
                        hdrs[k.strip().lower()] = v.strip()
                    n = int(hdrs.get("content-length", "0"))
                    if len(self.buf) >= i + 4 + n:
                        body = self.buf[i + 4:i + 4 + n]
                        self.buf = self.buf[i + 4 + n:]
                        return ("resp", int(head.split(" ")[1]), hdrs, body)
            await self._fill()

    async def request(self, method, uri, extra=None):
        self.cseq += 1
        msg = f"{method} {uri} RTSP/1.0\r\nCSeq: {self.cseq}\r\nUser-Agent: bench\r\n"
        if self.session:
            msg += f"Session: {self.session}\r\n"
        for k, v in (extra or {}).items():
            msg += f"{k}: {v}\r\n"
        self.w.write((msg + "\r\n").encode())
        await self.w.drain()
        while True:
            it = await self.item()
            if it[0] == "resp":
                if "session" in it[2]:
                    self.session = it[2]["session"].split(";")[0]
                return it

    async def setup(self):
        """DESCRIBE and SETUP; returns when ready to PLAY."""
        await self.connect()
        _, st, hdrs, body = await self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        assert st == 200, f"DESCRIBE {st}"
        base = hdrs.get("content-base", self.url + "/")
        # Every track (video, then the sound), as a player would: track i on channels 2i-2i+1.
        controls = []
        in_media = False
        for line in body.decode().splitlines():
            if line.startswith("m="):
                in_media = True
                controls.append(None)
            if in_media and line.startswith("a=control:") and controls[-1] is None:
                controls[-1] = line[len("a=control:"):]
        for i, control in enumerate(controls):
            track = control if control and "://" in control else base.rstrip("/") + "/" + (control or "")
            t = f"RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}"
            _, st, _, _ = await self.request("SETUP", track, {"Transport": t})
            assert st == 200, f"SETUP {st}"

    async def play_until_keyframe(self):
        t0 = time.perf_counter()
        self.cseq += 1
        self.w.write(
            f"PLAY {self.url} RTSP/1.0\r\nCSeq: {self.cseq}\r\nSession: {self.session}\r\nRange: npt=0.000-\r\n\r\n".encode()
        )
        await self.w.drain()
        while True:
            it = await self.item()
            if it[0] == "rtp" and it[1] == 0 and is_key(it[2]):
                return time.perf_counter() - t0

    async def play_and_drain(self, stop):
        await self.request("PLAY", self.url, {"Range": "npt=0.000-"})
        # Read fast without parsing: a viewer that keeps up.
        self.buf = b""
        while not stop.is_set():
            try:
                d = await asyncio.wait_for(self.r.read(262144), 0.5)
            except asyncio.TimeoutError:
                continue
            if not d:
                break

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_clock(pid):
    """(seconds of CPU from the ticks, {tid: ns of run time})."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[tid] = int(f.read().split()[0])
        except OSError:
            pass
    return cpu_ticks(pid) / TICK, threads


def cpu_used(a, b):
    """CPU seconds between two cpu_clock readings: per-thread nanoseconds when the same threads
    ran throughout, else the ticks."""
    if a[1].keys() == b[1].keys():
        return sum(b[1][t] - a[1][t] for t in a[1]) / 1e9, "schedstat"
    return b[0] - a[0], "ticks"


def mem_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


async def first_keyframe(url):
    c = Client(url)
    try:
        await c.setup()
        return await asyncio.wait_for(c.play_until_keyframe(), 10)
    finally:
        c.close()


async def load(url, pid, n, window):
    stop = asyncio.Event()
    clients = [Client(url) for _ in range(n)]
    for c in clients:
        await c.setup()
    tasks = [asyncio.create_task(c.play_and_drain(stop)) for c in clients]
    await asyncio.sleep(3)
    t0, c0 = time.perf_counter(), cpu_clock(pid)
    await asyncio.sleep(window)
    used, how = cpu_used(c0, cpu_clock(pid))
    cpu = used / (time.perf_counter() - t0) * 100
    rss, hwm = mem_kb(pid, "VmRSS"), mem_kb(pid, "VmHWM")
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        c.close()
    await asyncio.sleep(2)
    return {"cpu_pct": cpu, "cpu_from": how, "rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--viewers", default="10,50")
    ap.add_argument("--window", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sound", default="aac", help="the simulated doorbell's sound: aac, pcmu, pcma, none")
    ap.add_argument("--bridge", default=BRIDGE, help="the doorbell-bridge binary to measure")
    a = ap.parse_args()
    for b in (a.bridge, SIM):
        if not os.path.exists(b):
            sys.exit(f"missing {b}: cargo build --release --bin doorbell-bridge --example rtsp_sim")
    procs = []
    try:
        sim = subprocess.Popen([SIM, "0", "0", a.sound], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        line = sim.stdout.readline().split()
        sim_rtsp = line[0].split("=")[1]
        sim_http = line[1].split("=")[1]
        tmp = tempfile.mkdtemp()
        bport, hport, gport = free_port(), free_port(), free_port()
        cfg = os.path.join(tmp, "bridge.yaml")
        with open(cfg, "w") as f:
            f.write(
                f"log_level: warn\ndata_dir: {tmp}/data\n"
                f"doorbell: {{host: 127.0.0.1, rtsp_port: {sim_rtsp.split(':')[1]}, http_port: {sim_http.split(':')[1]}, password: ABCDEF}}\n"
                f"server: {{bind: 127.0.0.1, rtsp_port: {bport}, http_port: {hport}}}\n"
                "streams: {main: {path: /Streaming/Channels/101/}}\n"
                "coiot: {enabled: false}\nonvif: {enabled: false}\n"
            )
        bridge = subprocess.Popen([a.bridge, "--config", cfg], stdout=subprocess.DEVNULL)
        procs.append(bridge)
        src = f"rtsp://admin:ABCDEF@{sim_rtsp}/Streaming/Channels/101/"
        gst = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(ROOT, "bench/gst_rtsp_proxy.py"), src, str(gport), a.sound],
            stdout=subprocess.PIPE, text=True,
        )
        procs.append(gst)
        gst.stdout.readline()
        targets = {
            "doorbell-bridge": (f"rtsp://127.0.0.1:{bport}/main", bridge.pid),
            "gstreamer-proxy": (f"rtsp://127.0.0.1:{gport}/main", gst.pid),
        }
        # One viewer per proxy stays for the whole run: both hold their camera session.
        stop_warm = asyncio.Event()
        warm = []
        for url, _ in targets.values():
            for _ in range(50):
                try:
                    c = Client(url)
                    await c.setup()
                    break
                except (ConnectionError, OSError, AssertionError):
                    await asyncio.sleep(0.2)
            else:
                sys.exit(f"{url} never answered")
            warm.append(asyncio.create_task(c.play_and_drain(stop_warm)))
        await asyncio.sleep(4)

        lat = {k: [] for k in targets}
        for _ in range(a.samples):
            order = list(targets)
            random.shuffle(order)
            for k in order:
                lat[k].append(await first_keyframe(targets[k][0]) * 1000)
                await asyncio.sleep(random.uniform(0, 2.0))
        res = {k: {"first_keyframe_ms": {"p50": pct(v, 50), "p95": pct(v, 95), "max": max(v),
                                         "mean": statistics.mean(v), "n": len(v)}} for k, v in lat.items()}
        for n in [int(x) for x in a.viewers.split(",")]:
            runs = {k: [] for k in targets}
            for _ in range(a.rounds):
                order = list(targets)
                random.shuffle(order)
                for k in order:
                    runs[k].append(await load(targets[k][0], targets[k][1], n, a.window))
            ratios = [b["cpu_pct"] / max(g["cpu_pct"], 1e-9)
                      for b, g in zip(runs["doorbell-bridge"], runs["gstreamer-proxy"])]
            for k in targets:
                cpus = [r["cpu_pct"] for r in runs[k]]
                res[k][f"viewers_{n}"] = {
                    "cpu_pct": statistics.median(cpus), "cpu_pct_rounds": cpus,
                    "cpu_from": sorted({r["cpu_from"] for r in runs[k]}),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[k]),
                    "rss_mb": runs[k][-1]["rss_mb"],
                }
            res["doorbell-bridge"][f"viewers_{n}"]["cpu_ratio_rounds"] = ratios
        stop_warm.set()
        await asyncio.gather(*warm, return_exceptions=True)
        sim_status = subprocess.run(["curl", "-s", f"http://{sim_http}/sim/status"], capture_output=True, text=True).stdout
        res["sim"] = json.loads(sim_status or "{}")
        print(json.dumps(res, indent=1))
        b, g = res["doorbell-bridge"], res["gstreamer-proxy"]
        print()
        print("| | Doorbell Bridge | GStreamer proxy | ratio |")
        print("|---|---|---|---|")
        for q in ("p50", "p95", "max"):
            bb, gg = b["first_keyframe_ms"][q], g["first_keyframe_ms"][q]
            print(f"| PLAY -> first keyframe {q} | {bb:.1f} ms | {gg:.1f} ms | {gg / max(bb, 1e-9):.1f}x faster |")
        for n in [int(x) for x in a.viewers.split(",")]:
            bb, gg = b[f"viewers_{n}"], g[f"viewers_{n}"]
            rr = bb["cpu_ratio_rounds"]
            print(f"| CPU (median of {len(rr)}), {n} viewers | {bb['cpu_pct']:.2f} % | {gg['cpu_pct']:.2f} % | "
                  f"{bb['cpu_pct'] / max(gg['cpu_pct'], 1e-9):.2f} (rounds {min(rr):.2f}-{max(rr):.2f}) |")
            print(f"| peak RSS, {n} viewers | {bb['peak_rss_mb']:.1f} MB | {gg['peak_rss_mb']:.1f} MB | {bb['peak_rss_mb'] / max(gg['peak_rss_mb'], 1e-9):.2f} |")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except Exception:
                p.kill()


if __name__ == "__main__":
    asyncio.run(main())
