#!/usr/bin/env bash
# guests_acpi_qemu.sh — runs the platform test guests of tests/guests/ (acpi.bin, powerdown.bin,
# cpuid.bin, echo.bin, panic.bin, idle.bin, memtouch.bin) under QEMU TCG, where SeaBIOS builds real ACPI
# tables and QEMU's PIIX4 / ICH9 power management, pvpanic and QMP are the reference the
# vmm-anchor must match. QEMU boots the very .bin files vmm-anchor loads flat (multiboot
# a.out-kludge header). Checks each guest's COM1 output, its exit status and, for the guests a
# user drives from outside, the QMP side: the POWERDOWN / SHUTDOWN / GUEST_PANICKED events,
# query-status, the guest memory a panicked VM leaves (pmemsave).
# Run by ctest (label qemu) with VMM_BUILD_DIR set; needs python3 for the QMP client.
#
# Exit status: 0 all passed, 1 some check failed, 77 skipped (no QEMU, python3, or guests).
set -uo pipefail

# skip, pass, fail, expect (and a run() this script replaces with its own, below).
. "$(dirname "$0")/lib/qemu_guest.sh"

command -v "$QEMU" >/dev/null 2>&1 || skip "$QEMU not found (apt-get install qemu-system-x86)"
for tool in timeout od grep dd getconf; do
  command -v $tool >/dev/null 2>&1 || skip "$tool not found"
done
# The system python3 first: a version-manager shim in PATH can take seconds to start.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
[[ -n $PYTHON ]] || skip "python3 not found (the QMP client)"
build=${VMM_BUILD_DIR:-}
[[ -n $build ]] || { echo "$PROG: VMM_BUILD_DIR is not set (run through ctest)"; exit 1; }
guests=$build/tests/guests
for g in acpi powerdown cpuid echo panic idle memtouch; do
  [[ -f $guests/$g.bin ]] || skip "$guests/$g.bin missing: build the test_guests target (needs nasm, gcc -m32)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/guests_acpi_qemu.XXXXXX")
qemu_pids=()
cleanup() {
  local p
  for p in "${qemu_pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
passes=0
vexit() { echo $((($1 << 1) | 1)); }  # the exit status of debug-exit value $1

qemu_common=(-accel tcg -display none -no-reboot -monitor none -nodefaults
             -device isa-debug-exit,iobase=0xf4,iosize=0x04)

# run <label> <machine> <image> <qemu args...> (not the library's: the machine is explicit and
# COM1 input can come from a file): boots without QMP; leaves the COM1 output in
# $got, the exit status in $status, QEMU's stderr in $tmp/<label>.log. stdin is $tmp/<label>.in
# when that exists (the guest's COM1 input with -serial stdio).
run() {
  local label=$1 machine=$2 image=$3
  shift 3
  local out=$tmp/$label.out in=/dev/null serial=(-serial "file:$tmp/$label.out")
  [[ -f $tmp/$label.in ]] && { in=$tmp/$label.in; serial=(-serial stdio); }
  : >"$out"
  local start=$(date +%s%N)
  if [[ $in == /dev/null ]]; then
    timeout 60 "$QEMU" -M "$machine" "${qemu_common[@]}" "${serial[@]}" -m 64 -kernel "$image" "$@" \
      <"$in" >"$tmp/$label.log" 2>&1
  else
    timeout 60 "$QEMU" -M "$machine" "${qemu_common[@]}" "${serial[@]}" -m 64 -kernel "$image" "$@" \
      <"$in" >"$out" 2>"$tmp/$label.log"
  fi
  status=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  got=$(tr -d '\0' <"$out"; echo .)  # echo.bin's output holds NULs (compared with cmp)
  got=${got%.}
  [[ $status == 124 ]] && echo "  $label: timed out after 60 s"
}

# A QMP client (QEMU docs/interop/qmp-spec): qmp.py <socket> <serial file> <step>...; prints one
# transcript line per step, exits 1 after "qmp: FAIL ..." when a step fails or times out (60 s).
#   wait-serial:TEXT   the COM1 output contains TEXT (backslash escapes as in Python)
#   cmd:NAME[:JSON]    runs a command: "return NAME <json>" | "error NAME <class>"
#   event:NAME         the next NAME event, also one that came earlier: "event NAME <data>"
#   status:WANT        query-status says WANT: "status <status>"
#   sleep:SECONDS      keeps reading events meanwhile
#   closed             QEMU closed the connection (it exited): "closed"
cat >"$tmp/qmp.py" <<'PY'
import json, select, socket, sys, time

TIMEOUT = 60.0

def die(msg):
    print("qmp: FAIL " + msg)
    sys.exit(1)

sock_path, serial_path, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
deadline = time.monotonic() + 30
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock_path)
        break
    except OSError:
        s.close()
        if time.monotonic() > deadline:
            die("cannot connect to " + sock_path)
        time.sleep(0.05)

