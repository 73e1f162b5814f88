#!/usr/bin/env bash
# guests_virtio_qemu.sh — runs the PCI and virtio driver guests of tests/guests/ (pci_probe.bin,
# virtio_blk.bin, virtio_net.bin, virtio_console.bin, virtio_port.bin) under QEMU TCG against QEMU's own
# modern-only virtio-pci devices, so the drivers are known to be right before vmm-anchor's
# PCI bus and virtio devices run them. Checks each guest's COM1 output, its debug-exit status
# and its side effects: the disk image after virtio-blk, the frames in a filter-dump pcap after
# virtio-net, the chardev file after virtio-console. Every virtio guest also runs once with its
# BARs cleared first (the image flag VMM-PCI-CLEARBAR), so the BAR-assignment path that
# vmm-anchor needs (no firmware assigns BARs there) runs against QEMU too.
# Run by ctest (label qemu) with VMM_BUILD_DIR set; exit 77 = skipped (no QEMU, or the guests
# were not built).
#
# Exit status: 0 all passed, 1 some check failed, 77 skipped.
set -uo pipefail

. "$(dirname "$0")/lib/qemu_guest.sh"
qg_init guests_virtio_qemu od awk
guests=$build/tests/guests
for g in pci_probe virtio_blk virtio_net virtio_console virtio_port; do qg_need "$guests/$g.bin"; done


hex() { od -An -v -tx1 "$@" | tr -d ' \n'; }

# has_hex <hex haystack> <hex needle>: needle occurs at a byte boundary.
has_hex() {
  awk -v h="$1" -v n="$2" 'BEGIN {
    for (s = h; (i = index(s, n)) > 0; s = substr(s, i + 1)) { off += i; if (off % 2 == 1) exit 0 }
    exit 1 }'
}

# The functions QEMU itself has on bus 0, as "pci bb:ss.f vvvv:dddd" lines (HMP info pci).
qemu_pci_list() {
  printf 'info pci\nquit\n' | timeout 30 "$QEMU" -accel tcg -S -display none -nodefaults -monitor stdio \
    -m 64 "$@" 2>/dev/null | tr -d '\r' | awk '
    /Bus +[0-9]+, device +[0-9]+, function [0-9]+:/ {
      gsub(/[,:]/, " "); bus = $2; dev = $4; fn = $6; next }
    / PCI device [0-9a-f]+:[0-9a-f]+/ && bus == 0 {
      printf "pci %02x:%02x.%x %s\n", bus, dev, fn, $NF }'
}

# ---------------------------------------------------------------------------------------------
# pci_probe.bin: the guest's bus 0 listing must be exactly QEMU's, and the exit value its count.
blk_img=$tmp/probe-disk.img
head -c 65536 /dev/zero >"$blk_img"
probe_q35=(-M q35
  -drive "file=$blk_img,if=none,id=d0,format=raw"
  -device virtio-blk-pci,drive=d0,disable-legacy=on,addr=0x5
  -device virtio-net-pci,disable-legacy=on,romfile=,addr=0x6.0x0,multifunction=on
  -device virtio-serial-pci,disable-legacy=on,addr=0x6.0x3)
probe_pc=(-M pc)
for config in q35 pc; do
  declare -n args=probe_$config
  label=pci_probe-$config
  run "$label" "$guests/pci_probe.bin" "${args[@]}"
  want_list=$(qemu_pci_list "${args[@]}")
  got_list=$(printf '%s' "$got" | awk '/^pci / { print $1, $2, $3 }')
  count=$(printf '%s\n' "$want_list" | grep -c '^pci ')
  summary=$(printf '%s' "$got" | tail -n 1)
  if [[ -z $want_list ]]; then
    fail "$label: could not read QEMU's info pci"
  elif [[ $got_list == "$want_list" && $status == $(((count << 1) | 1)) &&
          $summary == "pci_probe: $count devices" ]]; then
    pass "$label: $count functions match QEMU's info pci (status $status, ${ms} ms)"
  else
    fail "$label: status $status (want $(((count << 1) | 1)))"
    echo "  want (QEMU info pci):"; printf '%s\n' "$want_list" | sed 's/^/    /'
    echo "  got output:"; printf '%s' "$got" | sed 's/^/    /'
  fi
  unset -n args
  declare "count_$config=$count"
