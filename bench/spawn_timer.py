#!/usr/bin/env python3
"""bench/spawn_timer.py: the median wall time, in microseconds, of plugin calls started with
posix_spawn (no shell, so nothing to subtract; hyperfine's shell start-up correction varies by
more than a plugin call takes on a busy machine). Used by bench/run.sh when python3 is present.

usage: spawn_timer.py RUNS WARMUP REPEAT PREP CALL
  CALL   one plugin call as bench/run.sh's `call` writes it: `VAR=V ... PROGRAM <FILE`
         (arguments after PROGRAM are passed on: `VAR=V PROGRAM ARG... <FILE`)
  PREP   a shell command run untimed before each run ('' for none)
  REPEAT calls per timed run; above 1, call i gets CNI_CONTAINERID=<id>-<i>
"""

import os
import re
import subprocess
import sys
import time

CALL = re.compile(r"^((?:[A-Z_]+=\S* )+)(\S+(?: [^\s<]+)*) <(\S+)$")


def parse(call):
    m = CALL.match(call)
    if not m:
        sys.exit(f"spawn_timer: not a plugin call: {call!r}")
    env = dict(kv.split("=", 1) for kv in m.group(1).split())
    return env, m.group(2).split(), m.group(3)


def spawn(argv, env, stdin_path, null):
    fd = os.open(stdin_path, os.O_RDONLY)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, null, 1)],
        )
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    if status != 0:
        sys.exit(f"spawn_timer: {argv} failed ({status}) with {env}")


def main():
    runs, warmup, repeat = (int(a) for a in sys.argv[1:4])
    prep, call = sys.argv[4], sys.argv[5]
    env, prog, stdin_path = parse(call)
    envs = [env]
    if repeat > 1:
        envs = [dict(env, CNI_CONTAINERID=f"{env.get('CNI_CONTAINERID', 'bench')}-{i}") for i in range(repeat)]
    null = os.open("/dev/null", os.O_WRONLY)
    times = []
    for run in range(warmup + runs):
        if prep:
            subprocess.run(prep, shell=True, check=True, stdout=subprocess.DEVNULL)
        t0 = time.perf_counter_ns()
        for e in envs:
            spawn(prog, e, stdin_path, null)
        if run >= warmup:
            times.append(time.perf_counter_ns() - t0)
    times.sort()
    print(times[(len(times) - 1) // 2] // 1000)


main()
