# zdm-run's built-in supervisor for hosts without systemd (POSIX sh, run over ssh).
#
# The `service` module prepends the settings as shell variables:
#   ACTION    status | start | stop | restart | reload
#   NAME      service name (for messages)
#   COMMAND   shell command line that runs the service in the foreground
#   PIDFILE   where the pid of the running service is kept
#   LOGFILE   stdout and stderr of the service (appended)
#   WORKDIR   working directory of the service
#   DRAIN     seconds to wait after SIGTERM before SIGKILL
#   START_TIMEOUT  seconds to wait for a start to be confirmed
#   SETTLE    seconds a process must stay alive to count as started (when no port is given)
#   WAIT_HOST, WAIT_PORT  if WAIT_PORT is set, a start is confirmed when it accepts TCP
#   ENV_LINES lines "export K=V" applied to the service's environment
#
# Output: one line "state=<running|stopped> pid=<pid> changed=<yes|no> note=<text>", then,
# on failure, the tail of the log. Exit code 0 on success, 3 when a start or stop failed.

log_tail() {
  [ -f "$LOGFILE" ] && { echo "--- last lines of $LOGFILE ---"; tail -n 20 "$LOGFILE"; }
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  p=$(cat "$PIDFILE" 2>/dev/null)
  case $p in '' | *[!0-9]*) return 1 ;; esac
  # A zombie or a recycled pid of another program does not count as our service.
  kill -0 "$p" 2>/dev/null || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && return 1
  [ -r "/proc/$p/environ" ] && ! tr '\0' '\n' < "/proc/$p/environ" | grep -qx "ZDMRUN_SUPERVISED=$NAME" && return 1
  echo "$p"
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$WAIT_HOST/$WAIT_PORT" 2>/dev/null
}

do_stop() {
  p=$(running_pid) || { rm -f "$PIDFILE"; return 1; }
  kill -TERM "$p" 2>/dev/null
  waited=0
  while kill -0 "$p" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null; do
    if [ "$waited" -ge "$((DRAIN * 10))" ]; then
      kill -KILL "$p" 2>/dev/null
      STOP_NOTE="killed after the ${DRAIN}s drain timeout"
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PIDFILE"
  return 0
}

do_start() {
  mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOGFILE")" || exit 3
  cd "$WORKDIR" || { echo "state=stopped pid= changed=no note=cannot enter $WORKDIR"; exit 3; }
  echo "--- $(date -u '+%Y-%m-%dT%H:%M:%SZ') zdm-run starts $NAME: $COMMAND" >> "$LOGFILE"
  # setsid: its own session, so the ssh channel, our timeout's process group and a
  # hangup leave it alone. The marker in its environment identifies it later; it is not
  # ZDM_-prefixed because zdm-proxy refuses unknown ZDM_* variables.
  eval "$ENV_LINES"
  ZDMRUN_SUPERVISED=$NAME setsid sh -c "exec $COMMAND" >> "$LOGFILE" 2>&1 < /dev/null &
  p=$!
  echo "$p" > "$PIDFILE.tmp" && mv -f "$PIDFILE.tmp" "$PIDFILE"
  started=$(date +%s)
  alive_since=$started
  while :; do
    if ! kill -0 "$p" 2>/dev/null || grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null; then
      rm -f "$PIDFILE"
      echo "state=stopped pid= changed=yes note=$NAME exited right after starting"
      log_tail
      exit 3
    fi
    now=$(date +%s)
    if [ -n "$WAIT_PORT" ]; then
      port_open && break
    elif [ "$((now - alive_since))" -ge "$SETTLE" ]; then
      break
    fi
    if [ "$((now - started))" -ge "$START_TIMEOUT" ]; then
      kill -TERM "$p" 2>/dev/null
      rm -f "$PIDFILE"
      echo "state=stopped pid= changed=yes note=$NAME did not listen on $WAIT_HOST:$WAIT_PORT within ${START_TIMEOUT}s and was stopped"
      log_tail
      exit 3
    fi
    sleep 0.2
  done
  START_PID=$p
}

STOP_NOTE=
case $ACTION in
status)
  if p=$(running_pid); then echo "state=running pid=$p changed=no note="; else echo "state=stopped pid= changed=no note="; fi
  ;;
start)
  if p=$(running_pid); then
    echo "state=running pid=$p changed=no note=already running"
  else
    do_start
    echo "state=running pid=$START_PID changed=yes note=started"
  fi
  ;;
stop)
  if do_stop; then echo "state=stopped pid= changed=yes note=stopped $STOP_NOTE"; else echo "state=stopped pid= changed=no note=already stopped"; fi
  ;;
restart)
  do_stop
  do_start
  echo "state=running pid=$START_PID changed=yes note=restarted $STOP_NOTE"
  ;;
reload)
  if p=$(running_pid); then
    kill -HUP "$p" && echo "state=running pid=$p changed=yes note=sent SIGHUP"
  else
    do_start
    echo "state=running pid=$START_PID changed=yes note=started"
  fi
  ;;
*)
  echo "unknown action $ACTION" >&2
  exit 2
  ;;
esac