done
# Class codes of the virtio functions (PCI code and ID spec: storage/SCSI, network/Ethernet,
# simple communication/other).
run pci_probe-classes "$guests/pci_probe.bin" "${probe_q35[@]}"
expect pci_probe-classes $(((count_q35 << 1) | 1)) \
  "(pci [^
]*
)*pci 00:05\.0 1af4:1042 class 010000
pci 00:06\.0 1af4:1041 class 020000
pci 00:06\.3 1af4:1043 class 078000
(pci [^
]*
)*pci_probe: $count_q35 devices
"

# ---------------------------------------------------------------------------------------------
# virtio_blk.bin: a 64 KiB raw image; sector 0 starts with a marker the guest prints, sector 1
# holds 0xee until the guest writes (i * 7 + 3) & 0xff, the rest holds a pattern that must stay.
make_disk() {
  local img=$1
  {
    printf 'VMM-BLK-SECTOR-0'
    head -c 496 /dev/zero | tr '\0' 'A'
    head -c 512 /dev/zero | tr '\0' '\356'
    for ((s = 2; s < 128; ++s)); do printf 'sector %03d......' $s; head -c 496 /dev/zero | tr '\0' 'z'; done
  } >"$img"
}

# The disk after the run: sector 1 is the guest's pattern, every other byte as before.
check_disk() {
  local label=$1 img=$2 orig=$3
  local bad
  bad=$(od -An -v -tu1 -j 512 -N 512 "$img" | tr -s ' ' '\n' |
        awk 'NF { if ($1 != (n * 7 + 3) % 256) bad++; n++ } END { print (n == 512 ? bad + 0 : "short") }')
  if [[ $bad != 0 ]]; then
    fail "$label: sector 1 in the image does not hold the guest's pattern ($bad bytes differ)"
  elif ! cmp -s <(head -c 512 "$img") <(head -c 512 "$orig") ||
       ! cmp -s <(tail -c +1025 "$img") <(tail -c +1025 "$orig") ||
       [[ $(stat -c %s "$img") != $(stat -c %s "$orig") ]]; then
    fail "$label: the image changed outside sector 1"
  else
    pass "$label: image has the sector-1 pattern, nothing else changed"
  fi
}

addr='[0-9a-f]+'
virtio_line() {  # <name> <slot> <device id> [suffix regex]
  printf '%s: 00:%s\\.0 1af4:%s, common@%s notify@%s\\*[0-9]+ isr@%s device@%s%s\n' \
    "$1" "$2" "$3" "$addr" "$addr" "$addr" "$addr" "${4:-}"
}
blk_out() {  # [suffix of the first line]
  virtio_line virtio-blk 05 1042 "${1:-}"
  printf '%s\n' \
    'virtio-blk: features [0-9a-f]+:[0-9a-f]+, capacity 128 sectors' \
    'virtio-blk: sector 0: 56 4d 4d 2d 42 4c 4b 2d 53 45 43 54 4f 52 2d 30' \
    'virtio-blk: wrote sector 1' \
    'virtio-blk: flush ok' \
    'virtio-blk: sector 1 read back ok' \
    'virtio-blk: read past end: IOERR' \
    'virtio-blk: ok'
}
guest_assigned=', BARs assigned by the guest'

blk_dev() { echo "-drive file=$1,if=none,id=d0,format=raw${2:-} -device virtio-blk-pci,drive=d0,disable-legacy=on,addr=0x5"; }

make_disk "$tmp/orig.img"
cp "$tmp/orig.img" "$tmp/blk.img"
run virtio_blk "$guests/virtio_blk.bin" $(blk_dev "$tmp/blk.img")
expect virtio_blk $(((0x42 << 1) | 1)) "$(blk_out)"$'\n'
check_disk virtio_blk "$tmp/blk.img" "$tmp/orig.img"

# The same with every BAR cleared first: the guest assigns them in 0xc0000000..0xdfffffff.
patch_flag "$guests/virtio_blk.bin" VMM-PCI-CLEARBAR "$tmp/virtio_blk-clearbar.bin"
cp "$tmp/orig.img" "$tmp/blk2.img"
run virtio_blk-clearbar "$tmp/virtio_blk-clearbar.bin" $(blk_dev "$tmp/blk2.img")
expect virtio_blk-clearbar $(((0x42 << 1) | 1)) "$(blk_out "$guest_assigned")"$'\n'
if [[ $got =~ common@([0-9a-f]+)\ notify@([0-9a-f]+) ]] &&
   (( 0x${BASH_REMATCH[1]} >= 0xc0000000 && 0x${BASH_REMATCH[1]} < 0xe0000000 &&
      0x${BASH_REMATCH[2]} >= 0xc0000000 && 0x${BASH_REMATCH[2]} < 0xe0000000 )); then
  pass "virtio_blk-clearbar: structures at guest-assigned addresses in 0xc0000000..0xdfffffff"
