# cprx-luod for a guest script (sourced): luod_start LUOD STATE_DIR LOG
# starts it on $CPRX_LUOD_SOCKET, in its own session with stdio away from
# the caller's (it must outlive the script: across a kexec it holds the
# sessions at the jump), and waits up to 10 s for its socket.
luod_start() {
	local luod=$1 state=$2 log=$3
	setsid "$luod" --state-dir "$state" --socket "$CPRX_LUOD_SOCKET" \
		</dev/null >>"$log" 2>&1 &
	for _ in $(seq 100); do [ -S "$CPRX_LUOD_SOCKET" ] && return 0; sleep 0.1; done
	echo "cprx-luod did not come up: $(tail -n 3 "$log")"
	return 1
}
