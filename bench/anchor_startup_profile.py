#!/usr/bin/env python3
"""anchor_startup_profile.py: where vmm-anchor's start-up time goes (issue 8).

Runs the anchor N times on tests/guests/bios-exit16.bin (its first instruction leaves through the
debug-exit port) with --log-level debug, and reads the "startup: ..." and "teardown: ..." milestones the
anchor logs (anchor/main.cpp, anchor/machine.cpp) against the time of exec. Prints the median time from exec
to each milestone and to process exit. Several binaries given with --anchor are run alternately,
so that they see the same machine load.

Needs /dev/kvm (run it inside tests/nested/run-in-l1.sh where that is missing) and a build dir
(VMM_BUILD_DIR, default ./build).

  python3 bench/anchor_startup_profile.py [--rounds N] [--anchor PATH]...
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(os.environ.get("VMM_BUILD_DIR", "build"))
GUESTS = os.path.join(BUILD, "tests", "guests")
# spdlog's default pattern: [2026-11-23 19:20:01.123] [anchor] [debug] startup: main
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] \[\w+\] \[debug\] ((?:startup|teardown): .*)$")


def one_run(anchor, manifest, run_dir):
    t0 = time.time()
    p = subprocess.run([anchor, "--manifest", manifest, "--run-dir", run_dir, "--log-level", "debug"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    t_exit = time.time()
    if p.returncode != (0x17 << 1) | 1:
        raise RuntimeError(f"{anchor} exited {p.returncode}: {p.stderr.decode()[-500:]}")
    marks = {}
    for line in p.stderr.decode().splitlines():
        m = LINE.match(line)
        if m:
            at = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            # "guest loaded, 1 vCPU(s) created" -> a stable key
            key = re.sub(r"\d+ vCPU\(s\)", "N vCPU(s)", m.group(2))
            marks.setdefault(key, (at - t0) * 1000)
    marks["process exit"] = (t_exit - t0) * 1000
    return marks


def exec_ms(cmd, rounds):
    """Median exec -> exit of a command (the cost of starting any process here, for scale)."""
    times = []
    for _ in range(rounds):
        t0 = time.time()
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        times.append((time.time() - t0) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--anchor", action="append", help="binary to profile (repeatable; default the build's)")
    a = ap.parse_args()
    anchors = a.anchor or [os.path.join(BUILD, "anchor", "vmm-anchor")]
    if not os.path.exists("/dev/kvm"):
        sys.exit("anchor_startup_profile.py: /dev/kvm missing (run it inside tests/nested/run-in-l1.sh)")
    with tempfile.TemporaryDirectory(prefix="startup-profile.") as tmp:
        manifest = os.path.join(tmp, "exit.json")
        with open(manifest, "w") as f:
            json.dump({"name": "startup-profile", "kernel": os.path.join(GUESTS, "bios-exit16.bin"), "memory_mb": 128,
                       "flat": {"load_address": "0xf0000", "entry": "0xffff0", "mode": "real16"}}, f)
        runs = {x: [] for x in anchors}
        for _ in range(a.rounds):
            for x in anchors:
                runs[x].append(one_run(x, manifest, os.path.join(tmp, "run")))
    print(f"# for scale, exec -> exit: /bin/true {exec_ms(['/bin/true'], a.rounds):.1f} ms; "
          + "; ".join(f"{x} --help {exec_ms([x, '--help'], a.rounds):.1f} ms" for x in anchors))
    for x in anchors:
        order = list(runs[x][0].keys())
        print(f"# {x}: median ms from exec ({a.rounds} runs; spdlog stamps have 1 ms resolution)")
        prev = 0.0
        for k in order:
            vals = [r[k] for r in runs[x] if k in r]
            med = statistics.median(vals)
            print(f"  {med:8.1f}  (+{med - prev:7.1f})  {k}")
            prev = med


if __name__ == "__main__":
    main()
