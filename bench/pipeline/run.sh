#!/usr/bin/env bash
# bench/pipeline/run.sh (make bench-pipeline): generation pipeline overhead
# (bench/README.md §3).
#
# The whole stack on loopback: proxy → gpusvc (built-in nouns backend, no
# pacing) and accountsvc, a fresh user signed up, verified and logged in
# through the proxy. benchtool closed sends POST /images (Text to Image, one
# 512×512 sample, 25 steps, a new seed for each request) one at a time,
# through the proxy and directly to gpusvc. The backend's own render time is gpusvc's
# gpusvc_generation_duration_seconds (the time the job held its slot: the
# backend call alone) over the same requests; overhead = latency − that
# mean. Then 2 × cores concurrent clients for PIPE_SECONDS give images per
# second, per core and per CPU-second of the services.
#
# When the target is missed, perf samples gpusvc and the proxy during a
# further run (the services expose no pprof endpoint) and the top symbols go
# into the results.
#
# Environment: PIPE_N (sequential requests, default 60), PIPE_SECONDS
# (default 10), BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup pipeline
need jq:jq curl:curl psql:postgresql-client
build
stores
n=${PIPE_N:-60}
secs=${PIPE_SECONDS:-10}
cores=$(nproc)
mapfile -t envs < <(common_env)

next_port
acc_addr=127.0.0.1:$PORT
start_accountsvc "$acc_addr"
next_port
gpu_addr=127.0.0.1:$PORT
start gpusvc "${envs[@]}" "HTTP_ADDR=$gpu_addr" "PUBLIC_URL=http://$gpu_addr" "STORAGE_DIR=$WORK/storage" \
	"GPU_SLOTS=$cores" "GPU_QUEUE=64" -- "$BIN/gpusvc"
wait_http gpusvc "http://$gpu_addr/health"
psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -v a="http://$gpu_addr" >/dev/null <<<"INSERT INTO api_hosts (address) VALUES (:'a');"
next_port
proxy_addr=127.0.0.1:$PORT
start proxy "${envs[@]}" "HTTP_ADDR=$proxy_addr" "ACCOUNTSVC_URLS=http://$acc_addr" -- "$BIN/proxy"
wait_http proxy "http://$proxy_addr/health"
deadline=$((SECONDS + 20))
until [[ $(curl -fsS "http://$proxy_addr/health" | jq -r '.gpu_hosts_available // 0') -ge 1 && $(curl -fsS "http://$proxy_addr/health" | jq -r '.account_hosts_available // 0') -ge 1 ]]; do
	((SECONDS < deadline)) || die "the proxy does not see gpusvc and accountsvc after 20 s"
	sleep 0.2
done
make_user "http://$proxy_addr" "$WORK/outbox"
log "user $USER_EMAIL logged in"
record_rss "idle (pipeline stack)" proxy gpusvc accountsvc

body='{"inference_mode":"Text to Image","model_id":"alxdfy/noggles-v21-6400-best","prompt":"a frog wearing noggles","negative_prompt":"","samples":1,"steps":25,"seed":{{n}},"aspect_ratio":"512:512"}'

# render_totals prints "sum count" of gpusvc's generation duration histogram
# (every label set).
render_totals() {
	curl -fsS "http://$gpu_addr/metrics" | awk '
		/^gpusvc_generation_duration_seconds_sum/ { s += $NF }
		/^gpusvc_generation_duration_seconds_count/ { c += $NF }
		END { printf "%.6f %d\n", s, c }'
}

