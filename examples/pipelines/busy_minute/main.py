"""About a minute of visible work: CPU in phases, memory that grows and is released, progress
on stdout and a warning on stderr. Long enough to watch the run page live, try Cancel and read
the CPU/RAM chart; the parameters (default_env) change how long and how much."""

import os
import sys
import time

seconds = float(os.environ["DURATION_SECONDS"])
peak_mb = int(os.environ["MEMORY_MB"])
steps = int(os.environ["STEPS"])
step_seconds = seconds / steps
held = []

print(f"Working for {seconds:g} s in {steps} steps, up to {peak_mb} MiB of memory.", flush=True)
for step in range(1, steps + 1):
    busy = step % 3 != 0  # every third step idles: the CPU line shows the difference
    end = time.monotonic() + step_seconds
    rounds = 0
    while time.monotonic() < end:
        if busy:
            sum(i * i for i in range(20_000))  # pure Python: one core busy
            rounds += 1
        else:
            time.sleep(0.05)
    if step <= steps // 2:
        # The first half grows the memory in equal slices (touched, so it is resident).
        held.append(bytearray(b"\x01") * (peak_mb * 1024 * 1024 // max(steps // 2, 1)))
    elif held:
        held.pop()
    resident = sum(len(block) for block in held) // (1024 * 1024)
    phase = "busy" if busy else "idle"
    print(f"step {step}/{steps}: {phase}, {rounds} rounds, holding {resident} MiB", flush=True)
    if step == steps // 2:
        print("warning: halfway; releasing memory from now on", file=sys.stderr, flush=True)

print("done", flush=True)
