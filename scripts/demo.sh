#!/usr/bin/env bash
# Set up everything on a fresh machine and run the node on SQLite with demo data.
#   scripts/demo.sh [idnode demo options, e.g. --http 127.0.0.1:8000]
set -euo pipefail
source "$(dirname "$0")/common.sh"
ensure_venv ""
cd "$ROOT"
exec "$VENV/bin/idnode" demo "$@"
