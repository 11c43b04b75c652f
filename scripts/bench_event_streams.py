"""Event streams under load, measured at their peers (see scripts/bench-event-streams.sh).

Phase 1 submits TASKS tasks with no stream open; phase 2 submits TASKS more and opens STREAMS event
streams on them (round-robin) as they are queued. The GPU idle gap is read from the runtime
peer's own log (its start of a generation minus its end of the one before) for each phase;
memory is sdq up's resident set (/proc) before the streams and once all are open; latency is a
state change's arrival at the stream's client minus the time the change was stamped in the task
record (dispatched_at, started_at, finished_at of the final document): same machine, same clock.
"""
import asyncio, json, os, statistics, sys, time, urllib.request

api_port, sdq_pid, peer_log, streams, tasks, label = sys.argv[1:7]
streams, tasks, sdq_pid = int(streams), int(tasks), int(sdq_pid)
base = f"http://127.0.0.1:{api_port}"
STAMP = {"dispatched": "dispatched_at", "running": "started_at", "succeeded": "finished_at", "failed": "finished_at",
         "cancelled": "finished_at"}


def rss_mib():
    with open(f"/proc/{sdq_pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))] if values else float("nan")


def submit(i):
    body = json.dumps({"prompt": f"stream bench {i}", "seed": i, "width": 64, "height": 64, "steps": 20}).encode()
    request = urllib.request.Request(base + "/v1/tasks", data=body, headers={"content-type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(request, timeout=30))["id"]


def wait_all(ids):
    while True:
        docs = [json.load(urllib.request.urlopen(f"{base}/v1/tasks/{i}", timeout=30)) for i in ids]
        if all(d["status"] in ("succeeded", "failed", "cancelled") for d in docs):
            return docs
        time.sleep(0.5)


def peer_gaps(since, until):
    runs = sorted((json.loads(line) for line in open(peer_log)), key=lambda r: r["start"])
    runs = [r for r in runs if since <= r["start"] <= until]
    return [(b["start"] - a["end"]) * 1000 for a, b in zip(runs, runs[1:])], len(runs)


class Stream:
    """One event-stream client on raw HTTP/1.1 (chunked), as a browser holds one."""

    def __init__(self, task):
        self.task, self.events, self.arrivals, self.final, self.opened = task, 0, {}, None, asyncio.Event()

    async def run(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(api_port))
        writer.write(f"GET /v1/tasks/{self.task}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        self.opened_at = time.time() * 1000
        self.opened.set()
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            return
        buffer = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                break
            buffer += await reader.readexactly(size)
            await reader.readexactly(2)
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                now = time.time() * 1000
                name, data = None, []
                for line in block.decode().split("\n"):
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                if not data:
                    continue
                self.events += 1
                if name in STAMP:
                    self.arrivals.setdefault(name, now)  # the first (a queue position update repeats it)
                if name in ("succeeded", "failed", "cancelled"):
                    self.final = json.loads("\n".join(data))
        writer.close()


async def with_streams(ids):
    clients = [Stream(ids[n % len(ids)]) for n in range(streams)]
    sem = asyncio.Semaphore(200)  # connection set-up at most 200 at a time

    async def start(client):
        async with sem:
            task = asyncio.create_task(client.run())
            await asyncio.wait([task, asyncio.create_task(client.opened.wait())], return_when=asyncio.FIRST_COMPLETED)
            return task

    began = time.time()
    running = await asyncio.gather(*(start(c) for c in clients))
    open_at = time.time()
    peak = rss_mib()
    await asyncio.gather(*running)
    return clients, began, open_at, peak, time.time()


for _ in range(300):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1)
        break
    except Exception:
        time.sleep(0.2)

# Phase 1: no streams.
t1 = time.time()
quiet_ids = [submit(i) for i in range(tasks)]
quiet_docs = wait_all(quiet_ids)
quiet_gaps, quiet_runs = peer_gaps(t1, time.time())
time.sleep(1)
rss_before = rss_mib()

# Phase 2: the same load with the streams open.
t2 = time.time()
ids = [submit(tasks + i) for i in range(tasks)]
clients, began, open_at, rss_open, ended = asyncio.run(with_streams(ids))
docs = wait_all(ids)
gaps, runs = peer_gaps(t2, time.time())
time.sleep(1)
rss_after = rss_mib()

events = sum(c.events for c in clients)
latency = {}
for c in clients:
    if not c.final:
        continue
    for name, arrived in c.arrivals.items():
        stamp = c.final.get("timings", {}).get(STAMP[name])
        # Only changes made while the stream was open (an earlier one arrives when it opens).
        if stamp and stamp >= c.opened_at:
            latency.setdefault("terminal" if STAMP[name] == "finished_at" else name, []).append(arrived - stamp)
ended_ok = sum(1 for c in clients if c.final)
print(f"event streams: sdq up ({label}), one worker, SD WebUI peer, {tasks} tasks x 20 steps per phase, {streams} streams in phase 2")
print(f"  streams: {ended_ok} of {streams} saw their task's end; all open {open_at - began:.1f} s after the first; "
      f"{events} events in {ended - began:.1f} s = {events / max(0.001, ended - began):.0f} events/s delivered")
print(f"  sdq up resident memory: {rss_before:.1f} MiB before, {rss_open:.1f} MiB with {streams} open "
      f"({(rss_open - rss_before) * 1024 / streams:.1f} KiB per stream), {rss_after:.1f} MiB after they ended")
for name in ("dispatched", "running", "terminal"):
    values = latency.get(name, [])
    if values:
        print(f"  change -> event at the client, {name:<10}: n {len(values):>5}  median {statistics.median(values):7.1f} ms  "
              f"p99 {q(values, 0.99):7.1f} ms  max {max(values):7.1f} ms")
print(f"  GPU idle gap at the peer without streams: median {statistics.median(quiet_gaps):.2f} ms  p99 {q(quiet_gaps, 0.99):.2f} ms "
      f"({quiet_runs} generations)")
print(f"  GPU idle gap at the peer with streams:    median {statistics.median(gaps):.2f} ms  p99 {q(gaps, 0.99):.2f} ms "
      f"({runs} generations)")
print(f"  tasks succeeded: {sum(d['status'] == 'succeeded' for d in quiet_docs)} + {sum(d['status'] == 'succeeded' for d in docs)} of {2 * tasks}")
