#!/usr/bin/env python3
"""phone.py - one EAS phone on one kept-alive TLS connection, for t_xdp.sh.

Sends --requests Sync requests (EAS 14.1, empty body: a valid "empty Sync")
one after the other on the same connection and prints one JSON line per
answer, flushed at once so a test can follow along:
  {"event": "connected", "saddr": "...", "sport": N, "daddr": "...", "dport": N}
  {"event": "answer", "n": 1, "status": 200, "headers": {...}, "body_hex": "..."}
With --silent-wait S it then sends one more request (after --pause-ms), prints
  {"event": "sent", "n": N+1}
and waits up to S seconds for ANY byte of an answer, printing at the end
  {"event": "silence", "n": N+1, "waited": S, "bytes": 0, "eof_after": T|null,
   "reset": false}
An EOF (the gateway closing its side) does not end the wait: the socket
stays open, so the kernel keeps retransmitting the unanswered request (the
packets the XDP filter has to keep dropping). A reset (which ends the wait: nothing is retransmitted
after one) or an answer is reported as such; SIGUSR1 ends the wait early (the test has seen enough).
--user-timeout-ms sets TCP_USER_TIMEOUT so the kernel does not give up on
the connection before the wait is over.
Exit 0 unless the connection could not be made.
"""
import argparse
import base64
import json
import select
import signal
import socket
import ssl
import sys
import time

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
STOP = []


def on_usr1(signo, frame):
    STOP.append(signo)


def out(**kw):
    print(json.dumps(kw), flush=True)


def request(a):
    auth = base64.b64encode(("%s:%s" % (a.user, a.password)).encode()).decode()
    target = ("/Microsoft-Server-ActiveSync?Cmd=Sync&User=%s&DeviceId=%s&DeviceType=%s"
              % (a.user, a.device, a.device_type))
    return ("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"
            "MS-ASProtocolVersion: 14.1\r\nUser-Agent: %s\r\n"
            "Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: 0\r\n\r\n"
            % (target, a.sni or a.host, auth, a.user_agent)).encode()


def read_answer(s, buf):
    """One response with a Content-Length body; None at EOF or reset."""
    while b"\r\n\r\n" not in buf[0]:
        try:
            d = s.recv(65536)
        except (ssl.SSLError, OSError):
            return None
        if not d:
            return None
        buf[0] += d
    head, rest = buf[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(b":", 1)
        hdrs[k.decode().lower()] = v.strip().decode(errors="replace")
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        try:
            d = s.recv(65536)
        except (ssl.SSLError, OSError):
            return None
        if not d:
            return None
        rest += d
    buf[0] = rest[n:]
    return {"status": int(lines[0].split(b" ")[1]), "headers": hdrs, "body_hex": rest[:n].hex()}


def tcp_state(s):
    """The kernel's TCP state of s (TCP_INFO tcpi_state): 7 = CLOSE, 8 = CLOSE_WAIT."""
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return -1


def silence(s, n, wait):
    """Wait up to `wait` s for any answer byte; keep the socket open after EOF.

    An end of the stream is told apart by the socket's TCP state, since the
    TLS layer may report a reset as a plain EOF: CLOSE while our side is
    still open means a RST arrived, CLOSE_WAIT means a FIN."""
    t0 = time.monotonic()
    got = 0
    eof_after = None
    reset = False
    error = None
    while time.monotonic() - t0 < wait and not STOP:
        left = wait - (time.monotonic() - t0)
        if eof_after is not None:
            time.sleep(min(left, 0.2))
            continue
        r, _, _ = select.select([s], [], [], min(left, 0.2))
        if not r and not s.pending():
            continue
        try:
            d = s.recv(65536)
        except ssl.SSLWantReadError:
            continue  # a TLS record without application data (e.g. a ticket)
        except (ssl.SSLError, OSError) as e:
            error = "%s: %s" % (type(e).__name__, e)
            d = b""
        if d:
            got += len(d)
            break
        eof_after = round(time.monotonic() - t0, 2)
        if tcp_state(s) == 7 or (error or "").startswith("ConnectionResetError"):
            reset = True
            break  # nothing will be retransmitted on a reset connection
    out(event="silence", n=n, waited=round(time.monotonic() - t0, 2), bytes=got,
        eof_after=eof_after, reset=reset, error=error, tcp_state=tcp_state(s))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--sni")
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="secret")
    p.add_argument("--device", required=True)
    p.add_argument("--device-type", default="iPhone")
    p.add_argument("--user-agent", default="Apple-iPhone9C1/1402.100")
    p.add_argument("--requests", type=int, default=1)
    p.add_argument("--silent-wait", type=float, default=0)
    p.add_argument("--pause-ms", type=int, default=0)
    p.add_argument("--user-timeout-ms", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()
    signal.signal(signal.SIGUSR1, on_usr1)

    ctx = ssl.create_default_context(cafile=a.cafile)
    raw = socket.create_connection((a.host, a.port), timeout=a.timeout)
    if a.user_timeout_ms:
        raw.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, a.user_timeout_ms)
    s = ctx.wrap_socket(raw, server_hostname=a.sni or a.host)
    la, ra = s.getsockname(), s.getpeername()
    out(event="connected", saddr=la[0], sport=la[1], daddr=ra[0], dport=ra[1])
    req = request(a)
    buf = [b""]
    for n in range(1, a.requests + 1):
        s.sendall(req)
        r = read_answer(s, buf)
        if r is None:
            out(event="eof", n=n)
            return 0
        out(event="answer", n=n, **r)
    if a.silent_wait > 0:
        n = a.requests + 1
        time.sleep(a.pause_ms / 1000.0)
        try:
            s.sendall(req)
            out(event="sent", n=n)
        except (ssl.SSLError, OSError) as e:
            # Already reset (a RST verdict answers even the ACK of the last
            # answer): silence() reports it from the socket's state.
            out(event="send_failed", n=n, error="%s: %s" % (type(e).__name__, e))
        s.setblocking(False)
        silence(s, n, a.silent_wait)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
