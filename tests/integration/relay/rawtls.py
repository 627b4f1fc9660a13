#!/usr/bin/env python3
"""rawtls.py - send raw bytes to the gateway over TLS and watch what comes back.

Unlike tlsreplay.py, which parses responses to keep a connection going, this
one sends exactly the given bytes (a file, or - for stdin), then reads until
the server closes the connection or --wait seconds pass, and reports:

  {"statuses": [400], "closed": true, "close_s": 0.01, "last_rx_s": 0.01,
   "bytes": 123, "head": "..."}

statuses lists the status code of every response head seen (interim 1xx
included), so a smuggled second request that got its own answer shows up as
a second entry. closed says whether the gateway ended the connection (FIN,
close_notify or reset) within --wait seconds; close_s is when, last_rx_s when the last bytes came
(both in seconds from the end of the handshake).

--idle sends nothing at all after the handshake (idle-timeout checks).
--pause S waits S seconds after the handshake before sending.
"""
import argparse
import json
import re
import socket
import ssl
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--wait", type=float, default=3.0)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--idle", action="store_true")
    p.add_argument("file", nargs="?", default="-")
    a = p.parse_args()
    data = b""
    if not a.idle:
        data = sys.stdin.buffer.read() if a.file == "-" else open(a.file, "rb").read()
    ctx = ssl.create_default_context(cafile=a.cafile)
    raw = socket.create_connection((a.host, a.port), timeout=a.wait)
    s = ctx.wrap_socket(raw, server_hostname=a.sni)
    t0 = time.monotonic()
    if a.pause:
        time.sleep(a.pause)
    if data:
        try:
            s.sendall(data)
        except OSError:
            pass  # the gateway may close before reading everything
    got = b""
    closed = False
    last_rx = None
    deadline = time.monotonic() + a.wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except (ssl.SSLError, ConnectionResetError, OSError):
            d = b""
        if not d:
            closed = True
            break
        got += d
        last_rx = time.monotonic()
    close_s = round(time.monotonic() - t0, 3) if closed else None
    statuses = [int(m.group(1)) for m in re.finditer(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", got)]
    head = got.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    print(json.dumps({"statuses": statuses, "closed": closed, "close_s": close_s,
                      "last_rx_s": round(last_rx - t0, 3) if last_rx else None,
                      "bytes": len(got), "head": head}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
