#!/usr/bin/env bash
# services.sh finds or starts the data stores the stack needs (PostgreSQL and
# Redis) and the media tools (ffmpeg, ffprobe; with SERVICES_TEST_TOOLS=1 also
# chromium for the browser test), following docs/development.md:
#
#   1. $DATABASE_URL / $REDIS_URL when set;
#   2. else a server already answering on 127.0.0.1:5432 (user postgres, trust
#      auth; the database "nounsai" is created if missing) / 127.0.0.1:6379;
#   3. else throwaway servers started from the installed binaries, with their
#      data under .run/pg and .run/redis (on the default ports, or on the next
#      free ones when something that is not answering holds them). Debian's
#      postgresql and redis-server packages are installed first when missing
#      and we are root; otherwise a message says what to install.
#
# Usage:
#   eval "$(scripts/services.sh)"      ensure; prints only `export ...` lines
#   scripts/services.sh stop [NAME...] stop servers this script started
#                                      (NAME: postgres, redis; default both)
#
# The export lines set DATABASE_URL, REDIS_URL, TEST_DATABASE_URL (the same
# server's "postgres" database, for test helpers that create databases),
# TEST_REDIS_URL and SERVICES_STARTED (the names this call started, so that a
# caller stops exactly those: `scripts/services.sh stop $SERVICES_STARTED`).
# Everything else goes to stderr. What was started is recorded under
# .run/services/ so that `stop` works from another shell too.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_dir=${RUN_DIR:-$root/.run}
state_dir=$run_dir/services
# The default ports; overridable only to exercise the throwaway path while the
# machine's servers keep running.
pg_port_default=${SERVICES_PG_PORT:-5432}
redis_port_default=${SERVICES_REDIS_PORT:-6379}
stop_timeout=8

