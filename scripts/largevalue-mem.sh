#!/bin/bash
# largevalue-mem.sh BINARY strong|eventual: the memory a 50 MiB value (SIZE=bytes for another) costs
# (docs/BENCHMARKS.md, "Large values"). Starts 3 cairn processes on loopback
# (client ports 27700, 27710, 27720) with --max-value-bytes 64 MiB, PUTs 50
# MiB of random bytes through a follower, GETs it from every node (sha256
# compared), and prints each process's VmHWM and VmRSS after the PUT and after
# the GETs (the high-water mark is reset before each), then, from
# GODEBUG=gctrace=1, its largest heap and the largest heap live after a GC.
# Linux only (/proc/PID/clear_refs, which needs root or the process owner).
set -u
BIN=$1; KIND=$2; D=$(mktemp -d)
head -c ${SIZE:-52428800} /dev/urandom > $D/val; SUM=$(sha256sum < $D/val | cut -d' ' -f1)
IC="n1=127.0.0.1:27701,n2=127.0.0.1:27711,n3=127.0.0.1:27721"
for i in 1 2 3; do
  p=$((27690+10*i))
  GODEBUG=gctrace=1 $BIN serve --name n$i --data-dir $D/n$i --listen-client 127.0.0.1:$((p)) --listen-peer 127.0.0.1:$((p+1)) --listen-resp 127.0.0.1:$((p+2)) \
    --initial-cluster $IC --initial-cluster-state new --max-value-bytes 67108864 --log-level warn > $D/n$i.log 2>&1 &
  echo $! > $D/n$i.pid
done
for i in $(seq 100); do curl -sf http://127.0.0.1:27700/readyz >/dev/null && curl -sf http://127.0.0.1:27710/readyz >/dev/null && curl -sf http://127.0.0.1:27720/readyz >/dev/null && break; sleep 0.2; done
LEADER=$(curl -s http://127.0.0.1:27700/v1/cluster/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
pidof() { cat $D/$1.pid; }
mem() { for i in 1 2 3; do pid=$(pidof n$i); r=n$i; [ $r = $LEADER ] && r="$r(leader)"; printf "%s %s %s  " $r $(grep -E 'VmHWM|VmRSS' /proc/$pid/status | awk '{printf "%s=%dMiB ", $1, $2/1024}'); done; echo; }
echo "== $BIN $KIND, leader $LEADER"; echo -n "idle:   "; mem
# reset the high-water mark so it measures the put
for i in 1 2 3; do echo 5 > /proc/$(pidof n$i)/clear_refs; done
F=n1; FP=27700; [ $LEADER = n1 ] && { F=n2; FP=27710; }
KEY=files/pkg.deb; Q=""
if [ $KIND = eventual ]; then
  curl -s -X PUT http://127.0.0.1:27700/v1/keyspaces/ev/ -d '{"mode":"eventual","replicas":3}' >/dev/null; KEY=ev/pkg.deb; Q="?w=3"
fi
/usr/bin/time -f "put: %e s" curl -s -o $D/put.out -w "put status %{http_code}\n" -X PUT --data-binary @$D/val http://127.0.0.1:$FP/v1/kv/$KEY$Q
echo -n "put:    "; mem
for i in 1 2 3; do echo 5 > /proc/$(pidof n$i)/clear_refs; done
for p in 27700 27710 27720; do s=$(curl -s http://127.0.0.1:$p/v1/kv/$KEY | sha256sum | cut -d' ' -f1); [ "$s" = "$SUM" ] && echo -n "get $p ok; " || echo -n "get $p WRONG; "; done; echo
echo -n "gets:   "; mem
sleep 5; echo -n "+5s:    "; mem
for i in 1 2 3; do
  r=n$i; [ $r = $LEADER ] && r="$r(leader)"; [ $r = $F ] && r="$r(got-the-PUT)"
  python3 - $D/n$i.log $r <<'PY'
import re,sys
lines=[l for l in open(sys.argv[1]) if l.startswith('gc ')]
# gc N @t: ... A->B->C MB: heap at GC start, at GC end, live
tr=[tuple(map(int,m.groups())) for l in lines for m in [re.search(r'(\d+)->(\d+)->(\d+) MB',l)] if m]
mark=[i for i,l in enumerate(lines)]
print(f"{sys.argv[2]}: GCs {len(tr)}, peak heap {max(a for a,b,c in tr)} MB, largest live after a GC {max(c for a,b,c in tr)} MB, live after the last GC {tr[-1][2]} MB")
PY
done
for i in 1 2 3; do kill $(pidof n$i); done; wait 2>/dev/null; rm -rf $D
