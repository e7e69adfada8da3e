#!/usr/bin/env bash
# lib.sh: what every bench section shares (sourced, never run). It finds the
# repository, installs the Debian tools a section needs when missing (as
# root), builds the binaries, starts processes on loopback and stops every
# one of them however the section ends, samples their RSS, and gives each
# section an isolated database on the local PostgreSQL.
#
# A section calls bench_setup NAME first; its results go to
# .run/bench/results/NAME.md (a Markdown fragment), NAME.rss (memory rows:
# service|when|MB) and NAME.targets (target rows: section|target|measured|
# met or missed). bench/run.sh assembles them into bench/RESULTS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
RUN_DIR=$ROOT/.run/bench
OUT_DIR=$RUN_DIR/results
CHALLENGE=bench-challenge-token
JWT_SECRET_BENCH=bench-jwt-secret-0123456789abcdef0123456789

declare -A PIDS=()
PID_NAMES=()
SERVICES_STARTED=''
BENCH_DB=''
SAMPLER_PID=''
SECTION=''
WORK=''

log() { printf 'bench %s: %s\n' "${SECTION:-}" "$*" >&2 || true; }
die() {
	log "error: $*"
	exit 1
}

# bench_setup NAME prepares a section: work dir, result files, cleanup trap.
bench_setup() {
	SECTION=$1
	WORK=$RUN_DIR/$SECTION
	rm -rf "$WORK"
	mkdir -p "$WORK" "$OUT_DIR"
	: >"$OUT_DIR/$SECTION.md"
	: >"$OUT_DIR/$SECTION.rss"
	: >"$OUT_DIR/$SECTION.targets"
	trap 'bench_cleanup' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# bench_cleanup stops everything this section started.
bench_cleanup() {
	local rc=$?
	trap - EXIT
	sampler_stop_quiet
	stop_all
	if [[ -n $BENCH_DB ]]; then
		psql "$ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [[ -n $SERVICES_STARTED ]]; then
		# shellcheck disable=SC2086 # a space-separated list of names
		"$ROOT/scripts/services.sh" stop $SERVICES_STARTED || true
	fi
	exit "$rc"
}

# need PROG:PACKAGE... installs the Debian packages of missing programs.
need() {
	local pair missing=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	((${#missing[@]} == 0)) && return 0
	[[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them (sudo apt-get install ${missing[*]})"
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# build compiles bin/proxy, bin/accountsvc, bin/gpusvc and bin/benchtool
# (BENCH_SKIP_BUILD=1 reuses them).
build() {
	if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
		log "building the binaries"
		make -C "$ROOT" --no-print-directory build >&2
		(cd "$ROOT/bench" && go build -o "$BIN/benchtool" ./cmd/benchtool) >&2
	fi
	local b
	for b in proxy accountsvc gpusvc benchtool; do
		[[ -x $BIN/$b ]] || die "$BIN/$b is missing (make build)"
	done
}

# port_free PORT succeeds when nothing listens on 127.0.0.1:PORT.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# next_port sets PORT to a free port at or after $BENCH_PORT_BASE (21000)
# and advances past it.
NEXT_PORT=${BENCH_PORT_BASE:-21000}
# shellcheck disable=SC2034 # PORT is read by the sections
next_port() {
	while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
	PORT=$NEXT_PORT
	NEXT_PORT=$((NEXT_PORT + 1))
}

# start NAME [ENV=VALUE...] -- CMD... runs CMD in the background with its
# output in $WORK/NAME.log and remembers its PID.
start() {
	local name=$1
	shift
	# The proxy's and accountsvc's /metrics listener on a kernel-chosen port:
	# its default (HTTP port + 1000) could be taken on a busy machine, and
	# no bench reads those metrics (gpusvc's are on its own address).
	local envs=("METRICS_ADDR=127.0.0.1:0")
	while [[ $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	env "${envs[@]}" "$@" </dev/null >>"$WORK/$name.log" 2>&1 &
	PIDS[$name]=$!
	PID_NAMES+=("$name")
}

# stop NAME stops one process started by start (TERM, KILL after 8 s).
stop() {
	local name=$1 pid deadline
	pid=${PIDS[$name]:-}
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + 8))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PIDS[$name]"
}

# stop_all stops every process started by start, latest first.
stop_all() {
	local i
	for ((i = ${#PID_NAMES[@]} - 1; i >= 0; i--)); do
		stop "${PID_NAMES[$i]}"
	done
	PID_NAMES=()
}

# alive NAME fails when NAME's process has exited.
alive() { [[ -n ${PIDS[$1]:-} ]] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wait_http NAME URL waits up to 60 s for URL to answer 200, failing early
# (with the log's tail) when NAME exits.
wait_http() {
	local name=$1 url=$2 deadline=$((SECONDS + 60))
	until curl -fsS -o /dev/null --max-time 2 -H "challenge-token: $CHALLENGE" "$url" 2>/dev/null; do
		if ! alive "$name"; then
			tail -n 20 "$WORK/$name.log" >&2 || true
			die "$name exited before $url answered"
		fi
		((SECONDS < deadline)) || die "$url does not answer after 60 s (see $WORK/$name.log)"
		sleep 0.1
	done
}

# rss_mb NAME prints the resident memory (MB) of NAME's process and its
# children (nginx workers), from /proc/PID/status VmRSS.
rss_mb() {
	local pid=${PIDS[$1]:-} p total=0 kb
	[[ -n $pid ]] || {
		echo 0
		return
	}
	for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
		kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${kb:-0}))
	done
	awk -v kb="$total" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# record_rss WHEN NAME... appends NAME's current RSS to the section's rows.
record_rss() {
	local when=$1 name
	shift
	for name in "$@"; do
		printf '%s|%s|%s\n' "$name" "$when" "$(rss_mb "$name")" >>"$OUT_DIR/$SECTION.rss"
	done
}

# sampler_start WHEN NAME... samples the RSS of NAMEs every 100 ms until
# sampler_stop, which records each one's peak under WHEN (in $SAMPLER_FILE
# when set, else in the section's rows).
sampler_start() {
	SAMPLER_WHEN=$1
	shift
	local specs=() name
	for name in "$@"; do specs+=("$name=${PIDS[$name]}"); done
	(
		declare -A peak=()
		trap 'for n in "${!peak[@]}"; do echo "$n ${peak[$n]}"; done >"$WORK/sampler.out"; exit 0' TERM
		while :; do
			for spec in "${specs[@]}"; do
				n=${spec%%=*} pid=${spec#*=} total=0
				for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
					kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
					total=$((total + ${kb:-0}))
				done
				((total > ${peak[$n]:-0})) && peak[$n]=$total
			done
			sleep 0.1
		done
	) &
	SAMPLER_PID=$!
}

sampler_stop() {
	[[ -n $SAMPLER_PID ]] || return 0
	kill -TERM "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=''
	local n kb
	while read -r n kb; do
		printf '%s|%s (peak)|%s\n' "$n" "$SAMPLER_WHEN" "$(awk -v kb="$kb" 'BEGIN { printf "%.1f", kb / 1024 }')" >>"${SAMPLER_FILE:-$OUT_DIR/$SECTION.rss}"
	done <"$WORK/sampler.out"
}

sampler_stop_quiet() {
	[[ -n $SAMPLER_PID ]] || return 0
	kill -TERM "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=''
}

# stores ensures PostgreSQL and Redis (scripts/services.sh) and creates the
# section's own database, migrated; it sets DB_URL, ADMIN_URL and REDIS_URL.
stores() {
	local exports
	exports=$("$ROOT/scripts/services.sh") || die "PostgreSQL/Redis are not available"
	eval "$exports"
	SERVICES_STARTED=${SERVICES_STARTED:-}
	ADMIN_URL=$TEST_DATABASE_URL
	BENCH_DB=nounsai_bench_$SECTION
	psql "$ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
	psql "$ADMIN_URL" -X -q -c "CREATE DATABASE $BENCH_DB" >/dev/null
	DB_URL=$(sed -E "s#/postgres(\?|$)#/$BENCH_DB\1#" <<<"$ADMIN_URL")
	[[ $DB_URL == *"/$BENCH_DB"* ]] || die "cannot derive the bench database URL from $ADMIN_URL"
	log "migrating $BENCH_DB"
	DATABASE_URL=$DB_URL "$BIN/accountsvc" migrate >"$WORK/migrate.log" 2>&1 || {
		tail -n 20 "$WORK/migrate.log" >&2
		die "migration failed"
	}
}

# common_env prints the settings every service gets in the benchmarks.
common_env() {
	printf '%s\n' "DATABASE_URL=$DB_URL" "REDIS_URL=$REDIS_URL" "REDIS_PREFIX=bench:$SECTION:" \
		"CHALLENGE_TOKEN=$CHALLENGE" "JWT_SECRET=$JWT_SECRET_BENCH" "RATE_LIMITS=off" \
		"LOG_FORMAT=json" "LOG_LEVEL=${BENCH_LOG_LEVEL:-info}"
}

# jget FILE FIELD prints a field of a benchtool JSON summary.
jget() { jq -r ".$2" "$1"; }

# ratio A B prints A/B with two decimals ("n/a" when B is 0 or empty).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# fmt_num N prints N rounded to an integer with thousands separators.
fmt_num() { LC_ALL=C awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }

# md LINE... appends lines to the section's Markdown fragment (and stdout).
md() {
	printf '%s\n' "$@" | tee -a "$OUT_DIR/$SECTION.md"
}

# target NAME MEASURED MET(0/1) records a target row.
target() {
	local verdict=missed
	[[ $3 == 1 ]] && verdict=met
	printf '%s|%s|%s|%s\n' "$SECTION" "$1" "$2" "$verdict" >>"$OUT_DIR/$SECTION.targets"
	log "target $1: $2 ($verdict)"
}

# ge A B succeeds when A >= B (floats).
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# peak_rows FILE WHEN appends, per service, the largest peak in FILE's rows
# to the section's rows, under WHEN; services named NAME-N are grouped as
# NAME (max over the instances).
peak_rows() {
	[[ -s $1 ]] || return 0
	awk -F'|' -v when="$2" '{ n = $1; sub(/-[0-9]+$/, "", n); if ($3 + 0 > m[n] + 0) m[n] = $3 }
		END { for (n in m) printf "%s|%s|%s\n", n, when, m[n] }' "$1" | sort >>"$OUT_DIR/$SECTION.rss"
}

# make_user BASE_URL OUTBOX signs a user up through BASE_URL (the proxy or
# accountsvc), verifies the address with the key from the outbox email, and
# logs in; it sets USER_EMAIL, USER_PASSWORD and USER_TOKEN.
make_user() {
	local base=$1 outbox=$2 key='' deadline out
	USER_EMAIL="bench-$RANDOM$RANDOM@example.com"
	USER_PASSWORD='correct horse battery staple'
	out=$(curl -sS -X POST "$base/users" -H "challenge-token: $CHALLENGE" -H 'Content-Type: application/json' \
		-d "{\"email\":\"$USER_EMAIL\",\"password\":\"$USER_PASSWORD\",\"metadata\":{}}" -w ' %{http_code}')
	[[ $out == *' 200' || $out == *' 201' ]] || die "signup failed: $out"
	deadline=$((SECONDS + 30))
	until [[ -n $key ]]; do
		# The bodies are quoted-printable: join the soft line breaks first.
		key=$(cat "$outbox"/*.eml 2>/dev/null | tr -d '\r' | sed -e ':a' -e '/=$/{N;s/=\n//;ba}' |
			grep -oE 'verify/[0-9a-zA-Z_-]{16,}' | tail -n 1 | cut -d/ -f2 || true)
		[[ -n $key ]] && break
		((SECONDS < deadline)) || die "no verification email in $outbox after 30 s"
		sleep 0.2
	done
	out=$(curl -sS -X POST "$base/users/verify/$key" -H "challenge-token: $CHALLENGE" -w ' %{http_code}')
	[[ $out == *' 200' ]] || die "verification failed: $out"
	out=$(curl -sS -X POST "$base/login" -H "challenge-token: $CHALLENGE" -u "$USER_EMAIL:$USER_PASSWORD")
	USER_TOKEN=$(jq -r '.token // empty' <<<"$out")
	[[ -n $USER_TOKEN ]] || die "login failed: $out"
}

# start_accountsvc ADDR starts accountsvc with a large signup bonus and the
# outbox in $WORK/outbox.
start_accountsvc() {
	start accountsvc "${envs[@]}" "HTTP_ADDR=$1" "SIGNUP_BONUS_CREDITS=${BENCH_BONUS:-1000000}" \
		"EMAIL_BACKEND=outbox" "OUTBOX_DIR=$WORK/outbox" "STORAGE_DIR=$WORK/storage" "APP_BASE_URL=http://$1" -- "$BIN/accountsvc"
	wait_http accountsvc "http://$1/health"
}

# cpu_ticks NAME... prints the CPU time (clock ticks, user + system) used so
# far by the named processes and their children.
cpu_ticks() {
	local name pid p total=0 t
	for name in "$@"; do
		pid=${PIDS[$name]:-}
		[[ -n $pid ]] || continue
		for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
			t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
			total=$((total + ${t:-0}))
		done
	done
	echo "$total"
}
