#!/usr/bin/env python3
"""A connection flood from one address, with an authenticated viewer probing through it.

Half-open HTTP connections send a partial request head and then 8 bytes every 5 s; half-open
RTSP connections do the same with an RTSP head. A connection the server closes is opened again
after 1 s, so the pressure holds for the whole run. Meanwhile, every `--probe-every` seconds, an
authenticated viewer plays the stream (time to its first RTP packet) and, with an HTTP port, the
status is fetched with the token and /metrics without and with it. Prints one JSON object.

    python3 bench/flood.py --host 10.200.1.1 --http-port 8565 --rtsp-port 8564 \\
        --http 300 --rtsp 200 --hold 30 --token TOKEN --rtsp-user viewer --rtsp-pass PASS

The run ends by itself after --hold seconds.
"""
import argparse
import asyncio
import base64
import json
import time

STATS = {"http_connects": 0, "rtsp_connects": 0, "http_open": 0, "rtsp_open": 0,
         "http_open_max": 0, "rtsp_open_max": 0, "connect_errors": 0}


async def half_open(kind, host, port, head, stop):
    while time.monotonic() < stop:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, asyncio.TimeoutError):
            STATS["connect_errors"] += 1
            await asyncio.sleep(1)
            continue
        STATS[kind + "_connects"] += 1
        STATS[kind + "_open"] += 1
        STATS[kind + "_open_max"] = max(STATS[kind + "_open_max"], STATS[kind + "_open"])
        try:
            w.write(head)
            await w.drain()
            while time.monotonic() < stop:
                try:
                    # Anything from the server (an error, or the close) ends this connection.
                    await asyncio.wait_for(r.read(4096), 5)
                    break
                except asyncio.TimeoutError:
                    w.write(b"X-Pad: 1")
                    await w.drain()
        except OSError:
            pass
        finally:
            STATS[kind + "_open"] -= 1
            w.close()
        await asyncio.sleep(1)


async def rtsp_request(r, w, method, url, cseq, headers):
    req = f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    w.write((req + "\r\n").encode())
    await w.drain()
    while True:
        first = await r.readexactly(1)
        if first == b"$":
            hdr = await r.readexactly(3)
            await r.readexactly(int.from_bytes(hdr[1:3], "big"))
            continue
        head = first + await r.readuntil(b"\r\n\r\n")
        text = head.decode(errors="replace")
        status = int(text.split(" ")[1])
        fields = {}
        for line in text.split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
        n = int(fields.get("content-length", "0"))
        body = await r.readexactly(n) if n else b""
        return status, fields, body


async def viewer(host, port, stream, user, password):
    """Milliseconds from connecting to the first RTP packet, or an error string."""
    t0 = time.monotonic()
    url = f"rtsp://{host}:{port}/{stream}"
    auth = {}
    if user:
        auth["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    r, w = await asyncio.open_connection(host, port)
    try:
        status, _, body = await rtsp_request(r, w, "DESCRIBE", url, 1, {**auth, "Accept": "application/sdp"})
        if status != 200:
            return f"DESCRIBE {status}"
        control = "trackID=0"
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("a=control:") and line[10:] != "*":
                control = line[10:]
                break
        track = control if control.startswith("rtsp://") else f"{url}/{control}"
        status, f, _ = await rtsp_request(r, w, "SETUP", track, 2,
                                          {**auth, "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        if status != 200:
            return f"SETUP {status}"
        session = f.get("session", "").split(";")[0]
        status, _, _ = await rtsp_request(r, w, "PLAY", url, 3, {**auth, "Session": session, "Range": "npt=0-"})
        if status != 200:
            return f"PLAY {status}"
        while True:
            if await r.readexactly(1) == b"$":
                hdr = await r.readexactly(3)
                await r.readexactly(int.from_bytes(hdr[1:3], "big"))
                return (time.monotonic() - t0) * 1000
            await r.readuntil(b"\r\n\r\n")
    finally:
        w.close()


async def http_get(host, port, path, token=None):
    """(status, milliseconds)."""
    t0 = time.monotonic()
    r, w = await asyncio.open_connection(host, port)
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode())
        await w.drain()
        line = await r.readline()
        await r.read()
        return int(line.split()[1]), (time.monotonic() - t0) * 1000
    finally:
        w.close()


async def probes(a, stop, out):
    await asyncio.sleep(a.warmup)
    while time.monotonic() < stop - 2:
        try:
            v = await asyncio.wait_for(viewer(a.host, a.rtsp_port, a.stream, a.rtsp_user, a.rtsp_pass), 10)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            v = f"error {type(e).__name__}"
        out["viewer_ms"].append(v)
        if a.http_port:
            for key, token, path in (("status_token", a.token, "/api/status"), ("metrics_no_token", None, "/metrics"),
                                     ("metrics_token", a.token, "/metrics")):
                try:
                    out[key].append(await asyncio.wait_for(http_get(a.host, a.http_port, path, token), 10))
                except (OSError, asyncio.TimeoutError, ValueError, IndexError) as e:
                    out[key].append(f"error {type(e).__name__}")
        await asyncio.sleep(a.probe_every)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--rtsp-port", type=int, required=True)
    p.add_argument("--http", type=int, default=300)
    p.add_argument("--rtsp", type=int, default=200)
    p.add_argument("--hold", type=float, default=30)
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--probe-every", type=float, default=3)
    p.add_argument("--stream", default="main")
    p.add_argument("--token")
    p.add_argument("--rtsp-user")
    p.add_argument("--rtsp-pass")
    p.add_argument("--probe-only", action="store_true",
                   help="no flood: only the viewer probes, plus /healthz 10 times a second (a loopback client)")
    a = p.parse_args()
    if a.probe_only:
        a.http = a.rtsp = 0
    out = {"viewer_ms": [], "status_token": [], "metrics_no_token": [], "metrics_token": []}
    if a.http_port:
        # The access rule before the flood, for the record.
        out["before_metrics_no_token"] = (await http_get(a.host, a.http_port, "/metrics"))[0]
        out["before_metrics_token"] = (await http_get(a.host, a.http_port, "/metrics", a.token))[0]
    stop = time.monotonic() + a.hold
    tasks = []
    if a.http_port:
        head = f"GET /api/status HTTP/1.1\r\nHost: {a.host}\r\n".encode()
        tasks += [half_open("http", a.host, a.http_port, head, stop) for _ in range(a.http)]
    head = f"OPTIONS rtsp://{a.host}:{a.rtsp_port}/{a.stream} RTSP/1.0\r\n".encode()
    tasks += [half_open("rtsp", a.host, a.rtsp_port, head, stop) for _ in range(a.rtsp)]
    tasks.append(probes(a, stop, out))
    if a.probe_only and a.http_port:
        out["healthz_ms"] = []

        async def healthz():
            await asyncio.sleep(a.warmup)
            while time.monotonic() < stop - 2:
                try:
                    out["healthz_ms"].append((await asyncio.wait_for(http_get(a.host, a.http_port, "/healthz"), 10))[1])
                except (OSError, asyncio.TimeoutError, ValueError, IndexError):
                    out["healthz_ms"].append(10000.0)
                await asyncio.sleep(0.1)
        tasks.append(healthz())
    await asyncio.gather(*tasks)
    out.update({k: v for k, v in STATS.items() if not k.endswith("_open")})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
