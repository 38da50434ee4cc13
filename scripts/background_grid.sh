#!/usr/bin/env bash
# The next cells of the paper grid, in the background, while you work:
#
#   bash scripts/background_grid.sh MINUTES [extra `python -m capslib run` options]
#
# It checks out the current commit into a separate git worktree (so that editing this
# checkout cannot disturb the run), and there starts, niced (its session's scheduling group as
# well), in the background:
#
#   python -m capslib run --profile paper --results-root <this checkout>/results \
#       --time-budget <MINUTES*60> --no-progress [extra options]
#
# The run trains the missing cells in the paper profile's priority order (capslib.study.profiles.
# PRIORITY: paper A seed 0 first), in bf16 where the CPU has it natively, and starts no
# cell that would end after MINUTES unless the cell is resumable: a CapsNet cell is
# checkpointed after every epoch (under $CAPSLIB_CACHE) and pauses at the last epoch
# boundary before the deadline; the next run resumes it. A hard stop (SIGINT) follows 10
# minutes after the deadline in case an epoch runs long; an interrupted cell loses at most
# the epoch in progress.
#
# Before you stop working: `python -m capslib status --profile paper --summary`, then
# commit the finished cells (`git add results/paper && git commit`); their provenance
# (commit, device, precision, seconds) is in each cell.json.
#
# Environment: CAPSLIB_DATA (the MNIST-family data root; default ~/.cache/capslib/data),
# PYTHON (default python3), CAPSLIB_GRID_WORKTREE (default /tmp/capslib-grid; a worktree an earlier
# run left there is replaced, anything else there is refused and kept),
# CAPSLIB_GRID_LOG (default /tmp/capslib-grid.log), FOREGROUND=1 to wait for the run,
# CAPSLIB_GRID_COMMIT (default: this checkout's HEAD): the commit whose code runs. A checkpoint saved
# by other training code starts over; `status` names the commit that saved it, and a run at that
# commit, limited to that cell (e.g. --protocol novelty --dataset mnist --classes 0 --seeds 0
# --methods capsnet), finishes it there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
    echo "usage: bash scripts/background_grid.sh MINUTES [run options]   (MINUTES: a whole number >= 1)" >&2
    exit 2
fi
MINUTES="$1"; shift
WT="${CAPSLIB_GRID_WORKTREE:-/tmp/capslib-grid}"
LOG="${CAPSLIB_GRID_LOG:-/tmp/capslib-grid.log}"
DATA="${CAPSLIB_DATA:-$HOME/.cache/capslib/data}"

if pgrep -f "capslib run --profile paper --results-root $ROOT/results" >/dev/null; then
    echo "error: a background grid run on $ROOT/results is already running (pgrep -af 'capslib run --profile paper')" >&2
    exit 1
fi
if [ -n "${CAPSLIB_GRID_COMMIT:-}" ]; then
    SHA="$(git rev-parse --quiet --verify "${CAPSLIB_GRID_COMMIT}^{commit}")" ||
        { echo "error: CAPSLIB_GRID_COMMIT=$CAPSLIB_GRID_COMMIT is not a commit of this repository" >&2; exit 1; }
    echo "note: the run uses the code of ${SHA:0:12} (CAPSLIB_GRID_COMMIT), not this checkout's" >&2
else
    SHA="$(git rev-parse HEAD)"
    if [ -n "$(git status --porcelain --untracked-files=no -- capslib)" ]; then
        echo "note: capslib/ has uncommitted changes; the run uses the committed code of ${SHA:0:12}" >&2
    fi
fi
# A fresh worktree at this commit. What is at $WT already is replaced only when it is what an
# earlier run of this script left there: a worktree of this repository (in `git worktree list`),
# not this checkout nor the main one, detached at a commit, holding nothing but git's tracked
# files and Python's caches. Anything else is refused in one line and left as it is.
if [ -e "$WT" ] || [ -L "$WT" ]; then
    refuse() { echo "error: CAPSLIB_GRID_WORKTREE=$WT $1; nothing was removed: name a new path, or remove it yourself" >&2; exit 1; }
    want="$(cd "$WT" 2>/dev/null && pwd -P)" || refuse "is not a folder"
    [ "$want" = "$(pwd -P)" ] && refuse "is this checkout"
    found=""; first=1; path=""
    while IFS= read -r line; do
        case "$line" in
            "worktree "*) path="$(cd "${line#worktree }" 2>/dev/null && pwd -P)" || path="" ;;
            detached) if [ -n "$path" ] && [ "$path" = "$want" ]; then
                          [ "$first" = 1 ] && refuse "is the repository's main worktree"; found=1; fi ;;
            "") first=0; path="" ;;
        esac
    done < <(git worktree list --porcelain; echo)
    [ -n "$found" ] || refuse "is not a detached worktree of this repository (git worktree list)"
    st="$(git -C "$WT" status --porcelain --ignored --untracked-files=all 2>/dev/null)" || refuse "is not a readable git worktree"
    own="$(printf '%s\n' "$st" | grep -v -E '^(!! (.*/)?(__pycache__/.*|[^/]*\.py[co]|\.pytest_cache/.*))?$' | head -n 1 || true)"
    [ -z "$own" ] || refuse "holds changes or files of its own (e.g. ${own:3})"
    git worktree remove "$WT" 2>/dev/null || refuse "could not be removed by git worktree remove (locked?)"
fi
git worktree prune
git worktree add --detach --quiet "$WT" "$SHA"

BUDGET=$(( MINUTES * 60 ))
CMD=(nice -n 19 timeout --signal=INT --kill-after=60 $(( BUDGET + 600 ))
     "$PY" -m capslib run --profile paper --results-root "$ROOT/results" --data-root "$DATA"
     --time-budget "$BUDGET" --no-progress "$@")
{
    echo "== $(date -u +%FT%TZ) background grid at ${SHA:0:12}, $MINUTES min, in $WT"
    echo "== ${CMD[*]}"
} >> "$LOG"
cd "$WT"
if [ "${FOREGROUND:-0}" = 1 ]; then
    "${CMD[@]}" >> "$LOG" 2>&1
    echo "== $(date -u +%FT%TZ) exit $?" >> "$LOG"
    exit 0
fi
# Its own session (setsid), and that session's scheduling group niced too: where the kernel groups
# CPU time by session (sched_autogroup), `nice` only ranks processes inside one session, and a
# process started in a session of its own (a Jupyter kernel, say) would share the cores with
# the whole grid as an equal.
nohup setsid bash -c '{ echo 19 > /proc/self/autogroup; } 2>/dev/null
    "$@" >> "$0" 2>&1; echo "== $(date -u +%FT%TZ) exit $?" >> "$0"' "$LOG" "${CMD[@]}" >/dev/null 2>&1 &
echo "background grid started (pid $!), $MINUTES min, commit ${SHA:0:12}; log: $LOG"
echo "  progress:  $PY -m capslib status --profile paper --summary --data-root $DATA"
echo "  stop it:   pkill -INT -f 'capslib run --profile paper --results-root $ROOT/results'  (keeps the last epoch)"
echo "  then:      git add results/paper && git commit -m 'Paper profile: cells from the background grid'"
