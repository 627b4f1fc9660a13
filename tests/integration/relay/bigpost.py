#!/usr/bin/env python3
"""bigpost.py - a client that announces a huge body and keeps sending it.

Sends the request head given as a file (it should announce a Content-Length
far larger than what will be sent), then body bytes at up to about 64 MB/s
as long as the server takes them, for at most --seconds, while reading whatever the server answers.
Reports one JSON line:

  {"statuses": [404], "closed_s": 0.4, "sent": 1234567, "reset": false}

statuses: status codes of the response heads received; closed_s: seconds from
the end of the head until the server ended the connection (EOF, reset or a
failed send), null if it never did within --seconds; sent: body bytes the
server's socket accepted; reset: the connection ended with a reset (RST)
rather than an orderly close.
"""
import argparse
import json
import re
import select
import socket
import ssl
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", help="TLS with this root; plain TCP without")
    p.add_argument("--sni", default="localhost")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("head")
    a = p.parse_args()
    raw = socket.create_connection((a.host, a.port), timeout=a.seconds + 2)
    s = raw
    if a.cafile:
        s = ssl.create_default_context(cafile=a.cafile).wrap_socket(raw, server_hostname=a.sni)
    s.sendall(open(a.head, "rb").read())
    t0 = time.monotonic()
    s.setblocking(False)
    got, end, reset, sent = b"", None, False, 0
    block = b"x" * 65536
    while end is None and time.monotonic() - t0 < a.seconds:
        r, w, _ = select.select([s], [s], [], 0.05)
        if r or (a.cafile and s.pending()):
            try:
                d = s.recv(65536)
                if not d:
                    end = time.monotonic() - t0
                got += d
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError) as e:
                reset = reset or isinstance(e, ConnectionResetError)
                end = time.monotonic() - t0
        if w and end is None:
            try:
                sent += s.send(block)
                time.sleep(0.001)  # ~64 MB/s: a fast phone, not loopback's 4 GB/s
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError) as e:
                reset = reset or isinstance(e, ConnectionResetError)
                end = time.monotonic() - t0
    # After a failed send the answer may still be readable.
    s.setblocking(True)
    s.settimeout(0.5)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except (OSError, ssl.SSLError) as e:
        reset = reset or isinstance(e, ConnectionResetError)
    statuses = [int(m.group(1)) for m in re.finditer(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", got)]
    print(json.dumps({"statuses": statuses,
                      "closed_s": None if end is None else round(end, 3),
                      "sent": sent, "reset": reset}))
    return 0


if __name__ == "__main__":
    main()
