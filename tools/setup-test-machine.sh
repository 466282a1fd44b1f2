#!/usr/bin/env bash
# What `make test` needs besides .venv and node_modules (which the Makefile makes):
# make, Python's venv (with ensurepip), Node.js with npm (for axe-core), Debian's Chromium
# at /usr/bin/chromium and a font for it to draw text with (the browser tests measure
# and read text).
#
# Silent when all is there. Otherwise, as root with apt-get, it installs the missing
# Debian packages (one `apt-get update`, one `apt-get install`); anywhere else it stops at
# once with one line naming what to install. `make test` and `.ci/run` both run it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CHROMIUM=/usr/bin/chromium

# Each check adds a Debian package and, for the message, what it is.
packages=()
names=()

check() {
    packages=()
    names=()
    if ! command -v make >/dev/null; then
        packages+=(make)
        names+=(make)
    fi
    # A venv already made needs no venv support; Debian ships ensurepip in python3-venv.
    if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        packages+=(python3-venv)
        names+=("Python's venv")
    fi
    if ! command -v node >/dev/null; then
        packages+=(nodejs)
        names+=(Node.js)
    fi
    if ! command -v npm >/dev/null; then
        packages+=(npm)
        names+=(npm)
    fi
    if [ ! -x "$CHROMIUM" ]; then
        packages+=(chromium)
        names+=("Chromium ($CHROMIUM)")
    fi
    if [ -z "$(find /usr/share/fonts /usr/local/share/fonts -type f \
        \( -name '*.ttf' -o -name '*.otf' -o -name '*.ttc' \) -print -quit 2>/dev/null)" ]; then
        packages+=(fonts-dejavu-core)
        names+=("a font")
    fi
}

# "a", "a and b", "a, b and c"
listed() {
    local count=$# out="" i=0 item
    for item in "$@"; do
        i=$((i + 1))
        if [ "$i" -eq 1 ]; then
            out=$item
        elif [ "$i" -eq "$count" ]; then
            out="$out and $item"
        else
            out="$out, $item"
        fi
    done
    printf '%s' "$out"
}

needs() {
    echo "make test needs $(listed "${names[@]}"): $1" >&2
    exit 1
}

check
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    needs "install ${packages[*]} with your system's package manager (Debian package names)"
fi
if [ "$(id -u)" -ne 0 ]; then
    needs "run \`sudo apt-get install ${packages[*]}\` (Debian)"
fi

echo "make test: installing ${packages[*]} with apt-get"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 15 "$log" >&2
    needs "installing ${packages[*]} with apt-get failed (its last lines are above)"
fi

check
if [ ${#packages[@]} -gt 0 ]; then
    # Installed, yet still missing: $PYTHON is not Debian's python3, for instance.
    needs "still missing after \`apt-get install ${packages[*]}\`"
fi
