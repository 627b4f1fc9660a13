#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""claim_flood.py - requests that CLAIM a user without proving it.

    claim_flood.py --port P --cafile ROOT.pem --user victim --count N
                   --foldersync F.wbxml --provision P.wbxml [--conns 4] [--seed S]
                   [--victim-device ID --victim-password PW] [--first I]

--conns kept-alive TLS connections send --count requests in all, each with
User=<user>, a DeviceId never used before (Claim<seed><index>) and a random
iOS User-Agent build; one in four is a Provision carrying DeviceInformation
with a random model (P.wbxml holds MODELPLACEHOLDER1), the others FolderSync;
half of the FolderSyncs carry Basic credentials with a wrong password, the
others none at all. --first offsets the indexes (a second run continues the
first one's DeviceIds). With --random-users each claim names its own user
(<user><index>) instead.

With --victim-device, one more connection acts as the real phone of
--victim-user (default victim) meanwhile: a Sync with the right password every 50 ms until the flood ends.

Prints one JSON object: the flood's answers by status ("200/177": a gateway envelope with EAS
status 177) and whether a backend answered (X-Backend), and every answer the real phone got. Exits 1 if a
connection failed in a way no server answer explains (TLS error, reset).
"""
import argparse
import base64
import json
import random
import re
import socket
import ssl
import sys
import threading
import time


def read_answer(f):
    line = f.readline()
    if not line:
        raise EOFError("closed")
    status = int(line.split()[1])
    hdrs = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    body = f.read(n) if n else b""
    # A gateway's EAS envelope (HTTP 200): its Status is the first inline
    # string; "200/177" is MaximumDevicesReached, "200/129" blocked.
    m = re.match(rb"\x03\x01\x6a\x00.*?\x03(\d+)\x00", body, re.S)
    if status == 200 and m and "x-backend" not in hdrs:
        status = "200/" + m.group(1).decode()
    return status, hdrs


def connect(a, ctx):
    s = socket.create_connection(("127.0.0.1", a.port), timeout=20)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    return t, t.makefile("rb")


def request(cmd, user, dev, ua, auth, body):
    head = ("POST /Microsoft-Server-ActiveSync?Cmd=%s&User=%s&DeviceId=%s&DeviceType=iPhone "
            "HTTP/1.1\r\nHost: localhost\r\nUser-Agent: %s\r\nMS-ASProtocolVersion: 14.1\r\n"
            "Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n"
            % (cmd, user, dev, ua, len(body)))
    if auth:
        head += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
    return head.encode() + b"\r\n" + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--foldersync", required=True)
    ap.add_argument("--provision", required=True)
    ap.add_argument("--random-users", action="store_true")
    ap.add_argument("--victim-device")
    ap.add_argument("--victim-user", default="victim")
    ap.add_argument("--victim-password", default="secret")
    a = ap.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    fs = open(a.foldersync, "rb").read()
    prov = open(a.provision, "rb").read()
    assert prov.count(b"MODELPLACEHOLDER1") == 1
    lock = threading.Lock()
    out = {"flood": {}, "flood_backend": {}, "victim": [], "errors": []}
    done = threading.Event()
    nxt = [a.first]
    last = a.first + a.count

    def take():
        with lock:
            if nxt[0] >= last:
                return None
            nxt[0] += 1
            return nxt[0] - 1

    def flood(k):
        rnd = random.Random(a.seed * 1000003 + k)
        # Connections opened all at once may all land on one worker (the
        # least loaded one, before it says it got them): one every 20 ms.
        time.sleep(0.02 * k)
        t = f = None
        while True:
            i = take()
            if i is None:
                break
            dev = "Claim%02d%08d" % (a.seed % 100, i)
            user = "%s%08d" % (a.user, i) if a.random_users else a.user
            ua = "Apple-iPhone9C3/1402.%d" % rnd.randrange(100, 1000)
            if i % 4 == 0:
                model = "".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(17))
                req = request("Provision", user, dev, ua, user + ":wrong",
                              prov.replace(b"MODELPLACEHOLDER1", model.encode()))
            else:
                req = request("FolderSync", user, dev, ua,
                              user + ":wrong" if i % 2 else None, fs)
            for attempt in range(3):
                try:
                    if t is None:
                        t, f = connect(a, ctx)
                    t.sendall(req)
                    st, h = read_answer(f)
                    break
                except (OSError, EOFError, ValueError) as e:
                    if t is not None:
                        t.close()
                    t = f = None
                    if attempt == 2:
                        with lock:
                            out["errors"].append("%s: %s" % (dev, e))
                        st, h = None, {}
            if st is None:
                continue
            with lock:
                out["flood"][str(st)] = out["flood"].get(str(st), 0) + 1
                if "x-backend" in h:
                    out["flood_backend"][str(st)] = out["flood_backend"].get(str(st), 0) + 1
            if h.get("connection", "").lower() == "close" and t is not None:
                t.close()
                t = f = None
        if t is not None:
            t.close()

    def victim():
        t = f = None
        while not done.is_set():
            req = request("Sync", a.victim_user, a.victim_device, "Apple-iPhone9C3/1402.100",
                          a.victim_user + ":" + a.victim_password, b"")
            try:
                if t is None:
                    t, f = connect(a, ctx)
                t.sendall(req)
                st, h = read_answer(f)
                out["victim"].append([st, h.get("x-backend", "-")])
            except (OSError, EOFError, ValueError) as e:
                out["victim"].append([0, str(e)])
                t = f = None
            time.sleep(0.05)

    th = [threading.Thread(target=flood, args=(k,)) for k in range(a.conns)]
    vt = threading.Thread(target=victim) if a.victim_device else None
    t0 = time.monotonic()
    for x in th + ([vt] if vt else []):
        x.start()
    for x in th:
        x.join()
    done.set()
    if vt:
        vt.join()
    out["seconds"] = round(time.monotonic() - t0, 2)
    json.dump(out, sys.stdout)
    print()
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
