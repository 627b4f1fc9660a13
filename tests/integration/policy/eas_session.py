#!/usr/bin/env python3
"""eas_session.py - EAS request helpers for the policy integration tests.

  eas_session.py b64 --ver 141 --cmd MeetingResponse --devid ID --type T [--user U] [--pk N]
      Print the base64 query value (MS-ASHTTP 2.2.1.1.1.1: version x10, command
      code, locale LE, DeviceId, policy key LE, DeviceType, then tag/len/value
      parameters; tag 8 = User).

  eas_session.py session --port P --cafile F STEP...
      Run STEPs in order on ONE kept-alive TLS connection to the gateway. A STEP
      is a file holding one raw HTTP request, or "exec:COMMAND" (run with sh
      between two requests, e.g. an easctl approval). One JSON line per request:
      status, headers, body_hex, and lport (the client's local port, so a test
      can prove that every answer came over the same connection). Exits 1 if
      the connection closed before the last request was answered.
      --worker PID|any / --not-worker PID: reconnect (at most 200 times) until
      the gateway's end of the connection is held by that worker process (any:
      some process), or by any other (ss -p), before the first step; each JSON
      line then carries "worker", the holder's pid. Exits 2 if no connection
      landed there.
"""
import argparse
import base64
import json
import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tlsreplay  # noqa: E402  (the shared raw-request TLS client)

# MS-ASHTTP 2.2.1.1.1.1.2 command codes.
CMDS = {
    "Sync": 0, "SendMail": 1, "SmartForward": 2, "SmartReply": 3, "GetAttachment": 4,
    "FolderSync": 9, "FolderCreate": 10, "FolderDelete": 11, "FolderUpdate": 12,
    "MoveItems": 13, "GetItemEstimate": 14, "MeetingResponse": 15, "Search": 16,
    "Settings": 17, "Ping": 18, "ItemOperations": 19, "Provision": 20,
    "ResolveRecipients": 21, "ValidateCert": 22,
}


def b64_query(a):
    dev = a.devid.encode()
    typ = a.type.encode()
    out = bytes([a.ver, CMDS[a.cmd]]) + struct.pack("<H", 0x0409)
    out += bytes([len(dev)]) + dev
    if a.pk is None:
        out += b"\x00"
    else:
        out += b"\x04" + struct.pack("<I", a.pk)
    out += bytes([len(typ)]) + typ
    if a.user:
        u = a.user.encode()
        out += bytes([8, len(u)]) + u
    return base64.b64encode(out).decode()


def holder(port, lport):
    """pid of the process holding the gateway's end of the connection from lport, or 0."""
    out = subprocess.run(["ss", "-Htnp", "state", "established",
                          "( sport = :%d and dport = :%d )" % (port, lport)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else 0


def session(a):
    conn = argparse.Namespace(host="127.0.0.1", port=a.port, cafile=a.cafile, sni="localhost",
                              timeout=a.timeout)
    placed = a.worker or a.not_worker
    for _ in range(200 if placed else 1):
        s = tlsreplay.connect(conn)  # the handshake is done: a worker accepted it
        lport = s.getsockname()[1]
        worker = holder(a.port, lport) if placed else 0
        if not placed or (worker and a.worker in ("", "any", str(worker)) and
                          worker != a.not_worker):
            break
        s.close()
    else:
        print("no connection landed on the worker asked for", file=sys.stderr)
        return 2
    rd = tlsreplay.Reader(s)
    for step in a.steps:
        if step.startswith("exec:"):
            subprocess.run(step[5:], shell=True, check=False)
            continue
        s.sendall(open(step, "rb").read())
        resp = rd.response()
        if resp is None:
            print(json.dumps({"file": step, "status": 0, "eof": True}), flush=True)
            return 1
        resp.update({"file": step, "lport": lport, "worker": worker})
        print(json.dumps(resp), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("b64")
    b.add_argument("--ver", type=int, required=True)
    b.add_argument("--cmd", required=True, choices=sorted(CMDS))
    b.add_argument("--devid", required=True)
    b.add_argument("--type", required=True)
    b.add_argument("--user")
    b.add_argument("--pk", type=int)
    s = sub.add_parser("session")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cafile", required=True)
    s.add_argument("--timeout", type=float, default=20)
    s.add_argument("--worker", default="")
    s.add_argument("--not-worker", type=int, default=0)
    s.add_argument("steps", nargs="+")
    a = p.parse_args()
    if a.what == "b64":
        print(b64_query(a))
        return 0
    return session(a)


if __name__ == "__main__":
    sys.exit(main())
