#!/bin/sh
# Install the Debian packages given as arguments, if any is missing.
# Usage: tools/deps.sh PKG...
# Runs `apt-get update` at most once, and only when something is missing.

missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
            | grep -q 'ok installed'; then
        missing="$missing $pkg"
    fi
done

[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
if [ "$(id -u)" != 0 ]; then
    echo "deps: not root; install these packages:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
