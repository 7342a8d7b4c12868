#!/usr/bin/env bash
# setup-services.sh - idempotent bring-up of the local services ContainerPub's runner and its tests
# need, for a root shell on Debian 12 with no init system (no systemd):
#   * dockerd (vfs storage, no iptables, no bridge: works inside containers and VMs alike)
#   * a Docker Distribution registry on 127.0.0.1:5000 with NO auth, filesystem storage under
#     $STATE_DIR, deletes enabled (the runner deletes images of pruned versions)
#   * a PostgreSQL cluster plus a login role (with CREATEDB: tests create a database per test file)
#     and its database, reachable with a password over TCP on 127.0.0.1
#   * the base image containerpub/node-base:20, made with `docker import` from the host's node
#     binary and the libraries it links (no image pulls needed)
#   * Debian's chromium, for the dashboard's tests in a real browser
# Re-running it is safe: whatever is already up or present is left alone.
#
# Knobs (environment):
#   SKIP_DOCKER=1      skip dockerd, the registry and the base image
#   SKIP_REGISTRY=1    skip the registry only
#   SKIP_BASE_IMAGE=1  skip the base image only
#   SKIP_POSTGRES=1    skip PostgreSQL
#   SKIP_BROWSER=1     skip chromium (the dashboard's browser tests drive it)
#   FORCE_BASE=1       rebuild the base image even if it exists
#   and the paths, ports, names and password below.
set -Eeuo pipefail

REGISTRY_HOST="${REGISTRY_HOST:-127.0.0.1}"
REGISTRY_PORT="${REGISTRY_PORT:-5000}"
STATE_DIR="${STATE_DIR:-/var/lib/containerpub}"
REGISTRY_DATA="${REGISTRY_DATA:-$STATE_DIR/registry}"
REG_CONFIG="${REGISTRY_CONFIG:-$STATE_DIR/registry-config.yml}"
LOG_DIR="${LOG_DIR:-/var/log/containerpub}"
RUN_DIR="${RUN_DIR:-/run/containerpub}"
PG_ROLE="${PG_ROLE:-containerpub}"
PG_PASSWORD="${PG_PASSWORD:-containerpub}"
PG_DB="${PG_DB:-containerpub}"
PG_PORT="${PG_PORT:-5432}"            # only used when a cluster has to be created
BASE_IMAGE="${BASE_IMAGE:-containerpub/node-base:20}"
NODE_BIN="${NODE_BIN:-$(command -v node || true)}"
DOCKERD_FLAGS="${DOCKERD_FLAGS:---storage-driver=vfs --iptables=false --bridge=none}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-90}"   # seconds, per readiness wait
SKIP_DOCKER="${SKIP_DOCKER:-0}"
SKIP_REGISTRY="${SKIP_REGISTRY:-0}"
SKIP_BASE_IMAGE="${SKIP_BASE_IMAGE:-0}"
SKIP_POSTGRES="${SKIP_POSTGRES:-0}"
SKIP_BROWSER="${SKIP_BROWSER:-0}"
if [[ "$SKIP_DOCKER" == 1 ]]; then SKIP_REGISTRY=1; SKIP_BASE_IMAGE=1; fi

