#!/usr/bin/env bash
# Load benchmark for the mock server: non-streaming chat completions with zero latency.
#
#   bash tools/bench_mock_server.sh [seconds per run, default 5] [connections, default 64]
#
# Starts `python -m helpers.mock --port 0 --speed 1e9` (every delay ~0), drives it with wrk
# (a separate process, 1 thread, so the 2 cores are split: 1 for wrk, 1 for the server), 3 runs,
# and prints each run's requests/s and the median. The prompts vary (a counter), half translations
# and half longer free-form replies, so the server's answer cache does not hide the work.
# Target: >= 2,000 req/s on a 2-core machine. wrk: `apt-get install wrk`.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-5}"
CONNECTIONS="${2:-64}"
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

if ! command -v wrk >/dev/null; then
    echo "SKIPPED: wrk is not installed (Debian/Ubuntu: apt-get install wrk). No figure measured."
    exit 0
fi

work="$(mktemp -d)"
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

PYTHONPATH=. "$PYTHON" -m helpers.mock --port 0 --speed 1e9 >"$work/ready" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 100); do grep -q "Mock OpenAI server" "$work/ready" && break; sleep 0.1; done
base_url="$(sed -n 's/^Mock OpenAI server: //p' "$work/ready")"
[ -n "$base_url" ] || { echo "server did not start:"; cat "$work/stderr"; exit 1; }

cat >"$work/post.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local content
  if counter % 2 == 0 then content = "翻译成英文：测试" .. counter else content = "Tell me about topic " .. counter end
  local body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' .. content .. '"}]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
LUA

echo "server $base_url, wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, 3 runs"
rates=()
for run in 1 2 3; do
    out="$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s "$work/post.lua" "$base_url/chat/completions")"
    rate="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
    echo "run $run: $rate req/s ${errors:+($errors)}"
    rates+=("$rate")
done
median="$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)"
stats="$(curl -s "${base_url%/v1}/mock/stats")"
echo "server stats: $stats"
echo "median: $median req/s (target >= 2000)"
