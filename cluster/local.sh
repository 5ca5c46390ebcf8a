#!/usr/bin/env bash
# A two-node Ray cluster (head + one worker) on loopback, for tests and demos:
#   cluster/local.sh up        start it and print the environment to connect
#   cluster/local.sh status    ray status
#   cluster/local.sh down      stop exactly these two nodes (never `ray stop`, which kills every Ray on the host)
# Ray 2.60 turns on token authentication; both nodes and every driver use RAY_AUTH_MODE=token with the token in
# ~/.ray/auth_token (created by the head). Source "$STATE/env" (printed by `up`) before `makd sweep`/`makd submit`.
# `up` returns once the cluster has run a no-op job (its job server accepts jobs); the env names the nodes' python
# (MAKD_CLUSTER_PYTHON), which `makd submit` then runs the sweep with.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RAY="${RAY:-$ROOT/.venv/bin/ray}"
PYTHON="$(dirname "$RAY")/python"  # the interpreter of the nodes (and of submitted jobs: MAKD_CLUSTER_PYTHON)
STATE="${MAKD_LOCAL_CLUSTER_DIR:-/tmp/makd-cluster}"  # keep it short: Ray's socket paths must fit in 107 bytes
PORT="${MAKD_RAY_PORT:-6390}"
DASHBOARD_PORT="${MAKD_DASHBOARD_PORT:-8265}"
CPUS_PER_NODE="${MAKD_NODE_CPUS:-1}"
# Each node's dashboard agent (which runs submitted jobs) needs its own HTTP port: Ray's default, 52365, is taken
# by the other node or by any other Ray on this host, and a head whose agent cannot bind never runs a job.
HEAD_AGENT_PORT=$((20000 + PORT)) WORKER_AGENT_PORT=$((30000 + PORT))
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}" RAY_USAGE_STATS_ENABLED=0

node_pgids() {  # process groups (one per node: started with setsid) of Ray processes that mention our temp dir
    local own
    own="$(ps -o pgid= $$ | tr -d ' ')"  # never our own group (this script, its awk, and whoever called us)
    ps -ww -eo pgid=,args= | awk -v dir="$STATE/ray" -v own="$own" 'index($0, dir) && $1 != own {print $1}' | sort -u
}

up() {
    if [ -f "$STATE/env" ] && [ -n "$(node_pgids)" ]; then
        echo "local cluster already up: source $STATE/env" >&2
        exit 0
    fi
    mkdir -p "$STATE/ray"
    setsid "$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="$CPUS_PER_NODE" --num-gpus=0 \
        --temp-dir="$STATE/ray" --include-dashboard=true --dashboard-host=127.0.0.1 \
        --dashboard-port="$DASHBOARD_PORT" --dashboard-agent-listen-port="$HEAD_AGENT_PORT" \
        --disable-usage-stats >"$STATE/head.log" 2>&1 \
        || { echo "head failed to start: see $STATE/head.log" >&2; down >/dev/null; exit 1; }
    setsid "$RAY" start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus="$CPUS_PER_NODE" --num-gpus=0 \
        --dashboard-agent-listen-port="$WORKER_AGENT_PORT" --disable-usage-stats >"$STATE/worker.log" 2>&1 \
        || { echo "worker failed to start: see $STATE/worker.log" >&2; down; exit 1; }
    cat >"$STATE/env" <<ENV
export RAY_AUTH_MODE=$RAY_AUTH_MODE
export RAY_ADDRESS=127.0.0.1:$PORT
export MAKD_JOBS_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
export MAKD_CLUSTER_PYTHON=$PYTHON
ENV
    # Up means accepting jobs: a just-started head answers before its job agent can run one.
    if ! (cd "$ROOT" && "$PYTHON" -c "import sys; from tune.jobs import wait_until_ready
sys.exit(0 if wait_until_ready('http://127.0.0.1:$DASHBOARD_PORT', 120) else 1)"); then
        echo "the local cluster started but its job server ran no job within 120 s: see $STATE/ray/session_latest/logs" >&2
        [ -n "${MAKD_KEEP_FAILED_CLUSTER:-}" ] || down >/dev/null; exit 1  # set it to inspect the failed nodes
    fi
    echo "local cluster up: 2 nodes x $CPUS_PER_NODE CPU, Ray at 127.0.0.1:$PORT, jobs at http://127.0.0.1:$DASHBOARD_PORT"
    echo "connect with: source $STATE/env"
}

down() {
    local pgids
    pgids="$(node_pgids)"
    for pgid in $pgids; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -z "$(node_pgids)" ] && break
        sleep 0.5
    done
    for pgid in $(node_pgids); do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    rm -rf "$STATE/ray" "$STATE/env"
    echo "local cluster down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) "$RAY" status --address="127.0.0.1:$PORT" ;;
    *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
