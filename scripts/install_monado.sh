#!/usr/bin/env bash
# Build Monado (in-process OpenXR runtime, no daemon) from Debian 13's source
# package and cache it, so the OpenXR tests run against a real runtime:
# Monado's simulated HMD with the null compositor.
#
# Idempotent: a fast no-op when the cached runtime exists. Prints the path to
# use as XR_RUNTIME_JSON on its last line.
#
#   scripts/install_monado.sh            build (once) and print the json path
#   scripts/install_monado.sh --print    print the json path if built, else exit 1
#
# Environment:
#   XDG_CACHE_HOME   cache root (default ~/.cache); runtime goes to
#                    $XDG_CACHE_HOME/vr-trainer/monado-<version>
#   MONADO_SERIES    major version to build (default 25)
#   MONADO_JOBS      parallel build jobs (default: number of cores)
#
# The source comes from the machine's own Debian mirror (the URIs: line of
# /etc/apt/sources.list.d/debian.sources), through a private APT configuration
# that changes nothing in the system's APT set-up.
set -euo pipefail

series="${MONADO_SERIES:-25}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vr-trainer"
json_rel="share/openxr/1/openxr_monado.json"
lib_rel="lib/libopenxr_monado.so"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "install_monado: $*" >&2; }

find_built() {
  local d
  for d in $(ls -1d "$cache"/monado-"$series".* 2>/dev/null | sort -rV); do
    if [ -f "$d/$json_rel" ] && [ -f "$d/$lib_rel" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

if prefix="$(find_built)"; then
  echo "$prefix/$json_rel"
  exit 0
fi
if [ "${1:-}" = "--print" ]; then
  log "Monado is not built yet; run scripts/install_monado.sh"
  exit 1
fi

# One build at a time per cache (parallel set-ups wait here, then find it built).
mkdir -p "$cache"
exec 9>"$cache/.monado.lock"
flock 9
if prefix="$(find_built)"; then
  echo "$prefix/$json_rel"
  exit 0
fi

# --- Debian packages --------------------------------------------------------
pkgs=$(grep -hv '^\s*#' "$here/debian-packages/openxr.txt" | tr -s ' \n' '\n' | grep -v '^$' | sort -u)
missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "these Debian packages are missing and I am not root. Run:"
    log "  sudo apt-get install -y --no-install-recommends ${missing[*]}"
    log "then run this command again."
    exit 2
  fi
fi

# --- Source from Debian 13 (trixie), via a private APT configuration --------
sources=/etc/apt/sources.list.d/debian.sources
mirror=""
if [ -f "$sources" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources")
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  log "cannot find this machine's Debian mirror (no URIs: line in $sources)"
  exit 3
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

work="$cache/monado-src"
apt_dir="$work/apt"
rm -rf "$apt_dir"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/sources.list.d" "$apt_dir/etc/preferences.d"
cat > "$apt_dir/etc/sources.list" <<SRC
deb-src [signed-by=$keyring] $mirror trixie main
SRC
: > "$apt_dir/etc/preferences"
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
  -o "Dir::Etc::sourceparts=$apt_dir/etc/sources.list.d"
  -o "Dir::Etc::preferences=$apt_dir/etc/preferences"
  -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d"
  -o "Dir::State::lists=$apt_dir/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::archives=$apt_dir/archives"
  -o "APT::Get::List-Cleanup=0"
  -o "Acquire::Languages=none"
  -o "Debug::NoLocking=1"
)
# The private lists live in the caller's cache, which APT's unprivileged
# download user cannot write; download as the caller instead.
[ "$(id -u)" = 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")
mkdir -p "$apt_dir/cache"
log "fetching the monado source package index (trixie) from this machine's mirror"
apt-get "${apt_opts[@]}" update -qq
dl="$work/download"
mkdir -p "$dl"
orig=$(ls -1 "$dl"/monado_"$series".*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$orig" ]; then
  log "downloading the monado source package"
  # Only the .orig tarball is needed; apt may fail on the rest (unpacking or
  # signature checks of the .dsc with Debian 12's dpkg-source), so judge by
  # what arrived.
  (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only monado >"$dl/apt-source.log" 2>&1) || true
  orig=$(ls -1 "$dl"/monado_"$series".*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)
fi
if [ -z "$orig" ]; then
  log "no monado $series.x source arrived from the trixie suite; see $dl/apt-source.log"
  exit 4
fi
log "source: $(basename "$orig") (checked against the signed trixie index by apt)"
base=$(basename "$orig")
upstream=${base#monado_}
upstream=${upstream%%.orig.tar.*}
version=${upstream%%~*}       # 25.0.0~dfsg1 -> 25.0.0
version=${version%%+*}
prefix="$cache/monado-$version"

# --- Build --------------------------------------------------------------------
src="$work/monado-$upstream"
if [ ! -f "$src/CMakeLists.txt" ]; then
  rm -rf "$src" "$src.tmp"
  mkdir -p "$src.tmp"
  tar -xf "$orig" -C "$src.tmp" --strip-components=1
  mv "$src.tmp" "$src"
fi
build="$work/build-$upstream"
jobs="${MONADO_JOBS:-$(nproc)}"
log "configuring Monado $version (in-process runtime) -> $prefix"
start=$(date +%s)
cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DGIT_DESC="$upstream (Debian source)" \
  -DXRT_FEATURE_SERVICE=OFF \
  -DBUILD_TESTING=OFF \
  -DXRT_BUILD_SAMPLES=OFF \
  -DXRT_FEATURE_STEAMVR_PLUGIN=OFF \
  -DXRT_HAVE_SYSTEMD=OFF \
  -DXRT_MODULE_MONADO_CLI=OFF \
  -DXRT_BUILD_DRIVER_RIFT_S=OFF \
  -DXRT_BUILD_DRIVER_VIVE=OFF \
  -DXRT_BUILD_DRIVER_SURVIVE=OFF \
  -DXRT_BUILD_DRIVER_WMR=OFF \
  -DXRT_BUILD_DRIVER_NS=OFF \
  -DXRT_BUILD_DRIVER_REMOTE=OFF \
  -DXRT_BUILD_DRIVER_ROKID=OFF \
  -DXRT_BUILD_DRIVER_TWRAP=OFF \
  >"$work/cmake-configure.log" 2>&1 || { tail -n 40 "$work/cmake-configure.log" >&2; log "configure failed (full log: $work/cmake-configure.log)"; exit 5; }
log "building with $jobs jobs (a few minutes)"
cmake --build "$build" -j "$jobs" >"$work/cmake-build.log" 2>&1 || { tail -n 40 "$work/cmake-build.log" >&2; log "build failed (full log: $work/cmake-build.log)"; exit 6; }
# Install beside the final place, then move it there: a half-installed runtime is never found.
# (The manifest names the library by a relative path, so the move is safe.)
rm -rf "$prefix.partial"
cmake --install "$build" --prefix "$prefix.partial" >"$work/cmake-install.log" 2>&1 || { tail -n 20 "$work/cmake-install.log" >&2; log "install failed"; exit 7; }
if [ ! -f "$prefix.partial/$json_rel" ] || [ ! -f "$prefix.partial/$lib_rel" ]; then
  log "install finished but $json_rel or $lib_rel is missing under $prefix.partial"
  exit 8
fi
rm -rf "$prefix"
mv "$prefix.partial" "$prefix"
log "built Monado $version in $(( $(date +%s) - start )) s"
rm -rf "$build" "$src"  # keep only the downloaded tarball
echo "$prefix/$json_rel"
