#!/usr/bin/env bash
# bench/proxy/run.sh (make bench-proxy): proxy overhead against nginx and
# HAProxy, side by side in one run (bench/README.md §1).
#
# Two identical test backends (benchtool backend) on loopback; in front of
# them, each on its own port: nothing (direct, backend 1 only), our proxy
# (bin/proxy, the two backends as its ACCOUNTSVC_URLS pool), nginx
# (2 workers, round-robin, upstream keep-alive, request bodies streamed) and
# HAProxy (2 threads, roundrobin, http-reuse always). wrk drives each
# workload against each target in turn: small JSON GET (64 connections),
# 1 MiB response (16), 2 MiB POST body (16), 50 ms backend delay (64). Then
# benchtool rate sends the small GET at half of our proxy's maximum rate
# to every target, for the added p99 latency.
#
# Every measurement runs BENCH_ROUNDS times, interleaved across targets; the
# best round of each (highest req/s; lowest p99 for the half-rate runs) is
# kept, since the machine is shared and the best round is the least
# disturbed one.
#
# Environment: BENCH_SECONDS (per run, default 6), BENCH_ROUNDS (default 2),
# BENCH_SKIP_BUILD=1, BENCH_PROXY_BASELINE (a proxy binary built from an
# earlier commit: it runs as one more target, "baseline", with the same
# settings, and a table of our proxy's ratios to it follows; for checking
# that a refactor costs nothing).
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup proxy
need wrk:wrk nginx:nginx-light haproxy:haproxy jq:jq curl:curl
build
stores
secs=${BENCH_SECONDS:-6}
rounds=${BENCH_ROUNDS:-2}

# The two backends.
backends=()
for i in 1 2; do
	next_port
	start "backend-$i" -- "$BIN/benchtool" backend -addr "127.0.0.1:$PORT" -delay 50ms
	backends+=("127.0.0.1:$PORT")
	wait_http "backend-$i" "http://127.0.0.1:$PORT/health"
done

# start_proxy NAME BINARY starts a proxy build on the next port, its account
# pool (every non-GPU route) the two backends, and waits until it forwards;
# the address is left in PORT.
mapfile -t envs < <(common_env)
start_proxy() {
	local name=$1 bin=$2 deadline
	next_port
	start "$name" "${envs[@]}" "HTTP_ADDR=127.0.0.1:$PORT" "ACCOUNTSVC_URLS=http://${backends[0]},http://${backends[1]}" \
		"HEALTH_INTERVAL=1s" -- "$bin"
	wait_http "$name" "http://127.0.0.1:$PORT/health"
	# The account pool counts as up once its first active checks pass.
	deadline=$((SECONDS + 15))
	until curl -fsS -o /dev/null -H "challenge-token: $CHALLENGE" "http://127.0.0.1:$PORT/small" 2>/dev/null; do
		((SECONDS < deadline)) || die "$name does not forward GET /small (see $WORK/$name.log)"
		sleep 0.2
	done
}
start_proxy proxy "$BIN/proxy"
proxy_addr=127.0.0.1:$PORT

# nginx: 2 workers (the machine's cores), round-robin, keep-alive upstream.
next_port
nginx_addr=127.0.0.1:$PORT
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream backends {
        server ${backends[0]};
        server ${backends[1]};
        keepalive 128;
    }
    server {
        listen $nginx_addr;
        client_max_body_size 10m;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }
    }
}
CONF
start nginx -- nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
wait_http nginx "http://$nginx_addr/health"

# HAProxy: 2 threads, roundrobin, idle upstream connections reused.
next_port
haproxy_addr=127.0.0.1:$PORT
cat >"$WORK/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend bench
    bind $haproxy_addr
    default_backend backends
backend backends
    balance roundrobin
    server b1 ${backends[0]}
    server b2 ${backends[1]}
CONF
start haproxy -- haproxy -db -f "$WORK/haproxy.cfg"
wait_http haproxy "http://$haproxy_addr/health"

targets=(direct proxy nginx haproxy)
declare -A addr=([direct]=${backends[0]} [proxy]=$proxy_addr [nginx]=$nginx_addr [haproxy]=$haproxy_addr)
declare -A proc=([direct]=backend-1 [proxy]=proxy [nginx]=nginx [haproxy]=haproxy)
if [[ -n ${BENCH_PROXY_BASELINE:-} ]]; then
	[[ -x $BENCH_PROXY_BASELINE ]] || die "BENCH_PROXY_BASELINE=$BENCH_PROXY_BASELINE is not an executable"
	start_proxy baseline "$BENCH_PROXY_BASELINE"
	targets+=(baseline)
	addr[baseline]=127.0.0.1:$PORT
	proc[baseline]=baseline
fi
record_rss idle proxy nginx haproxy backend-1

cat >"$WORK/post2mib.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 2 * 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

# to_ms VALUE converts a wrk latency (12.3us, 4.5ms, 1.2s) to milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else print v }'
}

