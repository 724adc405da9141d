#!/usr/bin/env python3
"""Soak a maspo command: run it for a while, kill it again and again, restart it, watch memory.

    python3 scripts/soak.py --minutes 60 --out runs/soak -- \
        ./target/release/maspo bench paper --preset light --ablations ...

The command runs in its own process group. At seeded random moments (between --min-gap and
--max-gap seconds of its life) the whole group is killed — SIGKILL, and every third time SIGINT
(maspo's graceful stop: it finishes the current write, checkpoints and exits) — and the same
command is started again, which must resume where the last checkpoint left it. The resident
memory of the group (every process in it, summed from /proc) is sampled every --every seconds.
The soak ends when the command exits 0 on its own (the work is done) or when --minutes have
passed (then it is stopped with SIGINT and waited for).

Writes into --out (atomically, so a soak killed itself leaves readable files):
  samples.jsonl  one line per sample: t (s since start), segment, rss_mib
  segments.json  per segment: how it ended (killed -9, interrupted, exit code), its life,
                 peak RSS, and RSS over its first and last quarter
  summary.json   duration, kills by kind, exit codes, overall peak RSS, and the trend of the
                 longest segment (a least-squares slope in MiB per minute)
Exit status: 0 when every restart resumed (no segment but a killed one ended with an error),
1 otherwise.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time


def group_rss_mib(pgid):
    """Summed VmRSS (MiB) of every live process whose process group is pgid."""
    total_kb = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            # Field 5 (pgrp) follows the parenthesised command name, which may contain spaces.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue  # the process ended between listdir and open
    return total_kb / 1024.0


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def slope_per_min(points):
    """Least-squares slope of (t seconds, rss MiB) points, in MiB per minute."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mt) * (r - mr) for t, r in points)
    return cov / var * 60.0


def quarter_peaks(points):
    if not points:
        return (0.0, 0.0)
    q = max(1, len(points) // 4)
    return (max(r for _, r in points[:q]), max(r for _, r in points[-q:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--min-gap", type=float, default=90.0, help="shortest life before a kill (s)")
    ap.add_argument("--max-gap", type=float, default=480.0, help="longest life before a kill (s)")
    ap.add_argument("--every", type=float, default=2.0, help="sampling period (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command to soak after --")
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    start = time.monotonic()
    deadline = start + args.minutes * 60.0
    samples_path = os.path.join(args.out, "samples.jsonl")
    samples = open(samples_path, "a")
    segments = []
    kills = 0
    finished = False
    log = open(os.path.join(args.out, "command.log"), "ab")
    while not finished:
        seg = len(segments)
        kill_after = rng.uniform(args.min_gap, args.max_gap)
        kind = "SIGINT" if (kills + 1) % 3 == 0 else "SIGKILL"
        log.write(f"\n=== segment {seg} (kill after {kill_after:.0f}s with {kind}) ===\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        born = time.monotonic()
        points = []
        ended = None
        while True:
            rc = proc.poll()
            now = time.monotonic()
            if rc is not None:
                ended = {"how": "exit", "code": rc}
                finished = rc == 0
                break
            rss = group_rss_mib(proc.pid)
            points.append((now - born, rss))
            samples.write(json.dumps({"t": round(now - start, 1), "segment": seg, "rss_mib": round(rss, 1)}) + "\n")
            samples.flush()
            if now >= deadline:
                os.killpg(proc.pid, signal.SIGINT)
                rc = proc.wait()
                ended = {"how": "deadline SIGINT", "code": rc}
                finished = True
                break
            if now - born >= kill_after:
                os.killpg(proc.pid, signal.SIGKILL if kind == "SIGKILL" else signal.SIGINT)
                rc = proc.wait()
                kills += 1
                ended = {"how": kind, "code": rc}
                break
            time.sleep(args.every)
        # A SIGINT stop lets the process exit on its own; anything it left in its group goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        first_q, last_q = quarter_peaks(points)
        segments.append(
            {
                "segment": seg,
                "ended": ended,
                "life_s": round(time.monotonic() - born, 1),
                "peak_rss_mib": round(max((r for _, r in points), default=0.0), 1),
                "first_quarter_peak_mib": round(first_q, 1),
                "last_quarter_peak_mib": round(last_q, 1),
                "slope_mib_per_min": round(slope_per_min(points), 2),
                "points": len(points),
            }
        )
        write_json(os.path.join(args.out, "segments.json"), segments)
    longest = max(segments, key=lambda s: s["life_s"])
    bad = [
        s
        for s in segments
        if s["ended"]["how"] == "exit" and s["ended"]["code"] != 0
        or s["ended"]["how"] in ("SIGINT", "deadline SIGINT") and s["ended"]["code"] not in (0, 130)
    ]
    summary = {
        "command": cmd,
        "duration_min": round((time.monotonic() - start) / 60.0, 1),
        "segments": len(segments),
        "sigkills": sum(1 for s in segments if s["ended"]["how"] == "SIGKILL"),
        "sigints": sum(1 for s in segments if s["ended"]["how"] in ("SIGINT", "deadline SIGINT")),
        "finished_on_its_own": segments[-1]["ended"]["how"] == "exit" and segments[-1]["ended"]["code"] == 0,
        "peak_rss_mib": max(s["peak_rss_mib"] for s in segments),
        "longest_segment": longest,
        "bad_endings": bad,
    }
    write_json(os.path.join(args.out, "summary.json"), summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "command"}, indent=2))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
