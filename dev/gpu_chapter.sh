#!/usr/bin/env bash
# Run a training chapter in full mode through papermill on the project's GPU machine, from the
# repository root, within one call of the device tool (10 minutes), and leave its record in RESULTS_DIR:
#     executed.ipynb  results.json  metrics.csv  curves.png  cases.json  cases.png
#
#   bash dev/gpu_chapter.sh CHAPTER DATA_DIR RESULTS_DIR [papermill args ...]
#   bash dev/gpu_chapter.sh --install-only
#   bash dev/gpu_chapter.sh --size CARRY...     (here, before a call: what it would carry, against 64 MiB)
#   bash dev/gpu_chapter.sh --split FILE DIR | --join DIR FILE   (a data file in parts over two calls)
#
# CHAPTER is 08_train_isic or 09_train_acdc (or book/<chapter>.ipynb); DATA_DIR and RESULTS_DIR are
# relative to the repository root or absolute. Papermill gets -p MODE full, DATA_DIR, RESULTS_DIR,
# COMPILE False (the committed runs are eager; compiling costs minutes of the call) and COMMAND (this
# command line, recorded in the provenance), then the extra arguments: a later -p NAME wins
# (-p EPOCHS 35, -p COMPILE True). The kernel runs in book/, as in the book build.
#
# 1. Wheels: the GPU machine has torch, triton, numpy, matplotlib, pyyaml, tqdm, requests, ... but
#    not papermill or a Jupyter kernel. When .whl/ holds wheels (dev/device_wheels.txt lists them
#    and how to download them), they are installed into $SITE (/tmp/site); a warm machine on which
#    an earlier call installed them needs none (see the ACDC call below).
# 2. PYTHONPATH=$SITE:$PWD; a python3 kernelspec whose argv is this python3 is written to
#    /tmp/rwkvseg_jupyter and found through JUPYTER_PATH (the wheel's own kernel.json says "python",
#    which the machine may not have; without any spec jupyter_client would fall back to ipykernel's
#    built-in one, also this python3, but an explicit spec shadows any stale one on the machine).
# 3. papermill runs under `timeout -s INT` so that the whole script ends by DEADLINE_S (570 s) after its
#    start even if training is slow: SIGINT makes papermill save the notebook and stop the kernel; with
#    --request-save-on-cell-execute (and papermill's 30 s autosave inside long cells) the executed
#    notebook holds everything up to the cut. Exit status: papermill's (124: cut at the deadline).
#
# Environment: PYTHON (python3), SITE (/tmp/site; SITE= runs in the current environment, e.g. a local
# venv with papermill), WHEELS (.whl), DEADLINE_S (570), RWKVSEG_COMMIT (the commit the provenance
# records: the device copy has no .git), DRY_RUN=1 (print the papermill command, run nothing).
#
# Timing (RWKV-UNet-T, one H100, eager, bf16; rwkvseg/results/train_*/rwkv_unet_t_*ep.json): ISIC 2018 trains
# 40 epochs in 475 s of train() (first epoch ~140 s: kernel compilation and autotuning; then ~6.3 s
# an epoch plus validation, ~7 s), ACDC 60 epochs in 357 s (first epoch ~73 s, then ~3.8 s). On top:
# wheels ~10 s, papermill and kernel start ~15 s, the record (cases: the data loaded again, one test
# pass under bf16, figures) ~15-30 s. Hence EPOCHS 35 for ISIC (~490-515 s in all, 55-80 s spare)
# and 60 for ACDC (~420 s in all, the committed record's schedule).
#
# Device calls (the `run` tool; <sha> = git rev-parse HEAD of the committed tree that travels).
# The working tree travels with every call and counts towards its 64 MiB (15.9 MB on 2026-11-24, most
# of it weights/); check a call with `bash dev/gpu_chapter.sh --size <carried paths>`.
#
#   ISIC, kind nvidia-h100-x1, carry [".whl", ".carry/isic2018"], timeout_s 600:
#     set -o pipefail; export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD RWKVSEG_COMMIT=<sha>; bash dev/gpu_chapter.sh 08_train_isic .carry/isic2018 rwkvseg/results/train_isic2018/notebook_rwkv_unet_t_35ep -p EPOCHS 35 2>&1 | tee $OUT/gpu_chapter.log; cp -r rwkvseg/results/train_isic2018/notebook_rwkv_unet_t_35ep $OUT/
#
#   ACDC: the cache (.carry/acdc/acdc_224.npz, 49 MiB) and the tree no longer fit one call, so it
#   travels in two parts (once, here: `bash dev/gpu_chapter.sh --split .carry/acdc/acdc_224.npz
#   .carry/acdc_parts`), over two calls back to back on the same warm machine:
#   call 1, carry [".whl", ".carry/acdc_parts/manifest", ".carry/acdc_parts/part_00"]:
#     bash dev/gpu_chapter.sh --install-only
#   call 2, at once, carry [".carry/acdc_parts/part_01"], timeout_s 600:
#     set -o pipefail; export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD RWKVSEG_COMMIT=<sha>; bash dev/gpu_chapter.sh --join .carry/acdc_parts .carry/acdc/acdc_224.npz && bash dev/gpu_chapter.sh 09_train_acdc .carry/acdc rwkvseg/results/train_acdc/notebook_rwkv_unet_t_60ep -p EPOCHS 60 2>&1 | tee $OUT/gpu_chapter.log; cp -r rwkvseg/results/train_acdc/notebook_rwkv_unet_t_60ep $OUT/
#   (The committed ACDC record of 2026-11-24 was made when the tree was 15.1 MB: one call carrying
#   [".carry/acdc"] right after the ISIC call, reusing its /tmp/site.)
#
# If call 2 lands on a fresh machine, `--join` stops at once (exit 6, "missing part"): repeat both
# calls. The files come back under $OUT/<record folder>/ (7 files with the log: within the tool's 8).
# Without papermill at all, the same record but no executed notebook comes from the command line:
#     python3 -m rwkvseg train --config acdc_rwkv_unet_t --data_dir .carry/acdc --epochs 60
#       --compile false --out_dir runs/acdc --progress line && python3 -m rwkvseg record --run runs/acdc
#       --out rwkvseg/results/train_acdc/rwkv_unet_t_60ep_cli
set -uo pipefail

