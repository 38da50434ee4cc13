#!/usr/bin/env bash
# A GPU slot of 15 minutes (one H200; one command at most 10 minutes; a working tree of at
# most 64 MiB travels; at most 8 files of 16 MiB come back from $OUT) turned into paper
# cells, in one prepared command. Four steps, three of them here:
#
#   here:   bash scripts/gpu_window.sh prepare        # data pack, commit, finished list into .devdata/;
#                                                      # results/*/cells, book/, notebooks/, tests/ moved
#                                                      # out of the tree; size checked
#   there:  one call of the device tool `run`, carry [".devdata"], timeout_s 590:
#             bash scripts/gpu_window.sh window 530
#   here:   bash scripts/gpu_window.sh restore        # the cell folders back (safe to repeat)
#           bash scripts/gpu_window.sh unpack <files_at>   # the new cells into results/paper; then commit
#
# `window SECONDS` (there): (1) ≤ WINDOW_PICK_TIMEOUT (180 s): python -m capslib.tools.window
# pick times the plain path and the fast path's switch sets (bf16, channels-last, CUDA graphs,
# tf32) on paper A's setting; for the fastest it sizes the stacked groups of each paper (paper A
# K = 2, batch 32; paper B K = 9, batch 100): groups of 8, 16, 32 and 64 models, those whose
# memory estimate does not fit skipped, the others timed (images/s; no further size after
# 80 s), the fastest of each paper checked on real digits cells trained in a group of that
# size (losses finite and falling, AUROCs within 0.05 of the plain path's). It writes
# results/bench/window-*.json, every measured rate included, and decides: the fast path with
# those switches, --group-size imbalanced=N,novelty=M and --rates <that report>, or
# plain-path workers; (2) trains the missing paper cells in the grid's priority order with
# --time-budget, skipping the cells listed in .devdata/finished.txt. With --rates no stacked
# group starts that is predicted to end after the budget ((images per epoch × epochs ×
# models) / its paper's measured images/s, × 1.2; the first group too): it is left for the
# next window or the CPUs, later groups that fit (paper A's, smaller ones) go on, and the log
# names what was skipped. If the fast path raises, or was not sound or not faster,
# WINDOW_WORKERS (default 4) plain-path processes share the grid through the store's
# per-cell claims; the log says which ran and why; (3) packs the new cells into
# $OUT/cells-N.tgz (each under 15 MiB), the benchmark files and the log: at most 8 files.
# It ends about a minute before SECONDS.
#
# `plateau SECONDS` (there, instead of `window` or in a second call): the loss plateau's GPU
# evidence (book/methods.md, "stall rates by route"): gradients of one plateau state per route
# against float64, then stall rates of one cell per fast route in rounds of eight; bench.tgz back.
#
# The call plan (book/paper.md has it too): start + copy ≈ 1-2 min; the command 530 s (pick
# ≤ 180 s, training the rest less a minute for packing, packing ≤ 30 s); files back; ≈ 12 min
# of the 15. At the rate the CPU extrapolates nothing fits; at 15-20% of the H200's bf16 peak
# (≈ 1.2 GFLOP per training image, ≈ 790 TFLOP/s) 400 s train ≈ 40-50 M images, about one
# seed of the whole grid. At the 17-18k images/s measured so far (paper A's setting) a group
# of eight paper-B MNIST cells (8 × 20 epochs × ≈ 54k images) would take ≈ 480 s, more than
# a window's training: --rates leaves such groups for later instead of losing the window.
#
# What travels: what a training run reads, that is the tree without results/*/cells and without
# the folders in TREE_STASH (the book, the notebooks, the tests: moved out with the cells and
# back by `restore`), plus .devdata (the xz data pack, 52.4 MiB: MNIST 8.8, Fashion-MNIST 25.3,
# KMNIST 18.3; two small text files). `prepare` measures it and refuses above 62 MiB, naming
# the largest files; the cell folders (≈ 95 KB each, ≈ 100 MB for the whole grid) and the
# executed chapters never travel, so the size does not grow with the store.
#
# Environment: CAPSLIB_DATA (raw MNIST-family files, for the pack), WINDOW_DEVICE (default
# cuda), WINDOW_PROFILE (default paper), WINDOW_WORKERS (default 4), WINDOW_PICK_ARGS (extra
# options of `python -m capslib.tools.window pick`), WINDOW_PICK_TIMEOUT (default 180 s), WINDOW_STASH (where
# `prepare` moves the cell folders; default ../.capslib-window-stash). Extra arguments after
# SECONDS go to `python -m capslib run` (the CPU dry run in tests/test_gpu_window.py uses
# them for one-epoch digits cells).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
DEV=.devdata
JOURNAL=.window-stash
LIMIT_MIB="${WINDOW_LIMIT_MIB:-62}"   # the device tool takes 64 MiB; room for what it adds
TREE_STASH="book notebooks tests"   # tracked folders a training run never reads: they stay here
action="${1:-}"; shift || true

