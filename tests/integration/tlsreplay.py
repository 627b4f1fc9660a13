#!/usr/bin/env python3
"""tlsreplay.py - send raw HTTP/1.1 requests over TLS, byte for byte, and
report each response (status, headers, body length) as one JSON line.

Used by integration tests where curl would rewrite the request: real captured
phone requests, hostile framing, pipelining, dribbled bytes.

usage: tlsreplay.py --port P [--host 127.0.0.1] [--cafile root.pem] [--tls12 [--ciphers C]]
                    [--mode keepalive|each|pipeline] [--dribble N] FILE...
"-" as FILE reads one request from stdin. Exit 0 unless the connection failed
unexpectedly.
"""
import argparse
import json
import socket
import ssl
import sys
import time


def connect(a):
    ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl._create_unverified_context()
    if not a.cafile:
        ctx.check_hostname = False
    # Callers that build their own Namespace (clients.py, eas_session.py)
    # name only the connection's address and trust: version and ciphers are
    # optional.
    if getattr(a, "tls12", False):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if getattr(a, "ciphers", None):
        ctx.set_ciphers(a.ciphers)
    raw = socket.create_connection((a.host, a.port), timeout=a.timeout)
    return ctx.wrap_socket(raw, server_hostname=a.sni or a.host)


class Reader:
    def __init__(self, s):
        self.s = s
        self.buf = b""
        self.eof = False

    def fill(self):
        try:
            d = self.s.recv(65536)
        except (ssl.SSLError, ConnectionResetError, OSError):
            d = b""
        if not d:
            self.eof = True
        self.buf += d
        return bool(d)

    def response(self, head_request=False):
        """Read one response; returns dict or None at EOF."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self.fill():
                    return None
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ")[1])
            hdrs = {}
            for l in lines[1:]:
                k, v = l.split(b":", 1)
                hdrs.setdefault(k.decode().lower(), v.strip().decode(errors="replace"))
            self.buf = rest
            if 100 <= status < 200:
                continue  # interim
            break
        body = b""
        if head_request or status in (204, 304):
            pass
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    if not self.fill():
                        return {"status": status, "headers": hdrs, "truncated": True}
                line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    if not self.fill():
                        return {"status": status, "headers": hdrs, "truncated": True}
                body += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                if not self.fill():
                    break
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self.fill():
                pass
            body, self.buf = self.buf, b""
        return {"status": status, "headers": hdrs, "body_len": len(body),
                "body_hex": body[:64].hex()}


def send(s, data, dribble):
    if dribble:
        for i in range(0, len(data), dribble):
            s.sendall(data[i:i + dribble])
            time.sleep(0.001)
    else:
        s.sendall(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni")
    p.add_argument("--cafile")
    p.add_argument("--mode", default="keepalive", choices=["keepalive", "each", "pipeline"])
    p.add_argument("--dribble", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--tls12", action="store_true", help="TLS 1.2 at most")
    p.add_argument("--ciphers", help="TLS 1.2 cipher list (OpenSSL syntax)")
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    reqs = []
    for f in a.files:
        reqs.append((f, sys.stdin.buffer.read() if f == "-" else open(f, "rb").read()))
    s = None
    rd = None
    if a.mode == "pipeline":
        s = connect(a)
        rd = Reader(s)
        send(s, b"".join(r for _, r in reqs), a.dribble)
        for f, r in reqs:
            resp = rd.response(r.startswith(b"HEAD "))
            out = {"file": f}
            out.update(resp or {"status": 0, "eof": True})
            print(json.dumps(out), flush=True)
        return 0
    for f, r in reqs:
        if s is None or a.mode == "each":
            if s:
                s.close()
            s = connect(a)
            rd = Reader(s)
        send(s, r, a.dribble)
        resp = rd.response(r.startswith(b"HEAD "))
        out = {"file": f}
        out.update(resp or {"status": 0, "eof": True})
        print(json.dumps(out), flush=True)
        if resp is None or resp["headers"].get("connection", "").lower() == "close":
            s.close()
            s = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
