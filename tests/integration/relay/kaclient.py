#!/usr/bin/env python3
"""kaclient.py - one keep-alive client connection carrying a scripted list of
requests, one after the other (as a TLS-offloading load balancer does for
many phones), over plain TCP or TLS.

The script (a file, or - for stdin) has one JSON object per line:
  {"m": "POST", "t": "/path?query", "h": {"Name": "value"}, "b": "body",
   "pause": 0.3}
m defaults to POST, b to "" (Content-Length is added unless "h" sets
Transfer-Encoding or the method is HEAD/OPTIONS without a body), pause
(seconds) is waited before sending.

Output: one JSON line per response {"i", "status", "headers" (lower-case
names, first value), "body"}; a response that never came prints
{"i", "status": 0}, and the client stops. A last line says
{"done": true, "planted": <the byte string "X-Planted" or "evil" appeared
anywhere in what the server sent>, "closed": <the server closed>}.
Exit 0 unless the connection could not be made.
"""
import argparse
import json
import socket
import ssl
import sys
import time


class Conn:
    def __init__(self, a):
        raw = socket.create_connection((a.host, a.port), timeout=a.timeout)
        if a.cafile:
            ctx = ssl.create_default_context(cafile=a.cafile)
            raw = ctx.wrap_socket(raw, server_hostname=a.sni)
        self.s = raw
        self.buf = b""
        self.raw = b""
        self.eof = False

    def fill(self):
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        except (OSError, ssl.SSLError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        self.raw += d
        return True

    def response(self, no_body):
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self.fill():
                    return None
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs.setdefault(k.strip().lower(), v.strip())
            if status >= 200:
                break
        body = b""
        if no_body or status in (204, 304):
            pass
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    if not self.fill():
                        return None
                line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    if not self.fill():
                        return None
                body += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                if not self.fill():
                    return None
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self.fill():
                pass
            body, self.buf = self.buf, b""
        return {"status": status, "headers": hdrs, "body": body.decode("latin-1")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", help="TLS with this root; plain TCP without")
    p.add_argument("--sni", default="localhost")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("script")
    a = p.parse_args()
    f = sys.stdin if a.script == "-" else open(a.script)
    reqs = [json.loads(l) for l in f if l.strip()]
    c = Conn(a)
    for i, r in enumerate(reqs):
        time.sleep(r.get("pause", 0))
        m = r.get("m", "POST")
        body = r.get("b", "").encode()
        hdrs = {"Host": "localhost"}
        hdrs.update(r.get("h", {}))
        if "Transfer-Encoding" not in hdrs and (body or m not in ("HEAD", "OPTIONS", "GET")):
            hdrs["Content-Length"] = str(len(body))
        head = "%s %s HTTP/1.1\r\n" % (m, r["t"]) + "".join(
            "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        try:
            c.s.sendall(head.encode() + body)
        except OSError:
            print(json.dumps({"i": i, "status": 0}), flush=True)
            break
        resp = c.response(m == "HEAD")
        if resp is None:
            print(json.dumps({"i": i, "status": 0}), flush=True)
            break
        resp["i"] = i
        print(json.dumps(resp), flush=True)
    # Whatever else the server sends within a moment (a planted answer).
    c.s.settimeout(0.3)
    while c.fill():
        pass
    print(json.dumps({"done": True, "planted": b"X-Planted" in c.raw or b"evil" in c.raw,
                      "closed": c.eof}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
