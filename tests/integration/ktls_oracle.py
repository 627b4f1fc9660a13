#!/usr/bin/env python3
"""ktls_oracle.py - which kernel TLS ciphers this kernel round-trips, found
independently of easgated (t_kfeat.sh compares the two).

For each cipher and for TLS 1.2 and 1.3: a loopback TCP pair, TCP_ULP "tls"
on both ends, the same all-zero keys as TLS_TX on one end and TLS_RX on the
other, one record across. Prints the ciphers that worked for both versions
("aes-gcm-128,aes-gcm-256,chacha20-poly1305"), or "none <reason>" (exit 0
either way; exit 2 if the test itself could not run). The crypto_info
layouts are those of <linux/tls.h>, written out here by hand.
"""
import socket
import struct
import sys

SOL_TCP, TCP_ULP, SOL_TLS, TLS_TX, TLS_RX = 6, 31, 282, 1, 2
VERSIONS = {"1.2": 0x0303, "1.3": 0x0304}
# name: (cipher_type, iv, key, salt, rec_seq) sizes in bytes
CIPHERS = {
    "aes-gcm-128": (51, 8, 16, 4, 8),
    "aes-gcm-256": (52, 8, 32, 4, 8),
    "chacha20-poly1305": (54, 12, 32, 0, 8),
}


def trip(listener, version, spec):
    ctype, iv, key, salt, seq = spec
    info = struct.pack("<HH", version, ctype) + bytes(iv + key + salt + seq)
    c = socket.create_connection(listener.getsockname(), timeout=2)
    a, _ = listener.accept()
    a.settimeout(2)
    try:
        c.setsockopt(SOL_TCP, TCP_ULP, b"tls")
        a.setsockopt(SOL_TCP, TCP_ULP, b"tls")
        c.setsockopt(SOL_TLS, TLS_TX, info)
        a.setsockopt(SOL_TLS, TLS_RX, info)
        c.sendall(b"oracle")
        return a.recv(64) == b"oracle", ""
    except OSError as e:
        return False, e.strerror or str(e)
    finally:
        c.close()
        a.close()


def main():
    try:
        listener = socket.create_server(("127.0.0.1", 0))
    except OSError as e:
        print("cannot listen on loopback:", e, file=sys.stderr)
        return 2
    ok, why = [], ""
    for name, spec in CIPHERS.items():
        results = [trip(listener, v, spec) for v in VERSIONS.values()]
        if all(r[0] for r in results):
            ok.append(name)
        elif not why:
            why = next(r[1] for r in results if not r[0])
    print(",".join(ok) if ok else "none " + why)
    return 0


if __name__ == "__main__":
    sys.exit(main())