# Messages must not fail the script when stderr is gone (a Ctrl-C'd `| tee`).
log() { printf 'services: %s\n' "$*" >&2 || true; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# apt_install PKG... installs Debian packages (root only), waiting for another
# apt or dpkg run to release its lock rather than failing.
apt_install() {
	log "installing Debian packages: $* (apt-get, this can take a minute)"
	local opts=(-o DPkg::Lock::Timeout=600 -q)
	DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" update >&2 9>&- ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends "$@" >&2 9>&- ||
		die "apt-get install $* failed"
}

# require_packages CMD:PKG... makes sure each command exists, installing the
# named Debian packages when we are root, or fails naming what to install.
require_packages() {
	local pair missing_pkgs=() missing_cmds=()
	for pair in "$@"; do
		if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
			missing_cmds+=("${pair%%:*}")
			missing_pkgs+=("${pair#*:}")
		fi
	done
	((${#missing_cmds[@]} == 0)) && return 0
	local pkgs
	pkgs=$(printf '%s\n' "${missing_pkgs[@]}" | sort -u | tr '\n' ' ')
	if ! is_root; then
		die "missing ${missing_cmds[*]}; install them first, e.g. \`sudo apt-get install ${pkgs% }\` (Debian/Ubuntu)"
	fi
	# shellcheck disable=SC2086 # pkgs is a space-separated word list on purpose
	apt_install $pkgs
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || die "${pair%%:*} still missing after installing ${pair#*:}"
	done
}

# port_open PORT succeeds when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	# shellcheck disable=SC2016 # $1 expands in the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

pg_url() { printf 'postgres://postgres@127.0.0.1:%s/%s?sslmode=disable' "$1" "$2"; }

# pg_answers PORT succeeds when PostgreSQL on 127.0.0.1:PORT lets user
# postgres in without a password.
pg_answers() {
	PGCONNECT_TIMEOUT=3 psql "$(pg_url "$1" postgres)" -X -Atqc 'SELECT 1' >/dev/null 2>&1
}

# redis_answers PORT succeeds when Redis on 127.0.0.1:PORT answers PING.
redis_answers() {
	local reply
	# shellcheck disable=SC2016 # $1 and $line expand in the inner bash
	reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && IFS= read -r line <&3 && printf %s "$line"' _ "$1" 2>/dev/null) || return 1
	[[ $reply == +PONG* ]]
}

# wait_answer FUNC PORT SECONDS polls FUNC PORT until it succeeds.
wait_answer() {
	local fn=$1 port=$2 deadline=$((SECONDS + $3))
	until "$fn" "$port"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# free_port FIRST prints the first port from FIRST on where nothing listens.
free_port() {
	local port=$1
	while port_open "$port"; do
		port=$((port + 1))
		((port < $1 + 100)) || die "no free port in $1..$((port - 1))"
	done
	printf '%s' "$port"
}

# pg_bindir prints the newest /usr/lib/postgresql/*/bin holding initdb.
pg_bindir() {
	local dir
	dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)
	[[ -n $dir ]] || return 1
	printf '%s' "$dir"
}

# as_pg CMD... runs CMD as the postgres system user when we are root (initdb
# and postgres refuse to run as root), as ourselves otherwise.
as_pg() {
	# From /: the caller's directory may be unreadable for user postgres.
	if is_root; then
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && "$@")
	fi
}

# ensure_database PORT creates the database "nounsai" when it is missing.
ensure_database() {
	local admin exists
	admin=$(pg_url "$1" postgres)
	exists=$(psql "$admin" -X -Atqc "SELECT 1 FROM pg_database WHERE datname = 'nounsai'") ||
		die "cannot query databases on 127.0.0.1:$1"
	[[ $exists == 1 ]] && return 0
	log "creating database nounsai on 127.0.0.1:$1"
	# Another caller may create it at the same moment; only fail if it is still missing.
	psql "$admin" -X -qc 'CREATE DATABASE nounsai' >/dev/null 2>&1 ||
		[[ $(psql "$admin" -X -Atqc "SELECT 1 FROM pg_database WHERE datname = 'nounsai'") == 1 ]] ||
		die "cannot create database nounsai on 127.0.0.1:$1"
}

# recorded NAME loads the state file of a server this script started earlier,
# setting port (and pgdata or pidfile); it fails when there is none.
recorded() {
	local file=$state_dir/$1
	[[ -f $file ]] || return 1
	port='' pgdata='' pidfile=''
	# shellcheck disable=SC1090 # written by record below
	source "$file"
}

# record NAME KEY=VALUE... writes the state file of a server we started.
record() {
	local name=$1 kv
	shift
	mkdir -p "$state_dir"
	: >"$state_dir/$name.tmp"
	for kv in "$@"; do
		printf '%s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$state_dir/$name.tmp"
	done
	mv "$state_dir/$name.tmp" "$state_dir/$name"
}

# reachable_by_postgres DIR succeeds when the postgres user can write DIR.
reachable_by_postgres() {
	! is_root || runuser -u postgres -- test -w "$1" -a -x "$1" 2>/dev/null
}

start_postgres() {
	local port=$1 bindir pg_root data logfile
	bindir=$(pg_bindir) || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
	if is_root && ! id postgres >/dev/null 2>&1; then
		die "user postgres is missing (the Debian postgresql package creates it); reinstall postgresql"
	fi
	mkdir -p "$run_dir/pg"
	is_root && chown postgres: "$run_dir/pg"
	pg_root=$(readlink -f "$run_dir/pg")
	if ! reachable_by_postgres "$pg_root"; then
		# A checkout under a private home (e.g. /root) is not reachable by
		# the postgres user: keep the data in /tmp and link it from .run/pg.
		local alt
		alt=/tmp/nounsai-pg-$(printf '%s' "$root" | md5sum | cut -c1-12)
		log "user postgres cannot reach $pg_root; keeping the data in $alt"
		rmdir "$run_dir/pg" 2>/dev/null || true
		mkdir -p "$alt"
		chown postgres: "$alt"
		chmod 700 "$alt"
		ln -sfn "$alt" "$run_dir/pg"
		pg_root=$alt
	fi
	data=$pg_root/data
	logfile=$pg_root/postgres.log
	if [[ ! -s $data/PG_VERSION ]]; then
		log "initialising a throwaway PostgreSQL in $data"
		as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
			</dev/null >>"$run_dir/pg-initdb.log" 2>&1 9>&- ||
			die "initdb failed; see $run_dir/pg-initdb.log"
	fi
	log "starting a throwaway PostgreSQL on 127.0.0.1:$port (log: $logfile)"
	# No unix socket: its path could be too long, and it would clash with the
	# machine's cluster in /var/run/postgresql. fsync off: the data is throwaway.
	as_pg "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -s \
		-o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start </dev/null >/dev/null 2>>"$run_dir/pg-ctl.log" 9>&- ||
		die "PostgreSQL did not start; see $logfile and $run_dir/pg-ctl.log"
	record postgres "port=$port" "pgdata=$data" "bindir=$bindir"
	wait_answer pg_answers "$port" 30 || die "PostgreSQL on 127.0.0.1:$port does not answer; see $logfile"
}

stop_postgres() {
	local port pgdata pidfile bindir=''
	recorded postgres || return 0
	log "stopping the throwaway PostgreSQL on 127.0.0.1:$port"
	if [[ -f $pgdata/postmaster.pid ]]; then
		if ! as_pg "${bindir:-$(pg_bindir)}/pg_ctl" -D "$pgdata" -m fast -w -t "$stop_timeout" -s stop >/dev/null 2>&1 9>&-; then
			local pid
			pid=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)
			if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
		fi
	fi
	rm -f "$state_dir/postgres"
}

start_redis() {
	local port=$1 dir=$run_dir/redis
	mkdir -p "$dir"
	log "starting a throwaway Redis on 127.0.0.1:$port (log: $dir/redis.log)"
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
		</dev/null >/dev/null 2>>"$dir/redis-start.log" 9>&- ||
		die "redis-server did not start; see $dir/redis-start.log and $dir/redis.log"
	record redis "port=$port" "pidfile=$dir/redis.pid"
	wait_answer redis_answers "$port" 15 || die "Redis on 127.0.0.1:$port does not answer; see $dir/redis.log"
}

stop_redis() {
	local port pgdata pidfile pid
	recorded redis || return 0
	log "stopping the throwaway Redis on 127.0.0.1:$port"
	pid=$(cat "$pidfile" 2>/dev/null || true)
	if [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; then
		local deadline=$((SECONDS + stop_timeout))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$state_dir/redis"
}

# reuse_recorded NAME prints the port of a server this script started in an
# earlier call that still answers; it forgets recorded servers that are gone.
reuse_recorded() {
	local name=$1 port pgdata pidfile bindir
	recorded "$name" || return 1
	if "${name/postgres/pg}_answers" "$port"; then
		printf '%s' "$port"
		return 0
	fi
	rm -f "$state_dir/$name"
	return 1
}

started=()

# ensure_postgres sets database_url.
ensure_postgres() {
	if [[ -n ${DATABASE_URL:-} ]]; then
		log "using PostgreSQL from \$DATABASE_URL"
		database_url=$DATABASE_URL
		return
	fi
	local port
	if port=$(reuse_recorded postgres); then
		log "using the throwaway PostgreSQL on 127.0.0.1:$port (started earlier)"
	elif wait_answer pg_answers "$pg_port_default" 0 ||
		{ port_open "$pg_port_default" && wait_answer pg_answers "$pg_port_default" 5; }; then
		port=$pg_port_default
		log "using the PostgreSQL already running on 127.0.0.1:$port"
	else
		if ! pg_bindir >/dev/null; then
			is_root || die "no PostgreSQL on 127.0.0.1:$pg_port_default and no server binaries; install PostgreSQL (\`sudo apt-get install postgresql\`), start it, or set DATABASE_URL"
			apt_install postgresql
			pg_bindir >/dev/null || die "PostgreSQL server binaries still missing after installing postgresql"
		fi
		# The package's own cluster may have started on the default port.
		if wait_answer pg_answers "$pg_port_default" 0; then
			port=$pg_port_default
			log "using the PostgreSQL already running on 127.0.0.1:$port"
		else
			port=$(free_port "$pg_port_default")
			start_postgres "$port"
			started+=(postgres)
		fi
	fi
	ensure_database "$port"
	database_url=$(pg_url "$port" nounsai)
}

# ensure_redis sets redis_url.
ensure_redis() {
	if [[ -n ${REDIS_URL:-} ]]; then
		log "using Redis from \$REDIS_URL"
		redis_url=$REDIS_URL
		return
	fi
	local port
	if port=$(reuse_recorded redis); then
		log "using the throwaway Redis on 127.0.0.1:$port (started earlier)"
	elif redis_answers "$redis_port_default"; then
		port=$redis_port_default
		log "using the Redis already running on 127.0.0.1:$port"
	else
		if ! command -v redis-server >/dev/null 2>&1; then
			is_root || die "no Redis on 127.0.0.1:$redis_port_default and no redis-server; install it (\`sudo apt-get install redis-server\`), start it, or set REDIS_URL"
			apt_install redis-server
			command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after installing redis-server"
		fi
		if redis_answers "$redis_port_default"; then
			port=$redis_port_default
			log "using the Redis already running on 127.0.0.1:$port"
		else
			port=$(free_port "$redis_port_default")
			start_redis "$port"
			started+=(redis)
		fi
	fi
	redis_url="redis://127.0.0.1:$port/0"
}

# admin_url URL prints URL with its database replaced by "postgres".
admin_url() {
	local url=$1 query=''
	[[ $url == *://* ]] || {
		printf '%s' "$url"
		return
	}
	if [[ $url == *\?* ]]; then
		query="?${url#*\?}"
		url=${url%%\?*}
	fi
	local scheme=${url%%://*} rest=${url#*://}
	printf '%s://%s/postgres%s' "$scheme" "${rest%%/*}" "$query"
}

lock() {
	mkdir -p "$run_dir"
	exec 9>"$run_dir/services.lock"
	flock -w 600 9 || die "another services.sh has held $run_dir/services.lock for 10 minutes"
}

cmd_ensure() {
	lock
	# A failure half way must not leave behind what this call started.
	trap 'rc=$?; if ((rc != 0)) && ((${#started[@]} > 0)); then cmd_stop_unlocked "${started[@]}"; fi' EXIT
	require_packages psql:postgresql-client ffmpeg:ffmpeg ffprobe:ffmpeg curl:curl
	# make test also needs gcc (go test -race uses cgo) and drives headless
	# Chromium (the proxy's ops-console test).
	if [[ ${SERVICES_TEST_TOOLS:-} == 1 ]]; then
		require_packages gcc:gcc chromium:chromium
	fi
	local database_url redis_url
	ensure_postgres
	ensure_redis
	trap - EXIT
	printf 'export DATABASE_URL=%q REDIS_URL=%q\n' "$database_url" "$redis_url"
	printf 'export TEST_DATABASE_URL=%q TEST_REDIS_URL=%q\n' \
		"${TEST_DATABASE_URL:-$(admin_url "$database_url")}" "${TEST_REDIS_URL:-$redis_url}"
	printf 'export SERVICES_STARTED=%q\n' "${started[*]:-}"
}

cmd_stop_unlocked() {
	local name
	for name in "$@"; do
		case $name in
		postgres) stop_postgres ;;
		redis) stop_redis ;;
		*) die "unknown service $name (want postgres or redis)" ;;
		esac
	done
}

main() {
	case ${1:-ensure} in
	ensure) cmd_ensure ;;
	stop)
		shift
		lock
		if (($# == 0)); then set -- postgres redis; fi
		cmd_stop_unlocked "$@"
		;;
	-h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
	*) die "unknown command $1 (want ensure or stop; see --help)" ;;
	esac
}

main "$@"
