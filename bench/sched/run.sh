#!/usr/bin/env bash
# bench/sched/run.sh (make bench-sched): scheduling quality, the reason the
# proxy exists (bench/README.md §2).
#
# Four gpusvc processes with the built-in nouns backend, one GPU slot each,
# whose pacing stands in for GPU speed: a job holds its slot for
# units × SCHED_BASE / GPU_SPEED seconds (then renders on the CPU), with
# speeds 1, 1, 0.5 and 0.25. benchtool load sends the same open-loop Poisson
# sequence of POST /images (Text to Image, 1–4 samples, 25–50 steps, 512² or
# 768²; mean 2.55 units) at 60 %, 80 % and 95 % of the fleet's capacity
# through, in turn: our proxy (eeft, the default policy), our proxy with
# round_robin (the legacy proxy's policy), nginx least_conn and HAProxy
# leastconn. benchtool offline computes the ideal earliest-finish-time
# schedule of the same sequence. Then the fleet is restarted with four equal
# hosts and the 80 % run repeated.
#
# Environment: SCHED_JOBS (per run, default 300), SCHED_BASE (seconds per
# unit at speed 1, default 0.1), SCHED_LOADS (default "0.6 0.8 0.95"),
# SCHED_QUEUE (gpusvc GPU_QUEUE, default 32), SCHED_SEED (default 1),
# BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup sched
need nginx:nginx-light haproxy:haproxy jq:jq curl:curl psql:postgresql-client
build
stores
jobs=${SCHED_JOBS:-300}
base=${SCHED_BASE:-0.1}
read -r -a loads <<<"${SCHED_LOADS:-0.6 0.8 0.95}"
queue=${SCHED_QUEUE:-32}
seed=${SCHED_SEED:-1}
mapfile -t envs < <(common_env)