travel_bytes() {   # what the device tool copies: tracked files that exist, untracked-not-ignored files
    $PY -c 'import os, subprocess
names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.split(b"\0")
print(sum(os.path.getsize(n) for n in {n for n in names if n} if os.path.isfile(n)))'
}

# (there) what `window` and `plateau` start with: the clock t0, $OUT (out), the log $1 in it, the
# environment of the tools, the device, a time stamp for what they write (stamp); say() logs a line
start_there() {
    t0=$(date +%s)
    out="${OUT:-$(mktemp -d)}"
    log="$out/$1"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export CAPSLIB_COMMIT="$(cat "$DEV/commit" 2>/dev/null || echo unknown)" CAPSLIB_CACHE="${CAPSLIB_CACHE:-/tmp/capslib-cache}"
    device="${WINDOW_DEVICE:-cuda}"
    stamp=$(mktemp); mkdir -p results/bench
}
say() { echo "== $(date -u +%H:%M:%S) +$(( $(date +%s) - t0 ))s $*" | tee -a "$log"; }

case "$action" in
prepare)
    [ -e "$JOURNAL" ] && { echo "error: already prepared ($JOURNAL names $(cat $JOURNAL)); run restore first" >&2; exit 1; }
    mkdir -p "$DEV/pack"
    for name in mnist fashion kmnist; do
        if [ ! -s "$DEV/pack/$name.npz.xz" ]; then
            src="${CAPSLIB_DATA:-$HOME/.cache/capslib/data}/pack/$name.npz.xz"
            if [ -s "$src" ]; then cp "$src" "$DEV/pack/"; else
                $PY -m capslib pack-data --datasets "$name" --out "$DEV/pack" ${CAPSLIB_DATA:+--data-root "$CAPSLIB_DATA"}; fi
        fi
    done
    git rev-parse --short=12 HEAD > "$DEV/commit"
    $PY -m capslib.tools.routecheck --write-groups "$DEV/groups.json" --profile "${WINDOW_PROFILE:-paper}"   # for routecheck there
    $PY - "$DEV/finished.txt" <<'EOF'
import sys
from pathlib import Path
ids = sorted(p.parent.name for p in Path("results").glob("*/cells/*/cell.json"))
Path(sys.argv[1]).write_text("".join(i + "\n" for i in ids))
print(f"{len(ids)} finished cells listed in {sys.argv[1]}")
EOF
    stash="${WINDOW_STASH:-$(cd .. && pwd)/.capslib-window-stash}/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$stash"
    echo "$stash" > "$JOURNAL"                          # the journal first: restore finds the folders whatever happens next
    for cells in results/*/cells; do
        [ -d "$cells" ] || continue
        prof="$(basename "$(dirname "$cells")")"
        mv "$cells" "$stash/$prof-cells"                   # one rename per profile (same filesystem: atomic)
    done
    for part in $TREE_STASH; do
        [ -e "$part" ] || continue
        mkdir -p "$stash/tree"
        mv "$part" "$stash/tree/$part"
    done
    bytes=$(( $(travel_bytes) + $(du -sb "$DEV" | cut -f1) ))
    echo "what travels: $(( bytes / 1048576 )) MiB (tree without results/*/cells, plus $DEV); cells stashed in $stash"
    if [ "$bytes" -gt $(( LIMIT_MIB * 1048576 )) ]; then
        echo "error: over $LIMIT_MIB MiB; nothing can be sent as it is (restore with: bash scripts/gpu_window.sh restore)." >&2
        echo "the largest of what would travel:" >&2
        { git ls-files -z --cached --others --exclude-standard; find "$DEV" -type f -print0; } \
            | xargs -0 -r du -b 2>/dev/null | sort -rn | head -n 8 | awk '{printf "  %8.2f MiB  %s\n", $1 / 1048576, $2}' >&2 || true
        exit 1
    fi ;;