else
  fail "virtio_blk-clearbar: structures not inside the guest's BAR window"
fi
check_disk virtio_blk-clearbar "$tmp/blk2.img" "$tmp/orig.img"

# The repeated reads bench/vm_bench.py (blkio) times: blk_options.repeat_reads (the u32 after
# hold_after_flush) = 3, three more 4 KiB reads before "ok"; the disk as after a plain run.
patch_u32 "$guests/virtio_blk.bin" VMM-BLK-HOLD:xxx 20 3 "$tmp/virtio_blk-reads.bin"
cp "$tmp/orig.img" "$tmp/blk3.img"
run virtio_blk-reads "$tmp/virtio_blk-reads.bin" $(blk_dev "$tmp/blk3.img")
expect virtio_blk-reads $(((0x42 << 1) | 1)) "$(blk_out | sed '$d')"$'\nvirtio-blk: 3 reads ok\nvirtio-blk: ok\n'
check_disk virtio_blk-reads "$tmp/blk3.img" "$tmp/orig.img"
# And repeat_kicks (the u32 after it) = 5: notifies with nothing in the queue change nothing.
patch_u32 "$guests/virtio_blk.bin" VMM-BLK-HOLD:xxx 24 5 "$tmp/virtio_blk-kicks.bin"
cp "$tmp/orig.img" "$tmp/blk4.img"
run virtio_blk-kicks "$tmp/virtio_blk-kicks.bin" $(blk_dev "$tmp/blk4.img")
expect virtio_blk-kicks $(((0x42 << 1) | 1)) "$(blk_out | sed '$d')"$'\nvirtio-blk: 5 kicks\nvirtio-blk: ok\n'
check_disk virtio_blk-kicks "$tmp/blk4.img" "$tmp/orig.img"

# No device: the failing step is named, in the output and in the exit value (0x10).
run virtio_blk-nodevice "$guests/virtio_blk.bin"
expect virtio_blk-nodevice $(((0x10 << 1) | 1)) $'virtio-blk: FAIL probe \\(exit 10\\)\n'

# A read-only disk: the write completes with IOERR and the guest names that step (0x22).
cp "$tmp/orig.img" "$tmp/ro.img"
run virtio_blk-readonly "$guests/virtio_blk.bin" $(blk_dev "$tmp/ro.img" ,readonly=on)
expect virtio_blk-readonly $(((0x22 << 1) | 1)) \
  "$(blk_out | head -n 3)"$'\nvirtio-blk: write sector 1: status 1\nvirtio-blk: FAIL write sector 1 \\(exit 22\\)\n'
if cmp -s "$tmp/ro.img" "$tmp/orig.img"; then
  pass "virtio_blk-readonly: image unchanged"
else
  fail "virtio_blk-readonly: the read-only image changed"
fi

# ---------------------------------------------------------------------------------------------
# virtio_net.bin: QEMU's user-mode network (restrict=on: nothing leaves the host); filter-dump
# records the frames in both directions.
mac=525400123456
arp_request="ffffffffffff${mac}08060001080006040001${mac}0a00020f0000000000000a000202"
marker=$(printf 'vmm-virtio-net-tx' | hex)
arp_reply="${mac}52550a00020208060001080006040002"
net_out() {  # <first-line suffix> <rx line or empty>
  virtio_line virtio-net 06 1041 "$1"
  printf '%s\n' 'virtio-net: mac 52:54:00:12:34:56' 'virtio-net: posted 2 rx buffers' \
    'virtio-net: sent 60-byte broadcast ARP frame'
  [[ -n $2 ]] && printf '%s\n' "$2"
  printf '%s\n' 'virtio-net: ok'
}
net_dev() {
  echo "-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56,romfile=,addr=0x6 -object filter-dump,id=f0,netdev=n0,file=$1"
}

run virtio_net "$guests/virtio_net.bin" $(net_dev "$tmp/net.pcap")
expect virtio_net $(((0x4e << 1) | 1)) "$(net_out '' '')"$'\n'
pcap=$(hex "$tmp/net.pcap" 2>/dev/null)
# pcap record header: caplen and len 60 (little-endian), then the frame as the guest built it.
if has_hex "$pcap" "3c0000003c000000${arp_request}${marker}00"; then
  pass "virtio_net: the broadcast ARP frame with the marker is in the pcap"
else
  fail "virtio_net: frame not in the pcap (${#pcap} hex digits: ${pcap:0:200})"
