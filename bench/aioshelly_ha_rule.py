#!/usr/bin/env python3
"""The comparison side of the ring-detection benchmark: Home Assistant's way.

Receives the same CoIoT datagrams as the bridge on its own UDP socket, parses each with aioshelly's
CoIoT parser (`aioshelly.block_device.coap.CoapMessage`, what Home Assistant's Shelly integration
uses) and applies Home Assistant's Gen1 input-event rule: an event fires only when the input's
event counter (sensor 2103) changes from a known value, with type `single` for "S" and `long` for "L".

Prints the UDP port it listens on, then one JSON line per event fired
({"t_ns": wall-clock ns, "type": ..., "cnt": ...}); a datagram `END` makes it print
{"parse_ns": [...per-datagram parse+rule cost...]} and exit.
"""
import json
import socket
import sys
import time

from aioshelly.block_device.coap import CoapMessage, InvalidMessage

# homeassistant/components/shelly/const.py: INPUTS_EVENTS_DICT
INPUTS_EVENTS = {"S": "single", "SS": "double", "SSS": "triple", "L": "long", "SL": "single_long", "LS": "long_single"}


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    last_cnt = None
    parse_ns = []
    while True:
        data, addr = sock.recvfrom(4096)
        if data == b"END":
            break
        t0 = time.perf_counter_ns()
        try:
            msg = CoapMessage(addr, data)
        except InvalidMessage:
            continue
        g = {s: v for (_, s, v) in msg.payload.get("G", [])}
        event, cnt = g.get(2102), g.get(2103)
        fired = None
        # homeassistant/components/shelly/coordinator.py, ShellyBlockCoordinator, on each device update:
        # fire only when the counter moved from a known value and the event type is known.
        if cnt is not None and last_cnt is not None and cnt != last_cnt and event in INPUTS_EVENTS:
            fired = INPUTS_EVENTS[event]
        if cnt is not None:
            last_cnt = cnt
        parse_ns.append(time.perf_counter_ns() - t0)
        if fired:
            print(json.dumps({"t_ns": time.time_ns(), "type": fired, "cnt": cnt}), flush=True)
    print(json.dumps({"parse_ns": parse_ns}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
