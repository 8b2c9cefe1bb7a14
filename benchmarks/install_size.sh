#!/usr/bin/env bash
# Site-packages size of a fresh virtual environment: torch, then mssfs without extras,
# then the packages the 0.1.0 runtime dependencies added (diffusers, POT).
# Usage: benchmarks/install_size.sh [TORCH_SPEC]   (default torch==2.13.0)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
torch_spec="${1:-torch==2.13.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
size() { du -sm "$site" | cut -f1; }
python -m pip install --quiet --upgrade pip
base=$(size)
python -m pip install --quiet "$torch_spec"
with_torch=$(size)
python -m pip install --quiet "$repo"
lean=$(size)
python -m pip install --quiet "diffusers>=0.25" "POT>=0.9"
old=$(size)
echo "| site-packages | MB |"
echo "|---|---:|"
echo "| empty venv (pip only) | $base |"
echo "| + $torch_spec | $with_torch |"
echo "| + mssfs (no extras) | $lean |"
echo "| + diffusers and POT (the 0.1.0 runtime dependencies) | $old |"
echo
echo "mssfs and its dependencies beyond torch: $((lean - with_torch)) MB without, $((old - with_torch)) MB with diffusers and POT"
