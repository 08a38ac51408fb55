#!/usr/bin/env bash
# A stand-in for kvm-unit-tests' runner, as its QEMU= user sees a binary:
# probe it (--help must say QEMU, -h's first line is the version, -device '?'
# must list the test device), then run the test's command line under
# `timeout -k 1s --foreground`, stdin from /dev/null.
#
#   kut_runner.sh QEMU TIMEOUT OUTDIR QEMU-ARGS...
# writes OUTDIR/{version,stdout,stderr,status,time}; exits 2 when a probe fails.
QEMU=$1 TIMEOUT=$2 OUT=$3
shift 3
if ! "$QEMU" --help 2>/dev/null | grep -q QEMU; then
	echo "A QEMU binary was not found." >&2
	exit 2
fi
"$QEMU" -h | head -1 >"$OUT/version"
if ! "$QEMU" -device '?' 2>&1 | grep -qF '"isa-debug-exit"'; then
	echo "No test device support found" >&2
	exit 2
fi
start=$EPOCHREALTIME
timeout -k 1s --foreground "$TIMEOUT" "$QEMU" "$@" </dev/null >"$OUT/stdout" 2>"$OUT/stderr"
status=$?
echo "$start $EPOCHREALTIME" >"$OUT/time"
echo $status >"$OUT/status"