restore)
    [ -e "$JOURNAL" ] || { echo "nothing to restore (no $JOURNAL)"; exit 0; }
    stash="$(cat "$JOURNAL")"
    for saved in "$stash"/*-cells; do
        [ -d "$saved" ] || continue
        prof="$(basename "$saved" -cells)"
        mkdir -p "results/$prof/cells"
        for d in "$saved"/*/; do                           # cell by cell, so cells unpacked meanwhile stay
            [ -d "$d" ] || continue
            n="$(basename "$d")"
            if [ -e "results/$prof/cells/$n" ]; then rm -rf "$d"; else mv "$d" "results/$prof/cells/$n"; fi
        done
        rmdir "$saved"
    done
    if [ -d "$stash/tree" ]; then                          # the book, notebooks and tests
        for saved in "$stash/tree"/*; do
            [ -e "$saved" ] || continue
            n="$(basename "$saved")"
            if [ -e "$n" ]; then echo "warning: $n exists here; the stashed one stays in $saved" >&2
            else mv "$saved" "$n"; fi
        done
        rmdir "$stash/tree" 2>/dev/null || true
    fi
    rmdir "$stash" 2>/dev/null || true
    rm -f "$JOURNAL"
    echo "restored the cell folders and $TREE_STASH from $stash" ;;
window)
    budget="${1:?usage: gpu_window.sh window SECONDS [run options]}"; shift
    start_there window.log
    profile="${WINDOW_PROFILE:-paper}"; workers="${WINDOW_WORKERS:-4}"
    say "window of $budget s on $device, commit $CAPSLIB_COMMIT, profile $profile"
    (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi") >> "$log"
    flags="--no-fast"
    # shellcheck disable=SC2086
    if timeout "${WINDOW_PICK_TIMEOUT:-180}" $PY -m capslib.tools.window pick --device "$device" --out results/bench ${WINDOW_PICK_ARGS:-} >> "$log" 2>&1; then
        flags="$(tail -n 1 "$log")"
        say "pick: $(grep '^decision:' "$log" | tail -n 1)"
    else
        say "pick failed or ran past ${WINDOW_PICK_TIMEOUT:-180} s (see above): plain-path workers"
    fi
    run_args() {                                        # `run`'s options, with the time left now
        left=$(( budget - ($(date +%s) - t0) - 60 ))      # a minute for packing
        # --max-attempts 1: the stall rule's retrainings are left to the reference route (the CPU grid)
        common=(--profile "$profile" --device "$device" --data-root "$DEV" --time-budget "$left" --no-progress
                --max-attempts 1)
        [ -s "$DEV/finished.txt" ] && common+=(--finished-list "$DEV/finished.txt")
        return 0
    }
    run_args
    ran=fallback
    if [ "$flags" != "--no-fast" ] && [ "$left" -gt 30 ]; then
        say "training: fast path $flags, budget $left s"
        if $PY -m capslib run "${common[@]}" $flags "$@" >> "$log" 2>&1; then ran=fast
        else say "the fast path raised (see above): falling back to $workers plain-path workers"; fi
    fi
    if [ "$ran" = fallback ]; then
        run_args
        say "training: $workers plain-path workers (--no-fast; per-cell claims split the grid), budget $left s"
        pids=()
        for i in $(seq "$workers"); do
            $PY -m capslib run "${common[@]}" --no-fast "$@" > "$out/worker-$i.log" 2>&1 & pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || say "worker pid $p exited with $?"; done
        cat "$out"/worker-*.log >> "$log"; rm -f "$out"/worker-*.log
    fi
    # pack: the cells this window finished, in tgz files under 15 MiB each; the benchmarks
    n=0; part=1; size=0; list="$out/.part-1"; : > "$list"
    for d in $(cd "results/$profile" 2>/dev/null && find cells -mindepth 1 -maxdepth 1 -type d -newer "$stamp" | sort); do
        s=$(du -sb "results/$profile/$d" | cut -f1)
        if [ $(( size + s )) -gt $(( 15 * 1048576 )) ] && [ -s "$list" ]; then
            part=$(( part + 1 )); size=0; list="$out/.part-$part"; : > "$list"
        fi
        echo "$d" >> "$list"; size=$(( size + s )); n=$(( n + 1 ))
    done
    if [ "$part" -gt 6 ]; then say "warning: $part parts; only 6 come back (8 files at most)"; fi
    for l in "$out"/.part-*; do
        [ -s "$l" ] || continue
        k="${l##*.part-}"
        tar -C "results/$profile" -czf "$out/cells-$k.tgz" -T "$l"
        rm -f "$l"
    done
    rm -f "$out"/.part-*
    find results/bench -type f -newer "$stamp" -print0 | tar --null -czf "$out/bench.tgz" -T -
    say "packed $n cells ($ran) into $(ls "$out"/cells-*.tgz 2>/dev/null | wc -l) file(s); benchmark into bench.tgz" ;;
plateau)
    # (there) the loss plateau's GPU evidence, for a slot of its own or the end of one: the gradient
    # of one plateau state on every route against float64 on the CPU (capslib.tools.gradcheck,
    # ≤ 120 s), then stall rates of the same cell on the fast routes in rounds of eight seeds,
    # each replica trained for the cell's 10 epochs (capslib.tools.stallrate; its report keeps
    # every replica's loss at each epoch's end, which checks the CPU's 2-epoch look against full
    # trainings, and is rewritten after every round, so the rounds done by the deadline stay);
    # both reports go back in $OUT/bench.tgz. Extra arguments go to both tools
    # (--cell, --profile); WINDOW_GRADCHECK_ARGS and WINDOW_STALLRATE_ARGS to one each.
    budget="${1:?usage: gpu_window.sh plateau SECONDS [tool options]}"; shift
    start_there plateau.log
    say "plateau study of $budget s on $device, commit $CAPSLIB_COMMIT"
    # shellcheck disable=SC2086
    timeout 120 $PY -m capslib.tools.gradcheck --device "$device" --data-root "$DEV" --out results/bench "$@" \
        ${WINDOW_GRADCHECK_ARGS:-} >> "$log" 2>&1 || say "gradcheck failed or ran past 120 s (see above)"
    left=$(( budget - ($(date +%s) - t0) - 20 ))          # 20 s for packing
    say "stall rates: fast routes, rounds of eight, $left s"
    # shellcheck disable=SC2086
    timeout --signal=INT --kill-after=10 "$left" $PY -m capslib.tools.stallrate --device "$device" --data-root "$DEV" \
        --out results/bench --replicas 64 --epochs 10 --routes fast-bf16,fast-bf16-conv1fp32,fast-fp32,fast-bf16-exact "$@" \
        ${WINDOW_STALLRATE_ARGS:-} >> "$log" 2>&1 || say "stallrate stopped (the deadline or an error, see above)"
    find results/bench -type f -newer "$stamp" -print0 | tar --null -czf "$out/bench.tgz" -T -
    say "packed $(tar -tzf "$out/bench.tgz" | wc -l) report(s) into bench.tgz" ;;
unpack)
    from="${1:?usage: gpu_window.sh unpack FOLDER (the files that came back)}"
    profile="${WINDOW_PROFILE:-paper}"
    mkdir -p "results/$profile"
    for f in "$from"/cells-*.tgz; do [ -e "$f" ] && tar -C "results/$profile" -xzf "$f"; done
    [ -e "$from/bench.tgz" ] && tar -xzf "$from/bench.tgz"
    [ -e "$from/window.log" ] && cp "$from/window.log" "results/bench/window-$(date -u +%Y%m%dT%H%M%SZ).log"
    $PY -m capslib status --profile "$profile" | tail -n 1 ;;
*)
    echo "usage: bash scripts/gpu_window.sh prepare | window SECONDS [run options] | plateau SECONDS [tool options] | restore | unpack FOLDER" >&2
    exit 2 ;;
esac
