#!/usr/bin/env python3
"""Extracts one file from a wheel without downloading the wheel.

    wheel_member.py WHEEL_URL MEMBER OUT

A wheel is a zip: its central directory at the end says where each member's bytes start, so
three or four HTTP range requests (the end of the file, the directory, the member) fetch only
that member. The member's CRC-32 from the directory is checked after decompression; the caller
pins the member's SHA-256.
"""
import os
import struct
import sys
import urllib.request
import zlib


def get(url, first, last=None):
    """Bytes first..last of url, or its last -first bytes when first is negative."""
    req = urllib.request.Request(url)
    req.add_header("Range", f"bytes={first}" if first < 0 else f"bytes={first}-{last}")
    with urllib.request.urlopen(req, timeout=120) as r:
        if r.status != 206:
            sys.exit(f"error: {url} ignored the range request (HTTP {r.status})")
        return r.read()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    url, member, out = sys.argv[1:]
    # The end of central directory record (and a zip64 locator before it) sit in the last
    # 64 KiB + 22 bytes at most (the comment is at most 64 KiB).
    tail = get(url, -65558)
    eocd = tail.rfind(b"PK\x05\x06")
    if eocd < 0:
        sys.exit(f"error: {url}: no end of central directory record")
    cd_size, cd_offset = struct.unpack_from("<II", tail, eocd + 12)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        loc = tail.rfind(b"PK\x06\x07", 0, eocd)
        (z64_offset,) = struct.unpack_from("<Q", tail, loc + 8)
        z64 = get(url, z64_offset, z64_offset + 55)
        cd_size, cd_offset = struct.unpack_from("<QQ", z64, 40)
    cd = get(url, cd_offset, cd_offset + cd_size - 1)
    pos, name = 0, member.encode()
    while pos < len(cd):
        if cd[pos : pos + 4] != b"PK\x01\x02":
            sys.exit(f"error: {url}: damaged central directory at {pos}")
        method, _, _, crc, csize, usize, nlen, xlen, clen = struct.unpack_from("<HHHIIIHHH", cd, pos + 10)
        (local,) = struct.unpack_from("<I", cd, pos + 42)
        fname = cd[pos + 46 : pos + 46 + nlen]
        if fname == name:
            break
        pos += 46 + nlen + xlen + clen
    else:
        sys.exit(f"error: {member} is not in {url}")
    if 0xFFFFFFFF in (csize, usize, local):
        sys.exit(f"error: {member}: zip64 member entries are not supported")
    head = get(url, local, local + 29)
    lnlen, lxlen = struct.unpack_from("<HH", head, 26)
    start = local + 30 + lnlen + lxlen
    raw = get(url, start, start + csize - 1)
    if method == 8:
        data = zlib.decompress(raw, -15)
    elif method == 0:
        data = raw
    else:
        sys.exit(f"error: {member}: unsupported zip compression method {method}")
    if len(data) != usize or zlib.crc32(data) != crc:
        sys.exit(f"error: {member}: size or CRC-32 does not match the wheel's directory")
    with open(out + ".part", "wb") as f:
        f.write(data)
    os.replace(out + ".part", out)


if __name__ == "__main__":
    main()
