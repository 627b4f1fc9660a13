"""tcpseg.py - hand-made TCP segments for tests that must send a packet the
kernel's own stack would not (a bare SYN whose SYN-ACK the sender ignores, an
ACK of a flow onto the wire at once). Imported by the inline scripts of
netns.sh (xn_poke) and t_reuseport.sh."""
import socket
import struct


def csum(b):
    """The Internet checksum (RFC 1071) of b."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_header(src, dst, sport, dport, seq, ack, flags, window):
    """A 20-byte TCP header from src to dst (dotted IPv4), its checksum set
    over the IPv4 pseudo-header (no payload)."""
    hdr = struct.pack("!HHIIBBHHH", int(sport), int(dport), seq, ack, 5 << 4, flags, window, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    return hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]
