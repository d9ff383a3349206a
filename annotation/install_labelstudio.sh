#!/usr/bin/env bash
# Create the Label Studio server's own virtual environment from the pinned lock (idempotent).
#
# Label Studio pins Django 5.2, pyarrow<25 and pytz<2023, which conflict with the main environment, so the server
# runs from a separate venv. A stamp holding the lock's sha256 is written last: a venv whose stamp matches is left
# alone, a half-built or stale one is rebuilt.
#
# Usage: annotation/install_labelstudio.sh [VENV_DIR]   (default: .venv-labelstudio beside this repo's .venv)
# Environment: PYTHON (default python3) picks the interpreter the venv is made from.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock="$here/requirements-labelstudio.lock"
venv="${1:-$(dirname "$here")/.venv-labelstudio}"
python="${PYTHON:-python3}"
stamp="$venv/.dvtr-lock-sha256"

want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ -x "$venv/bin/label-studio" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "Label Studio environment up to date: $venv"
    exit 0
fi

if [[ -e "$venv" ]]; then
    echo "rebuilding the stale or incomplete Label Studio environment $venv"
    rm -rf -- "$venv"
fi
echo "creating the Label Studio environment $venv from $(basename "$lock") (about 2 minutes, 1 GB)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$lock"
"$venv/bin/python" -m pip check
echo "$want" > "$stamp"
echo "Label Studio environment ready: $venv"
