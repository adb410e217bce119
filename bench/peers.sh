#!/bin/sh
# The benchmark's own virtualenv: steadyflow (editable) plus the peers it is compared with.
# Nothing here is installed into the project's environment.
#   sh bench/peers.sh [VENV]   (default: $TMPDIR/steadyflow-bench-peers, i.e. /tmp/steadyflow-bench-peers)
set -eu
VENV="${1:-${TMPDIR:-/tmp}/steadyflow-bench-peers}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q huey procrastinate dbos "celery[redis]" "psycopg[binary]" psycopg-pool \
    pyinstrument py-spy
"$VENV/bin/python" -m pip install -q -e "$ROOT"
echo "$VENV"
