#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root), then runs it.
#   bash scripts/test.sh [pytest args...]
# The tests start their own services (dockerd, sshd, nginx) from these packages, on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
export PATH="$PATH:/usr/sbin:/sbin"
need dockerd docker.io
dpkg -s busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
need sshd openssh-server
need ssh-keygen openssh-client
need nginx nginx
need make make
need git git
need ip iproute2
need go golang-go
need chromium chromium
need npx npm
[ -x /usr/lib/postgresql/15/bin/initdb ] || packages+=(postgresql)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]"

python3 -m ruff check .
python3 -m mypy

set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
