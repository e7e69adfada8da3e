#!/usr/bin/env bash
# run.sh (`make run`) starts the whole local stack in the foreground, as
# docs/development.md describes: it builds the binaries into bin/, ensures
# PostgreSQL and Redis (scripts/services.sh), applies the migrations, registers
# the local gpusvc instances in api_hosts, then runs the proxy, accountsvc and
# the gpusvc instances with their logs interleaved and prefixed by name.
#
# Ctrl-C (SIGINT) or SIGTERM stops every process it started (SIGTERM, up to
# 8 s, then SIGKILL), and the throwaway data stores if it started them. When a
# service dies on its own, the rest are stopped and run.sh exits non-zero.
#
# Overrides (environment): PROXY_ADDR, ACCOUNTSVC_ADDR, GPUSVC_ADDRS
# (comma-separated; each host:port or http://host:port), PROXY_METRICS_ADDR
# and ACCOUNTSVC_METRICS_ADDR (their internal /metrics listeners, default
# 127.0.0.1:9080 and 127.0.0.1:9081; gpusvc serves /metrics on its own
# address), JWT_SECRET,
# CHALLENGE_TOKEN, ADMIN_TOKEN, APP_BASE_URL, SIGNUP_BONUS_CREDITS,
# RATE_LIMITS (off disables every limit), CONFIG_FILE, DATABASE_URL, REDIS_URL,
# and RUN_SKIP_BUILD=1 to reuse the binaries already in bin/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run_dir=$root/.run

# A closed stderr (say, a pipe whose reader got the Ctrl-C too) must not kill
# run.sh half way through stopping the services.
trap '' PIPE
log() { printf 'run: %s\n' "$*" >&2 || true; }
die() {
	log "error: $*"
	exit 1
}

