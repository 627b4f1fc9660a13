#!/usr/bin/env python3
"""iisbackend.py - a backend that authenticates TCP connections, as IIS does.

Every connection gets a number. A request's user is its Basic user name, else
its User= query parameter. The backend remembers the first user of each
connection and, like IIS with NTLM, authenticates the connection itself:

  Authorization: NTLM type1   -> 401 + WWW-Authenticate: NTLM <challenge>;
                                 the connection is now "challenged"
  Authorization: NTLM type3   -> on a challenged connection: the connection is
                                 authenticated as the request's User= (200);
                                 on any other connection: 401 (broken handshake)
  no Authorization            -> served as the connection's NTLM user if it
                                 has one, else 401
  Authorization: Basic ...    -> served as that user

Every answer carries X-Conn (connection number), X-Served-As (the user the
request was served as), X-First-User (the connection's first user) and
X-Open (connections that carried a request and are still open). A request
served as someone other than its own user, or arriving on a connection whose
first user was someone else, is a mismatch: X-Mismatch: 1, and a line
"mismatch ..." in --log. Every request is logged as "req conn=N user=U
served=S".

Framing tests (query "mode="), each answered on the request's connection:
  desync      Content-Length: 5 "hello", then in the same write a planted
              second response (X-Planted: 1, body "evil")
  late        a normal answer, then 100 ms later the planted response alone
  head_body   (HEAD) Content-Length: 4 and the 4 bytes "evil" anyway
  204_body    204 followed by the planted response in the same write
  304_body    304 followed by the planted response in the same write
  100_then    100 Continue, then the answer, then the planted response

GET /health answers 200 and closes.

usage: iisbackend.py --port-file F [--log F]
"""
import argparse
import base64
import os
import socket
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATE = {"next": 0, "open": set()}
PLANT = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Planted: 1\r\n\r\nevil"


def log(logf, line):
    if logf:
        with LOCK, open(logf, "a") as f:
            f.write(line + "\n")


def read_request(s, buf):
    """(method, target, headers dict, leftover) or None at EOF."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    clen = int(hdrs.get("content-length", "0"))
    while len(rest) < clen:
        d = s.recv(65536)
        if not d:
            return None
        rest += d
    return method, target, hdrs, rest[clen:]


def request_user(target, hdrs):
    auth = hdrs.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        except ValueError:
            return ""
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    return q.get("User", [""])[0]


def serve(s, cid, logf):
    try:
        serve_loop(s, cid, logf)
    finally:
        s.close()
        with LOCK:
            STATE["open"].discard(cid)


def serve_loop(s, cid, logf):
    first = None
    challenged = False
    ntlm_user = None
    buf = b""
    while True:
        r = read_request(s, buf)
        if r is None:
            return
        method, target, hdrs, buf = r
        if target.startswith("/health"):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        with LOCK:
            STATE["open"].add(cid)
            nopen = len(STATE["open"])
        user = request_user(target, hdrs)
        if first is None:
            first = user
        auth = hdrs.get("authorization", "")
        status, served, extra = 200, None, ""
        if auth == "NTLM type1":
            challenged, ntlm_user = True, None
            status, extra = 401, "WWW-Authenticate: NTLM challenge-%d\r\n" % cid
        elif auth == "NTLM type3":
            if challenged:
                ntlm_user, served = user, user
            else:
                status = 401
            challenged = False
        elif auth.lower().startswith("basic "):
            served = user
        elif ntlm_user is not None:
            served = ntlm_user
        else:
            status, extra = 401, "WWW-Authenticate: NTLM\r\n"
        mismatch = first != user or (served is not None and served != user)
        log(logf, "req conn=%d user=%s served=%s" % (cid, user, served))
        if mismatch:
            log(logf, "mismatch conn=%d first=%s user=%s served=%s" % (cid, first, user, served))
        mode = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("mode", [""])[0]
        body = b"ok"
        head = ("X-Conn: %d\r\nX-Served-As: %s\r\nX-First-User: %s\r\nX-Open: %d\r\n%s%s"
                % (cid, served or "-", first, nopen, "X-Mismatch: 1\r\n" if mismatch else "", extra))
        if mode == "desync":
            s.sendall(("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n%s\r\n" % head).encode()
                      + b"hello" + PLANT)
        elif mode == "head_body":
            s.sendall(("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n%s\r\n" % head).encode() + b"evil")
        elif mode in ("204_body", "304_body"):
            line = "204 No Content" if mode == "204_body" else "304 Not Modified"
            s.sendall(("HTTP/1.1 %s\r\n%s\r\n" % (line, head)).encode() + PLANT)
        elif mode == "100_then":
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" +
                      ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n%s\r\n" % head).encode() + body + PLANT)
        else:
            reason = "OK" if status == 200 else "Unauthorized"
            s.sendall(("HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n"
                       % (status, reason, len(body), head)).encode() + body)
            if mode == "late":
                time.sleep(0.1)
                s.sendall(PLANT)


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
        with LOCK:
            STATE["next"] += 1
            cid = STATE["next"]
        threading.Thread(target=serve, args=(c, cid, a.log), daemon=True).start()


if __name__ == "__main__":
    main()
