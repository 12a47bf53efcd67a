# The checks kexec-guest.sh prints in each stage, in order (sourced by
# the host halves that run it: kexec.sh, tests/vm/systemd-kexec.sh).
guard_kexec_s1=(lsm-bpf status-path unit-load-canary status-enforcing eperm
	allowed-runs verdict-deny kept-load-canary kept-status-enforcing
	kept-verdict-deny dmesg)
guard_kexec_s2=(lsm-bpf status-path kexec-happened no-status-file no-pins
	status-not-loaded verdict-no-guard kept-status-stale kept-verdict-no-guard
	not-refused-before-load exec-not-refused-before-load unit-load-canary
	status-enforcing eperm allowed-runs verdict-deny detached dmesg)
