#!/usr/bin/python3
"""smtp_sink.py - a local SMTP relay for t_notify (Debian's python3-aiosmtpd).

    smtp_sink.py PORT OUTDIR CERT KEY USER PASSWORD

Listens on 127.0.0.1:PORT, requires STARTTLS (with CERT/KEY) and AUTH as
USER/PASSWORD before MAIL FROM, and stores each message it accepts as
OUTDIR/<n>.eml, the envelope recipients on a first line "X-Rcpt: a,b".
Writes OUTDIR/ready once it listens. Runs until SIGTERM.
"""
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, outdir, cert, key, user, password = sys.argv[1:7]
os.makedirs(outdir, exist_ok=True)
lock = threading.Lock()
count = [len([f for f in os.listdir(outdir) if f.endswith(".eml")])]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            count[0] += 1
            n = count[0]
        tmp = os.path.join(outdir, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(b"X-Rcpt: " + ",".join(envelope.rcpt_tos).encode() + b"\n")
            f.write(b"X-Tls: %d\n" % (1 if session.ssl else 0))
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(outdir, "%d.eml" % n))
        return "250 OK"


def auth(server, session, envelope, mechanism, data):
    ok = data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, auth_required=True, auth_require_tls=True,
               authenticator=auth, server_hostname="localhost")
c.start()
open(os.path.join(outdir, "ready"), "w").close()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGINT, lambda *a: stop.set())
stop.wait()
c.stop()
