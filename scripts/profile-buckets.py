#!/usr/bin/env python3
"""CPU microseconds per write, by bucket of frames, from Go CPU profiles.

usage: profile-buckets.py BIN LABEL:WRITES:LEADER.pb,FOLLOWER.pb,FOLLOWER.pb [...]
A profile whose file name holds "-L" is the leader's. A bucket is the
cumulative time of the frame named (a frame's share includes what it calls,
so buckets overlap); "total" is every sample of the process.
"""
import re
import subprocess
import sys

BUCKETS = [
    ("total", None),
    ("RESP front end (conn.serve)", "respapi.(*conn).serve"),
    ("applying (runFSM)", "raft.(*Raft).runFSM"),
    ("  the state machine (Machine.Apply)", "strong.(*Machine).Apply"),
    ("raft leader loop", "raft.(*Raft).leaderLoop"),
    ("raft replication (leader)", "raft.(*Raft).replicate"),
    ("raft transport receive (followers)", "raft.(*NetworkTransport).handleConn"),
    ("msgpack encode", "go-msgpack/v2/codec.(*Encoder).Encode"),
    ("msgpack decode", "go-msgpack/v2/codec.(*Decoder).Decode"),
    ("raft transport receive (followers, cairn's)", "raftnode.(*Transport).serve"),
    ("wire encode (cairn's codec)", "raftnode.appendRequest"),
    ("wire decode (cairn's codec)", "raftnode.decodeRequest"),
    ("wire frame read (cairn's codec)", "raftnode.readFrame"),
    ("pebble compactions", "pebble.(*DB).runCompaction"),
    ("pebble memtable flushes", "pebble.(*DB).flush"),
    ("pebble WAL writer (write + fdatasync)", "record.(*LogWriter).flushLoop"),
    ("  fdatasync", "unix.Fdatasync"),
    ("all system calls", "internal/runtime/syscall/linux.Syscall6"),
    ("scheduler looking for work", "runtime.findRunnable"),
    ("GC mark workers", "runtime.gcBgMarkWorker"),
    ("allocation (mallocgc)", "runtime.mallocgc"),
]
LINE = re.compile(r"\s*[\d.]+(?:m?s)?\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)(m?s)\s+[\d.]+%\s+(.*)$")
TOTAL = re.compile(r"Total samples = ([\d.]+)(m?s)")


def seconds(v, unit):
    return float(v) / (1000 if unit == "ms" else 1)


def load(binary, path):
    out = subprocess.run(["go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", binary, path],
                         capture_output=True, text=True, check=True).stdout
    m = TOTAL.search(out)
    funcs = {}
    for line in out.splitlines():
        f = LINE.match(line)
        if f:
            name = f.group(3).strip()
            funcs[name] = max(funcs.get(name, 0), seconds(f.group(1), f.group(2)))
    return seconds(m.group(1), m.group(2)) if m else 0.0, funcs


def main():
    binary, runs = sys.argv[1], sys.argv[2:]
    table = {}
    for run in runs:
        label, writes, files = run.split(":")
        for path in files.split(","):
            total, funcs = load(binary, path)
            role = "leader" if "-L" in path.rsplit("/", 1)[-1] else "followers"
            for name, frame in BUCKETS:
                v = total if frame is None else max([s for f, s in funcs.items() if frame in f] or [0])
                cell = table.setdefault((name, role), {})
                cell[label] = cell.get(label, 0) + v / int(writes) * 1e6
    labels = [r.split(":")[0] for r in runs]
    print("| µs of CPU per write | member | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for role in ("leader", "followers"):
        for name, _ in BUCKETS:
            cell = table.get((name, role), {})
            print(f"| {name} | {role} | " + " | ".join(f"{cell.get(l, 0):.1f}" for l in labels) + " |")


if __name__ == "__main__":
    main()
