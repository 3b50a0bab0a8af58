#!/usr/bin/env bash
# Run a command on the GPU device machine with hpo installed offline from the carried wheelhouse.
#
#   scripts/device_run.sh COMMAND [ARGS...]      e.g. scripts/device_run.sh hpo tune --config ... --no-mlflow
#
# Run from anywhere inside the work tree (it works from the repository root). Steps:
#   1. probe the image into $OUT/device-probe.txt: python -V, glibc, pip list --format=freeze, nvidia-smi,
#      torch/CUDA (compare pip list with DEVICE_BASELINE in scripts/wheelhouse.py);
#   2. install wheelhouse/requirements-cpXY.txt (XY: the image's Python) and hpo's wheel offline
#      (--no-index) into a folder of their own (--target, put first on PYTHONPATH), so the image's CUDA torch,
#      transformers and peft are used as they are and its Python stays untouched (PEP 668 images too);
#      then check the installed packages' requirements against the image (pip check, ours only);
#   3. run COMMAND with that folder on PYTHONPATH and its bin/ on PATH (`hpo` is the installed wheel).
# Build the wheelhouse here first (`make wheelhouse`) and carry it: run(carry=["wheelhouse"], ...).
#
# Environment: OUT (where the probe goes; default runs/device), HPO_DEVICE_PYTHON (default python3, else
# python), HPO_WHEELHOUSE (default wheelhouse), HPO_DEVICE_SITE (the install folder; default .device-site,
# reused on a warm machine while the wheelhouse is the same).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
WHEELHOUSE=${HPO_WHEELHOUSE:-wheelhouse}
SITE=$(realpath -m "${HPO_DEVICE_SITE:-.device-site}")
PY=${HPO_DEVICE_PYTHON:-$(command -v python3 || command -v python || true)}

die() { echo "device_run: error: $*" >&2; exit 3; }

[ $# -gt 0 ] || die "no command given: scripts/device_run.sh COMMAND [ARGS...]"
[ -n "$PY" ] && "$PY" -c pass 2>/dev/null || die "no Python found (set HPO_DEVICE_PYTHON)"
mkdir -p "$OUT"

# 1. The probe: what the image is (each part may fail; the file says so and the run goes on).
probe="$OUT/device-probe.txt"
{
    echo "# device probe $(date -u +%Y-%m-%dT%H:%M:%SZ): $PY"
    echo "## python -V";            "$PY" -V 2>&1 || echo "(failed)"
    echo "## sys.executable, prefix"; "$PY" -c 'import sys; print(sys.executable, sys.prefix, sys.base_prefix)' 2>&1 || true
    echo "## glibc (DEVICE_PLATFORM manylinux_2_NN needs glibc >= 2.NN)"
    { ldd --version 2>&1 || echo "(no ldd)"; } | sed -n 1p
    echo "## uname -a";             uname -a 2>&1 || true
    echo "## pip list --format=freeze"; "$PY" -m pip list --format=freeze 2>&1 || echo "(pip failed)"
    echo "## nvidia-smi";           nvidia-smi 2>&1 || echo "(nvidia-smi failed or missing)"
    echo "## torch";                "$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 || echo "(import torch failed)"
} >"$probe"
echo "device_run: probe written to $probe"

# 2. The offline install.
[ -f "$WHEELHOUSE/WHEELHOUSE" ] || die "no wheelhouse at $WHEELHOUSE: build it with \`make wheelhouse\` and carry it (carry=[\"wheelhouse\"])"
version=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
req="$WHEELHOUSE/requirements-cp${version/./}.txt"
if [ ! -f "$req" ]; then
    built=$(sed -n 's/^python: //p' "$WHEELHOUSE/WHEELHOUSE")
    die "the wheelhouse has no wheels for this device's Python $version (it was built for: $built); rebuild it with: make wheelhouse DEVICE_PYTHON=\"$built $version\""
fi
wheels=("$WHEELHOUSE"/hpo-*.whl)
hpo_wheel=${wheels[0]}
[ -f "$hpo_wheel" ] || die "no hpo wheel in $WHEELHOUSE: rebuild it with \`make wheelhouse\`"
"$PY" -m pip --version >/dev/null 2>&1 || die "the image's Python $version has no pip: install from the wheelhouse by hand (unzip)"

stamp="$SITE/.installed"
want=$(cat "$req" "$WHEELHOUSE/WHEELHOUSE"; ls -l "$hpo_wheel")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" == "$want" ]; then
    echo "device_run: $SITE is installed from this wheelhouse already"
else
    rm -rf "$SITE"
    pipargs=(install --quiet --no-index --find-links "$WHEELHOUSE" --no-deps --target "$SITE")
    if ! "$PY" -m pip "${pipargs[@]}" -r "$req" "$hpo_wheel" 2>"$OUT/device-pip.log"; then
        cat "$OUT/device-pip.log" >&2
        die "offline install failed (log: $OUT/device-pip.log); the wheelhouse was built for $(sed -n 's/^platform: //p' "$WHEELHOUSE/WHEELHOUSE") (DEVICE_PLATFORM); the probe: $probe"
    fi
    echo "$want" >"$stamp"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}  # no hub there
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"

# Requirements of what we installed that the image does not meet (hpo's left-out dependencies excepted).
norm() { tr '[:upper:]' '[:lower:]' | sed 's/[_.]/-/g'; }
ours=" $(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$req" | norm | tr '\n' ' ') "
left_out=" $(sed -n 's/^left out: //p' "$WHEELHOUSE/WHEELHOUSE") "
problems=$("$PY" -m pip check 2>/dev/null | while read -r line; do
    who=$(echo "${line%% *}" | norm)
    dep=$(echo "$line" | sed -n 's/^[^ ]* [^ ]* \(requires\|has requirement\) \([A-Za-z0-9_.-]*\).*/\2/p' | norm)
    if [ "$who" == "hpo" ] && [[ "$left_out" == *" $dep "* ]]; then continue; fi
    if [ "$who" == "hpo" ] || [[ "$ours" == *" $who "* ]]; then echo "$line"; fi
done || true)
if [ -n "$problems" ]; then
    echo "$problems" >&2
    die "the image does not meet these requirements of the wheelhouse (see DEVICE_BASELINE in scripts/wheelhouse.py and $probe)"
fi
"$PY" -c 'import hpo.commands' || die "hpo does not import with the installed wheelhouse (see above)"
echo "device_run: hpo $("$PY" -c 'import importlib.metadata as m; print(m.version("hpo"))') installed in $SITE for Python $version"

# 3. The command.
exec "$@"
