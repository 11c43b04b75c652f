#!/usr/bin/env bash
# Runs the README's test command (`swift test`, with any arguments given here) and watches the
# test process. If the test process has printed nothing for SDQ_TEST_STALL_SECONDS (default
# 240 s), it is stalled. The watchdog then:
#   1. says so;
#   2. lists the tests that started and never ended;
#   3. writes every thread's stack (gdb) and the process's timers to $SDQ_TEST_LOG.stall-N;
#   4. kills the test process and runs the suite once more.
# A failing test is never run again: only a stall is. The exit status is that of the last run.
#
# Why: on this 2-core machine, about one full run in ten to fifteen ends with the test process
# idle. Every thread is parked, and every task waits on a `Task.sleep` whose timer is no longer
# armed in libdispatch (its timer descriptors show only timers an hour away); a probe test that
# did nothing but sleep never woke either. The cause is not found; the notes of issue 21 hold
# what was seen. The watchdog keeps CI from hanging for 90 minutes, and
# it leaves the evidence to find the cause.
set -uo pipefail

log=${SDQ_TEST_LOG:-/tmp/sdq-ci-test.log}
quiet_limit=${SDQ_TEST_STALL_SECONDS:-240}

# Says which tests started and have not ended, and where the process's threads and timers are.
diagnose() {
  local xctest=$1 attempt=$2 report="$log.stall-$attempt"
  echo "== watchdog: no test output for ${quiet_limit} s; the test process ($xctest) is stalled"
  grep -o '◇ Test [^ ]*(' "$log" | sed 's/◇ Test //' | sort -u >"$report.started"
  grep -oE '(✔|✘) Test [^ ]*\(' "$log" | sed -E 's/^(✔|✘) Test //' | sort -u >"$report.ended"
  echo "== watchdog: tests started and not ended:"
  comm -23 "$report.started" "$report.ended" | sed 's/^/     /'
  {
    echo "threads (name, state, kernel wait):"
    for task in /proc/"$xctest"/task/*; do
      echo "  $(cat "$task/comm") $(awk '{print $3}' "$task/stat") $(cat "$task/wchan" 2>/dev/null)"
    done
    echo "timers (timerfd):"
    for fd in /proc/"$xctest"/fd/*; do
      [ "$(readlink "$fd")" = "anon_inode:[timerfd]" ] || continue
      echo "  fd ${fd##*/}: $(grep -E 'clockid|it_value' /proc/"$xctest"/fdinfo/"${fd##*/}" | tr '\n\t' '  ')"
    done
    if command -v gdb >/dev/null; then
      timeout 120 gdb -p "$xctest" -batch -ex 'thread apply all bt 12' 2>&1
    fi
  } >"$report" 2>&1
  echo "== watchdog: thread stacks and timers in $report"
  rm -f "$report.started" "$report.ended"
}

for attempt in 1 2; do
  : >"$log"
  # Line-buffered, so the log holds every line the moment it is written (for the stall report).
  stdbuf -oL -eL swift test "$@" >"$log" 2>&1 &
  tester=$!
  tail -n +1 -f --pid="$tester" "$log" &
  follower=$!
  stalled=0
  last_size=-1
  last_change=$(date +%s)
  while kill -0 "$tester" 2>/dev/null; do
    sleep 5
    size=$(stat -c %s "$log")
    now=$(date +%s)
    if [ "$size" != "$last_size" ]; then
      last_size=$size
      last_change=$now
      continue
    fi
    # Only the test process is watched; a long compile step before it may be quiet.
    xctest=$(pgrep -P "$tester" -f '\.xctest' | head -n 1)
    if [ -n "$xctest" ] && [ $((now - last_change)) -ge "$quiet_limit" ]; then
      stalled=1
      diagnose "$xctest" "$attempt"
      kill -KILL "$xctest" 2>/dev/null
      break
    fi
  done
  wait "$tester"
  status=$?
  wait "$follower" 2>/dev/null
  [ "$stalled" = 1 ] || exit "$status"
  [ "$attempt" = 1 ] && echo "== watchdog: running the whole suite again (a stall, not a failure, is retried once)"
done
echo "== watchdog: the test process stalled twice"
exit 1
