#!/usr/bin/env python3
"""phones.py - N phones make their first contact at once (t_notify).

    phones.py PORT CAFILE PREFIX FIRST COUNT [--ua UA] [--cmds FolderSync,Sync]

Phone i (FIRST <= i < FIRST+COUNT) is user PREFIXuNNNN@example.test with
DeviceId PREFIXDEVNNNN; 16 at a time, each on its own TLS connection, sends
a FolderSync then a Sync, as a new phone does. Quarantine relays the
FolderSync: the backend's 2xx authenticates the phone, which makes it a
device (and its quarantine a notice); the Sync is answered by the gateway.
--cmds Sync: only the Sync (answered by the gateway even with no backend).
Prints "ok=<phones answered 200 to both> seconds=<elapsed>".
"""
import argparse
import base64
import concurrent.futures
import http.client
import ssl
import time

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("cafile")
p.add_argument("prefix")
p.add_argument("first", type=int)
p.add_argument("count", type=int)
p.add_argument("--ua", default="Android/4.4.2-EAS-1.3")
p.add_argument("--cmds", default="FolderSync,Sync")
a = p.parse_args()
ctx = ssl.create_default_context(cafile=a.cafile)


def one(i):
    user = "%su%04d@example.test" % (a.prefix, i)
    dev = "%sDEV%04d" % (a.prefix.upper(), i)
    c = http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=30)
    ok = True
    for cmd in a.cmds.split(","):
        c.request("POST", "/Microsoft-Server-ActiveSync?Cmd=%s&User=%s&DeviceId=%s&DeviceType=Android"
                  % (cmd, user, dev), body=b"", headers={
                      "Authorization": "Basic " + base64.b64encode((user + ":pw").encode()).decode(),
                      "User-Agent": a.ua, "MS-ASProtocolVersion": "14.1",
                      "Content-Type": "application/vnd.ms-sync.wbxml"})
        r = c.getresponse()
        r.read()
        ok = ok and r.status == 200
    c.close()
    return ok


t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    st = list(ex.map(one, range(a.first, a.first + a.count)))
print("ok=%d seconds=%.1f" % (sum(1 for s in st if s), time.time() - t0))
