#!/usr/bin/env bash
# Installs Debian's chromium (/usr/bin/chromium) for the test that renders the demo's report in a
# headless browser (test/demoReport.test.ts). Does nothing when it is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" chromium
/usr/bin/chromium --version
