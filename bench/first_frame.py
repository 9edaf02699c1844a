#!/usr/bin/env python3
"""How soon a viewer joining at a random moment has its first picture, for three kinds of client:

- raw:    a raw RTSP/RTP client (TCP): PLAY sent -> the first keyframe's last packet received.
- ffmpeg: the ffmpeg CLI with default options (`ffmpeg -i URL -frames:v 1 -f null -`): process
          start -> exit after the first decoded frame (includes starting ffmpeg and connecting).
- ffmpeg-start: the same CLI reading a tiny synthetic source (no network): its own start-up.
- pyav:   PyAV with Home Assistant's stream-worker options (rtsp_flags=prefer_tcp, timeout=5 s,
          av.open timeout 30 s): av.open() called -> first decoded video frame.

    python3 bench/first_frame.py [--joins 20] [--clients raw,ffmpeg,pyav] [--json] URL [URL ...]
    python3 bench/first_frame.py --decode URL   # PyAV as HA opens it: codecs and decoded frames
    python3 bench/first_frame.py --clients ffmpeg --trace DIR URL   # ffmpeg -v debug per join, stamped

Joins are spaced by a random 0-2.1 s (more than a GOP of the simulated doorbell) so they land at
random phases of the GOP. Prints per URL and client the median, p95 and max in milliseconds.
PyAV is imported from the running interpreter (scripts/test makes a venv with it under .cache).
"""
import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from urllib.parse import urlparse


def rtsp_request(sock, buf, method, url, cseq, extra=""):
    sock.sendall(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}\r\n".encode())
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0 and not buf.startswith(b"$"):
            head = buf[:i].decode(errors="replace")
            length = 0
            for line in head.split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(buf) >= i + 4 + length:
                body = buf[i + 4 : i + 4 + length]
                del buf[: i + 4 + length]
                return head, body
        if buf.startswith(b"$") and len(buf) >= 4:
            n = int.from_bytes(buf[2:4], "big")
            if len(buf) >= 4 + n:
                del buf[: 4 + n]
                continue
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data


def header(head, name):
    for line in head.split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def is_key(payload):
    t = payload[0] & 0x1F
    if t == 5:
        return True
    if t == 28 and len(payload) > 1:
        return payload[1] & 0x1F == 5
    if t == 24:  # STAP-A: any IDR inside
        i = 1
        while i + 2 < len(payload):
            n = int.from_bytes(payload[i : i + 2], "big")
            if payload[i + 2] & 0x1F == 5:
                return True
            i += 2 + n
    return False


def raw_join(url):
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port or 554), timeout=10)
    buf = bytearray()
    try:
        head, body = rtsp_request(sock, buf, "DESCRIBE", url, 1, "Accept: application/sdp\r\n")
        base = header(head, "Content-Base") or url + "/"
        control, video = None, False
        for line in body.decode(errors="replace").split("\r\n"):
            if line.startswith("m=") and control is None:
                video = line.startswith("m=video")
            if line.startswith("a=control:") and control is None and video:
                control = line[len("a=control:") :]
        track = control if control and control.startswith("rtsp://") else base.rstrip("/") + "/" + (control or "")
        head, _ = rtsp_request(sock, buf, "SETUP", track, 2, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        session = (header(head, "Session") or "").split(";")[0]
        t0 = time.monotonic()
        sock.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\nRange: npt=0.000-\r\n\r\n".encode())
        in_key = False
        while True:
            while len(buf) >= 4 and buf[0] == 0x24:
                n = int.from_bytes(buf[2:4], "big")
                if len(buf) < 4 + n:
                    break
                ch, pkt = buf[1], bytes(buf[4 : 4 + n])
                del buf[: 4 + n]
                if ch != 0 or len(pkt) < 13:
                    continue
                cc = pkt[0] & 0x0F
                payload = pkt[12 + 4 * cc :]
                in_key = in_key or is_key(payload)
                if in_key and pkt[1] & 0x80:
                    return time.monotonic() - t0
            if buf and buf[0] != 0x24:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    buf += sock.recv(65536)
                    continue
                del buf[: i + 4]
                continue
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            buf += data
    finally:
        sock.close()


def ffmpeg_join(url):
    t0 = time.monotonic()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", url, "-frames:v", "1", "-f", "null", "-"],
        check=True,
        timeout=60,
    )
    return time.monotonic() - t0


