#!/usr/bin/env bash
# smoke-run.sh checks `make run` end to end, as a person would: it starts the
# stack in the background, waits for GET /health on the proxy, accountsvc and
# every gpusvc instance, checks GET /metrics where each serves it (the proxy's
# and accountsvc's internal METRICS_ADDR listeners, gpusvc's own address) and
# a 404 on the proxy's and accountsvc's public ports, sends SIGINT to the whole process group
# (what Ctrl-C in a terminal does), and checks that within 10 s no process of
# the stack is left and no port is still listening. Exit 0 when all holds.
#
# It honours the same environment as scripts/run.sh (PROXY_ADDR,
# PROXY_METRICS_ADDR, ...); the
# addresses must be free. The log is kept in .run/smoke-run.log.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mkdir -p .run
logfile=.run/smoke-run.log

strip() {
	local a=${1#http://}
	printf '%s' "${a%/}"
}
public=("$(strip "${PROXY_ADDR:-127.0.0.1:8080}")" "$(strip "${ACCOUNTSVC_ADDR:-127.0.0.1:8081}")")
metrics=("$(strip "${PROXY_METRICS_ADDR:-127.0.0.1:9080}")" "$(strip "${ACCOUNTSVC_METRICS_ADDR:-127.0.0.1:9081}")")
gpus=()
IFS=, read -r -a extra <<<"${GPUSVC_ADDRS:-127.0.0.1:8091,127.0.0.1:8092}"
for a in "${extra[@]}"; do gpus+=("$(strip "${a// /}")"); done
addrs=("${public[@]}" "${metrics[@]}" "${gpus[@]}")

fail() {
	echo "smoke-run: FAIL: $*" >&2
	echo "smoke-run: last lines of $logfile:" >&2
	tail -n 30 "$logfile" >&2 || true
	exit 1
}

before=" $(echo .run/services/*) "

# Job control gives `make run` its own process group with the default SIGINT
# disposition (background jobs of a script would otherwise ignore SIGINT).
# env --default-signal=INT also resets it when this script itself was
# started with SIGINT ignored (say, CI launched from a background job):
# bash cannot trap a signal ignored on entry, so run.sh would never see
# the Ctrl-C.
# Truncate first: the background redirection may not have happened yet when
# the readiness loop below reads the file (a previous run's marker).
: >"$logfile"
set -m
env --default-signal=INT make --no-print-directory run >"$logfile" 2>&1 </dev/null &
pgid=$!
set +m
# ours lists this checkout's service processes (run.sh starts bin/* from
# $root, each in its own session); another checkout's stack is not ours.
ours() {
	local pid
	for pid in $(pgrep -f -- 'bin/(proxy|accountsvc|gpusvc)( |$)' || true); do
		[[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$root" ]] && echo "$pid"
	done
}
# cleanup, on a failure: make run's group, and the services, which run in
# sessions of their own and would outlive it.
cleanup() {
	kill -KILL -- "-$pgid" 2>/dev/null || true
	# shellcheck disable=SC2046 # one pid per word
	kill -TERM $(ours) 2>/dev/null || true
}
trap cleanup EXIT

deadline=$((SECONDS + 300))
until grep -q 'Ctrl-C stops everything' "$logfile"; do
	kill -0 "$pgid" 2>/dev/null || fail "make run exited before it was ready"
	((SECONDS < deadline)) || fail "make run not ready after 300 s"
	sleep 0.5
done
# expect CODE URL fails unless GET URL answers CODE.
expect() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$2") || true
	[[ $code == "$1" ]] || fail "GET $2 answered $code, want $1"
	echo "smoke-run: GET $2: $code"
}
for a in "${public[@]}" "${gpus[@]}"; do expect 200 "http://$a/health"; done
# /metrics: never on the public ports of the proxy and accountsvc, only on
# their metrics listeners; gpusvc (private network) on its own port.
for a in "${public[@]}"; do expect 404 "http://$a/metrics"; done
for a in "${metrics[@]}" "${gpus[@]}"; do expect 200 "http://$a/metrics"; done

# The throwaway data stores make run started (recorded by services.sh) must
# be stopped too; those recorded before it started are not its to stop.
for f in .run/services/*; do
	[[ -f $f && $before != *" $f "* ]] || continue
	addrs+=("127.0.0.1:$(sed -n 's/^port=//p' "$f")")
	echo "smoke-run: make run started the throwaway ${f##*/}"
done

start=$SECONDS
kill -INT -- "-$pgid"
while kill -0 "$pgid" 2>/dev/null; do
	((SECONDS - start <= 10)) || fail "make run still running 10 s after SIGINT"
	sleep 0.1
done
elapsed=$((SECONDS - start))
sleep 0.5
left=()
for a in "${addrs[@]}"; do
	if ss -Hltn "sport = :${a##*:}" | grep -q .; then left+=("$a"); fi
done
((${#left[@]} == 0)) || fail "still listening after stop: ${left[*]}"
# Only this checkout's processes count (run.sh starts bin/* from $root):
# another checkout's stack or bench on the same machine is not ours.
left=()
for pid in $(ours); do left+=("$(ps -o pid=,args= -p "$pid")"); done
((${#left[@]} == 0)) || fail "service processes left: ${left[*]}"
trap - EXIT
echo "smoke-run: stopped everything ${elapsed} s after SIGINT"
echo "smoke-run: ok"
