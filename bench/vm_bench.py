#!/usr/bin/env python3
"""vm_bench.py: vmm-anchor against QEMU on the same machine, in one run (issue 8).

  start-up   exec -> exit of a guest whose first instruction leaves through the debug-exit port
             (tests/guests/bios-exit16.bin, at the reset vector; also with --jail), exec -> the
             hello guest's line on the console (bios-hello16.bin), and exec -> that line's first
             byte (the guest's first OUT to COM1, its 18th instruction: the earliest sign of the
             guest running, without either VMM's exit path in the time); QEMU runs the same
             images as -M microvm -bios. Same process launch (subprocess, pipes) for both.
  memory     RSS and PSS of a 128 MiB idle domain with one virtio-blk, virtio-net (tap) and
             virtio-console, minus the guest RAM pages it touched (the RSS/PSS of the guest RAM
             mapping); QEMU -M pc with the same devices (virtio-*-pci) and the same idle guest.
  density    N idle domains started through vmmd/vmctl one after another as fast as it takes
             them; domains per second, total anchor overhead; all stopped. density_jail: the
             same with vmmd --jail; density_parallel: --parallel K vmctl clients at once, each
             starting (then stopping) its share of the N, so vmmd has K starts in flight
             (neither in the default set).
  blkio      a real guest's virtio-blk round trips: tests/guests/virtio_blk.bin (32-bit, polled
             driver: one request, one notify, spin on the used ring) patched to make N 4 KiB reads
             after its checks, timed exec -> exit against the same image with none; the
             difference / N is one read as the guest sees it (its own instructions, the notify's
             exit, the device model, the page-cache read, the used ring). Ours (flat 32-bit image)
             against QEMU -M q35 -kernel with virtio-blk-pci (modern only) on the same raw file,
             QEMU's defaults (no iothread, aio=threads) and QEMU tuned for I/O (an iothread,
             aio=io_uring). Not in the default set. blkkick: the same guest notifying the
             queue N times with nothing in it (the exit alone, nothing waited for), for scale.
  netio      the same for virtio-net transmit: tests/guests/virtio_net.bin sends its 60-byte
             frame N more times, each waited for (one notify, spin on the used ring), on a tap
             nobody reads; QEMU with -netdev tap (and with vhost=on where /dev/vhost-net exists).
             Not in the default set.
  memtouch   guest RAM's first touch: tests/guests/memtouch.bin stores to (then reads back) every
             4 KiB page of N MiB of a 256 MiB guest (--mib, default 192), timed exec -> exit
             against the same image with N = 0; the difference / N is what a MiB's first use
             costs the guest (faults into the host and their page zeroing; 4 KiB pages fault 256
             times a MiB, 2 MiB pages once per 2 MiB). Ours with guest RAM in transparent huge pages (the default) and with
             "thp": false, against QEMU -M q35 -kernel (anonymous RAM, which QEMU advises
             MADV_HUGEPAGE). Not in the default set.
  control    vmctl start -> running (vmmd, the anchor, prelaunch -> cont) against QEMU's exec ->
             QMP answering query-status "running"; the QMP query-status round trip on a fresh
             connection (pillar's way) is tests/qmp-go (bench/run-vm-bench reports it).

Needs /dev/kvm (bench/run-vm-bench runs this inside the nested-KVM VM where it is missing),
qemu-system-x86_64, and a build dir (VMM_BUILD_DIR, default ./build). Prints the results
(medians, ms) as JSON on stdout; --json FILE also writes them to FILE.
"""
import argparse
import concurrent.futures
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(os.environ.get("VMM_BUILD_DIR", "build"))
ANCHOR = os.environ.get("VMM_ANCHOR") or os.path.join(BUILD, "anchor", "vmm-anchor")
VMMD = os.path.join(BUILD, "vmmd", "vmmd")
VMCTL = os.path.join(BUILD, "vmctl", "vmctl")
GUESTS = os.path.join(BUILD, "tests", "guests")
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
QEMU_COMMON = ["-nodefaults", "-no-user-config", "-display", "none", "-accel", "kvm",
               "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
FLAT_BIOS = {"load_address": "0xf0000", "entry": "0xffff0", "mode": "real16"}
FLAT_32 = {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"}


def localize(tmp):
    """--local: copies the anchor, and QEMU with every shared library it loads, into tmp (L1's
    tmpfs), so that both start from a local file system as in a deployment, not through the
    nested VM's shared folder (virtio-fs), where each page fault on a binary is a round trip
    to the host. QEMU's firmware directories stay where they are (-L)."""
    global ANCHOR, QEMU, QEMU_COMMON
    d = os.path.join(tmp, "local")
    libs = os.path.join(d, "lib")
    os.makedirs(libs)
    ANCHOR = shutil.copy2(ANCHOR, d)
    qemu = shutil.which(QEMU)
    for line in subprocess.run(["ldd", qemu], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.search(r"=> (/\S+)", line)
        if m:
            shutil.copy2(m.group(1), libs)
    QEMU = shutil.copy2(qemu, d)
    # The firmware path Debian's QEMU has built in (relative to the binary once it is moved).
    for d in ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"):
        if os.path.isdir(d):
            QEMU_COMMON = QEMU_COMMON + ["-L", d]
    # Only QEMU is linked against shared libraries among what is timed (the anchor is static).
    os.environ["LD_LIBRARY_PATH"] = libs
    # Its loadable modules (accelerators, devices) from where the package put them.
    modules = "/usr/lib/x86_64-linux-gnu/qemu"
    if os.path.isdir(modules):
        os.environ["QEMU_MODULE_DIR"] = modules


def write_manifest(tmp, name, **fields):
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump({"name": name, **fields}, f)
    return path


def anchor_cmd(manifest, tmp):
    """The anchor as deployed (seccomp filter and capability drop on)."""
    return [ANCHOR, "--manifest", manifest, "--run-dir", os.path.join(tmp, "run")]


def time_exit(cmd, want_status):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    dt = time.perf_counter() - t0
    if p.returncode != want_status:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}, want {want_status}: {p.stderr.decode()[-500:]}")
    return dt


def time_line(cmd, line, first=None):
    """exec -> `line` on stdout; with a list as `first`, also appends exec -> its first byte."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    got = b""
    deadline = time.monotonic() + 30
    while line.encode() not in got:
        if time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"{cmd[0]}: no {line!r} within 30 s: {got[-300:]!r}")
        if not select.select([p.stdout], [], [], 1.0)[0]:
            continue
        chunk = p.stdout.read1(4096)
        if not chunk:
            raise RuntimeError(f"{cmd[0]}: no {line!r} on the console: {got[-300:]!r}")
        if not got and first is not None:
            first.append(time.perf_counter() - t0)
        got += chunk
    dt = time.perf_counter() - t0
    p.wait(timeout=30)
    return dt


def median_ms(xs):
    return statistics.median(xs) * 1000


def bench_startup(tmp, rounds):
    exit_img = os.path.join(GUESTS, "bios-exit16.bin")
    hello_img = os.path.join(GUESTS, "bios-hello16.bin")
    m_exit = write_manifest(tmp, "startup-exit", kernel=exit_img, memory_mb=128, flat=FLAT_BIOS)
    m_hello = write_manifest(tmp, "startup-hello", kernel=hello_img, memory_mb=128, flat=FLAT_BIOS)
    q = [QEMU, "-M", "microvm", "-m", "128", *QEMU_COMMON, "-serial", "stdio"]
    res = {"anchor_first_insn": [], "anchor_jail_first_insn": [], "anchor_jail_pidns_first_insn": [],
           "qemu_first_insn": [], "anchor_hello": [], "qemu_hello": [], "anchor_first_byte": [], "qemu_first_byte": []}
    for _ in range(rounds):  # interleaved, so both see the same machine load
        res["anchor_first_insn"].append(time_exit(anchor_cmd(m_exit, tmp), (0x17 << 1) | 1))
        # the same in the mount jail (--jail): what namespaces, binds and pivot_root cost
        res["anchor_jail_first_insn"].append(time_exit(anchor_cmd(m_exit, tmp) + ["--jail"], (0x17 << 1) | 1))
        # and with a pid namespace of its own under its keeper (--jail-pid-ns): the fork and the keeper's set-up
        res["anchor_jail_pidns_first_insn"].append(
            time_exit(anchor_cmd(m_exit, tmp) + ["--jail", "--jail-pid-ns"], (0x17 << 1) | 1))
        res["qemu_first_insn"].append(time_exit(q + ["-bios", exit_img], (0x17 << 1) | 1))
        # and exec -> the line's first byte: the guest's first OUT to COM1 is its 18th instruction,
        # the earliest the guest can be seen running without counting either VMM's exit path
        res["anchor_hello"].append(time_line(anchor_cmd(m_hello, tmp), "hello16: real mode ok", res["anchor_first_byte"]))
        res["qemu_hello"].append(time_line(q + ["-bios", hello_img], "hello16: real mode ok", res["qemu_first_byte"]))
    return {k: median_ms(v) for k, v in res.items()}


def smaps_overhead(pid, guest_bytes, breakdown=None):
    """(rss_kib, pss_kib, guest_rss_kib, anon_kib) of the process, the first two and the last
    without its guest RAM mappings (those of at least guest_bytes). anon is the private
    anonymous memory: what one more domain costs when the code pages are shared. With a dict
    as breakdown, also fills it with {mapping name: [rss, pss, private_dirty]} (KiB; the
    anonymous mappings, thread stacks among them, summed as "[anon]")."""
    tot = {"Rss:": 0, "Pss:": 0, "Anonymous:": 0}
    guest = dict(tot)
    in_guest = False
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                in_guest = hi - lo >= guest_bytes
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts[0] in tot:
                tot[parts[0]] += int(parts[1])
                if in_guest:
                    guest[parts[0]] += int(parts[1])
            if breakdown is not None and not in_guest and parts[0] in ("Rss:", "Pss:", "Private_Dirty:"):
                row = breakdown.setdefault(name, [0, 0, 0])
                row[("Rss:", "Pss:", "Private_Dirty:").index(parts[0])] += int(parts[1])
    return (tot["Rss:"] - guest["Rss:"], tot["Pss:"] - guest["Pss:"], guest["Rss:"],
            tot["Anonymous:"] - guest["Anonymous:"])


def make_tap(name):
    subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def del_tap(name):
    subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)


def settle(p, seconds=2.0):
    time.sleep(seconds)
    if p.poll() is not None:
        raise RuntimeError(f"process exited early with {p.returncode}: {p.stderr.read().decode()[-500:]}")


def bench_memory(tmp):
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    idle = os.path.join(GUESTS, "idle.bin")
    out = {}
    make_tap("vmmbench0")
    try:
        m = write_manifest(tmp, "mem", kernel=idle, memory_mb=128, flat=FLAT_32,
                           disks=[{"path": disk}], nics=[{"tap": "vmmbench0"}], consoles=[{"kind": "pty"}])
        p = subprocess.Popen(anchor_cmd(m, tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            settle(p)
            rows = {}
            (out["anchor_rss_kib"], out["anchor_pss_kib"], out["anchor_guest_rss_kib"],
             out["anchor_anon_kib"]) = smaps_overhead(p.pid, 100 << 20, rows)
            out["anchor_threads"] = len(os.listdir(f"/proc/{p.pid}/task"))
            out["anchor_mappings_rss_pss_dirty_kib"] = {
                os.path.basename(k): v for k, v in sorted(rows.items(), key=lambda kv: -kv[1][1]) if v[0]}
        finally:
            p.terminate()
            p.wait(timeout=30)
    finally:
        del_tap("vmmbench0")
    make_tap("vmmbench1")
    try:
        q = [QEMU, "-M", "pc", "-m", "128", *QEMU_COMMON, "-serial", "null", "-kernel", idle,
             "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
             "-netdev", "tap,id=n0,ifname=vmmbench1,script=no,downscript=no,vhost=off",
             "-device", "virtio-net-pci,netdev=n0", "-chardev", "pty,id=c0",
             "-device", "virtio-serial-pci", "-device", "virtconsole,chardev=c0"]
        p = subprocess.Popen(q, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            settle(p)
            (out["qemu_rss_kib"], out["qemu_pss_kib"], out["qemu_guest_rss_kib"],
             out["qemu_anon_kib"]) = smaps_overhead(p.pid, 100 << 20)
        finally:
            p.terminate()
            p.wait(timeout=30)
    finally:
        del_tap("vmmbench1")
    return out


def vmctl(sock, *args, timeout=120):
    return subprocess.run([VMCTL, "--socket", sock, *args], capture_output=True, text=True, timeout=timeout)


def bench_density(tmp, count, jail=False, parallel=1):
    tag = ("-jail" if jail else "") + (f"-par{parallel}" if parallel > 1 else "")
    run_dir = os.path.join(tmp, "vmmd-run" + tag)
    sock = os.path.join(tmp, "vmmd" + tag + ".sock")
    d = subprocess.Popen([VMMD, "--run-dir", run_dir, "--socket", sock, "--anchor", ANCHOR] + (["--jail"] if jail else []),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = {"count": count, "parallel": parallel}
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        idle = os.path.join(GUESTS, "idle.bin")
        manifests = [write_manifest(tmp, f"d{i:02d}", kernel=idle, memory_mb=16, flat=FLAT_32) for i in range(count)]
        def start(m):
            t = time.perf_counter()
            r = vmctl(sock, "start", m)
            if r.returncode != 0:
                raise RuntimeError(f"vmctl start {m}: {r.stderr}")
            return time.perf_counter() - t

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            starts = list(pool.map(start, manifests))
        total = time.perf_counter() - t0
        out["domains_per_s"] = count / total
        out["start_to_running_ms_median"] = median_ms(starts)
        info = json.loads(vmctl(sock, "list", "--json").stdout)
        domains = info["domains"] if isinstance(info, dict) else info
        running = [x for x in domains if x.get("state") == "running"]
        out["running"] = len(running)
        rss = pss = anon = guest = 0
        for x in running:
            r, p_, g, a = smaps_overhead(x["pid"], 8 << 20)
            rss += r
            pss += p_
            anon += a
            guest += g
        out["overhead_rss_mib_total"] = rss / 1024
        out["guest_rss_mib_total"] = guest / 1024  # the guest RAM the idle guests touched (2 MiB pages with THP)
        out["overhead_pss_mib_total"] = pss / 1024
        out["overhead_anon_mib_total"] = anon / 1024
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            stopped = sum(pool.map(lambda i: vmctl(sock, "stop", f"d{i:02d}", "--force").returncode == 0, range(count)))
        out["stopped"] = stopped
        out["stop_all_s"] = time.perf_counter() - t0
    finally:
        d.terminate()
        d.wait(timeout=30)
    return out


def qmp_status(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()
    for cmd in ("qmp_capabilities", "query-status"):
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                break
    s.close()
    return msg.get("return", {}).get("status")


def wait_prelaunch(qmp, proc):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before QMP answered")
        try:
            if qmp_status(qmp) == "prelaunch":
                return
        except (OSError, ValueError):
            time.sleep(0.001)
    raise RuntimeError(f"{qmp}: no prelaunch within 30 s")


def bench_control(tmp, rounds):
    """exec -> the QMP socket answers query-status "prelaunch" (what pillar waits for), the
    anchor with start_paused against QEMU -S."""
    res = []
    ares = []
    m = write_manifest(tmp, "ctl", kernel=os.path.join(GUESTS, "bios-exit16.bin"), memory_mb=16, flat=FLAT_BIOS,
                       start_paused=True)
    for i in range(rounds):
        qmp = os.path.join(tmp, "run", "kvm", "ctl", "qmp")
        t0 = time.perf_counter()
        p = subprocess.Popen(anchor_cmd(m, tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        wait_prelaunch(qmp, p)
        ares.append(time.perf_counter() - t0)
        p.terminate()
        p.wait()
        qmp = os.path.join(tmp, f"q{i}.qmp")
        t0 = time.perf_counter()
        p = subprocess.Popen([QEMU, "-M", "microvm", "-m", "16", *QEMU_COMMON, "-S", "-bios",
                              os.path.join(GUESTS, "bios-exit16.bin"), "-qmp", f"unix:{qmp},server=on,wait=off"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_prelaunch(qmp, p)
        res.append(time.perf_counter() - t0)
        p.kill()
        p.wait()
    return {"anchor_exec_to_qmp_prelaunch_ms": median_ms(ares), "qemu_exec_to_qmp_prelaunch_ms": median_ms(res)}


def patched_guest(tmp, name, tag, offset, value):
    """A copy of tests/guests/<name>.bin with the u32 at `offset` after its options tag set."""
    img = bytearray(open(os.path.join(GUESTS, name + ".bin"), "rb").read())
    at = img.find(tag)
    if at < 0:
        raise RuntimeError(f"{name}.bin has no {tag!r} tag")
    img[at + offset:at + offset + 4] = value.to_bytes(4, "little")
    path = os.path.join(tmp, f"{name}-{value}.bin")
    with open(path, "wb") as f:
        f.write(img)
    return path


def time_per_op(rounds, ops, make_image, cmds, ok):
    """Per VMM in cmds ({name: (image, n) -> command}): the median exec -> exit of the guest image
    with no operations and with `ops`, and the difference / ops in µs. Interleaved rounds."""
    times = {(vmm, n): [] for vmm in cmds for n in (0, ops)}
    names = list(cmds)
    for r in range(rounds):  # interleaved, so all see the same machine load
        # and each round in another order: a run's cost depends on the one before it (in L1 a
        # VMM that runs right after one that freed much memory touches memory faster: 1.7x for
        # memtouch), so every VMM takes every place equally often (rounds a multiple of them)
        order = names[r % len(names):] + names[:r % len(names)]
        for n in (0, ops):
            img = make_image(n)
            for vmm in order:
                times[(vmm, n)].append(time_exit(cmds[vmm](img, n), ok))
    res = {"ops": ops}
    for vmm in cmds:
        base, loaded = median_ms(times[(vmm, 0)]), median_ms(times[(vmm, ops)])
        res[vmm] = {"exit_ms": base, "exit_ms_with_ops": loaded, "us_per_op": (loaded - base) * 1000 / ops}
    return res


def blk_disk(path):
    """64 KiB: sector 0's marker, 0xee in sector 1 (the guest writes it), a pattern after."""
    with open(path, "wb") as f:
        f.write(b"VMM-BLK-SECTOR-0" + b"A" * 496 + b"\xee" * 512)
        for sector in range(2, 128):
            f.write(b"sector %03d......" % sector + b"z" * 496)
    return path


def qemu_q35_guest(img, memory_mb=64):
    """QEMU running a tests/guests image with -kernel on q35, its console discarded."""
    return [QEMU, "-M", "q35", "-m", str(memory_mb), *QEMU_COMMON, "-serial", "null", "-kernel", img]


def bench_blkio(tmp, rounds, reads, kicks=False):
    """kicks: the guest notifies the queue with nothing in it instead of reading (the exit alone)."""
    disk = blk_disk(os.path.join(tmp, "blkio.img"))
    dev = "virtio-blk-pci,drive=d0,disable-legacy=on,addr=0x5"
    offset = 24 if kicks else 20  # blk_options.repeat_kicks, .repeat_reads
    return time_per_op(rounds, reads, lambda n: patched_guest(tmp, "virtio_blk", b"VMM-BLK-HOLD:xxx", offset, n), {
        "anchor": lambda img, n: anchor_cmd(write_manifest(tmp, f"blkio-{n}", kernel=img, memory_mb=64, flat=FLAT_32,
                                                          disks=[{"path": disk}]), tmp),
        "qemu": lambda img, n: qemu_q35_guest(img) + ["-drive", f"file={disk},if=none,id=d0,format=raw", "-device", dev],
        # QEMU as tuned for I/O: the device in an iothread of its own, reads through io_uring
        "qemu_iothread": lambda img, n: qemu_q35_guest(img) + [
            "-object", "iothread,id=io0", "-drive", f"file={disk},if=none,id=d0,format=raw,aio=io_uring",
            "-device", dev + ",iothread=io0"],
    }, (0x42 << 1) | 1)


MEMTOUCH_RAM_MB = 256


def bench_memtouch(tmp, rounds, mib):
    ram = MEMTOUCH_RAM_MB
    return time_per_op(rounds, mib, lambda n: patched_guest(tmp, "memtouch", b"VMM-MEMTOUCH:xxx", 16, n), {
        "anchor": lambda img, n: anchor_cmd(write_manifest(tmp, f"memtouch-{n}", kernel=img, memory_mb=ram, flat=FLAT_32), tmp),
        "anchor_4k": lambda img, n: anchor_cmd(write_manifest(tmp, f"memtouch-4k-{n}", kernel=img, memory_mb=ram,
                                                              flat=FLAT_32, thp=False), tmp),
        "qemu": lambda img, n: qemu_q35_guest(img, ram),
    }, (0x4d << 1) | 1)


def bench_netio(tmp, rounds, frames):
    tap = "vmmbench2"
    make_tap(tap)
    try:
        dev = "virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56,romfile=,addr=0x6"
        netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
        cmds = {
            "anchor": lambda img, n: anchor_cmd(write_manifest(tmp, f"netio-{n}", kernel=img, memory_mb=64, flat=FLAT_32,
                                                              nics=[{"tap": tap, "mac": "52:54:00:12:34:56"}]), tmp),
            "qemu": lambda img, n: qemu_q35_guest(img) + ["-netdev", netdev, "-device", dev],
        }
        if os.path.exists("/dev/vhost-net"):  # the kernel's vhost-net: QEMU's fastest tap path
            cmds["qemu_vhost"] = lambda img, n: qemu_q35_guest(img) + ["-netdev", netdev + ",vhost=on", "-device", dev]
        return time_per_op(rounds, frames, lambda n: patched_guest(tmp, "virtio_net", b"VMM-NET-RX-WAIT:", 20, n),
                           cmds, (0x4e << 1) | 1)
    finally:
        del_tap(tap)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=4, help="vmctl clients at once for density_parallel")
    ap.add_argument("--only", default="startup,memory,density,control")
    ap.add_argument("--ops", type=int, default=1000, help="blkio, netio: the guest's reads or frames per run")
    ap.add_argument("--mib", type=int, default=192, help="memtouch: the MiB the guest touches per run (at most 248)")
    ap.add_argument("--json")
    ap.add_argument("--local", action="store_true",
                    help="run the anchor and QEMU (with its libraries) from copies in a tmpfs, not the build/system folders")
    a = ap.parse_args()
    if not os.path.exists("/dev/kvm"):
        sys.exit("vm_bench.py: /dev/kvm missing (bench/run-vm-bench runs it in a nested-KVM VM)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="vm-bench.") as tmp:
        if a.local:
            localize(tmp)
        for part in a.only.split(","):
            t0 = time.time()
            if part == "startup":
                results[part] = bench_startup(tmp, a.rounds)
            elif part == "memory":
                results[part] = bench_memory(tmp)
            elif part == "density":
                results[part] = bench_density(tmp, a.domains)
            elif part == "density_jail":  # the same through vmmd --jail: each anchor in its mount jail
                results[part] = bench_density(tmp, a.domains, jail=True)
            elif part == "density_parallel":  # K starts in flight in vmmd at once
                results[part] = bench_density(tmp, a.domains, parallel=max(1, a.parallel))
            elif part == "control":
                results[part] = bench_control(tmp, a.rounds)
            elif part == "blkio":
                results[part] = bench_blkio(tmp, a.rounds, max(1, a.ops))
            elif part == "blkkick":  # the notify's exit alone, for scale
                results[part] = bench_blkio(tmp, a.rounds, max(1, a.ops), kicks=True)
            elif part == "memtouch":
                results[part] = bench_memtouch(tmp, a.rounds, min(MEMTOUCH_RAM_MB - 8, max(1, a.mib)))
            elif part == "netio":
                results[part] = bench_netio(tmp, a.rounds, max(1, a.ops))
            print(f"# {part}: {json.dumps(results[part])} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