def ffmpeg_traced(url, trace):
    """ffmpeg_join with `-v debug -fdebug ts` (every packet read, with its stream and times), each stderr line stamped (ms since the process started) into
    trace/ffmpeg-N.log; the file's first line has the wall-clock start (UTC) to read bridge logs
    against. ffmpeg 5.1 has no time stamps of its own in its log."""
    import os  # noqa: PLC0415

    n = len([f for f in os.listdir(trace) if f.startswith("ffmpeg-")])
    wall, t0 = time.time(), time.monotonic()
    p = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "debug", "-fdebug", "ts", "-i", url, "-frames:v", "1", "-f", "null", "-"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines = [f"start {time.strftime('%H:%M:%S', time.gmtime(wall))}.{int(wall % 1 * 1e6):06d} UTC"]
    for raw in p.stderr:
        lines.append(f"{(time.monotonic() - t0) * 1000:8.1f} {raw.decode(errors='replace').rstrip()}")
    p.wait(timeout=60)
    took = time.monotonic() - t0
    lines.append(f"{took * 1000:8.1f} exit {p.returncode}")
    with open(os.path.join(trace, f"ffmpeg-{n:02d}-{took * 1000:.0f}ms.log"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return took


def ffmpeg_start(_url):
    """The same CLI's own start-up and exit (no network), to read the ffmpeg figures against."""
    t0 = time.monotonic()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "nullsrc=s=64x64", "-frames:v", "1", "-f", "null", "-"],
        check=True,
        timeout=60,
    )
    return time.monotonic() - t0


def pyav_join(url):
    import av  # noqa: PLC0415

    t0 = time.monotonic()
    # Home Assistant's stream worker: create_stream()'s options, av.open(..., timeout=SOURCE_TIMEOUT).
    container = av.open(url, options={"rtsp_flags": "prefer_tcp", "timeout": "5000000"}, timeout=30)
    try:
        for _ in container.decode(video=0):
            return time.monotonic() - t0
    finally:
        container.close()
    raise RuntimeError("no frame")


def pyav_decode(url, want=10):
    """What Home Assistant's stream worker sees: the streams' codecs and frames of each decoded."""
    import av  # noqa: PLC0415

    container = av.open(url, options={"rtsp_flags": "prefer_tcp", "timeout": "5000000"}, timeout=30)
    try:
        out = {"codecs": [f"{s.type}:{s.codec_context.name}" for s in container.streams], "video": 0, "audio": 0}
        deadline = time.monotonic() + 15
        for packet in container.demux():
            for _ in packet.decode():
                out[packet.stream.type] = out.get(packet.stream.type, 0) + 1
            if (out["video"] >= want and out["audio"] >= want) or time.monotonic() > deadline:
                break
        return out
    finally:
        container.close()


CLIENTS = {"raw": raw_join, "ffmpeg": ffmpeg_join, "ffmpeg-start": ffmpeg_start, "pyav": pyav_join}


def p95(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--joins", type=int, default=20)
    ap.add_argument("--clients", default="raw,ffmpeg,pyav")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--trace", metavar="DIR", help="ffmpeg: run it with -v debug, its log stamped per join into DIR")
    ap.add_argument("urls", nargs="+")
    a = ap.parse_args()
    if a.decode:
        print(json.dumps(pyav_decode(a.urls[0])))
        return 0
    rnd = random.Random(a.seed)
    results = {}
    for url in a.urls:
        for c in a.clients.split(","):
            ms = []
            for _ in range(a.joins):
                time.sleep(rnd.uniform(0, 2.1))
                if c == "ffmpeg" and a.trace:
                    ms.append(ffmpeg_traced(url, a.trace) * 1000)
                else:
                    ms.append(CLIENTS[c](url) * 1000)
            results[f"{url} {c}"] = {
                "median_ms": round(statistics.median(ms), 1),
                "p95_ms": round(p95(ms), 1),
                "max_ms": round(max(ms), 1),
                "all_ms": [round(x, 1) for x in ms],
            }
            if not a.json:
                r = results[f"{url} {c}"]
                print(f"{url:40} {c:7} median {r['median_ms']:7.1f}  p95 {r['p95_ms']:7.1f}  max {r['max_ms']:7.1f} ms", flush=True)
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
