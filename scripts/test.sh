#!/usr/bin/env bash
# The one command that installs everything the tests need and runs all of them.
#
# For a fresh Debian 12 machine, as root: system packages (Docker engine, debootstrap,
# chromium, Node.js), a Docker daemon, a virtual environment with `pip install ".[test]"`
# (a real install, not editable, so the package's data files land where users get them),
# the JupyterLab extension build (checked against the committed bundle) and its unit tests,
# ruff, mypy, import-linter, the test images, then the whole pytest suite, Docker tests
# included. Re-running reuses what is already there.
#
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k catalog`).
# Environment: PYTHON (interpreter for the venv, default python3), GPUENV_TEST_VENV
# (default <repo>/.venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
VENV="${GPUENV_TEST_VENV:-$REPO/.venv}"
ARTIFACTS="$REPO/test-artifacts"
DOCKERD_LOG=/var/log/gpuenv-test-dockerd.log
SECONDS=0

step() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

step "System packages"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
# The Docker Swarm tests put nodes in network namespaces joined by veths and a bridge.
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
command -v "$PYTHON" >/dev/null || missing+=(python3)
if command -v "$PYTHON" >/dev/null && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "needs root to install: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "all present (docker.io, debootstrap, chromium, npm, iproute2, iptables, $PYTHON)"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$PYTHON is older than Python 3.10"

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "the Docker daemon is not running and starting it needs root"
    echo "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd did not answer"; }
fi
docker version --format 'Docker engine {{.Server.Version}} answers'

step "Python environment $VENV: pip install \".[test]\""
mkdir -p "$ARTIFACTS"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
export PATH="$VENV/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip_install() {
    # pip's own chatter goes to a log; it is shown when the install fails.
    python -m pip install "$@" >"$ARTIFACTS/pip-install.log" 2>&1 \
        || { tail -n 40 "$ARTIFACTS/pip-install.log" >&2; die "pip install $* failed"; }
}
pip_install ".[test]"

npm_status=0
bundle_status=0
if [ -f labextension/package.json ]; then
    step "JupyterLab extension: npm ci, build, unit tests"
    (
        cd labextension
        # npm keeps node_modules/.package-lock.json in step with what it installed.
        if [ -f node_modules/.package-lock.json ] && [ -f package-lock.json ] \
            && ! [ package-lock.json -nt node_modules/.package-lock.json ] \
            && ! [ package.json -nt node_modules/.package-lock.json ]; then
            echo "node_modules up to date"
        elif [ -f package-lock.json ]; then
            npm ci --no-audit --no-fund
        else
            npm install --no-audit --no-fund
        fi
        npm run build
    )
    # The build writes jupyter_gpuenv/labextension, the bundle users get; what git has
    # committed there must be exactly that (the build is the same in every checkout:
    # labextension/webpack.config.js). A stale bundle fails the run at the end.
    if ! command -v git >/dev/null || ! [ -e .git ]; then
        echo "no git checkout here: the Lab bundle is not compared with a committed one"
    elif ! stale="$(git status --porcelain --untracked-files=all -- jupyter_gpuenv/labextension)"
    then
        echo "git status failed: the Lab bundle could not be compared" >&2
        bundle_status=1
    elif [ -n "$stale" ]; then
        printf '%s\n' "$stale"
        echo "the committed Lab bundle is stale: run \`cd labextension && npm run build\`" \
            "and commit jupyter_gpuenv/labextension" >&2
        bundle_status=1
    else
        echo "the committed Lab bundle matches the fresh build"
    fi
    # Unit test failures fail the run at the end, after the Python suite has run too.
    (cd labextension && npm test) || npm_status=$?
    # Again, so the freshly built extension is what share/jupyter/labextensions holds.
    pip_install --no-deps .
fi

python - <<'EOF'
import sys
from pathlib import Path

config = Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/jupyter_gpuenv.json")
if not config.is_file():
    sys.exit(f"scripts/test.sh: the install did not place {config}")
print(f"installed: {config}")
EOF

step "ruff"
targets=(jupyter_gpuenv tests)
[ -d benchmarks ] && targets+=(benchmarks)
# A lint finding fails the run, but the tests still run so one report shows everything.
ruff_status=0
ruff check "${targets[@]}" || ruff_status=$?

step "mypy"
# Settings in pyproject.toml [tool.mypy]; like ruff, a finding fails the run at the end.
mypy_status=0
mypy jupyter_gpuenv || mypy_status=$?

step "import-linter"
# The package's layering, pyproject.toml [tool.importlinter].
imports_status=0
lint-imports || imports_status=$?

step "Test images (built once, reused while their recipes are unchanged)"
python -m tests.support.images

step "pytest"
pytest_status=0
python -m pytest -p no:cacheprovider -ra --durations=25 \
    --junitxml="$ARTIFACTS/junit.xml" tests "$@" || pytest_status=$?
step "done: exit status of npm test $npm_status, Lab bundle check $bundle_status," \
    "ruff $ruff_status, mypy $mypy_status, lint-imports $imports_status, pytest $pytest_status"
if [ "$bundle_status" != 0 ]; then
    echo "the committed Lab bundle is stale: run \`cd labextension && npm run build\`" \
        "and commit jupyter_gpuenv/labextension" >&2
fi
[ "$npm_status" = 0 ] && [ "$bundle_status" = 0 ] && [ "$ruff_status" = 0 ] \
    && [ "$mypy_status" = 0 ] && [ "$imports_status" = 0 ] && [ "$pytest_status" = 0 ]