fi

# repeat_tx (the u32 after wait_rx) = 3, what bench/vm_bench.py (netio) times: the frame 3 more
# times, each waited for; the pcap holds all four.
patch_u32 "$guests/virtio_net.bin" VMM-NET-RX-WAIT: 20 3 "$tmp/virtio_net-tx.bin"
run virtio_net-tx "$tmp/virtio_net-tx.bin" $(net_dev "$tmp/net-tx.pcap")
expect virtio_net-tx $(((0x4e << 1) | 1)) "$(net_out '' 'virtio-net: 3 frames sent')"$'\n'
frames=$(hex "$tmp/net-tx.pcap" 2>/dev/null | grep -o "3c0000003c000000${arp_request}${marker}00" | wc -l)
if [[ $frames == 4 ]]; then
  pass "virtio_net-tx: the frame is in the pcap 4 times"
else
  fail "virtio_net-tx: $frames copies of the frame in the pcap, want 4"
fi

# wait_rx (and BARs cleared): the guest also waits for slirp's ARP reply.
patch_flag "$guests/virtio_net.bin" VMM-NET-RX-WAIT: "$tmp/virtio_net-rx.bin" &&
  patch_flag "$tmp/virtio_net-rx.bin" VMM-PCI-CLEARBAR "$tmp/virtio_net-rx.bin"
run virtio_net-rx "$tmp/virtio_net-rx.bin" $(net_dev "$tmp/net-rx.pcap")
expect virtio_net-rx $(((0x4e << 1) | 1)) \
  "$(net_out "$guest_assigned" 'virtio-net: rx [0-9]+ bytes from 52:55:0a:00:02:02 type 0806 arp reply 10\.0\.2\.2')"$'\n'
pcap=$(hex "$tmp/net-rx.pcap" 2>/dev/null)
if has_hex "$pcap" "${arp_request}${marker}" && has_hex "$pcap" "$arp_reply"; then
  pass "virtio_net-rx: request and reply are in the pcap"
else
  fail "virtio_net-rx: request or reply missing from the pcap"
fi

# wait_rx with a peer that never answers (a datagram socket nobody reads): bounded wait, then
# the rx step fails by name.
port=$((20000 + RANDOM % 20000))
if "$QEMU" -netdev help 2>/dev/null | grep -qx dgram; then
  silent="dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=$port,remote.type=inet,remote.host=127.0.0.1,remote.port=$((port + 1))"
else  # before QEMU 7.2
  silent="socket,id=n0,udp=127.0.0.1:$((port + 1)),localaddr=127.0.0.1:$port"
fi
run virtio_net-rx-timeout "$tmp/virtio_net-rx.bin" -netdev "$silent" \
  -device virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56,romfile=,addr=0x6
expect virtio_net-rx-timeout $(((0x23 << 1) | 1)) \
  "$(net_out "$guest_assigned" '' | sed '$d')"$'\nvirtio-net: FAIL rx wait \\(exit 23\\)\n'

# ---------------------------------------------------------------------------------------------
# virtio_console.bin: QEMU's virtio-console is virtio-serial; the first virtconsole is port 0,
# which is all a guest without MULTIPORT can reach.
console_out() {
  virtio_line virtio-console 07 1043 "$1"
  printf '%s\n' 'virtio-console: device offers [0-9a-f]+:[0-9a-f]+, negotiated 1:0' \
    'virtio-console: sent 22 bytes on port 0' 'virtio-console: ok'
}
console_dev() {
  echo "-device virtio-serial-pci,disable-legacy=on,addr=0x7 -chardev file,id=c0,path=$1 -device virtconsole,chardev=c0"
}
check_console_file() {
  if [[ $(cat "$2" 2>/dev/null; echo .) == $'virtio-console: hello\n.' ]]; then
    pass "$1: the chardev got exactly \"virtio-console: hello\\n\""
  else
    fail "$1: chardev file holds $(printf '%q' "$(cat "$2" 2>/dev/null)")"
  fi
}
run virtio_console "$guests/virtio_console.bin" $(console_dev "$tmp/console.out")
expect virtio_console $(((0x43 << 1) | 1)) "$(console_out '')"$'\n'
check_console_file virtio_console "$tmp/console.out"
patch_flag "$guests/virtio_console.bin" VMM-PCI-CLEARBAR "$tmp/virtio_console-clearbar.bin"
run virtio_console-clearbar "$tmp/virtio_console-clearbar.bin" $(console_dev "$tmp/console2.out")
expect virtio_console-clearbar $(((0x43 << 1) | 1)) "$(console_out "$guest_assigned")"$'\n'
check_console_file virtio_console-clearbar "$tmp/console2.out"

