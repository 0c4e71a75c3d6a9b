#!/usr/bin/env python3
"""Writes a large zone for load and memory comparisons: HOSTS hosts under ORIGIN, each with an A
record and every fourth with an AAAA too (1M hosts give about 1.26M records)."""
import sys

hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
origin = sys.argv[2] if len(sys.argv) > 2 else "example.com."
out = sys.stdout
out.write(f"$ORIGIN {origin}\n$TTL 3600\n")
out.write("@ SOA ns1 hostmaster 1 3600 900 604800 300\n  NS ns1\n  NS ns2\n")
out.write("ns1 A 192.0.2.1\nns2 A 192.0.2.2\n")
lines = []
for i in range(hosts):
    lines.append(f"host{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
    if i % 4 == 0:
        lines.append(f"host{i} AAAA 2001:db8::{(i >> 16) & 0xffff:x}:{i & 0xffff:x}\n")
    if len(lines) > 100_000:
        out.write("".join(lines))
        lines = []
out.write("".join(lines))