buf = b""
events = []  # (name, data) not yet taken by an event: step, in arrival order
closed = False

def read_msg(timeout):
    """The next message (events are queued), or None on timeout or once QEMU closed."""
    global buf, closed
    end = time.monotonic() + timeout
    while b"\n" not in buf:
        left = end - time.monotonic()
        if closed or left <= 0 or not select.select([s], [], [], left)[0]:
            return None
        try:
            chunk = s.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            closed = True
            return None
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    msg = json.loads(line)
    if "event" in msg:
        events.append((msg["event"], msg.get("data")))
    return msg

def command(name, args=None):
    req = {"execute": name}
    if args is not None:
        req["arguments"] = args
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
    except OSError:
        return None
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end and not closed:
        msg = read_msg(end - time.monotonic())
        if msg and ("return" in msg or "error" in msg):
            return msg
    if closed:
        return None
    die("no reply to " + name)

greeting = read_msg(TIMEOUT)
if not greeting or "QMP" not in greeting:
    die("no QMP greeting")
command("qmp_capabilities")

for step in steps:
    kind, _, arg = step.partition(":")
    if kind == "wait-serial":
        want = arg.encode().decode("unicode_escape").encode("latin-1")
        end = time.monotonic() + TIMEOUT
        while True:
            try:
                with open(serial_path, "rb") as f:
                    if want in f.read():
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                die("the serial output never contained %r" % want)
            if read_msg(0.05) is None and closed:
                time.sleep(0.05)
        print("serial %r" % want.decode("latin-1"))
    elif kind == "cmd":
        name, _, js = arg.partition(":")
        reply = command(name, json.loads(js) if js else None)
        if reply is None:
            print("closed during " + name)
        elif "error" in reply:
            print("error %s %s" % (name, reply["error"].get("class")))
        else:
            print("return %s %s" % (name, json.dumps(reply["return"], sort_keys=True)))
    elif kind == "event":
        end = time.monotonic() + TIMEOUT
        while True:
            hit = next((i for i, e in enumerate(events) if e[0] == arg), None)
            if hit is not None:
                name, data = events.pop(hit)
                print("event %s %s" % (name, json.dumps(data, sort_keys=True)))
                break
            if closed or time.monotonic() > end:
                die("no %s event (got %s)" % (arg, [e[0] for e in events]))
            read_msg(end - time.monotonic())
    elif kind == "status":
        reply = command("query-status")
        got = reply.get("return", {}).get("status") if reply else None
        print("status %s" % got)
        if got != arg:
            die("status %s, want %s" % (got, arg))
    elif kind == "sleep":
        end = time.monotonic() + float(arg)
        while time.monotonic() < end and not closed:
            read_msg(end - time.monotonic())
    elif kind == "closed":
        end = time.monotonic() + TIMEOUT
        while not closed and time.monotonic() < end:
            read_msg(end - time.monotonic())
        if not closed:
            die("QEMU did not close the QMP connection")
        print("closed")
    else:
        die("unknown step " + step)