# fleet SPEED... (re)starts one gpusvc per speed and registers them in
# api_hosts; it sets gpu_addrs and speeds_csv.
gpu_addrs=()
fleet() {
	local i=0 s
	for ((i = 1; i <= ${#gpu_addrs[@]}; i++)); do stop "gpusvc-$i"; done
	psql "$DB_URL" -X -q -c 'DELETE FROM api_hosts' >/dev/null
	gpu_addrs=()
	i=0
	for s in "$@"; do
		i=$((i + 1))
		next_port
		gpu_addrs+=("127.0.0.1:$PORT")
		start "gpusvc-$i" "${envs[@]}" "LOG_LEVEL=warn" "HTTP_ADDR=127.0.0.1:$PORT" "PUBLIC_URL=http://127.0.0.1:$PORT" \
			"GPU_SLOTS=1" "GPU_QUEUE=$queue" "GPU_QUEUE_WAIT=10m" "GPU_BASE_SECONDS=$base" "GPU_SPEED=$s" \
			"STORAGE_DIR=$WORK/storage" "WORKER_CONCURRENCY=0" -- "$BIN/gpusvc"
	done
	for ((i = 1; i <= ${#gpu_addrs[@]}; i++)); do
		wait_http "gpusvc-$i" "http://${gpu_addrs[$((i - 1))]}/health"
		psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -v a="http://${gpu_addrs[$((i - 1))]}" >/dev/null \
			<<<"INSERT INTO api_hosts (address) VALUES (:'a');"
	done
	speeds_csv=$(
		IFS=,
		echo "$*"
	)
}

# anchors starts nginx (least_conn) and HAProxy (leastconn) in front of the
# current fleet, with upstream keep-alive and generous timeouts.
anchors() {
	stop nginx
	stop haproxy
	local servers='' hservers='' i=0 a
	for a in "${gpu_addrs[@]}"; do
		i=$((i + 1))
		servers+="        server $a;"$'\n'
		hservers+="    server g$i $a"$'\n'
	done
	mkdir -p "$WORK/nginx"
	[[ -n ${nginx_addr:-} ]] || {
		next_port
		nginx_addr=127.0.0.1:$PORT
		next_port
		haproxy_addr=127.0.0.1:$PORT
	}
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
    upstream gpus {
        least_conn;
$servers        keepalive 64;
    }
    server {
        listen $nginx_addr;
        client_max_body_size 10m;
        location / {
            proxy_pass http://gpus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }
    }
}
CONF
	start nginx -- nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
	cat >"$WORK/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    http-reuse always
frontend bench
    bind $haproxy_addr
    default_backend gpus
backend gpus
    balance leastconn
$hservers
CONF
	start haproxy -- haproxy -db -f "$WORK/haproxy.cfg"
	wait_http nginx "http://$nginx_addr/health"
	wait_http haproxy "http://$haproxy_addr/health"
}

# our_proxy POLICY starts a fresh proxy (nothing learned) and waits until it
# sees every GPU host; it sets proxy_addr.
our_proxy() {
	stop proxy
	next_port
	proxy_addr=127.0.0.1:$PORT
	start proxy "${envs[@]}" "LOG_LEVEL=warn" "HTTP_ADDR=$proxy_addr" "BALANCER_POLICY=$1" \
		"ACCOUNTSVC_URLS=http://${gpu_addrs[0]}" "GPU_TIMEOUT=600s" -- "$BIN/proxy"
	wait_http proxy "http://$proxy_addr/health"
	local deadline=$((SECONDS + 20)) n
	while :; do
		n=$(curl -fsS "http://$proxy_addr/health" | jq -r '.gpu_hosts_available // 0' 2>/dev/null || echo 0)
		((n >= ${#gpu_addrs[@]})) && break
		((SECONDS < deadline)) || die "the proxy sees $n of ${#gpu_addrs[@]} GPU hosts after 20 s"
		sleep 0.2
	done
}

# drive TARGET LOAD LABEL runs the sequence against TARGET's /images.
drive() {
	local url=$1 load=$2 label=$3 f
	f=$WORK/run-${label// /_}-$load.json
	local names=(proxy nginx haproxy)
	for ((i = 1; i <= ${#gpu_addrs[@]}; i++)); do names+=("gpusvc-$i"); done
	SAMPLER_FILE=$WORK/peaks.rss sampler_start "$label" "${names[@]}"
	"$BIN/benchtool" load -url "$url/images" -n "$jobs" -load "$load" -base "$base" -speeds "$speeds_csv" \
		-seed "$seed" -challenge-token "$CHALLENGE" -label "$label" >"$f" 2>>"$WORK/benchtool.log" ||
		die "benchtool load failed against $url (see $WORK/benchtool.log)"
	SAMPLER_FILE=$WORK/peaks.rss sampler_stop
	log "$label at $load: $(jq -c '{ok, rejected, failed, mean_ms, p99_ms}' "$f")"
	RUN_FILE=$f
}

# calibrate measures the per-job time that does not scale with speed (HTTP,
# render, encode, store) on an idle speed-1 host, for the offline ideal.
calibrate() {
	local f=$WORK/calibrate.json
	"$BIN/benchtool" closed -url "http://${gpu_addrs[0]}/images" -method POST -c 1 -n 10 -warmup 2 \
		-H "challenge-token: $CHALLENGE" -H "Content-Type: application/json" \
		-body '{"inference_mode":"Text to Image","prompt":"a frog wearing noggles","samples":1,"steps":25,"seed":7,"aspect_ratio":"512:512"}' \
		>"$f" 2>>"$WORK/benchtool.log" || die "calibration failed"
	overhead_ms=$(awk -v p="$(jget "$f" p50_ms)" -v b="$base" 'BEGIN { o = p - b * 1000; if (o < 0) o = 0; printf "%.1f", o }')
	log "per-job overhead on an idle host: $overhead_ms ms (1-unit job p50 $(jget "$f" p50_ms) ms, pacing $(awk -v b="$base" 'BEGIN { print b * 1000 }') ms)"
}

declare -A res=()
# series LOAD TARGETS... runs every target at LOAD plus the offline ideal.
series() {
	local load=$1 t
	shift
	for t in "$@"; do
		case $t in
		eeft | round_robin | least_conn)
			our_proxy "$t"
			drive "http://$proxy_addr" "$load" "proxy $t"
			;;
		nginx) drive "http://$nginx_addr" "$load" "nginx least_conn" ;;
		haproxy) drive "http://$haproxy_addr" "$load" "haproxy leastconn" ;;
		esac
		res[$fleet_name,$load,$t]=$RUN_FILE
	done
	local f=$WORK/offline-$fleet_name-$load.json
	"$BIN/benchtool" offline -n "$jobs" -load "$load" -base "$base" -speeds "$speeds_csv" -seed "$seed" \
		-overhead "${overhead_ms}ms" >"$f"
	res[$fleet_name,$load,offline]=$f
}

declare -A tname=([eeft]="our proxy, eeft (default)" [round_robin]="our proxy, round_robin (legacy)" [least_conn]="our proxy, least_conn"
	[nginx]="nginx least_conn" [haproxy]="HAProxy leastconn" [offline]="offline ideal (earliest finish, exact knowledge)")

# table FLEET LOAD TARGETS... prints one Markdown table.
table() {
	local fl=$1 load=$2 t f
	shift 2
	md "" "**$fleet_title, load $(awk -v l="$load" 'BEGIN { printf "%d", l * 100 }') %** ($jobs jobs, $(jq -r '.seconds' "${res[$fl,$load,offline]}") s of arrivals and service in the ideal schedule):" "" \
		"| policy | mean s | p50 s | p99 s | rejected | failed | p99 × ideal | p99 × best least-conn anchor |" \
		"|---|---:|---:|---:|---:|---:|---:|---:|"
	local lc
	lc=$(awk -v a="$(jget "${res[$fl,$load,nginx]}" p99_ms)" -v b="$(jget "${res[$fl,$load,haproxy]}" p99_ms)" 'BEGIN { print (a + 0 > 0 && (a < b || b + 0 == 0)) ? a : b }')
	for t in "$@" offline; do
		f=${res[$fl,$load,$t]}
		md "| ${tname[$t]} | $(awk -v v="$(jget "$f" mean_ms)" 'BEGIN { printf "%.2f", v / 1000 }') | $(awk -v v="$(jget "$f" p50_ms)" 'BEGIN { printf "%.2f", v / 1000 }') | $(awk -v v="$(jget "$f" p99_ms)" 'BEGIN { printf "%.2f", v / 1000 }') | $(jget "$f" rejected) | $(jget "$f" failed) | $(ratio "$(jget "$f" p99_ms)" "$(jget "${res[$fl,$load,offline]}" p99_ms)") | $(ratio "$(jget "$f" p99_ms)" "$lc") |"
	done
	LC_BEST=$lc
}

md "## 2. Scheduling quality" "" \
	"Open-loop Poisson arrivals of POST /images (same sequence, seed $seed, for every policy) to four one-slot gpusvc hosts with the built-in nouns backend." \
	"A job holds its slot for units × ${base} s / speed (gpusvc GPU_BASE_SECONDS=$base, GPU_SPEED), then renders on the CPU; GPU_QUEUE=$queue." \
	"Time scale: 1 unit = ${base} s at speed 1 instead of ~1 s on a real GPU, so divide by $base to compare with the simulation. Latency is from the scheduled arrival to the end of the answer; rejected = 429/503 answers."

fleet_name=mixed
fleet_title="Speeds 1, 1, 0.5, 0.25"
fleet 1 1 0.5 0.25
anchors
calibrate
md "Per-job time that does not scale with speed (render, encode, store, HTTP), measured on an idle host and added to every job of the offline ideal: ${overhead_ms} ms." ""
record_rss "idle (sched fleet)" gpusvc-1 nginx haproxy
for load in "${loads[@]}"; do
	series "$load" eeft round_robin nginx haproxy
done
for load in "${loads[@]}"; do
	table mixed "$load" eeft round_robin nginx haproxy
	if [[ $load == 0.8 ]]; then
		e=$(jget "${res[mixed,0.8,eeft]}" p99_ms)
		r=$(ratio "$e" "$LC_BEST")
		awk -v r="$r" 'BEGIN { exit !(r + 0 > 0 && r <= 0.6) }' && met=1 || met=0
		target "80 % load, mixed speeds: p99 ≤ 0.6× the better least-connections anchor" "${r}×" "$met"
		r=$(ratio "$e" "$(jget "${res[mixed,0.8,offline]}" p99_ms)")
		awk -v r="$r" 'BEGIN { exit !(r + 0 > 0 && r <= 1.15) }' && met=1 || met=0
		target "80 % load, mixed speeds: p99 within 1.15× of the offline ideal" "${r}×" "$met"
	fi
done

fleet_name=equal
fleet_title="Four equal hosts (speed 1)"
stop proxy
fleet 1 1 1 1
anchors
series 0.8 eeft least_conn nginx haproxy
table equal 0.8 eeft least_conn nginx haproxy
e=$(jget "${res[equal,0.8,eeft]}" p99_ms)
r=$(ratio "$e" "$LC_BEST")
awk -v r="$r" 'BEGIN { exit !(r + 0 > 0 && r <= 1.0) }' && met=1 || met=0
target "80 % load, equal hosts: p99 no worse than least_conn (1.0×)" "${r}×" "$met"
md ""
peak_rows "$WORK/peaks.rss" "scheduling runs (peak)"
