#!/usr/bin/env bash
# Installs Debian's chromium (/usr/bin/chromium) for the test that renders the demo's report in a
# headless browser (test/demoReport.test.ts). Does nothing when it is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
