#!/usr/bin/env python3
"""Does each door answer? Replays a knock of every door through the agent.

For each door this writes the packets of its current sequence (the fixed
Sequence, or the first unused line of its one-time file) into a capture
file, each door from its own documentation source address, and runs
`sesame-agent -c CONFIG --pcap FILE`: the agent's real decoder, matcher and
doors, with nothing on the host changed (no firewall call, no command, one-time
files used from private copies). A door answers when the agent opened it.

  door_check.py AGENT CONFIG DOORS_JSON

DOORS_JSON: [{"name", "sequence" | "one_time_sequences", "tcpflags"?,
"target"?}, ...]. Prints {"answered": [names], "silent": [names],
"reasons": {name: why}} and exits 0; exits 1 when the agent cannot replay.
"""

import ipaddress
import json
import struct
import subprocess
import sys
import tempfile

TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20}
EPOCH = 1_700_000_000  # capture time of the first knock
GAP_US = 50_000  # between knocks: 32 knocks take 1.6 s, inside any sane seq_timeout


def parse_sequence(text):
    """'7000,8000:udp,9000' -> [(7000, 'tcp'), (8000, 'udp'), (9000, 'tcp')]."""
    knocks = []
    for element in text.split(","):
        element = element.strip()
        if not element:
            continue
        port, _, proto = element.partition(":")
        proto = (proto.strip() or "tcp").lower()
        if proto not in ("tcp", "udp"):
            raise ValueError(f"unknown protocol in {element!r}")
        knocks.append((int(port), proto))
    if not knocks:
        raise ValueError("empty sequence")
    return knocks


def current_one_time_sequence(path):
    """The first unused line of a knockd one-time file, or None."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.strip()
            if text and not text.startswith("#"):
                return text
    return None


def tcp_flags(text):
    """The bits a knock sets for a door's TCPFlags (default SYN)."""
    if not text:
        return TCP_FLAGS["syn"]
    bits = 0
    for word in str(text).split(","):
        word = word.strip().lower()
        if word and not word.startswith("!"):
            bits |= TCP_FLAGS[word]
    return bits


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def transport(src, dst, port, proto, flags, sport):
    if proto == "udp":
        segment = struct.pack("!HHHH", sport, port, 8, 0)
        number = 17
    else:
        segment = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 5 << 4, flags, 64240, 0, 0)
        number = 6
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, number, len(segment))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(segment), number)
    value = checksum(pseudo + segment)
    if proto == "udp" and value == 0:
        value = 0xFFFF  # 0 means "no checksum" in UDP
    offset = 6 if proto == "udp" else 16
    return segment[:offset] + struct.pack("!H", value) + segment[offset + 2 :], number


def frame(src, dst, port, proto, flags, sport):
    segment, number = transport(src, dst, port, proto, flags, sport)
    if src.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, number, 0, src.packed, dst.packed)
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        ethertype = 0x0800
    else:
        header = struct.pack("!IHBB16s16s", 6 << 28, len(segment), number, 64, src.packed, dst.packed)
        ethertype = 0x86DD
    ethernet = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
    return ethernet + header + segment


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    agent, config, doors = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    reasons = {}
    packets = []  # (time in µs since EPOCH, bytes)
    for index, door in enumerate(doors):
        name = door["name"]
        try:
            if door.get("sequence"):
                sequence = door["sequence"]
                text = ",".join(map(str, sequence)) if isinstance(sequence, list) else str(sequence)
            else:
                text = current_one_time_sequence(door["one_time_sequences"])
                if text is None:
                    reasons[name] = "its one-time file has no unused sequence"
                    continue
            knocks = parse_sequence(text)
            target = door.get("target")
            dst = ipaddress.ip_address(target) if target else ipaddress.ip_address("192.0.2.254")
            # A documentation address per door: sources progress independently.
            if dst.version == 4:
                src = ipaddress.ip_address("192.0.2.1") + index
            else:
                src = ipaddress.ip_address("2001:db8::1") + index
            flags = tcp_flags(door.get("tcpflags"))
        except (OSError, ValueError, KeyError) as error:
            reasons[name] = f"cannot build its knock: {error}"
            continue
        for step, (port, proto) in enumerate(knocks):
            packets.append((step * GAP_US, frame(src, dst, port, proto, flags, 40000 + index)))

    answered = set()
    if packets:
        packets.sort(key=lambda p: p[0])
        with tempfile.NamedTemporaryFile(prefix="sesame-door-check.", suffix=".pcap") as capture:
            capture.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet
            for offset, data in packets:
                seconds, micros = divmod(offset, 1_000_000)
                capture.write(struct.pack("<IIII", EPOCH + seconds, micros, len(data), len(data)) + data)
            capture.flush()
            result = subprocess.run(
                [agent, "-c", config, "--pcap", capture.name], capture_output=True, text=True, timeout=60, check=False
            )
        if result.returncode != 0:
            print(f"sesame-agent --pcap failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)
            return 1
        summary = json.loads(result.stdout)
        answered = {grant["door"] for grant in summary.get("opened", [])}
    for door in doors:
        if door["name"] not in answered and door["name"] not in reasons:
            reasons[door["name"]] = "a replay of its sequence did not open it"
    print(
        json.dumps(
            {
                "answered": [d["name"] for d in doors if d["name"] in answered],
                "silent": [d["name"] for d in doors if d["name"] not in answered],
                "reasons": reasons,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
