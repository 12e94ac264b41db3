#!/usr/bin/env bash
# Set up QGIS (Debian's packages), a venv on the system Python that sees QGIS's bindings,
# and run the QGIS plugin's tests headless. Usage: plugins/run_tests.sh [pytest args...]
#   URBANVIS_QGIS_SETUP_ONLY=1  set up, do not run the tests
#   URBANVIS_EXE=...            the urbanvis executable (with torch) the subprocess tests use
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
venv="${URBANVIS_QGIS_VENV:-$here/.venv-qgis}"

if ! /usr/bin/python3 -c "import qgis.core" 2>/dev/null || ! command -v qgis_process >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3-qgis qgis-providers qgis \
        python3-venv >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if ! "$venv/bin/python" -c "import urbanvis, pytest_qgis" 2>/dev/null; then
    "$venv/bin/pip" install -q "numpy<2" pytest pytest-qgis pytest-timeout
    "$venv/bin/pip" install -q -e "$here"
fi
[ -n "${URBANVIS_QGIS_SETUP_ONLY:-}" ] && exit 0

export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export PYTHONPATH="/usr/share/qgis/python/plugins:$here/plugins${PYTHONPATH:+:$PYTHONPATH}"
export URBANVIS_EXE="${URBANVIS_EXE:-$here/.venv/bin/urbanvis}"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -c plugins/qgis_urbanvis/test/pytest.ini \
    plugins/qgis_urbanvis/test "$@"
