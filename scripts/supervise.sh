#!/usr/bin/env bash
# Keeps one `make run` process alive: runs NAME's command, and when it dies starts it again after
# a back-off (1 s, doubling to 30 s; back to 1 s once it has lived a minute), saying so on stderr.
# SIGTERM or SIGINT (honcho stopping, Ctrl-C) stops the command and this loop, so Ctrl-C still
# stops everything. Usage: scripts/supervise.sh NAME COMMAND [ARG...]
set -uo pipefail
name="$1"
shift
delay=1
stopping=0
child=0

stop() {
  stopping=1
  if ((child > 0)); then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT

while :; do
  started=$SECONDS
  "$@" &
  child=$!
  wait "$child"
  status=$?
  # `wait` returns early when a trap runs; wait again until the command has really ended.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
  done
  child=0
  if ((stopping)); then exit 0; fi
  if ((SECONDS - started >= 60)); then delay=1; fi
  echo "supervise: $name exited with status $status; restarting it in ${delay}s" >&2
  sleep "$delay" &
  wait $! 2>/dev/null
  if ((stopping)); then exit 0; fi
  delay=$((delay * 2 > 30 ? 30 : delay * 2))
  echo "supervise: restarting $name" >&2
done