# host_port ADDR strips an http:// prefix and a trailing slash.
host_port() {
	local a=${1#http://}
	printf '%s' "${a%/}"
}

proxy_addr=$(host_port "${PROXY_ADDR:-127.0.0.1:8080}")
accountsvc_addr=$(host_port "${ACCOUNTSVC_ADDR:-127.0.0.1:8081}")
proxy_metrics_addr=$(host_port "${PROXY_METRICS_ADDR:-127.0.0.1:9080}")
accountsvc_metrics_addr=$(host_port "${ACCOUNTSVC_METRICS_ADDR:-127.0.0.1:9081}")
IFS=, read -r -a gpusvc_raw <<<"${GPUSVC_ADDRS:-127.0.0.1:8091,127.0.0.1:8092}"
gpusvc_addrs=()
for a in "${gpusvc_raw[@]}"; do
	a=$(host_port "${a// /}")
	[[ -n $a ]] && gpusvc_addrs+=("$a")
done
((${#gpusvc_addrs[@]} > 0)) || die "GPUSVC_ADDRS names no address"

# The development defaults of docs/development.md; printed below, never for production.
dev_jwt_secret=nounsai-dev-jwt-secret-do-not-use-in-production
export JWT_SECRET=${JWT_SECRET:-$dev_jwt_secret}
export CHALLENGE_TOKEN=${CHALLENGE_TOKEN:-dev-challenge-token}
export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token}
export APP_BASE_URL=${APP_BASE_URL:-http://$proxy_addr}
export SIGNUP_BONUS_CREDITS=${SIGNUP_BONUS_CREDITS:-50}
export OUTBOX_DIR=$run_dir/outbox
export STORAGE_DIR=$run_dir/storage
export LOG_FORMAT=console

for tool in curl awk setsid; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; install it (Debian: curl, mawk/gawk, util-linux)"
done

# pids maps a service name to its PID; names keeps the start order.
declare -A pids=()
names=()
services_started=''
stopping=0

# stop_all stops every service process (SIGTERM, then SIGKILL after 8 s),
# waits for their log prefixers, then stops the data stores we started.
stop_all() {
	local name pid deadline
	for name in "${names[@]}"; do
		pid=${pids[$name]}
		kill -TERM "$pid" 2>/dev/null || true
	done
	deadline=$((SECONDS + 8))
	for name in "${names[@]}"; do
		pid=${pids[$name]}
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not stop within 8 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	# The prefixers end once their service's output closes.
	wait 2>/dev/null || true
	if [[ -n $services_started ]]; then
		# shellcheck disable=SC2086 # a space-separated list of names
		scripts/services.sh stop $services_started || true
	fi
}

on_signal() {
	((stopping)) && return
	stopping=1
	log "stopping (signal $1)"
	stop_all
	log "stopped"
	exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
# Whatever else ends the script (a failed step under set -e) still cleans up.
trap 'rc=$?; if ((!stopping)); then stopping=1; stop_all; fi; exit "$rc"' EXIT

# port_free ADDR fails when something already accepts connections on ADDR.
port_free() {
	# shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
	! timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${1%:*}" "${1##*:}" 2>/dev/null
}
for pair in "PROXY_ADDR=$proxy_addr" "ACCOUNTSVC_ADDR=$accountsvc_addr" "${gpusvc_addrs[@]/#/GPUSVC_ADDRS=}" \
	"PROXY_METRICS_ADDR=$proxy_metrics_addr" "ACCOUNTSVC_METRICS_ADDR=$accountsvc_metrics_addr"; do
	port_free "${pair#*=}" || die "${pair#*=} is already in use (set ${pair%%=*} to another address)"
done

if [[ ${RUN_SKIP_BUILD:-} != 1 ]]; then
	log "building bin/proxy bin/accountsvc bin/gpusvc"
	make --no-print-directory build >&2
fi
for bin in proxy accountsvc gpusvc; do
	[[ -x bin/$bin ]] || die "bin/$bin is missing (make build)"
done

exports=$(scripts/services.sh) || die "the data stores are not available (see above)"
eval "$exports"
services_started=${SERVICES_STARTED:-}
mkdir -p "$OUTBOX_DIR" "$STORAGE_DIR"

log "applying migrations"
if ! bin/accountsvc migrate </dev/null 2>&1 | awk '{ print "[migrate] " $0; fflush() }' >&2; then
	die "bin/accountsvc migrate failed"
fi

gpusvc_urls=()
for a in "${gpusvc_addrs[@]}"; do gpusvc_urls+=("http://$a"); done
log "registering ${gpusvc_urls[*]} in api_hosts"
for url in "${gpusvc_urls[@]}"; do
	psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v address="$url" >/dev/null <<-'SQL' ||
		INSERT INTO api_hosts (address) VALUES (:'address') ON CONFLICT (address) DO NOTHING;
	SQL
		die "cannot register $url in api_hosts"
done

# start NAME ENV=VALUE... -- CMD... runs CMD in its own session (so a Ctrl-C
# reaches only run.sh, which then sends exactly one SIGTERM), with its output
# prefixed by [NAME]. The prefixer ignores the stop signals so that it outlives
# its service and keeps the last log lines.
start() {
	local name=$1
	shift
	local envs=()
	while [[ $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	env "${envs[@]}" setsid "$@" </dev/null > >(
		trap '' INT TERM HUP PIPE
		awk -v p="[$name] " '{ print p $0; fflush() }' || true
		# If our stdout went away (say, `make run | tee` and the Ctrl-C took
		# tee), keep reading so the service never writes to a broken pipe.
		cat >/dev/null
	) 2>&1 &
	pids[$name]=$!
	names+=("$name")
}

start accountsvc "HTTP_ADDR=$accountsvc_addr" "METRICS_ADDR=$accountsvc_metrics_addr" "DEV_DISCORD_DIR=$run_dir/discord" -- bin/accountsvc
i=0
for a in "${gpusvc_addrs[@]}"; do
	i=$((i + 1))
	# Video jobs post their Discord embed to accountsvc's local fake webhook
	# (it records them in .run/discord/discord.jsonl) unless one is set.
	start "gpusvc-$i" "HTTP_ADDR=$a" "PUBLIC_URL=http://$a" \
		"VIDEO_WEBHOOK_URL=${VIDEO_WEBHOOK_URL:-http://$accountsvc_addr/dev/discord/webhook}" -- bin/gpusvc
done
start proxy "HTTP_ADDR=$proxy_addr" "METRICS_ADDR=$proxy_metrics_addr" "ACCOUNTSVC_URLS=http://$accountsvc_addr" -- bin/proxy

# dead_service prints the name of a service that has exited, if any.
dead_service() {
	local name
	for name in "${names[@]}"; do
		if ! kill -0 "${pids[$name]}" 2>/dev/null; then
			printf '%s' "$name"
			return 0
		fi
	done
	return 1
}

# on_death reports a service that exited by itself, stops the rest and fails.
on_death() {
	local name=$1 rc=0
	wait "${pids[$name]}" 2>/dev/null || rc=$?
	stopping=1
	log "error: $name exited (status $rc); stopping the rest"
	stop_all
	exit 1
}

health_addrs=("proxy=$proxy_addr" "accountsvc=$accountsvc_addr")
i=0
for a in "${gpusvc_addrs[@]}"; do
	i=$((i + 1))
	health_addrs+=("gpusvc-$i=$a")
done
deadline=$((SECONDS + 60))
for pair in "${health_addrs[@]}"; do
	until curl -fsS -o /dev/null --max-time 2 "http://${pair#*=}/health" 2>/dev/null; do
		if dead=$(dead_service); then on_death "$dead"; fi
		((SECONDS < deadline)) || die "${pair%%=*} is not healthy after 60 s (GET http://${pair#*=}/health)"
		sleep 0.3
	done
done

proxy_url=http://$proxy_addr
# redact_url hides the password of a URL (user:secret@host).
redact_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
# Only the development secret is printed; one the user set stays secret.
jwt_shown="(set by you, not shown)"
[[ $JWT_SECRET == "$dev_jwt_secret" ]] && jwt_shown="$JWT_SECRET (development only)"
rate_limits="on (RATE_LIMITS=off turns them off)"
[[ ${RATE_LIMITS:-} == off ]] && rate_limits="OFF (RATE_LIMITS=off)"
cat >&2 <<EOF || true

==================================================================== ready ===
  proxy        $proxy_url   (metrics http://$proxy_metrics_addr/metrics)
  accountsvc   http://$accountsvc_addr   (metrics http://$accountsvc_metrics_addr/metrics)
  gpusvc       ${gpusvc_urls[*]}   (metrics on /metrics of each)
  database     $(redact_url "$DATABASE_URL")
  redis        $(redact_url "$REDIS_URL")
  JWT secret   $jwt_shown
  challenge    $CHALLENGE_TOKEN        admin token  $ADMIN_TOKEN
  outbox       $OUTBOX_DIR   storage  $STORAGE_DIR
  rate limits  $rate_limits

Try it (in another terminal):
  curl -s $proxy_url/health; echo
  curl -s -X POST $proxy_url/users -H 'challenge-token: $CHALLENGE_TOKEN' \\
       -H 'Content-Type: application/json' -d '{"email":"me@example.com","password":"correct horse","metadata":{}}'; echo
  sleep 2  # the email is written by a background job; then take the newest one
  # (the sed joins quoted-printable's soft line breaks)
  key=\$(ls -t $OUTBOX_DIR/*.eml | head -n 1 | xargs cat | tr -d '\\r' | sed ':a;/=\$/{N;s/=\\n//;ba}' \\
       | grep -oE 'verify/[0-9a-f]{16,}' | head -n 1 | cut -d/ -f2)
  curl -s -X POST $proxy_url/users/verify/\$key -H 'challenge-token: $CHALLENGE_TOKEN'; echo
  token=\$(curl -s -X POST $proxy_url/login -H 'challenge-token: $CHALLENGE_TOKEN' \\
       -u 'me@example.com:correct horse' | sed -E 's/.*"token": *"([^"]+)".*/\\1/')
  curl -s -X POST $proxy_url/images -H 'challenge-token: $CHALLENGE_TOKEN' -H "Authorization: \$token" \\
       -H 'Content-Type: application/json' -d '{"inference_mode":"Text to Image","model_id":"alxdfy/noggles-v21-6400-best","prompt":"a frog wearing noggles","negative_prompt":"","samples":1,"steps":20,"seed":42,"aspect_ratio":"512:512"}' \\
       -D - -o frog.png
Ctrl-C stops everything.
==============================================================================

EOF

# Supervise: a service that exits on its own takes the others down with it.
while :; do
	if dead=$(dead_service); then on_death "$dead"; fi
	sleep 1 &
	wait $! || true
done
