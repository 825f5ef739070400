#!/usr/bin/env bash
# Make sure Debian's headless browser for the admin's browser test is installed: chromium and its
# chromedriver, both from apt (never a downloaded browser build). Quick when they are present.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "ensure-browser: /usr/bin/chromium and /usr/bin/chromedriver are missing and there is no apt-get to install them" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "ensure-browser: installing chromium needs root (or sudo)" >&2
    exit 1
  fi
fi
echo "ensure-browser: installing chromium and chromium-driver (apt)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || {
  echo "ensure-browser: chromium or chromedriver still missing after apt-get install" >&2
  exit 1
}
echo "ensure-browser: $(/usr/bin/chromedriver --version)"