# wrk_run WORKLOAD TARGET CONNS PATH [SCRIPT] runs wrk and stores
# rps/p50/p99 in the arrays below.
declare -A rps=() p50=() p99=() errs=()
wrk_run() {
	local w=$1 t=$2 c=$3 path=$4 script=${5:-} out
	local args=(-t 2 -c "$c" -d "${secs}s" --latency -H "challenge-token: $CHALLENGE")
	[[ -n $script ]] && args+=(-s "$script")
	sampler_start "$w" "${proc[$t]}"
	out=$(wrk "${args[@]}" "http://${addr[$t]}$path" 2>&1) || die "wrk failed: $out"
	sampler_stop
	printf '%s\n' "$out" >"$WORK/wrk-$w-$t.txt"
	local r q50 q99 e
	r=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	q50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
	q99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
	e=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { n += 1 } END { print n + 0 }' <<<"$out")
	log "$w via $t: $r req/s, p50 $q50 ms, p99 $q99 ms, errors $e"
	# Keep the best round: the one least disturbed by the rest of the machine.
	if [[ -z ${rps[$w,$t]:-} ]] || ge "$r" "${rps[$w,$t]}"; then
		rps[$w,$t]=$r p50[$w,$t]=$q50 p99[$w,$t]=$q99 errs[$w,$t]=$e
	fi
}

workloads=(small 1mib 2mib delay)
declare -A wl_name=([small]="small JSON GET (64 conns)" [1mib]="1 MiB response (16 conns)" [2mib]="2 MiB POST body (16 conns)" [delay]="50 ms backend (64 conns)")
for ((round = 1; round <= rounds; round++)); do
for w in "${workloads[@]}"; do
	for t in "${targets[@]}"; do
		case $w in
		small) wrk_run "$w" "$t" 64 /small ;;
		1mib) wrk_run "$w" "$t" 16 /1mib ;;
		2mib) wrk_run "$w" "$t" 16 /upload "$WORK/post2mib.lua" ;;
		delay) wrk_run "$w" "$t" 64 /delay ;;
		esac
	done
done
done

# Added latency at half of our proxy's maximum small-request rate.
half=$(awk -v r="${rps[small,proxy]}" 'BEGIN { printf "%d", r / 2 }')
declare -A hp50=() hp99=() hrate=()
for ((round = 1; round <= rounds; round++)); do
	for t in "${targets[@]}"; do
		f=$WORK/rate-$t-$round.json
		GOGC=400 "$BIN/benchtool" rate -url "http://${addr[$t]}/small" -rate "$half" -duration "${secs}s" -conns 64 \
			-H "challenge-token: $CHALLENGE" -label "$t" >"$f" 2>>"$WORK/benchtool.log"
		log "half rate ($half/s) via $t: p50 $(jget "$f" p50_ms) ms, p99 $(jget "$f" p99_ms) ms"
		# Keep the round with the lowest p99 (the least disturbed).
		if [[ -z ${hp99[$t]:-} ]] || ge "${hp99[$t]}" "$(jget "$f" p99_ms)"; then
			hp50[$t]=$(jget "$f" p50_ms) hp99[$t]=$(jget "$f" p99_ms) hrate[$t]=$(jget "$f" per_sec)
		fi
	done
done
record_rss "after the proxy benchmark" proxy nginx haproxy

md "## 1. Proxy overhead" "" \
	"wrk (2 threads, ${secs} s per run, best of $rounds interleaved rounds) → target → two identical backends (benchtool backend), all on this machine." \
	"Our proxy balances its account pool (least_conn over the two backends); nginx and HAProxy use round-robin." \
	"Ratios are throughput ratios (higher is better)." "" \
	"| workload | target | req/s | p50 ms | p99 ms | errors | × direct | × nginx |" \
	"|---|---|---:|---:|---:|---:|---:|---:|"
for w in "${workloads[@]}"; do
	for t in "${targets[@]}"; do
		md "| ${wl_name[$w]} | $t | $(fmt_num "${rps[$w,$t]}") | ${p50[$w,$t]} | ${p99[$w,$t]} | ${errs[$w,$t]} | $(ratio "${rps[$w,$t]}" "${rps[$w,direct]}") | $(ratio "${rps[$w,$t]}" "${rps[$w,nginx]}") |"
	done
done
md "" "Added latency at half of our proxy's maximum small-request rate ($half req/s, open loop, 64 kept-alive connections, benchtool rate; latency from each request's scheduled time; lowest p99 of $rounds rounds):" "" \
	"| target | achieved req/s | p50 ms | p99 ms | p99 added vs direct, ms |" "|---|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
	md "| $t | $(fmt_num "${hrate[$t]}") | ${hp50[$t]} | ${hp99[$t]} | $(awk -v a="${hp99[$t]}" -v b="${hp99[direct]}" 'BEGIN { printf "%+.2f", a - b }') |"
