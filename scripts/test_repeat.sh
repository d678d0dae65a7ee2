#!/usr/bin/env bash
# Run the whole test suite N times in a row (default 10) on this checkout, under nice, and log
# one line per run (exit status, seconds, load average, pytest's summary) to LOG
# (default test_repeat.log); each run's full output goes beside it (LOG.runI). A run that fails
# does not stop the others: the log says which ones failed, and their output says why.
#   bash scripts/test_repeat.sh [N] [LOG] [PYTEST ARGS...]   (e.g. a folder of tests, to try it)
# Uses the project's .venv (scripts/setup.sh makes it) when there is one, else python3.
set -u
cd "$(dirname "$0")/.."
N=${1:-10}
LOG=$(realpath -m "${2:-test_repeat.log}")
shift $(( $# < 2 ? $# : 2 ))
PY="${AVSTUDIO_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3
export QT_QPA_PLATFORM=offscreen
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(nproc) cores, $PY" >> "$LOG"
pass=0
for i in $(seq 1 "$N"); do
  tmp=$(mktemp -d)
  s=$(date +%s)
  nice -n 10 "$PY" -m pytest -q -ra -p no:cacheprovider --basetemp="$tmp/t" --durations=15 "$@" > "$LOG.run$i" 2>&1
  rc=$?
  e=$(date +%s)
  rm -rf "$tmp"
  [ $rc -eq 0 ] && pass=$((pass + 1))
  echo "run $i rc=$rc secs=$((e - s)) load=$(cut -d' ' -f1-3 /proc/loadavg) :: $(grep -E 'passed|failed|error' "$LOG.run$i" | tail -1)" >> "$LOG"
done
echo "# $pass of $N runs passed, $(date -u +%FT%TZ)" >> "$LOG"
[ $pass -eq "$N" ]
