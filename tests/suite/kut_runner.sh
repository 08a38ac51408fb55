#!/usr/bin/env bash
# A stand-in for kvm-unit-tests' runner (scripts/runtime.bash, arch-run.bash,
# vmm.bash), restated here from how it behaves for a QEMU= binary:
#
#   probes     --help must mention QEMU; -h's first line is the version;
#              $KUT_PROBES (default: -device '?' listing isa-debug-exit)
#   premature  the test's command line with -kernel _NO_FILE_4Uhere_ must
#              fail to load that kernel, else the test is SKIP
#              (KUT_PREMATURE=0: no such probe, to see the run itself)
#   run        under `timeout -k 1s --foreground`, stdin from /dev/null,
#              stderr kept apart
#   status     QEMU 0: a signal named on stderr ("terminating on signal N")
#              makes 128 + N, else 1 (no debug exit is an error); QEMU 1:
#              success (0) unless stderr holds a line without "warning"
#              (case-insensitive); with KUT_STATUS=line a 1 becomes the
#              first "EXIT: STATUS=N" line of the console (1 -> 0)
#   verdict    0 PASS, 77 SKIP, 124 FAIL (timeout), > 127 FAIL (signal),
#              anything else FAIL
#
#   tree       with KUT_ARCH, it runs in a directory whose config.mak says
#              ARCH=$KUT_ARCH, as the runner runs in a build tree
#
#   kut_runner.sh QEMU TIMEOUT OUTDIR QEMU-ARGS...
# writes OUTDIR/{version,stdout,stderr,status,ret,verdict,time}; status is
# QEMU's own (the command's), ret the runner's; exits 2 when a probe fails.
QEMU=$1 TIMEOUT=$2 OUT=$3
shift 3
# the runner runs in a build directory whose config.mak names the arch
if [ -n "${KUT_ARCH:-}" ]; then
	mkdir -p "$OUT/tree" && printf 'ARCH=%s\n' "$KUT_ARCH" >"$OUT/tree/config.mak"
	cd "$OUT/tree" || exit 2
fi
if ! "$QEMU" --help 2>/dev/null | grep -q QEMU; then
	echo "A QEMU binary was not found." >&2
	exit 2
fi
"$QEMU" -h | head -1 >"$OUT/version"
probes=${KUT_PROBES:-"-device ?:isa-debug-exit"}
IFS=';' read -r -a checks <<<"$probes"
for check in "${checks[@]}"; do
	args=${check%%:*} want=${check#*:}
	# shellcheck disable=SC2086
	if ! "$QEMU" $args 2>&1 | grep -qF -- "$want"; then
		echo "probe '$args' did not list $want" >&2
		exit 2
	fi
done

nofile=()
for a in "$@"; do
	if [ "${prev:-}" = "-kernel" ]; then nofile+=(_NO_FILE_4Uhere_); else nofile+=("$a"); fi
	prev=$a
done
log=$("$QEMU" "${nofile[@]}" </dev/null 2>&1)
if [ "${KUT_PREMATURE:-1}" = 1 ] && ! grep -q -e "[Cc]ould not \(load\|open\) kernel" -e "error loading" -e "failed to load" <<<"$log"; then
	echo 77 >"$OUT/ret"
	echo "SKIP (premature: $(tail -1 <<<"$log"))" >"$OUT/verdict"
	exit 0
fi

start=$EPOCHREALTIME
timeout -k 1s --foreground "$TIMEOUT" "$QEMU" "$@" </dev/null >"$OUT/stdout" 2>"$OUT/stderr"
status=$?
echo "$start $EPOCHREALTIME" >"$OUT/time"
echo $status >"$OUT/status"

errors=$(cat "$OUT/stderr")
ret=$status
if [ $ret -eq 0 ]; then
	sig=$(grep -o 'terminating on signal [0-9]*' <<<"$errors" | head -1 | grep -o '[0-9]*$')
	if [ "$sig" ]; then ret=$((sig + 128)); else ret=1; fi
elif [ $ret -eq 1 ]; then
	if [ -z "$errors" ] || ! grep -qvi warning <<<"$errors"; then ret=0; fi
fi
if [ "${KUT_STATUS:-qemu}" = line ] && [ $ret -eq 1 ]; then
	line=$(grep -a '^EXIT: ' "$OUT/stdout" | head -1 | sed -n 's/.*STATUS=\([0-9][0-9]*\).*/\1/p')
	if [ "$line" ]; then
		if [ "$line" -eq 1 ]; then ret=0; else ret=$line; fi
	fi
fi
echo $ret >"$OUT/ret"
if [ $ret -eq 0 ]; then verdict=PASS
elif [ $ret -eq 77 ]; then verdict=SKIP
elif [ $ret -eq 124 ]; then verdict="FAIL (timeout)"
elif [ $ret -gt 127 ]; then verdict="FAIL (signal $((ret - 128)))"
else verdict=FAIL
fi
echo "$verdict" >"$OUT/verdict"
