#!/usr/bin/env bash
# Times the direct.xml parser without firewalld or root (issue 6, rows 5a/5b): writes a
# direct.xml with 10,000 foreign rules, shaped like benches/firewalld.rs builds it, and
# prints the median of RUNS (default 15) runs of `translate --merge` (parse, merge, print)
# and `inspect --file` (lenient parse and checks) with the release binary. Neither command
# touches the firewall or /etc/firewalld.
#
#   scripts/bench-parse.sh [BINARY]    (default: target/release/tproxy-firewalld)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/tproxy-firewalld}
runs=${RUNS:-15}
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

python3 - "$runs" "$binary" "$dir/direct.xml" "$rules" <<'EOF'
import statistics, subprocess, sys, time

runs, binary, xml, rules = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
commands = {
    "translate --merge": [binary, "translate", "--merge", xml, rules],
    "inspect --file": [binary, "inspect", "--file", xml],
    "--version": [binary, "--version"],
}
for name, argv in commands.items():
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{name}: exit status {done.returncode}")
    times = sorted(times[1:])  # the first run warms the page cache
    print(f"{name:20} median {statistics.median(times) * 1000:6.1f} ms"
          f"  (min {times[0] * 1000:.1f}, max {times[-1] * 1000:.1f}, {runs} runs)")
EOF
