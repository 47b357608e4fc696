#!/usr/bin/env python3
"""A Proxy Binding Update built by an encoder nobody here wrote: scapy.

scapy's MIP6MH_BU (RFC 6275 §6.1.7) and MIP6OptMNID (RFC 4283) make the header and the
Mobile Node Identifier; the PMIPv6 options scapy does not know (RFC 5213 §8.3-§8.8, RFC 5845
§6.1) are appended as raw bytes laid out here from the RFC figures, with the padding their
alignment asks for. scapy computes Header Len and the checksum over the IPv6 pseudo-header.

Prints one JSON object: the packet in hex and the values that went into it, for
pmipctl/tests/scapy.rs to compare with `pmipctl mh decode --ip`.
"""

import json
import struct
import sys

try:
    from scapy.layers.inet6 import IPv6, MIP6MH_BU, MIP6OptMNID
    from scapy.packet import Raw
    from scapy.compat import raw
except ImportError as e:  # pragma: no cover - reported by the Rust test
    sys.stderr.write("scapy is not installed (%s)\n" % e)
    sys.exit(3)

SRC, DST = "2001:db8:a::1", "2001:db8:b::1"
SEQ, LIFETIME_UNITS = 0xBEEF, 450  # 1800 s
NAI = b"mn7@example.net"
HNP, HNP_LEN = "2001:db8:77::", 64
HANDOFF, ATT = 4, 8  # Handoff state unknown; 3GPP E-UTRAN
TS_SECONDS, TS_FRACTION = 1_750_000_000, 0xC000  # .75 s
GRE_KEY = 0xCAFE0001


def padn(n):
    """n octets of padding: Pad1, or PadN (RFC 6275 §6.2.2, §6.2.3)."""
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes([1, n - 2]) + b"\x00" * (n - 2)


def pad_to(pos, x, y):
    """Padding that puts an option starting after `pos` at offset x*n + y."""
    return (y - pos) % x


def ipv6(s):
    import ipaddress

    return ipaddress.IPv6Address(s).packed


def main():
    mnid = MIP6OptMNID(subtype=1, id=NAI)
    # Fixed BU fields end at offset 12; the MN-ID option follows with no alignment.
    pos = 12 + len(raw(mnid))
    opts = b""

    def add(option, x, y):
        nonlocal pos, opts
        p = pad_to(pos, x, y)
        opts += padn(p) + option
        pos += p + len(option)

    # Home Network Prefix (RFC 5213 §8.3): 8n+4; Reserved, Prefix Length, Prefix.
    add(struct.pack("!BBBB", 22, 18, 0, HNP_LEN) + ipv6(HNP), 8, 4)
    # Handoff Indicator (§8.4) and Access Technology Type (§8.5): Reserved, value.
    add(struct.pack("!BBBB", 23, 2, 0, HANDOFF), 1, 0)
    add(struct.pack("!BBBB", 24, 2, 0, ATT), 1, 0)
    # Timestamp (§8.8): 8n+2; 48-bit seconds and 16-bit fraction.
    add(struct.pack("!BBQ", 27, 8, (TS_SECONDS << 16) | TS_FRACTION), 8, 2)
    # GRE Key (RFC 5845 §6.1): 4n; Reserved, GRE Key Identifier.
    add(struct.pack("!BBHI", 33, 6, 0, GRE_KEY), 4, 0)
    # The whole Mobility Header is a multiple of 8 octets.
    opts += padn(pad_to(pos, 8, 0))

    bu = MIP6MH_BU(seq=SEQ, flags="AP", mhtime=LIFETIME_UNITS, autopad=0, options=[mnid])
    pkt = IPv6(src=SRC, dst=DST) / bu / Raw(load=opts)
    data = raw(pkt)
    print(
        json.dumps(
            {
                "packet": data.hex(),
                "mh_offset": 40,
                "checksum": "0x%04x" % IPv6(data)[MIP6MH_BU].cksum,
                "src": SRC,
                "dst": DST,
                "sequence": SEQ,
                "lifetime": LIFETIME_UNITS,
                "nai": NAI.decode(),
                "home_network_prefix": "%s/%d" % (HNP, HNP_LEN),
                "handoff_indicator": HANDOFF,
                "access_technology_type": ATT,
                "timestamp_seconds": TS_SECONDS,
                "timestamp_fraction": TS_FRACTION,
                "gre_key": GRE_KEY,
            }
        )
    )


if __name__ == "__main__":
    main()
