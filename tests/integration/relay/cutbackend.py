#!/usr/bin/env python3
"""cutbackend.py - a backend that breaks connections off.

GET /health answers 200 (so the gateway's health check keeps it up). Other
requests, by their query:
  cut=clen        Content-Length: 1000000 announced, 100000 bytes sent, close
  cut=chunked     chunked: one whole 4096-byte chunk, half of the next, close
  late_close=MS   answered 200 "ok" at once with no Connection header, then
                  the connection is closed MS ms later: anything that arrives
                  meanwhile is read and dropped unanswered (a kept-alive
                  connection the server ends while the next request is on its
                  way, deterministically)
Every request line is appended to --log as "answered LINE" or "dropped LINE".

usage: cutbackend.py --port-file F [--log F]
"""
import argparse
import os
import re
import socket
import threading
import time

LOCK = threading.Lock()


def log(logf, what, line):
    if logf:
        with LOCK, open(logf, "a") as f:
            f.write("%s %s\n" % (what, line))


def read_request(s, buf):
    """(request line, leftover bytes) or (None, b"") at EOF."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    clen = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    while len(body) < clen:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return head.split(b"\r\n")[0].decode(errors="replace"), body[clen:]


def drop_until(s, deadline, logf):
    """Read and drop whatever arrives until deadline (monotonic), then return."""
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        got += d
    for m in re.finditer(rb"(?:^|\r\n)([A-Z]+ [^\r\n]* HTTP/1\.1)\r\n", got):
        log(logf, "dropped", m.group(1).decode(errors="replace"))


def serve(s, logf):
    with s:
        buf = b""
        while True:
            line, buf = read_request(s, buf)
            if line is None:
                return
            if " /health" in line:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                return
            log(logf, "answered", line)
            m = re.search(r"late_close=(\d+)", line)
            if m:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                drop_until(s, time.monotonic() + int(m.group(1)) / 1000.0, logf)
                return  # closed without having said so
            if "cut=chunked" in line:
                s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + b"1000\r\n" + b"c" * 4096 + b"\r\n" + b"1000\r\n" + b"c" * 2048)
                return  # cut short
            if "cut=clen" in line:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 100000)
                return  # cut short
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log")
    a = p.parse_args()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, a.log), daemon=True).start()


if __name__ == "__main__":
    main()