PY

# start <label> <machine> <image> <qemu args...>: starts QEMU stopped (-S, so no event can come
# before the client is there) in the background with a QMP socket; $qpid is QEMU's pid.
start() {
  local label=$1 machine=$2 image=$3
  shift 3
  : >"$tmp/$label.out"
  timeout 90 "$QEMU" -S -M "$machine" "${qemu_common[@]}" -serial "file:$tmp/$label.out" -m 64 \
    -qmp "unix:$tmp/$label.qmp,server=on,wait=off" -pidfile "$tmp/$label.pid" -kernel "$image" "$@" \
    </dev/null >"$tmp/$label.log" 2>&1 &
  qpid=$!
  qemu_pids+=("$qpid")
  start_ns=$(date +%s%N)
}

# qmp <label> <steps...>: appends the transcript to $tmp/<label>.qmp.txt; returns the client's status.
qmp() {
  local label=$1
  shift
  timeout 120 "$PYTHON" "$tmp/qmp.py" "$tmp/$label.qmp" "$tmp/$label.out" "$@" >>"$tmp/$label.qmp.txt" 2>&1
}

# finish <label>: waits for QEMU; $status, $got, $ms, $transcript as run() leaves them.
finish() {
  local label=$1
  wait "$qpid"
  status=$?
  ms=$((($(date +%s%N) - start_ns) / 1000000))
  got=$(cat "$tmp/$label.out"; echo .)
  got=${got%.}
  transcript=$(cat "$tmp/$label.qmp.txt" 2>/dev/null)
}

# expect_qmp <label> <status> <output regex> <transcript regex>
expect_qmp() {
  local label=$1 want_status=$2 want=$3 want_qmp=$4
  if [[ $status == "$want_status" && $got =~ ^${want}$ && $transcript =~ ^${want_qmp}$ ]]; then
    pass "$label (status $status, ${ms} ms)"
  else
    fail "$label: status $status (want $want_status), ${ms} ms"
    echo "  want output (regex): $(printf '%q' "$want")"
    echo "  got output:          $(printf '%q' "$got")"
    echo "  want QMP (regex):"; printf '%s\n' "$want_qmp" | sed 's/^/    /'
    echo "  got QMP:"; printf '%s\n' "$transcript" | sed 's/^/    /'
    sed 's/^/  qemu: /' "$tmp/$label.log"
  fi
}

# ---------------------------------------------------------------------------------------------
# acpi.bin: SeaBIOS's tables. The exit value is 0x60 + the enabled LAPICs of the MADT, so it
# must follow -smp. pc has no MCFG (no ECAM): the guest must name that step.
hex='[0-9a-f]+'
oem='oem "[^"]{6}"'
acpi_out() {  # <root table count regex> <cpus>
  printf 'acpi: RSDP at %s revision [0-9]+ %s\n' "$hex" "$oem"
  printf 'acpi: [RX]SDT at %s length [0-9]+, %s tables\n' "$hex" "$1"
  printf '(acpi: [A-Z0-9]{4} at %s length [0-9]+ %s\n)+' "$hex" "$oem"
  printf 'acpi: DSDT at %s length [0-9]+ %s\n' "$hex" "$oem"
  [[ -n $2 ]] && printf 'acpi: %s cpus enabled\n' "$2"
  return 0
}
# check_acpi_tables <label>: the number of table lines is the root table's count, the three
# tables a PC needs are among them, and the RSDP is where SeaBIOS puts it.
check_acpi_tables() {
  local label=$1 need=$2 n lines rsdp
  n=$(printf '%s' "$got" | sed -n 's/^acpi: [RX]SDT .*, \([0-9]*\) tables$/\1/p')
  lines=$(printf '%s' "$got" | grep -Ec "^acpi: [A-Z0-9]{4} at $hex length [0-9]+ oem ")
  rsdp=$(printf '%s' "$got" | sed -n 's/^acpi: RSDP at \([0-9a-f]*\) .*/\1/p')
  local missing=
  for sig in $need; do printf '%s' "$got" | grep -q "^acpi: $sig at " || missing+=" $sig"; done
  if [[ -n $n && $lines == $((n + 1)) && -z $missing && -n $rsdp ]] &&
     ((0x$rsdp >= 0xe0000 && 0x$rsdp < 0x100000 && 0x$rsdp % 16 == 0)); then
    pass "$label: $n tables + DSDT listed, $need present, RSDP at $rsdp"
  else
    fail "$label: tables listed $lines for $n (+DSDT), missing:${missing:- none}, RSDP ${rsdp:-none}"
  fi
}

