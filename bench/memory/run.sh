#!/usr/bin/env bash
# bench/memory/run.sh (make bench-memory): memory (bench/README.md §5).
#
# RSS (VmRSS from /proc/PID/status, the process plus its children) of each
# service idle, and the proxy's RSS under 50 concurrent 5 MB uploads: the
# uploads go to a test backend that reads each body at 2 MB/s (so that 50
# are in flight at once), once on an account route (POST /upload, streamed)
# and once on a GPU route (POST /upscale, which the proxy buffers up to
# BODY_LIMIT for the work estimate and a replay). The RSS under the other
# sections' loads is sampled by those sections; bench/run.sh gathers all
# rows into one table.
#
# Environment: MEM_SECONDS (per upload run, default 10), BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup memory
need jq:jq curl:curl psql:postgresql-client
build
stores
secs=${MEM_SECONDS:-10}
mapfile -t envs < <(common_env)

# Idle RSS of the three services, each freshly started.
next_port
acc_addr=127.0.0.1:$PORT
start_accountsvc "$acc_addr"
next_port
gpu_addr=127.0.0.1:$PORT
start gpusvc "${envs[@]}" "HTTP_ADDR=$gpu_addr" "STORAGE_DIR=$WORK/storage" -- "$BIN/gpusvc"
wait_http gpusvc "http://$gpu_addr/health"
sleep 2
record_rss idle accountsvc gpusvc
stop gpusvc
stop accountsvc

next_port
backend_addr=127.0.0.1:$PORT
start backend -- "$BIN/benchtool" backend -addr "$backend_addr" -drain-rate 2000000
wait_http backend "http://$backend_addr/health"
psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -v a="http://$backend_addr" >/dev/null <<<"INSERT INTO api_hosts (address) VALUES (:'a');"
next_port
proxy_addr=127.0.0.1:$PORT
start proxy "${envs[@]}" "HTTP_ADDR=$proxy_addr" "ACCOUNTSVC_URLS=http://$backend_addr" -- "$BIN/proxy"
wait_http proxy "http://$proxy_addr/health"
deadline=$((SECONDS + 20))
until [[ $(curl -fsS "http://$proxy_addr/health" | jq -r '.gpu_hosts_available // 0') -ge 1 && $(curl -fsS "http://$proxy_addr/health" | jq -r '.account_hosts_available // 0') -ge 1 ]]; do
	((SECONDS < deadline)) || die "the proxy does not see the backend after 20 s"
	sleep 0.2
done
sleep 1
record_rss idle proxy
idle=$(rss_mb proxy)

declare -A peak=() sum=()
for route in upload upscale; do
	f=$WORK/uploads-$route.json
	SAMPLER_FILE=$WORK/peak-$route.rss sampler_start "$route" proxy
	"$BIN/benchtool" closed -url "http://$proxy_addr/$route" -method POST -c 50 -duration "${secs}s" -body-size 5000000 \
		-label "$route" -H "challenge-token: $CHALLENGE" -H "Content-Type: application/octet-stream" >"$f" 2>>"$WORK/benchtool.log"
	SAMPLER_FILE=$WORK/peak-$route.rss sampler_stop
	peak[$route]=$(awk -F'|' '{ print $3 }' "$WORK/peak-$route.rss")
	sum[$route]="$(jget "$f" ok) uploads ok, $(jget "$f" rejected) rejected, $(jget "$f" failed) failed, statuses $(jq -c .statuses "$f"), p50 $(jget "$f" p50_ms) ms"
	log "$route: peak ${peak[$route]} MB (${sum[$route]})"
	sleep 1
done
record_rss "after the uploads" proxy
printf 'proxy|50 × 5 MB uploads, account route (peak)|%s\nproxy|50 × 5 MB uploads, GPU route /upscale (peak)|%s\n' \
	"${peak[upload]}" "${peak[upscale]}" >>"$OUT_DIR/$SECTION.rss"

md "## 5. Memory" "" \
	"The proxy with 50 concurrent 5 MB uploads to a backend reading each body at 2 MB/s (${secs} s per route; RSS sampled every 100 ms):" "" \
	"| route | idle MB | peak MB | uploads |" "|---|---:|---:|---|" \
	"| POST /upload (account route, streamed) | $idle | ${peak[upload]} | ${sum[upload]} |" \
	"| POST /upscale (GPU route: 64 KiB prefix read for the estimate, the rest streamed) | $idle | ${peak[upscale]} | ${sum[upscale]} |" ""
for route in upload upscale; do
	awk -v p="${peak[$route]}" 'BEGIN { exit !(p < 64) }' && met=1 || met=0
	name="account route"
	[[ $route == upscale ]] && name="GPU route"
	target "proxy RSS < 64 MB with 50 concurrent 5 MB uploads ($name)" "${peak[$route]} MB" "$met"
done