T_START=$(date +%s%N)
log()  { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '[setup %4d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"; }
die()  { trap - ERR; log "ERROR: $*" >&2; log "FAILED: services are not all up (logs in $LOG_DIR)" >&2; exit 1; }
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR

# wait_for DESCRIPTION TIMEOUT_S CMD... : poll CMD every 0.25s until it succeeds or the timeout expires
wait_for() {
  local desc=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then log "timeout after ${timeout}s waiting for $desc"; return 1; fi
    sleep 0.25
  done
  log "$desc: ready"
}
# pid_alive PIDFILE [NAME] : the pid in the file names a live process (whose command line mentions
# NAME, so that a recycled pid is never taken for, or killed as, one of ours)
pid_alive() {
  local pid
  [[ -f "$1" ]] && pid=$(cat "$1" 2>/dev/null) && [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z "${2:-}" ]] || tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || die "this script supports Debian/Ubuntu (apt) only"
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
summary=()

# ---------------------------------------------------------------- 1. packages (only for the parts wanted)
want=()
if [[ "$SKIP_DOCKER" != 1 ]]; then want+=(docker.io cgroupfs-mount); fi
if [[ "$SKIP_REGISTRY" != 1 ]]; then want+=(docker-registry curl ca-certificates); fi
if [[ "$SKIP_POSTGRES" != 1 ]]; then want+=(postgresql); fi
# Debian's chromium for tests/dashboard.test.ts (playwright-core drives it; npm cannot download one here)
if [[ "$SKIP_BROWSER" != 1 ]]; then want+=(chromium fonts-liberation); fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  # Keep package postinst scripts from starting daemons with their default configs
  # (dockerd with overlay2/iptables, the registry with htpasswd auth on :5000).
  added_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_ok=1
  { apt-get update -q -o Acquire::Retries=3 \
      && apt-get install -y -q -o Acquire::Retries=3 -o Dpkg::Options::=--force-confold \
           --no-install-recommends "${missing[@]}"; } >"$LOG_DIR/apt-install.log" 2>&1 || apt_ok=0
  if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  if ((!apt_ok)); then tail -n 30 "$LOG_DIR/apt-install.log" >&2; die "apt-get install ${missing[*]} failed (log: $LOG_DIR/apt-install.log)"; fi
  log "packages installed (log: $LOG_DIR/apt-install.log)"
elif ((${#want[@]})); then
  log "packages already installed: ${want[*]}"
fi

# ---------------------------------------------------------------- 2. dockerd
docker_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if [[ "$SKIP_DOCKER" == 1 ]]; then
  log "SKIP_DOCKER=1: not touching dockerd, the registry or the base image"
  summary+=("docker skipped")
elif docker_up; then
  log "dockerd already running ($(docker version --format '{{.Server.Version}}'))"
else
  if pgrep -x dockerd >/dev/null; then
    # A daemon that is still starting (or wedged): a second one would fail on the pid file.
    log "a dockerd process exists but does not answer yet; waiting for it"
  else
    # dockerd needs cgroup controllers; mount the v1 hierarchies if nothing is mounted.
    if [[ ! -e /sys/fs/cgroup/cgroup.controllers && ! -d /sys/fs/cgroup/memory ]]; then
      log "no cgroup hierarchy mounted, running cgroupfs-mount"; cgroupfs-mount
    fi
    # A pid file left by a dead daemon blocks startup.
    if [[ -f /var/run/docker.pid ]] && ! pid_alive /var/run/docker.pid dockerd; then rm -f /var/run/docker.pid; fi
    log "starting dockerd $DOCKERD_FLAGS (log: $LOG_DIR/dockerd.log)"
    # shellcheck disable=SC2086
    setsid nohup dockerd $DOCKERD_FLAGS >>"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
  fi
  wait_for "dockerd" "$WAIT_TIMEOUT" docker_up || { tail -n 20 "$LOG_DIR/dockerd.log" >&2; die "dockerd did not come up within ${WAIT_TIMEOUT}s"; }
fi
if [[ "$SKIP_DOCKER" != 1 ]]; then summary+=("dockerd $(docker version --format '{{.Server.Version}}')"); fi

# ---------------------------------------------------------------- 3. registry (no auth, deletes enabled)
REG_URL="http://$REGISTRY_HOST:$REGISTRY_PORT"
REG_PIDFILE="$RUN_DIR/registry.pid"
if [[ "$SKIP_REGISTRY" == 1 ]]; then
  if [[ "$SKIP_DOCKER" != 1 ]]; then log "SKIP_REGISTRY=1: not touching the registry"; summary+=("registry skipped"); fi
else
  mkdir -p "$REGISTRY_DATA"
  cat > "$REG_CONFIG.new" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_HOST:$REGISTRY_PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
  config_changed=0
  if [[ -f "$REG_CONFIG" ]] && cmp -s "$REG_CONFIG.new" "$REG_CONFIG"; then
    rm -f "$REG_CONFIG.new"
  else
    [[ -f "$REG_CONFIG" ]] && config_changed=1
    mv -f "$REG_CONFIG.new" "$REG_CONFIG"
  fi
  reg_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$REG_URL/v2/" 2>/dev/null || true; }
  reg_ok() { [[ "$(reg_status)" == 200 ]]; }
  reg_down() { [[ "$(reg_status)" == 000 ]]; }
  # The registry reads its config once: one we started with an older config is restarted so that a
  # changed knob (data directory, address) takes effect instead of being silently ignored.
  if ((config_changed)) && pid_alive "$REG_PIDFILE" docker-registry; then
    log "registry config changed; restarting the registry we started (pid $(cat "$REG_PIDFILE"))"
    kill "$(cat "$REG_PIDFILE")"
    wait_for "old registry to stop" 15 reg_down || die "the old registry (pid $(cat "$REG_PIDFILE")) did not stop"
    rm -f "$REG_PIDFILE"
  fi
  if reg_ok; then
    log "registry already answering without auth on $REG_URL"
  else
    code=$(reg_status)
    if [[ "$code" == 000 ]] && pid_alive "$REG_PIDFILE" docker-registry; then
      log "registry process $(cat "$REG_PIDFILE") exists but does not answer yet; waiting for it"
    else
      if [[ "$code" != 000 ]]; then
        # Something else holds the port, typically the Debian package's own service (htpasswd auth, *:5000).
        if pid_alive /var/run/docker-registry.pid docker-registry; then
          log "port $REGISTRY_PORT held by the packaged docker-registry service (HTTP $code); stopping it"
          /etc/init.d/docker-registry stop || true
          wait_for "port $REGISTRY_PORT free" 15 reg_down || die "could not free port $REGISTRY_PORT from the packaged docker-registry service"
        else
          die "$REG_URL/v2/ answers HTTP $code: not our no-auth registry, and not the packaged service; stop it or set REGISTRY_PORT"
        fi
      fi
      log "starting docker-registry on $REG_URL (data: $REGISTRY_DATA, config: $REG_CONFIG, log: $LOG_DIR/registry.log)"
      setsid nohup docker-registry serve "$REG_CONFIG" >>"$LOG_DIR/registry.log" 2>&1 < /dev/null &
      echo $! > "$REG_PIDFILE"
    fi
    wait_for "registry" "$WAIT_TIMEOUT" reg_ok || { tail -n 20 "$LOG_DIR/registry.log" >&2; die "registry did not come up on $REG_URL"; }
  fi
  summary+=("registry $REGISTRY_HOST:$REGISTRY_PORT")
fi

# ---------------------------------------------------------------- 4. PostgreSQL
DATABASE_URL_MASKED=""
if [[ "$SKIP_POSTGRES" == 1 ]]; then
  log "SKIP_POSTGRES=1: not touching PostgreSQL"
  summary+=("postgres skipped")
else
  # cluster_field VERSION NAME COLUMN : one column of pg_lsclusters (3 port, 4 status)
  cluster_field() { pg_lsclusters -h | awk -v v="$1" -v c="$2" -v f="$3" '$1==v && $2==c {print $f; exit}'; }
  PG_VER=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
  PG_CLUSTER=$(pg_lsclusters -h | awk 'NR==1 {print $2}')
  if [[ -z "$PG_VER" ]]; then
    PG_VER=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n "$PG_VER" ]] || die "postgresql is installed but no server version was found under /usr/lib/postgresql"
    PG_CLUSTER=main
    log "no cluster found, creating $PG_VER/$PG_CLUSTER on port $PG_PORT"
    pg_createcluster "$PG_VER" "$PG_CLUSTER" --port "$PG_PORT" >>"$LOG_DIR/postgres-setup.log" 2>&1 \
      || die "pg_createcluster $PG_VER $PG_CLUSTER failed (log: $LOG_DIR/postgres-setup.log)"
  fi
  if [[ "$(cluster_field "$PG_VER" "$PG_CLUSTER" 4)" == online* ]]; then
    log "postgresql $PG_VER/$PG_CLUSTER already online"
  else
    # /run is often a fresh tmpfs after a reboot or in a container: the socket directory may be gone.
    install -d -m 2775 -o postgres -g postgres /var/run/postgresql
    log "starting postgresql $PG_VER/$PG_CLUSTER"
    pg_ctlcluster "$PG_VER" "$PG_CLUSTER" start >>"$LOG_DIR/postgres-setup.log" 2>&1 || {
      tail -n 20 "$LOG_DIR/postgres-setup.log" >&2
      tail -n 20 "/var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log" >&2 2>/dev/null || true
      die "pg_ctlcluster $PG_VER $PG_CLUSTER start failed"
    }
  fi
  PG_PORT=$(cluster_field "$PG_VER" "$PG_CLUSTER" 3)
  wait_for "postgresql on 127.0.0.1:$PG_PORT" "$WAIT_TIMEOUT" pg_isready -q -h 127.0.0.1 -p "$PG_PORT" \
    || die "postgresql $PG_VER/$PG_CLUSTER is not accepting connections on 127.0.0.1:$PG_PORT"
  # Role + database, idempotent. The password is (re)set every run so that the knob always wins;
  # CREATEDB because the test suites create (and drop) a fresh database per test file.
  if ! (cd / && runuser -u postgres -- psql -q -X -v ON_ERROR_STOP=1 -p "$PG_PORT" \
      -v role="$PG_ROLE" -v pw="$PG_PASSWORD" -v db="$PG_DB") >>"$LOG_DIR/postgres-setup.log" 2>&1 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\gexec
ALTER ROLE :"role" WITH LOGIN CREATEDB PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
  then
    tail -n 5 "$LOG_DIR/postgres-setup.log" >&2
    die "could not create the role $PG_ROLE / database $PG_DB as the postgres superuser"
  fi
  can_create=$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" -tAc \
      'select rolcreatedb from pg_roles where rolname = current_user' 2>>"$LOG_DIR/postgres-setup.log") \
    || die "cannot log in to PostgreSQL as $PG_ROLE with its password over TCP 127.0.0.1:$PG_PORT (check pg_hba.conf)"
  [[ "$can_create" == t ]] || die "role $PG_ROLE lacks CREATEDB after ALTER ROLE"
  DATABASE_URL_MASKED="postgres://$PG_ROLE:***@127.0.0.1:$PG_PORT/$PG_DB"
  log "postgres ready: $DATABASE_URL_MASKED (role has CREATEDB)"
  summary+=("postgres $PG_VER/$PG_CLUSTER :$PG_PORT")
fi

# ---------------------------------------------------------------- 5. base image
if [[ "$SKIP_BASE_IMAGE" == 1 ]]; then
  if [[ "$SKIP_DOCKER" != 1 ]]; then log "SKIP_BASE_IMAGE=1: not touching $BASE_IMAGE"; summary+=("base image skipped"); fi
elif docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [[ "${FORCE_BASE:-0}" != 1 ]]; then
  log "base image $BASE_IMAGE already present"
  summary+=("image $BASE_IMAGE")
else
  [[ -n "$NODE_BIN" && -x "$NODE_BIN" ]] || die "node binary not found for the base image (set NODE_BIN)"
  log "building $BASE_IMAGE from $NODE_BIN ($("$NODE_BIN" -v))"
  ROOTFS=$(mktemp -d -t node-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS"' EXIT
  chmod 755 "$ROOTFS"   # mktemp makes it 0700, which would become the image's "/" and lock out non-root users
  mkdir -p "$ROOTFS"/{usr/local/bin,tmp,etc,app}
  chmod 1777 "$ROOTFS/tmp"
  cp -L "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
  # every shared library (and the dynamic loader) at the path ldd reports
  while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"; cp -L "$lib" "$ROOTFS$lib"
  done < <(ldd "$NODE_BIN" | grep -oE '/[^ ]+' | sort -u)
  printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' > "$ROOTFS/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOTFS/etc/group"
  echo 'hosts: files dns' > "$ROOTFS/etc/nsswitch.conf"
  tar --numeric-owner -C "$ROOTFS" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'WORKDIR /app' \
    --change 'CMD ["node"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS"; trap - EXIT
  out=$(docker run --rm --network none --user 65534:65534 "$BASE_IMAGE" node -e 'console.log(process.version)') \
    || die "smoke test of $BASE_IMAGE failed (node does not run as nobody inside it)"
  log "base image $BASE_IMAGE built, smoke test: node $out"
  summary+=("image $BASE_IMAGE")
fi

joined=$(IFS=,; echo "${summary[*]}"); joined=${joined//,/, }
log "up: $joined${DATABASE_URL_MASKED:+; DATABASE_URL=$DATABASE_URL_MASKED}"