# ---------------------------------------------------------------------------------------------
# virtio_port.bin: MULTIPORT, a port found by its name as Linux's driver finds the guest agent's.
# QEMU reserves port 0 for a virtconsole, so its virtserialport is port 1 (queues 4/5); vmm-anchor
# names port 0 (and port 1 for a second named console: AnchorVirtioTest.TwoNamedPortsShareOneDevice). Once with a file chardev (no input), once on a unix socket whose client sends
# "ping" before the guest runs (server=on,wait=on): QEMU reads nothing from the chardev until the
# guest opens the port, and the guest checks that nothing reached the port before it did.
port_out() {  # <last-but-one line>
  virtio_line virtio-port 07 1043
  printf '%s\n' 'virtio-port: max_nr_ports 2' 'virtio-port: port 1 added' 'virtio-port: port 1 is "vmm\.test\.port"' \
    'virtio-port: port 1 opened by the host' 'virtio-port: port 1: sent 19 bytes' "$1" 'virtio-port: ok'
}
port_dev() {  # <chardev options>
  echo "-device virtio-serial-pci,disable-legacy=on,addr=0x7,max_ports=2 -chardev $1 -device virtserialport,chardev=c0,name=vmm.test.port"
}
run virtio_port "$guests/virtio_port.bin" $(port_dev "file,id=c0,path=$tmp/port.out")
expect virtio_port $(((0x44 << 1) | 1)) "$(port_out 'virtio-port: no input')"$'\n'
if [[ $(cat "$tmp/port.out" 2>/dev/null; echo .) == $'virtio-port: hello\n.' ]]; then
  pass "virtio_port: the chardev got exactly \"virtio-port: hello\\n\""
else
  fail "virtio_port: chardev file holds $(printf '%q' "$(cat "$tmp/port.out" 2>/dev/null)")"
fi
python3 - "$tmp/port.sock" "$tmp/port-sock.out" <<'PY' &
import socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
for _ in range(300):
    try:
        s.connect(path)
        break
    except OSError:
        time.sleep(0.1)
s.sendall(b"ping")
s.settimeout(60)
got = b""
while not got.endswith(b"\n"):
    b = s.recv(256)
    if not b:
        break
    got += b
open(out, "wb").write(got)
PY
client=$!
run virtio_port-socket "$guests/virtio_port.bin" $(port_dev "socket,id=c0,path=$tmp/port.sock,server=on,wait=on")
wait "$client"
expect virtio_port-socket $(((0x44 << 1) | 1)) "$(port_out 'virtio-port: received 4 bytes: ping')"$'\n'
if [[ $(cat "$tmp/port-sock.out" 2>/dev/null; echo .) == $'virtio-port: hello\n.' ]]; then
  pass "virtio_port-socket: the socket's client got \"virtio-port: hello\\n\""
else
  fail "virtio_port-socket: the socket's client got $(printf '%q' "$(cat "$tmp/port-sock.out" 2>/dev/null)")"
fi

# A virtconsole (port 0) beside the virtserialport (port 1) on one virtio-serial: the device tells
# the driver port 0 is a console (CONSOLE_PORT, no name) and opens its host side; vmm-anchor puts
# a domain's first unnamed console beside its named ones the same way
# (AnchorVirtioTest.AnUnnamedConsoleIsTheConsolePortBesideTheNamedOnes checks the same lines).
run virtio_port-console "$guests/virtio_port.bin" \
  -device virtio-serial-pci,disable-legacy=on,addr=0x7,max_ports=2 \
  -chardev "file,id=c1,path=$tmp/port-con.out" -device virtconsole,chardev=c1 \
  -chardev "file,id=c0,path=$tmp/port2.out" -device virtserialport,chardev=c0,name=vmm.test.port
expect virtio_port-console $(((0x44 << 1) | 1)) "$(virtio_line virtio-port 07 1043
  printf '%s\n' 'virtio-port: max_nr_ports 2' 'virtio-port: port 0 added' 'virtio-port: port 1 added' \
    'virtio-port: port 0 is a console' 'virtio-port: port 0 opened by the host' \
    'virtio-port: port 1 is "vmm\.test\.port"' 'virtio-port: port 1 opened by the host' \
    'virtio-port: port 1: sent 19 bytes' 'virtio-port: no input' 'virtio-port: ok')"$'\n'

qg_finish