for n in 1 3; do
  run acpi-q35-smp$n q35 "$guests/acpi.bin" -smp $n
  expect acpi-q35-smp$n "$(vexit $((0x60 + n)))" "$(acpi_out '[0-9]+' $n)"$'\n'
  check_acpi_tables acpi-q35-smp$n "FACP APIC MCFG"
done
run acpi-pc-nomcfg pc "$guests/acpi.bin" -smp 2
expect acpi-pc-nomcfg "$(vexit 0x38)" "$(acpi_out '[0-9]+' '')"$'\nacpi: FAIL no MCFG \\(exit 38\\)\n'
check_acpi_tables acpi-pc-nomcfg "FACP APIC"

# ---------------------------------------------------------------------------------------------
# powerdown.bin: QMP system_powerdown presses the ACPI power button; the guest sees PWRBTN_STS
# and writes S5 (QEMU's \_S5 SLP_TYPa is 0) to PM1a_CNT, and QEMU shuts down. SeaBIOS leaves the
# chipset in legacy mode (SCI_EN clear), so the guest switches to ACPI mode through SMI_CMD.
powerdown_out() {  # [failure line]
  printf 'powerdown: PM1a_EVT_BLK 600 len 4, PM1a_CNT_BLK 604, SCI 9, S5 SLP_TYPa 0\n'
  printf '(powerdown: ACPI mode enabled\n)?'
  printf 'powerdown: waiting\n'
  if [[ -n ${1:-} ]]; then printf '%s\n' "$1"; else printf 'powerdown: button\n'; fi
}
powerdown_qmp='return cont \{\}
serial .powerdown: waiting\\n.
return system_powerdown \{\}
event POWERDOWN null
serial .powerdown: button\\n.
event SHUTDOWN \{"guest": true, "reason": "guest-shutdown"\}'

for machine in pc q35; do
  label=powerdown-$machine
  start $label $machine "$guests/powerdown.bin"
  qmp $label cmd:cont 'wait-serial:powerdown: waiting\n' cmd:system_powerdown event:POWERDOWN \
    'wait-serial:powerdown: button\n' event:SHUTDOWN closed
  finish $label
  expect_qmp $label 0 "$(powerdown_out)"$'\n' "$powerdown_qmp"$'\nclosed'
done

# -no-shutdown: the VM stops in state "shutdown" instead, until quit.
label=powerdown-no-shutdown
start $label pc "$guests/powerdown.bin" -no-shutdown
qmp $label cmd:cont 'wait-serial:powerdown: waiting\n' cmd:system_powerdown event:POWERDOWN \
  'wait-serial:powerdown: button\n' event:SHUTDOWN sleep:0.5 status:shutdown cmd:quit closed
finish $label
expect_qmp $label 0 "$(powerdown_out)"$'\n' "$powerdown_qmp"$'\nstatus shutdown\nreturn quit \\{\\}\nclosed'

