#!/usr/bin/env bash
# Instructions per echoed message on each server's thread, counted by
# valgrind's callgrind: repeatable for the same binary whatever else the
# machine is doing, where the throughput tables carry ±10-30 % of noise.
# User space only: the kernel's share of each read and write is not in it.
#
#   adapter-tokio/benches/peers/profile.sh [cases]     # e.g. 0,2 (default 0,1,2,3,4)
#
# Each case runs twice under callgrind (1 s and 3 s of echo per server);
# the difference of the two runs' counts over the difference of their
# message counts leaves out start-up and the handshakes.
set -euo pipefail
cases=${1:-0,1,2,3,4}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench -q -p wharf-tokio --bench peers --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*peers-[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the peers bench" >&2; exit 1; }
servers=wharf-mio,wharf-tokio,tokio-tungstenite,fastwebsockets,tokio-websockets,floor
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# Runs case $1 for $2 seconds under callgrind in $work/$1-$2; prints
# "name|tls|messages|instructions" per server thread.
counts() {
    local dir="$work/$1-$2"
    mkdir -p "$dir"
    (cd "$dir" && WHARF_BENCH_SERVERS=$servers WHARF_BENCH_SECTIONS=echo \
        WHARF_BENCH_CASES=$1 WHARF_BENCH_RUNS=1 WHARF_BENCH_SECS=$2 \
        valgrind --tool=callgrind --separate-threads=yes "$bin" >run.out 2>valgrind.err)
    # Server threads are numbered from 2 in the order they started, which
    # is the order of their slots (thread 1 is the load client).
    local pid
    pid=$(ls "$dir" | sed -n 's/^callgrind\.out\.\([0-9]*\)-01$/\1/p')
    sed -n 's/^  \(.*\): \([0-9]*\) messages echoed in all runs (thread server-\([0-9]*\))$/\3|\1|\2/p' \
        "$dir/run.out" | sort -t'|' -k1,1n | awk -F'|' -v dir="$dir" -v pid="$pid" '{
            file = sprintf("%s/callgrind.out.%s-%02d", dir, pid, NR + 1)
            while ((getline line < file) > 0) if (line ~ /^totals:/) { split(line, t, " "); total = t[2] }
            close(file)
            print $2 "|" ($1 % 2) "|" $3 "|" total
        }'
}

echo "# instructions per echoed message, server thread (callgrind; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
IFS=, read -ra list <<<"$cases"
for case in "${list[@]}"; do
    counts "$case" 1 >"$work/short"
    counts "$case" 3 >"$work/long"
    echo
    grep -m1 "^### " "$work/$case-3/run.out" | sed 's/ ws (plain)//'
    printf "  %-20s %12s %12s\n" server "ws" "wss"
    join -t'|' <(awk -F'|' '{print $1 "/" $2 "|" $3 "|" $4}' "$work/short" | sort) \
        <(awk -F'|' '{print $1 "/" $2 "|" $3 "|" $4}' "$work/long" | sort) |
        awk -F'|' -v servers="$servers" '{
            split($1, k, "/"); name = k[1]; sub(/^floor: raw (TCP|rustls)$/, "floor", name)
            dm = $4 - $2; v = dm > 0 ? sprintf("%d", ($5 - $3) / dm) : "-"
            if (k[2] == 1) wss[name] = v; else ws[name] = v
        } END {
            n = split(servers, order, ",")
            for (i = 1; i <= n; i++) printf "  %-20s %12s %12s\n", order[i], ws[order[i]], wss[order[i]]
        }'
done