PY=${PYTHON:-python3}
SITE=${SITE-/tmp/site}
WHEELS=${WHEELS:-.whl}
DEADLINE_S=${DEADLINE_S:-570}
START=$SECONDS
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

die() { echo "gpu_chapter: $1" >&2; exit "${2:-2}"; }

install_wheels() {
    [ -n "$SITE" ] || return 0
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "gpu_chapter: installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl || die "pip could not install $WHEELS/*.whl into $SITE" 3
    elif [ -d "$SITE/papermill" ]; then
        echo "gpu_chapter: no wheels in $WHEELS; using the papermill already installed in $SITE"
    fi
}

if [ "${1:-}" = "--size" ]; then
    shift
    # tracked and untracked-not-ignored files (what every call sends), then the carried paths
    TREE=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 stat -c %s 2>/dev/null \
            | awk '{s += $1} END {print s + 0}')
    CARRY=$( [ $# -eq 0 ] || find "$@" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    awk -v t="$TREE" -v c="${CARRY:-0}" 'BEGIN {
        m = 2^20; printf "gpu_chapter: tree %.2f MiB + carry %.2f MiB = %.2f MiB of 64 MiB (%.2f MiB left)\n",
        t / m, c / m, (t + c) / m, 64 - (t + c) / m; exit (t + c > 64 * m) }' || die "over the device call's 64 MiB" 5
    exit 0
fi
# A data file too large for one call (the ACDC cache beside the tree) travels in parts over two
# back-to-back calls: here `--split FILE DIR` (parts of 30 MB + a manifest with the whole file's sha256);
# call 1 carries DIR/manifest and DIR/part_00, call 2 carries DIR/part_01 (call 1's part stays on the
# warm machine: carried paths not named again are kept) and runs `--join DIR FILE` before its work.
if [ "${1:-}" = "--split" ]; then
    [ $# -eq 3 ] && [ -f "$2" ] || die "usage: bash dev/gpu_chapter.sh --split FILE DIR (FILE must exist)"
    mkdir -p "$3" && rm -f "$3"/part_* && split -b 30M -d "$2" "$3/part_" || die "could not split $2 into $3"
    { sha256sum "$2" | cut -d' ' -f1; (cd "$3" && ls part_*); } > "$3/manifest"
    echo "gpu_chapter: $2 -> $(ls "$3"/part_* | wc -l) parts in $3 (manifest: sha256, then the parts)"
    exit 0
fi
if [ "${1:-}" = "--join" ]; then
    [ $# -eq 3 ] && [ -f "$2/manifest" ] || die "usage: bash dev/gpu_chapter.sh --join DIR FILE (no $2/manifest)" 6
    SUM=$(head -n 1 "$2/manifest")
    mapfile -t PARTS < <(tail -n +2 "$2/manifest")
    for part in "${PARTS[@]}"; do
        [ -f "$2/$part" ] || die "missing part $2/$part (carried by an earlier call on a machine since given back?)" 6
    done
    mkdir -p "$(dirname "$3")" && (cd "$2" && cat "${PARTS[@]}") > "$3" || die "could not write $3" 6
    [ "$(sha256sum "$3" | cut -d' ' -f1)" = "$SUM" ] || { rm -f "$3"; die "$3: sha256 differs from $2/manifest" 6; }
    echo "gpu_chapter: joined ${#PARTS[@]} parts into $3 (sha256 ${SUM:0:12} checked)"
    exit 0
fi
if [ "${1:-}" = "--install-only" ]; then
    install_wheels
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import papermill, ipykernel; print('gpu_chapter: papermill', papermill.__version__, 'ipykernel', ipykernel.__version__, 'in $SITE')" \
        || die "papermill or ipykernel not importable from $SITE" 3
    exit 0
fi

[ $# -ge 3 ] || die "usage: bash dev/gpu_chapter.sh CHAPTER DATA_DIR RESULTS_DIR [papermill args ...]
       bash dev/gpu_chapter.sh --install-only"
CHAPTER=$(basename "${1%.ipynb}")
DATA_DIR=$2
RESULTS_DIR=$3
shift 3
NOTEBOOK=book/$CHAPTER.ipynb
[ -f "$NOTEBOOK" ] || die "no chapter $NOTEBOOK (expected 08_train_isic or 09_train_acdc)"
grep -q '"RESULTS_DIR = ' "$NOTEBOOK" || die "$NOTEBOOK has no RESULTS_DIR parameter: only the training chapters (08_train_isic, 09_train_acdc) write a record"
[ -e "$DATA_DIR" ] || die "DATA_DIR $DATA_DIR does not exist (ISIC: a folder with images/ and masks/, e.g. .carry/isic2018; ACDC: a folder holding acdc_224.npz, e.g. .carry/acdc)"
DATA_ABS=$(realpath -m -- "$DATA_DIR")
RESULTS_ABS=$(realpath -m -- "$RESULTS_DIR")
COMMAND="bash dev/gpu_chapter.sh $CHAPTER $DATA_DIR $RESULTS_DIR${*:+ $*}"

JUPYTER_DIR=${TMPDIR:-/tmp}/rwkvseg_jupyter
export PYTHONPATH="${SITE:+$SITE:}$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export JUPYTER_PATH="$JUPYTER_DIR/share/jupyter" JUPYTER_PLATFORM_DIRS=1 IPYTHONDIR="$JUPYTER_DIR/ipython"
export RWKVSEG_BOOK_BUILD=1          # no live frontend under papermill: one progress line per epoch, no tqdm bars

PM=("$PY" -m papermill "$NOTEBOOK" "$RESULTS_ABS/executed.ipynb" --cwd book -k python3
    -p MODE full -p DATA_DIR "$DATA_ABS" -p RESULTS_DIR "$RESULTS_ABS" -p COMPILE False -p COMMAND "$COMMAND"
    "$@" --log-output --request-save-on-cell-execute)

if [ "${DRY_RUN:-}" = 1 ]; then
    printf '%q ' "${PM[@]}"; echo
    exit 0
fi

install_wheels
"$PY" -c "import papermill, ipykernel" 2>/dev/null || die "no papermill/ipykernel importable (PYTHONPATH=$PYTHONPATH): carry .whl (see dev/device_wheels.txt) or run on the warm machine of a call that installed them" 3
mkdir -p "$IPYTHONDIR"
"$PY" -m ipykernel install --prefix "$JUPYTER_DIR" --name python3 >/dev/null || die "could not write the python3 kernelspec" 3
"$PY" - <<'EOF'
import os, platform, papermill, ipykernel, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"gpu_chapter: python {platform.python_version()}, torch {torch.__version__}, {gpu}, papermill {papermill.__version__}, "
      f"ipykernel {ipykernel.__version__}, commit {os.environ.get('RWKVSEG_COMMIT', '(RWKVSEG_COMMIT unset)')}")
EOF
mkdir -p "$RESULTS_ABS"
LEFT=$((DEADLINE_S - (SECONDS - START) - 25))       # 25 s: papermill's save after SIGINT, the listing
[ "$LEFT" -ge 60 ] || die "only $LEFT s left before the deadline: not starting" 124
echo "gpu_chapter: $(printf '%q ' "${PM[@]}")"
echo "gpu_chapter: at most $LEFT s from now ($((SECONDS - START)) s spent)"
timeout -s INT -k 20 "$LEFT" "${PM[@]}"
STATUS=$?
[ "$STATUS" -eq 124 ] && echo "gpu_chapter: cut at the deadline; the executed notebook holds what ran" >&2
echo "gpu_chapter: papermill exit $STATUS after $((SECONDS - START)) s; $RESULTS_DIR holds:"
ls -l "$RESULTS_ABS"
for f in executed.ipynb results.json metrics.csv curves.png cases.json cases.png; do
    [ -f "$RESULTS_ABS/$f" ] || { echo "gpu_chapter: missing $f" >&2; [ "$STATUS" -ne 0 ] || STATUS=4; }
done
exit "$STATUS"
