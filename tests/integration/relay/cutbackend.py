#!/usr/bin/env python3
"""cutbackend.py - a backend that breaks off its answer halfway.

GET /health answers 200 (so the gateway's health check keeps it up). Any
other request is read (head plus Content-Length body) and answered with a
head announcing more than is then sent, after which the connection is
closed:
  ?cut=clen     Content-Length: 1000000, 100000 bytes sent
  ?cut=chunked  chunked, one whole 4096-byte chunk, then half of the next
Every request line is appended to --log, one per line.

usage: cutbackend.py --port-file F [--log F]
"""
import argparse
import os
import socket
import threading


def read_request(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
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
    return head.split(b"\r\n")[0].decode(errors="replace")


def serve(s, logf):
    with s:
        line = read_request(s)
        if line is None:
            return
        if logf:
            with open(logf, "a") as f:
                f.write(line + "\n")
        if " /health" in line:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        if "cut=chunked" in line:
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"1000\r\n" + b"c" * 4096 + b"\r\n" + b"1000\r\n" + b"c" * 2048)
        else:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 100000)
        # Closed here: the answer is cut short.


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
