#!/usr/bin/env bash
# One-stop, idempotent set-up: Debian packages (when root), a virtual environment
# with the project installed, and (for tests) the OpenXR test runtime.
#   scripts/setup.sh demo   -> what `vr-trainer run` needs
#   scripts/setup.sh test   -> everything the test suite needs
set -euo pipefail
mode="${1:-demo}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="${VR_TRAINER_VENV:-$root/.venv}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vr-trainer"
mkdir -p "$cache"

# --- Debian packages -------------------------------------------------------
lists=(scripts/debian-packages/runtime.txt)
if [ "$mode" = "test" ]; then
  for f in scripts/debian-packages/*.txt; do
    [ "$f" = scripts/debian-packages/runtime.txt ] || lists+=("$f")
  done
fi
pkgs=$(grep -hv '^\s*#' "${lists[@]}" | tr -s ' \n' '\n' | grep -v '^$' | sort -u)
missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: these Debian packages are missing and I am not root. Run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "then run this command again." >&2
    exit 2
  fi
fi

# --- Python environment ----------------------------------------------------
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment in $venv"
  "$py" -m venv "$venv"
fi
extras="all"
[ "$mode" = "test" ] && extras="all,test"
stamp="$venv/.vr-trainer-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)-$extras"
have="$(cat "$stamp" 2>/dev/null || true)"
# an environment set up for the tests also has everything the demo needs
if [ "$have" != "$want" ] && [ "$have" != "${want%-all}-all,test" ]; then
  echo "setup: installing Python packages ($extras)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# --- OpenXR test runtime (Monado, built once per machine) ------------------
if [ "$mode" = "test" ] && [ -x scripts/install_monado.sh ]; then
  scripts/install_monado.sh
fi
echo "setup: ready ($mode)"