# sequential NAME URL runs n sequential requests and sets lat_f (the
# summary file) and render_ms (the backend's mean render time over them).
sequential() {
	local name=$1 url=$2 s0 c0 s1 c1
	read -r s0 c0 < <(render_totals)
	lat_f=$WORK/seq-$name.json
	"$BIN/benchtool" closed -url "$url/images" -method POST -c 1 -n "$n" -warmup 3 -label "$name" \
		-H "challenge-token: $CHALLENGE" -H "Authorization: $USER_TOKEN" -H "Content-Type: application/json" \
		-body "$body" >"$lat_f" 2>>"$WORK/benchtool.log" || die "benchtool closed failed (see $WORK/benchtool.log)"
	read -r s1 c1 < <(render_totals)
	render_ms=$(awk -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$c1" 'BEGIN { if (c1 > c0) printf "%.2f", (s1 - s0) / (c1 - c0) * 1000; else print 0 }')
	[[ $(jget "$lat_f" ok) -gt 0 ]] || die "no successful POST /images via $name: $(jq -c .statuses "$lat_f")"
	log "$name: p50 $(jget "$lat_f" p50_ms) ms, p99 $(jget "$lat_f" p99_ms) ms, render $render_ms ms (statuses $(jq -c .statuses "$lat_f"))"
}

sampler_start "generation (pipeline)" proxy gpusvc accountsvc
sequential proxy "http://$proxy_addr"
p_f=$lat_f p_render=$render_ms
sequential direct "http://$gpu_addr"
d_f=$lat_f d_render=$render_ms

# Throughput: 2 × cores clients through the proxy.
procs=(proxy gpusvc accountsvc)
declare -A ticks0=()
for p in "${procs[@]}"; do ticks0[$p]=$(cpu_ticks "$p"); done
tp_f=$WORK/throughput.json
"$BIN/benchtool" closed -url "http://$proxy_addr/images" -method POST -c $((2 * cores)) -duration "${secs}s" -label throughput \
	-H "challenge-token: $CHALLENGE" -H "Authorization: $USER_TOKEN" -H "Content-Type: application/json" \
	-body "$body" >"$tp_f" 2>>"$WORK/benchtool.log" || die "throughput run failed"
declare -A ticks1=()
for p in "${procs[@]}"; do ticks1[$p]=$(cpu_ticks "$p"); done
sampler_stop
hz=$(getconf CLK_TCK)
ips=$(jget "$tp_f" per_sec)
ok=$(jget "$tp_f" ok)
# The services' CPU in all, and per image for each (where a change in
# images per CPU-second comes from).
ticks=0 per_image=()
for p in "${procs[@]}"; do
	d=$((ticks1[$p] - ticks0[$p]))
	ticks=$((ticks + d))
	per_image+=("$p $(awk -v d="$d" -v hz="$hz" -v n="$ok" 'BEGIN { if (n > 0) printf "%.2f", d * 1000 / hz / n; else print "n/a" }') ms")
done
cpu_s=$(awk -v t="$ticks" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')

ov() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
p50_ov=$(ov "$(jget "$p_f" p50_ms)" "$p_render")
md "## 3. Generation pipeline overhead" "" \
	"POST /images (Text to Image, 1 sample, 512×512, 25 steps, built-in nouns backend, no pacing) by a signed-in user with credits: auth, validation, charging, rendering, PNG encoding, thumbnail, hash, database row and local storage, one request at a time ($n requests after 3 warm-ups)." \
	"Render = the backend's own time (gpusvc_generation_duration_seconds: the slot hold, i.e. the backend call) averaged over the same requests; overhead = latency − render." "" \
	"| path | p50 ms | p99 ms | mean render ms | p50 overhead ms | p99 overhead ms |" "|---|---:|---:|---:|---:|---:|" \
	"| client → proxy → gpusvc | $(jget "$p_f" p50_ms) | $(jget "$p_f" p99_ms) | $p_render | $p50_ov | $(ov "$(jget "$p_f" p99_ms)" "$p_render") |" \
	"| client → gpusvc | $(jget "$d_f" p50_ms) | $(jget "$d_f" p99_ms) | $d_render | $(ov "$(jget "$d_f" p50_ms)" "$d_render") | $(ov "$(jget "$d_f" p99_ms)" "$d_render") |" "" \
	"Throughput through the proxy, $((2 * cores)) concurrent clients for ${secs} s (gpusvc GPU_SLOTS=$cores): $ips images/s ($ok images, $(jget "$tp_f" rejected) rejected, $(jget "$tp_f" failed) failed), $(awk -v r="$ips" -v c="$cores" 'BEGIN { printf "%.2f", r / c }') images/s per core on $cores cores; the proxy, gpusvc and accountsvc used $cpu_s CPU-seconds, $(awk -v n="$ok" -v c="$cpu_s" 'BEGIN { if (c > 0) printf "%.2f", n / c; else print "n/a" }') images per CPU-second (PostgreSQL not counted; CPU per image: $(IFS=,; sed 's/,/, /g' <<<"${per_image[*]}")). p50 latency under this load: $(jget "$tp_f" p50_ms) ms, p99 $(jget "$tp_f" p99_ms) ms." ""
awk -v a="$p50_ov" 'BEGIN { exit !(a < 10) }' && met=1 || met=0
target "p50 pipeline overhead < 10 ms (512×512, through the proxy)" "$p50_ov ms" "$met"

if ((met == 0)); then
	if command -v perf >/dev/null 2>&1; then
		log "profiling gpusvc and the proxy with perf during a ${secs} s run"
		"$BIN/benchtool" closed -url "http://$proxy_addr/images" -method POST -c 2 -duration "${secs}s" -label profile \
			-H "challenge-token: $CHALLENGE" -H "Authorization: $USER_TOKEN" -H "Content-Type: application/json" \
			-body "$body" >/dev/null 2>>"$WORK/benchtool.log" &
		load_pid=$!
		sleep 1
		perf record -F 499 -g -o "$WORK/perf-gpusvc.data" -p "${PIDS[gpusvc]}" -- sleep $((secs - 2)) >/dev/null 2>&1 &
		perf_gpu=$!
		perf record -F 499 -g -o "$WORK/perf-proxy.data" -p "${PIDS[proxy]}" -- sleep $((secs - 2)) >/dev/null 2>&1 || true
		wait "$perf_gpu" || true
		wait "$load_pid" || true
		for p in gpusvc proxy; do
			perf report -i "$WORK/perf-$p.data" --stdio --no-children --sort symbol --percent-limit 1.5 -g none 2>/dev/null |
				grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//' | head -n 25 >"$WORK/perf-$p.txt" || true
		done
		md "Where the time goes (perf record -F 499 -g on the live processes during ${secs} s of 2 concurrent clients; self time per symbol; the services expose no pprof endpoint):" "" \
			"gpusvc:" '```' "$(cat "$WORK/perf-gpusvc.txt")" '```' "proxy:" '```' "$(cat "$WORK/perf-proxy.txt")" '```' ""
	else
		log "perf is not installed: no profile"
	fi
fi