# Nobody presses the button: with the wait patched down to 1 s, the guest names the step.
patch_u32 "$guests/powerdown.bin" VMM-PWR-WAIT-SEC 16 1 "$tmp/powerdown-1s.bin" && {
  run powerdown-no-press pc "$tmp/powerdown-1s.bin"
  expect powerdown-no-press "$(vexit 0x23)" \
    "$(powerdown_out 'powerdown: FAIL no power button press \(exit 23\)')"$'\n'
}

# ---------------------------------------------------------------------------------------------
# cpuid.bin: exit value 0x50 | the hypervisor bit, and the signature only with the bit. QEMU
# 7.2's TCG CPUs set the bit (signature "TCGTCGTCGTCG"); -hypervisor clears it, as
# hide_hypervisor does in vmm-anchor.
cpuid_line='cpuid: hypervisor bit 1, max leaf 4[0-9a-f]{7}, signature "[ -~]{1,12}"'
run cpuid-default pc "$guests/cpuid.bin"
if [[ $got =~ ^cpuid:\ hypervisor\ bit\ ([01]) ]]; then
  bit=${BASH_REMATCH[1]}
  if ((bit)); then want=$cpuid_line$'\n'; else want=$'cpuid: hypervisor bit 0\n'; fi
  expect cpuid-default "$(vexit $((0x50 | bit)))" "$want"
else
  expect cpuid-default "$(vexit 0x50)" $'cpuid: hypervisor bit [01].*\n'
fi
run cpuid-hidden pc "$guests/cpuid.bin" -cpu qemu64,-hypervisor
expect cpuid-hidden "$(vexit 0x50)" $'cpuid: hypervisor bit 0\n'
run cpuid-shown pc "$guests/cpuid.bin" -cpu qemu64,+hypervisor
expect cpuid-shown "$(vexit 0x51)" "$cpuid_line"$'\n'

# ---------------------------------------------------------------------------------------------
# echo.bin: COM1 input through -serial stdio. Every byte value but 'q' comes back unchanged, the
# 'q' too, and nothing after it.
{
  printf 'hello, echo!\r\n'
  bytes=
  for ((i = 0; i < 256; ++i)); do
    ((i == 0x71)) || { printf -v o '\\%03o' $i; bytes+=$o; }
  done
  printf "$bytes"
  printf 'q'
} >"$tmp/echo.want"
{ cat "$tmp/echo.want"; printf 'not echoed'; } >"$tmp/echo.in"
run echo pc "$guests/echo.bin"
if [[ $status == "$(vexit 0x45)" ]] && cmp -s "$tmp/echo.out" <(printf 'echo: ready\n'; cat "$tmp/echo.want"); then
  pass "echo: $(stat -c %s "$tmp/echo.want") bytes echoed up to the 'q' (status $status, ${ms} ms)"
else
  fail "echo: status $status (want $(vexit 0x45)), output:"
  od -An -c "$tmp/echo.out" | head -20 | sed 's/^/    /'
  sed 's/^/  qemu: /' "$tmp/echo.log"
fi

# ---------------------------------------------------------------------------------------------
# memtouch.bin: every 4 KiB page of N MiB from 4 MiB stored to and read back (the first-touch
# benchmark's guest, bench/vm_bench.py memtouch); N = 0 is the image as built; a size past the
# RAM multiboot reports is refused.
run memtouch-0 q35 "$guests/memtouch.bin"
expect memtouch-0 "$(vexit 0x4d)" $'memtouch: 0 MiB ok\n'
patch_u32 "$guests/memtouch.bin" VMM-MEMTOUCH:xxx 16 56 "$tmp/memtouch-56.bin" &&
  { run memtouch-56 q35 "$tmp/memtouch-56.bin"; expect memtouch-56 "$(vexit 0x4d)" $'memtouch: 56 MiB ok\n'; }
patch_u32 "$guests/memtouch.bin" VMM-MEMTOUCH:xxx 16 61 "$tmp/memtouch-61.bin" &&
  { run memtouch-61 q35 "$tmp/memtouch-61.bin"
    expect memtouch-61 "$(vexit 0x4b)" $'memtouch: FAIL 61 MiB is past the RAM the multiboot info reports\n'; }