done
delay_added=$(awk -v a="${p99[delay,proxy]}" -v b="${p99[delay,direct]}" 'BEGIN { printf "%+.2f", a - b }')
md "" "50 ms backend at 64 connections: p99 added by our proxy $delay_added ms (nginx $(awk -v a="${p99[delay,nginx]}" -v b="${p99[delay,direct]}" 'BEGIN { printf "%+.2f", a - b }') ms, HAProxy $(awk -v a="${p99[delay,haproxy]}" -v b="${p99[delay,direct]}" 'BEGIN { printf "%+.2f", a - b }') ms)." ""
if [[ -n ${BENCH_PROXY_BASELINE:-} ]]; then
	md "Our proxy against the baseline build ($BENCH_PROXY_BASELINE), same run (throughput: higher is better; p99: lower is better):" "" \
		"| workload | proxy req/s ÷ baseline | proxy p99 ÷ baseline |" "|---|---:|---:|"
	for w in "${workloads[@]}"; do
		md "| ${wl_name[$w]} | $(ratio "${rps[$w,proxy]}" "${rps[$w,baseline]}") | $(ratio "${p99[$w,proxy]}" "${p99[$w,baseline]}") |"
	done
	md "| half-rate small GET | $(ratio "${hrate[proxy]}" "${hrate[baseline]}") | $(ratio "${hp99[proxy]}" "${hp99[baseline]}") |" ""
fi

r=$(ratio "${rps[small,proxy]}" "${rps[small,nginx]}")
ge "$r" 0.6 && met=1 || met=0
target "small-request throughput ≥ 0.6× nginx" "${r}×" "$met"
miss=$((1 - met))
for w in 1mib 2mib; do
	r=$(ratio "${rps[$w,proxy]}" "${rps[$w,nginx]}")
	ge "$r" 1.0 && met=1 || met=0
	target "${wl_name[$w]%% (*} throughput ≥ 1.0× nginx" "${r}×" "$met"
	miss=$((miss + 1 - met))
done
added=$(awk -v a="${hp99[proxy]}" -v b="${hp99[direct]}" 'BEGIN { printf "%.2f", a - b }')
awk -v a="$added" 'BEGIN { exit !(a < 1) }' && met=1 || met=0
target "p99 added latency < 1 ms at half the maximum rate" "${added} ms" "$met"
miss=$((miss + 1 - met))

# A missed target gets two profiles: the live proxy under wrk's small GET
# (perf, since the proxy exposes no pprof endpoint), and pprof of the data
# path's own micro-benchmark (edge guard, balancer, forwarding, metrics).
if ((miss > 0)); then
	if command -v perf >/dev/null 2>&1; then
		log "profiling the live proxy with perf during wrk small GET"
		wrk -t 2 -c 64 -d "$((secs + 2))s" -H "challenge-token: $CHALLENGE" "http://$proxy_addr/small" >/dev/null 2>&1 &
		wrk_pid=$!
		sleep 1
		perf record -F 999 -g -o "$WORK/perf-proxy.data" -p "${PIDS[proxy]}" -- sleep "$secs" >/dev/null 2>&1 || true
		wait "$wrk_pid" || true
		perf report -i "$WORK/perf-proxy.data" --stdio --no-children --sort symbol --percent-limit 1 -g none 2>/dev/null |
			grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//' | head -n 30 >"$WORK/perf-proxy.txt" || true
		md "Where the live proxy spends its CPU under wrk's small GET (perf record -F 999 -g -p PID; self time per symbol; [k] = kernel):" "" \
			'```' "$(cat "$WORK/perf-proxy.txt")" '```' ""
	fi
	log "profiling the data path (go test -bench DataPathSmallGET -cpuprofile)"
	(cd "$ROOT/proxy" && go test -run '^$' -bench 'DataPathSmallGET' -benchtime 3s -cpu 2 \
		-cpuprofile "$WORK/datapath.cpu.pprof" -o "$WORK/forward.test" ./internal/forward/) >"$WORK/pprof-bench.txt" 2>&1 || true
	if [[ -s $WORK/datapath.cpu.pprof ]]; then
		go tool pprof -top -cum -nodecount 40 -focus 'sdserver/proxy' "$WORK/forward.test" "$WORK/datapath.cpu.pprof" 2>/dev/null |
			grep -vE '^(File|Build ID|Type|Time):' >"$WORK/pprof-top.txt" || true
		md "pprof of the data path's micro-benchmark, cumulative, proxy frames only: \`cd proxy && go test -run '^\$' -bench DataPathSmallGET -cpu 2 -cpuprofile cpu.pprof -o forward.test ./internal/forward/ && go tool pprof -top -cum -focus sdserver/proxy forward.test cpu.pprof\`:" "" '```' \
			"$(grep -E '^Benchmark' "$WORK/pprof-bench.txt" || true)" "$(sed -n '1,45p' "$WORK/pprof-top.txt")" '```' ""
	fi
fi
