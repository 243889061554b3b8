#!/usr/bin/env bash
# Times the direct.xml parser without firewalld or root (rows 5a/5b): writes a
# direct.xml with 10,000 foreign rules, shaped like benches/firewalld.rs builds it, and
# prints the median of RUNS (default 15) runs of `translate --merge` (parse, merge, print)
# and `inspect --file` (lenient parse and checks) with the release binary. Neither command
# touches the firewall or /etc/firewalld. With several binaries (before and after a
# change) they take turns.
#
#   scripts/bench-parse.sh [BINARY...]    (default: target/release/tproxy-firewalld)
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# == 0)); then
    set -- target/release/tproxy-firewalld
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

{
    printf '<?xml version="1.0" encoding="utf-8"?>\n<direct>\n'
    printf '  <chain ipv="ipv4" table="filter" chain="FOREIGN"/>\n'
    for ((i = 0; i < 10000; i++)); do
        printf '  <rule ipv="ipv4" table="filter" chain="FOREIGN" priority="%d">-p tcp --dport %d -j ACCEPT</rule>\n' \
            "$i" $((1 + i % 65535))
    done
    printf '</direct>\n'
} >"$dir/direct.xml"
rules=tests/expected/dry-run/dualstack-redirect-dns.txt

python3 - "${RUNS:-15}" "$dir/direct.xml" "$rules" "$@" <<'EOF'
import resource, statistics, subprocess, sys, time

runs, xml, rules, binaries = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
commands = {
    "translate --merge": ["translate", "--merge", xml, rules],
    "inspect --file": ["inspect", "--file", xml],
    "--version": ["--version"],
}


def cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


for name, args in commands.items():
    wall = {binary: [] for binary in binaries}
    used = {binary: [] for binary in binaries}
    # The binaries take turns, so that other work on the machine slows them alike; the
    # first round warms the page cache and is not counted.
    for round in range(runs + 1):
        for binary in binaries:
            start, start_cpu = time.perf_counter(), cpu()
            done = subprocess.run([binary, *args], stdout=subprocess.DEVNULL)
            if round > 0:
                wall[binary].append(time.perf_counter() - start)
                used[binary].append(cpu() - start_cpu)
            if done.returncode != 0:
                sys.exit(f"{binary} {name}: exit status {done.returncode}")
    for binary in binaries:
        times = sorted(wall[binary])
        label = f"{name} ({binary})" if len(binaries) > 1 else name
        # CPU time (user + system) moves less than wall time when the machine is busy.
        print(f"{label:18} median {statistics.median(times) * 1000:6.1f} ms"
              f" (min {times[0] * 1000:.1f}, max {times[-1] * 1000:.1f}),"
              f" CPU median {statistics.median(used[binary]) * 1000:.1f} ms, {runs} runs")
EOF
