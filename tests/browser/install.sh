#!/usr/bin/env bash
# Debian's chromium and chromedriver for the browser test of the review gallery
# (tests/workflow/test_review_e2e.py), installed when missing; nothing is downloaded at test
# time (selenium is pointed at /usr/bin/chromedriver, Selenium Manager stays off).
#   tests/browser/install.sh      # exit 0 once /usr/bin/chromium and /usr/bin/chromedriver run
# Needs root and apt when they are missing (CI machines and the dev machine have both).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

log() { printf 'install.sh: %s\n' "$*" >&2; }

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  log "chromium or chromedriver missing and this is not root with apt-get: install them with"
  log "  sudo apt-get install -y chromium chromium-driver"
  log "(or set SKYSIFT_NO_BROWSER=1 to skip the browser test on this machine)"
  exit 1
fi
log "installing chromium chromium-driver"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then
  log "apt-get installed the packages but $CHROMIUM or $DRIVER is still missing"
  exit 1
fi
log "$("$DRIVER" --version)"
