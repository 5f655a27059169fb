#!/usr/bin/env bash
# The set-up scripts' common step: installs the given Debian packages without prompts or recommends,
# through sudo when not root. Writes only to stderr (start-postgres.sh's stdout is its URL).
set -euo pipefail
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
