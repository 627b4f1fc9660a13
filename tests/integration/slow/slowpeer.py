#!/usr/bin/env python3
"""slowpeer.py - many slow (or deliberately fast) clients against the gateway.

Each of --count connections (from --source, round robin over a comma list)
does one thing slowly and notes when the gateway ended the connection:

  idle    TLS handshake (or TCP connect), then nothing
  head    a request line, then one byte of a header line every --interval s
  body    a complete POST head with Content-Length --clen, then one body
          byte every --interval s
  read    a POST asking the demo backend for --clen response bytes
          (egtest_size), then reading --chunk bytes every --interval s
          through a small receive buffer
  upload  a POST with a --clen byte body sent at --rate bytes/s; the
          answer's status is recorded (a good, if slow, client)

At most --parallel connections are being set up at once. Once every
connection is set up, --ready-file gets the number that are open. The run
ends when every connection was closed or answered, or after --hold s, or on
SIGUSR1. Then one JSON line goes to stdout:

  {"mode": "body", "count": N, "opened": k, "refused": r, "closed": c,
   "open_at_end": o, "closed_after_s": {"min": .., "p50": .., "max": ..},
   "statuses": {"200": 1}, "setup_s": ..}

refused: connect or handshake failed (or the gateway closed the connection
before the slow part began); closed: the gateway ended it later (EOF or
reset), closed_after_s counting from the start of the slow part. Exit status
0 unless the arguments were bad.
"""
import argparse
import asyncio
import json
import signal
import socket
import ssl
import sys
import time

EAS = "/Microsoft-Server-ActiveSync"


def target(a, i):
    return ("%s?Cmd=%s&User=slow%d&DeviceId=SLOW%06d&DeviceType=SlowPhone"
            % (EAS, "Sync" if a.mode != "upload" else "SendMail", i, i))


class Peer:
    def __init__(self):
        self.opened = False
        self.refused = False
        self.t_slow = None
        self.t_closed = None
        self.status = None


async def open_one(a, i, ctx):
    src = a.sources[i % len(a.sources)]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    if a.mode == "read":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((src, 0))
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(s, (a.host, a.port)), a.connect_timeout)
    return await asyncio.wait_for(
        asyncio.open_connection(sock=s, ssl=ctx, server_hostname=a.sni if ctx else None,
                                limit=max(a.chunk, 1024)),
        a.connect_timeout)


async def wait_eof(r, p, t_end, until_answer=False):
    """Read (and drop) until EOF/reset or t_end (or, with until_answer, the
    first answer); record the close time."""
    while time.monotonic() < t_end:
        try:
            d = await asyncio.wait_for(r.read(65536), max(0.01, t_end - time.monotonic()))
        except asyncio.TimeoutError:
            return
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            d = b""
        if not d:
            p.t_closed = time.monotonic()
            return
        if p.status is None and d.startswith(b"HTTP/1.1 "):
            p.status = int(d[9:12])
            if until_answer:
                return