# panic.bin: pvpanic. With -action panic=pause the VM stops in "guest-panicked" and its memory
# holds the guest's pattern; with panic=none it runs on and the guest says so; without the
# device the guest names the missing port.
panic_out=$'panic: pvpanic caps [0-9a-f]+\npanic: pattern at 200000, reporting\n'
pattern='VMM-PANIC-PATTERN-VMM-PANIC-PATTERN-VMM-PANIC-PATTERN-VMM-PANIC-'
label=panic-pause
start $label pc "$guests/panic.bin" -device pvpanic -action panic=pause
qmp $label cmd:cont event:GUEST_PANICKED status:guest-panicked \
  "cmd:pmemsave:{\"val\": $((0x200000)), \"size\": 64, \"filename\": \"$tmp/panic.mem\"}" cmd:quit closed
finish $label
expect_qmp $label 0 "$panic_out" 'return cont \{\}
event GUEST_PANICKED \{"action": "pause"\}
status guest-panicked
return pmemsave \{\}
return quit \{\}
closed'
if [[ $(cat "$tmp/panic.mem" 2>/dev/null) == "$pattern" ]]; then
  pass "$label: guest memory at 0x200000 holds the pattern"
else
  fail "$label: memory at 0x200000: $(od -An -c "$tmp/panic.mem" 2>&1 | head -4)"
fi

label=panic-run
start $label pc "$guests/panic.bin" -device pvpanic -action panic=none
qmp $label cmd:cont event:GUEST_PANICKED closed
finish $label
expect_qmp $label "$(vexit 0x59)" "$panic_out"$'panic: still running after pvpanic \\(exit 59\\)\n' \
  'return cont \{\}
event GUEST_PANICKED \{"action": "run"\}
closed'

run panic-nodevice pc "$guests/panic.bin"
expect panic-nodevice "$(vexit 0x58)" $'panic: pvpanic caps ff\npanic: FAIL no pvpanic \\(exit 58\\)\n'

# ---------------------------------------------------------------------------------------------
# idle.bin: started paused (as examples/idle.json asks), silent until cont; then "idle: up" and
# it keeps running in sti; hlt, using almost no CPU; an NMI is handled and it idles on; stop,
# cont and quit work.
label=idle
start $label pc "$guests/idle.bin" -m 16
qmp $label sleep:0.5 status:prelaunch cmd:cont 'wait-serial:idle: up\n'
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$(cat "$tmp/idle.pid")/stat" 2>/dev/null; }
t0=$(cpu_ticks)
sleep 2
t1=$(cpu_ticks)
qmp $label status:running cmd:inject-nmi 'wait-serial:idle: nmi 1\n' cmd:inject-nmi \
  'wait-serial:idle: nmi 2\n' status:running cmd:stop status:paused cmd:cont status:running cmd:quit closed
finish $label
expect_qmp $label 0 $'idle: up\nidle: nmi 1\nidle: nmi 2\n' 'status prelaunch
return cont \{\}
serial .idle: up\\n.
status running
return inject-nmi \{\}
serial .idle: nmi 1\\n.
return inject-nmi \{\}
serial .idle: nmi 2\\n.
status running
return stop \{\}
status paused
return cont \{\}
status running
return quit \{\}
closed'
if [[ -n $t0 && -n $t1 ]] && (((t1 - t0) * 4 < clk * 2)); then
  pass "idle: QEMU used $(((t1 - t0) * 1000 / clk)) ms of CPU in 2 s of idling"
else
  fail "idle: QEMU used ${t0:-?}..${t1:-?} ticks (CLK_TCK $clk) in 2 s: the guest is not idle"
fi

echo "$PROG: $passes passed, $failures failed"
((failures == 0))
