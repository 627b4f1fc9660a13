#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""eas_load.py - a small, bounded ActiveSync load for gateway tests.

    eas_load.py --port P --cafile ROOT.pem [--host 127.0.0.1] [--sni localhost]
                [--conns 8] [--pollers 6] [--duration 10] [--stop-file F]
                [--max-requests N] [--gap-ms 0,5] [--ready-file F]

--conns keep-alive TLS connections each send Sync requests one after the
other (a random pause of --gap-ms MIN,MAX between them, so connections are
sometimes idle, as a phone's are). --pollers connections each hold a Ping
long-poll, re-issued as soon as it is answered. Every client has its own
user and DeviceId (LoadDevN, PollDevN). The run stops after --duration
seconds, when --stop-file appears, or after --max-requests Sync requests in
all; each client then finishes the request it has in flight.

It tells apart what a client may see when the server goes away:
  ok          a complete 2xx answer (a Ping answered "no changes" counts)
  failure     a request sent that got no complete answer: reset, EOF, timeout,
              TLS error, a non-2xx status; or a connect that was refused
  close       the server closed after an answer that said Connection: close
  idle_close  the server closed (FIN) while no request was outstanding, seen
              before sending the next one, as curl and phones check (fine
              in HTTP/1.1, not a failure)
  idle_reset  an RST on an idle connection (ungraceful: counted as dropped)
Prints one JSON object: counters, completions per whole second until the stop,
the first failures.
"""
import argparse
import base64
import json
import random
import select
import socket
import ssl
import sys
import threading
import time

SYNC_BODY = bytes.fromhex("03016a00455c4f4b0330000101")  # any bytes: the gateway relays them
PING_BODY = bytes.fromhex("03016a00000d4548033630000101")


class Failure(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.failures = []
        self.per_sec = {}
        self.t0 = time.monotonic()
        self.max_ms = {"Sync": 0.0, "Ping": 0.0}

    def add(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    def done(self, cmd, ms):
        with self.lock:
            s = int(time.monotonic() - self.t0)
            self.per_sec[s] = self.per_sec.get(s, 0) + 1
            if ms > self.max_ms[cmd]:
                self.max_ms[cmd] = ms

    def fail(self, who, kind, detail):
        with self.lock:
            self.c["failures"] = self.c.get("failures", 0) + 1
            self.c["failure_" + kind] = self.c.get("failure_" + kind, 0) + 1
            if len(self.failures) < 20:
                self.failures.append({"client": who, "kind": kind, "detail": detail[:200],
                                      "t": round(time.monotonic() - self.t0, 3)})


class Conn:
    """One TLS connection with its own read buffer."""

    def __init__(self, a, ctx):
        raw = socket.create_connection((a.host, a.port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname=a.sni)
        self.buf = bytearray()
        self.nreq = 0  # requests sent on this connection

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def idle_state(self):
        """None if the connection looks usable, else 'fin' or 'rst'."""
        if self.buf:
            return "data"
        r, _, _ = select.select([self.s], [], [], 0)
        if not r and not self.s.pending():
            return None
        self.s.setblocking(False)
        try:
            d = self.s.recv(4096)
            if not d:
                return "fin"
            self.buf += d
            return "data"
        except (ssl.SSLWantReadError, BlockingIOError):
            return None  # a TLS record without application data (tickets)
        except (ConnectionResetError, ssl.SSLError, OSError):
            return "rst"
        finally:
            self.s.setblocking(True)

    def fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("timeout", "no complete answer in time")
        self.s.settimeout(left)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise Failure("timeout", "no complete answer in time")
        except ConnectionResetError as e:
            raise Failure("reset", str(e))
        except ssl.SSLError as e:
            raise Failure("tls_error", str(e))
        except OSError as e:
            raise Failure("reset", str(e))
        if not d:
            raise Failure("eof", "connection closed before the answer was complete (%d bytes)"
                          % len(self.buf))
        self.buf += d

    def read_until(self, sep, deadline):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            self.fill(deadline)

    def read_n(self, n, deadline):
        while len(self.buf) < n:
            self.fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def exchange(self, req, timeout):
        """Send one request, read one answer: (status, headers, body)."""
        try:
            self.s.settimeout(10)
            self.s.sendall(req)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Failure("reset", "on send: %s" % e)
        except ssl.SSLError as e:
            raise Failure("tls_error", "on send: %s" % e)
        except OSError as e:
            raise Failure("reset", "on send: %s" % e)
        deadline = time.monotonic() + timeout
        head = self.read_until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise Failure("protocol", "bad status line %r" % lines[0][:80])
        status = int(parts[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.read_until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n", deadline)
                    break
                body += self.read_n(size, deadline)
                self.read_n(2, deadline)
            body = bytes(body)
        else:
            body = self.read_n(int(hdrs.get("content-length", "0")), deadline)
        return status, hdrs, body


def request(a, path, user, body):
    auth = base64.b64encode(("%s:secret" % user).encode()).decode()
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"
            "MS-ASProtocolVersion: 14.1\r\nUser-Agent: Apple-iPhone4C1/1002.142\r\n"
            "Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n"
            % (path, a.sni, auth, len(body)))
    return head.encode() + body


def client(a, ctx, st, stop, who, cmd, idx, budget):
    if cmd == "Sync":
        user, dev, body, timeout = "load%d" % idx, "LoadDev%d" % idx, SYNC_BODY, 15
    else:
        user, dev, body, timeout = "poll%d" % idx, "PollDev%d" % idx, PING_BODY, 30
    path = ("/Microsoft-Server-ActiveSync?Cmd=%s&User=%s&DeviceId=%s&DeviceType=iPhone"
            % (cmd, user, dev))
    req = request(a, path, user, body)
    conn = None
    gmin, gmax = a.gap
    while not stop.is_set():
        if cmd == "Sync" and not budget():
            break
        if conn is not None:
            state = conn.idle_state()
            if state is not None:
                st.add({"fin": "idle_close", "rst": "idle_reset",
                        "data": "unexpected_data"}[state])
                if state == "data":
                    st.fail(who, "protocol", "bytes from the server while idle")
                conn.close()
                conn = None
        if conn is None:
            try:
                conn = Conn(a, ctx)
                st.add("connections")
            except (OSError, ssl.SSLError) as e:
                st.fail(who, "connect", str(e))
                time.sleep(0.05)
                continue
        st.add("sent_" + cmd)
        conn.nreq += 1
        t = time.monotonic()
        try:
            status, hdrs, rbody = conn.exchange(req, timeout)
        except Failure as f:
            st.fail(who, f.kind, "%s (request %d on its connection): %s"
                    % (cmd, conn.nreq, f.detail))
            conn.close()
            conn = None
            continue
        ms = (time.monotonic() - t) * 1000
        if not 200 <= status < 300:
            st.fail(who, "status", "%s answered %d" % (cmd, status))
        else:
            st.add("ok_" + cmd)
            st.done(cmd, ms)
            by = "backend" if "x-backend" in hdrs else "gateway"
            st.add("%s_by_%s" % (cmd, by))
            if cmd == "Ping" and b"\x031\x00" not in rbody:
                st.fail(who, "ping_body", "Ping answer without Status 1: %r" % rbody[:40])
        if "close" in hdrs.get("connection", "").lower():
            st.add("close")
            conn.close()
            conn = None
        if cmd == "Sync" and gmax > 0:
            time.sleep(random.uniform(gmin, gmax) / 1000.0)
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--pollers", type=int, default=6)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--stop-file")
    ap.add_argument("--ready-file")
    ap.add_argument("--max-requests", type=int, default=0)
    ap.add_argument("--gap-ms", default="0,5")
    a = ap.parse_args()
    a.gap = tuple(float(x) for x in a.gap_ms.split(","))

    ctx = ssl.create_default_context(cafile=a.cafile)
    st = Stats()
    stop = threading.Event()
    lock = threading.Lock()
    left = [a.max_requests]

    def budget():
        if not a.max_requests:
            return True
        with lock:
            if left[0] <= 0:
                return False
            left[0] -= 1
            return True

    threads = []
    for i in range(a.conns):
        threads.append(threading.Thread(target=client, args=(a, ctx, st, stop, "sync%d" % i,
                                                             "Sync", i, budget)))
    for j in range(a.pollers):
        threads.append(threading.Thread(target=client, args=(a, ctx, st, stop, "ping%d" % j,
                                                             "Ping", j, budget)))
    for t in threads:
        t.daemon = True
        t.start()
    if a.ready_file:
        open(a.ready_file, "w").close()
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        if a.stop_file:
            try:
                open(a.stop_file).close()
                break
            except OSError:
                pass
        if a.max_requests and left[0] <= 0:
            break
        time.sleep(0.05)
    stop.set()
    stopped_at = int(time.monotonic() - st.t0)
    for t in threads:
        t.join(40)
    hung = sum(t.is_alive() for t in threads)
    # Whole seconds before the stop only: after it the clients wind down.
    secs = stopped_at
    out = dict(st.c)
    out["hung_clients"] = hung
    out["per_second"] = [st.per_sec.get(s, 0) for s in range(secs)]
    out["max_ms"] = {k: round(v, 1) for k, v in st.max_ms.items()}
    out["first_failures"] = st.failures
    out.setdefault("failures", 0)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