async def run_one(a, i, ctx, p, sem, stop):
    async with sem:
        try:
            r, w = await open_one(a, i, ctx)
        except Exception:
            p.refused = True
            return
    p.opened = True
    head_common = "Host: %s\r\nAuthorization: Basic c2xvdzpzbG93\r\nMS-ASProtocolVersion: 14.1\r\n" % a.sni
    try:
        if a.mode == "idle":
            pass
        elif a.mode == "head":
            w.write(("POST %s HTTP/1.1\r\n%s" % (target(a, i), head_common)).encode())
        elif a.mode == "body":
            w.write(("POST %s HTTP/1.1\r\n%sContent-Type: application/vnd.ms-sync.wbxml\r\n"
                     "Content-Length: %d\r\n\r\n" % (target(a, i), head_common, a.clen)).encode())
        elif a.mode == "read":
            w.write(("POST %s&egtest_size=%d HTTP/1.1\r\n%sContent-Length: 0\r\n\r\n"
                     % (target(a, i), a.clen, head_common)).encode())
        elif a.mode == "upload":
            w.write(("POST %s HTTP/1.1\r\n%sContent-Type: message/rfc822\r\n"
                     "Content-Length: %d\r\n\r\n" % (target(a, i), head_common, a.clen)).encode())
        await w.drain()
    except (OSError, ssl.SSLError):
        p.refused = True
        return
    await stop.ready.wait()
    p.t_slow = time.monotonic()
    t_end = stop.t_end
    eof = None
    if a.mode != "read":
        eof = asyncio.ensure_future(wait_eof(r, p, t_end, a.mode == "upload"))
    try:
        if a.mode in ("head", "body"):
            n = 0
            while not p.t_closed and time.monotonic() < t_end and not stop.now.is_set():
                await asyncio.sleep(a.interval)
                w.write(b"X" if a.mode == "head" else b"\0")
                await w.drain()
                n += 1
                if a.mode == "body" and n >= a.clen:
                    break
        elif a.mode == "upload":
            sent, blk = 0, max(1, int(a.rate / 10))
            while sent < a.clen and not p.t_closed:
                k = min(blk, a.clen - sent)
                w.write(b"u" * k)
                await w.drain()
                sent += k
                await asyncio.sleep(0.1)
        elif a.mode == "read":
            got = 0
            while time.monotonic() < t_end and not stop.now.is_set():
                try:
                    d = await asyncio.wait_for(r.read(a.chunk), max(0.01, t_end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                except (OSError, ssl.SSLError):
                    d = b""
                if not d:
                    p.t_closed = time.monotonic()
                    break
                if p.status is None and got == 0 and d.startswith(b"HTTP/1.1 "):
                    p.status = int(d[9:12])
                got += len(d)
                if got >= a.clen:
                    break
                await asyncio.sleep(a.interval)
    except (OSError, ssl.SSLError):
        if not p.t_closed:
            p.t_closed = time.monotonic()
    if eof:
        while not eof.done() and not stop.now.is_set() and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        eof.cancel()
    if not p.t_closed:
        # Still open at the end: leave it to close with the process, not
        # before the summary is written (the test measures what was held).
        stop.keep.append(w)
        return
    w.close()


class Stop:
    def __init__(self, hold):
        self.ready = asyncio.Event()
        self.now = asyncio.Event()
        self.t_end = 0.0
        self.hold = hold
        self.keep = []


async def main(a):
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.cafile)
    peers = [Peer() for _ in range(a.count)]
    sem = asyncio.Semaphore(a.parallel)
    stop = Stop(a.hold)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, stop.now.set)
    t0 = time.monotonic()
    stop.t_end = t0 + a.setup_timeout + a.hold
    tasks = [asyncio.ensure_future(run_one(a, i, ctx, peers[i], sem, stop)) for i in range(a.count)]
    # Set-up is done when every peer is opened (and has sent its first
    # bytes) or refused.
    while sum(1 for p in peers if p.opened or p.refused) < a.count:
        if time.monotonic() - t0 > a.setup_timeout:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)
    setup_s = time.monotonic() - t0
    stop.t_end = time.monotonic() + a.hold
    stop.ready.set()
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("%d\n" % sum(1 for p in peers if p.opened and not p.t_closed))
    done, pending = await asyncio.wait(tasks, timeout=a.hold + 5)
    stop.now.set()
    for t in pending:
        t.cancel()
    closed = sorted(p.t_closed - p.t_slow for p in peers if p.t_closed and p.t_slow)
    statuses = {}
    for p in peers:
        if p.status is not None:
            statuses[str(p.status)] = statuses.get(str(p.status), 0) + 1
    out = {
        "mode": a.mode,
        "count": a.count,
        "opened": sum(1 for p in peers if p.opened),
        "refused": sum(1 for p in peers if p.refused),
        "closed": len(closed),
        "open_at_end": sum(1 for p in peers if p.opened and not p.t_closed),
        "closed_after_s": {
            "min": round(closed[0], 3) if closed else None,
            "p50": round(closed[len(closed) // 2], 3) if closed else None,
            "max": round(closed[-1], 3) if closed else None,
        },
        "statuses": statuses,
        "setup_s": round(setup_s, 3),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--cafile")
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--source", default="127.0.0.1")
    ap.add_argument("--mode", choices=["idle", "head", "body", "read", "upload"], required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=100)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--clen", type=int, default=100000)
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    a.sources = a.source.split(",")
    if a.tls and not a.cafile:
        ap.error("--tls needs --cafile")
    asyncio.run(main(a))
    sys.exit(0)
