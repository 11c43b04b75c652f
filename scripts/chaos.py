#!/usr/bin/env python3
"""Fault injection and soak for sdq: every accepted task must end exactly once.

Modes:
  services (default)  the four executables as separate processes on one embedded data folder:
                      api (HTTP), dispatcher, result-writer, and --workers
                      inference-services, each driving its own `sdq emulate-runtime` that
                      injects runtime errors (--error-rate) and hangs (--hang-rate). While the
                      tasks run, workers are killed at random --kills times (every fifth with
                      SIGTERM, a graceful drain; the rest SIGKILL) and restarted.
  up                  `sdq up --workers N` in one process (the soak: --tasks 10000 --kills 0),
                      sampling the process's memory.
  --aws               (services mode) the AWS transport on moto instead of the embedded store. The
                      services reach moto through a loopback TCP proxy that is taken down for
                      --outage seconds mid-run and brought back (every connection refused or cut),
                      as a restart of the emulator looks to them. (moto keeps no state across a
                      real restart, so restarting moto itself would delete the queues: that is a
                      different failure, the loss of the whole AWS region.)

Tasks are submitted over HTTP with an Idempotency-Key (a 503 is retried with the same key). At
the end the report counts tasks submitted, succeeded, failed by reason, lost (accepted but not
in a terminal state when the run ends), and completed twice (more than one terminal transition
in the result-writer's log, or more than one manifest). Exit status 1 when lost or completed
twice is not 0.

Usage: scripts/chaos.py --bin DIR [--tasks 500] [--kills 50] [--workers 4] [--mode services|up]
                        [--error-rate 0.03] [--hang-rate 0.002] [--steps 6] [--step-ms 20]
                        [--timeout 900] [--seed 1]
"""
import argparse, collections, json, os, random, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--tasks", type=int, default=500)
parser.add_argument("--kills", type=int, default=50)
parser.add_argument("--workers", type=int, default=4)
parser.add_argument("--mode", choices=["services", "up"], default="services")
parser.add_argument("--error-rate", type=float, default=0.03)
parser.add_argument("--hang-rate", type=float, default=0.002)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--step-ms", type=int, default=20)
parser.add_argument("--timeout", type=int, default=900)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--aws", action="store_true")
parser.add_argument("--outage", type=float, default=8.0)
args = parser.parse_args()
rng = random.Random(args.seed)
started = time.monotonic()
workdir = tempfile.mkdtemp(prefix="sdq-chaos-")
data = os.path.join(workdir, "data")
pools = os.path.join(workdir, "pools.yaml")
runtime = "emulator" if args.mode == "up" else "sdwebui"
with open(pools, "w") as f:
    # Short visibility, so a killed worker's task is back within seconds; enough receives that
    # kills alone do not dead-letter a task.
    f.write("pools:\n  - name: default\n    runtime: %s\n    models: [emulator-v1]\n"
            "queues: { max_receive_count: 10, worker_visibility_timeout_seconds: 6 }\n" % runtime)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def environment(**extra):
    env = dict(os.environ, SDQ_DATA_DIR=data, SDQ_POOLS_FILE=pools, SDQ_LOG_FORMAT="json", LOG_LEVEL="info")
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.update(aws_env)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc:
    """A child process with its log file; restartable."""

    def __init__(self, name, argv, env):
        self.name, self.argv, self.env = name, argv, env
        self.log = os.path.join(workdir, name + ".log")
        self.process = None
        self.start()

    def start(self):
        out = open(self.log, "ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out, cwd=workdir)

    def signal(self, sig):
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.process.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None


def wait_http(url, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except Exception:
            time.sleep(0.2)
    return False


def request(method, url, body=None, headers=None):
    data_bytes = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data_bytes, method=method, headers=dict(headers or {}, **{"Content-Type": "application/json"}))
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except Exception:
        return None, None


class Proxy:
    """A TCP proxy on a fixed loopback port that can be taken down and brought back."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.server = None
        self.connections = set()
        self.lock = threading.Lock()
        self.up()

    def up(self):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(128)
        threading.Thread(target=self.accept, args=(self.server,), daemon=True).start()

    def down(self):
        self.server.close()
        with self.lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.connections.clear()

    def accept(self, server):
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update([client, upstream])
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, source, sink):
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s_ in (source, sink):
                try:
                    s_.close()
                except OSError:
                    pass


aws_env = {}
proxy = None
moto = None
if args.aws:
    moto_port = free_port()
    # moto with atomic DynamoDB writes (scripts/ci/moto_atomic.py), as the tests run it.
    moto = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ci", "moto_atomic.py"),
                             "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_http("http://127.0.0.1:%d/moto-api/" % moto_port, 60):
        print("moto did not start")
        sys.exit(2)
    proxy = Proxy(moto_port)
    aws_env = dict(SDQ_TRANSPORT="aws", SDQ_STACK="chaos%d" % rng.randrange(10 ** 6), AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="chaos", AWS_SECRET_ACCESS_KEY="chaos",
                   AWS_ENDPOINT_URL="http://127.0.0.1:%d" % proxy.port)
    init = subprocess.run([os.path.join(args.bin, "sdq"), "aws", "init"], env=dict(os.environ, SDQ_POOLS_FILE=pools, **aws_env),
                          capture_output=True, text=True)
    if init.returncode != 0:
        print("sdq aws init failed: " + init.stderr)
        sys.exit(2)

children = []
workers = []
port = free_port()
api_url = "http://127.0.0.1:%d" % port
if args.mode == "up":
    up = Proc("sdq-up", [os.path.join(args.bin, "sdq"), "up", "--port", str(port), "--workers", str(args.workers),
                         "--step-ms", str(args.step_ms)], environment(LOG_LEVEL="info"))
    children.append(up)
else:
    children.append(Proc("api", [os.path.join(args.bin, "api")], environment(SDQ_HTTP_PORT=port, SDQ_HTTP_HOST="127.0.0.1")))
    children.append(Proc("dispatcher", [os.path.join(args.bin, "dispatcher")], environment()))
    children.append(Proc("result-writer", [os.path.join(args.bin, "result-writer")], environment()))
    for index in range(args.workers):
        runtime_port = free_port()
        children.append(Proc("runtime-%d" % index, [
            os.path.join(args.bin, "sdq"), "emulate-runtime", "--port", str(runtime_port), "--step-ms", str(args.step_ms),
            "--error-rate", str(args.error_rate), "--hang-rate", str(args.hang_rate)], environment()))
        worker = Proc("worker-%d" % index, [os.path.join(args.bin, "inference-service")],
                      environment(SDQ_RUNTIME="sdwebui", SDQ_RUNTIME_URL="http://127.0.0.1:%d" % runtime_port))
        workers.append(worker)
        children.append(worker)


def shutdown():
    for child in children:
        child.signal(signal.SIGTERM)
    for child in children:
        child.wait(30)


try:
    if not wait_http(api_url + "/healthz"):
        print("the API did not start; logs in " + workdir)
        shutdown()
        sys.exit(2)

    # Submit every task (retrying 503s and connection errors with the same Idempotency-Key).
    accepted = []
    rss = collections.defaultdict(list)

    def sample_memory():
        for child in children:
            value = child.rss_kib()
            if value:
                rss[child.name].append(value)

    sample_memory()
    for index in range(args.tasks):
        body = {"prompt": "chaos %d" % index, "seed": index, "width": 64, "height": 64, "steps": args.steps,
                "deadline_seconds": 90}
        for attempt in range(20):
            status, answer = request("POST", api_url + "/v1/tasks", body, {"Idempotency-Key": "chaos-%d-%d" % (args.seed, index)})
            if status == 202:
                accepted.append(answer["id"])
                break
            time.sleep(0.5)
        if index % 250 == 0:
            sample_memory()
    submitted_at = time.monotonic()

    # Kill workers at random while tasks remain.
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    stop = threading.Event()

    def killer():
        done = 0
        while done < args.kills and not stop.is_set():
            time.sleep(rng.uniform(0.3, 1.5))
            worker = rng.choice(workers)
            graceful = done % 5 == 4
            worker.signal(signal.SIGTERM if graceful else signal.SIGKILL)
            worker.wait(40)
            kills["SIGTERM" if graceful else "SIGKILL"] += 1
            done += 1
            time.sleep(rng.uniform(0.1, 0.8))
            worker.start()

    if workers and args.kills:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
    else:
        thread = None
    outages = 0
    if proxy:
        def outage():
            global outages
            time.sleep(rng.uniform(2, 6))
            proxy.down()
            time.sleep(args.outage)
            proxy.up()
            outages += 1
        threading.Thread(target=outage, daemon=True).start()

    # Wait until every accepted task is terminal (or the time is up).
    states = {}
    pending = list(accepted)
    last_sample = time.monotonic()
    while pending and time.monotonic() - started < args.timeout:
        still = []
        for task_id in pending:
            status, document = request("GET", api_url + "/v1/tasks/" + task_id)
            if status == 200 and document["status"] in ("succeeded", "failed", "cancelled"):
                states[task_id] = document
            else:
                still.append(task_id)
        pending = still
        if time.monotonic() - last_sample > 5:
            sample_memory()
            last_sample = time.monotonic()
        if pending:
            time.sleep(1)
    if thread:
        # The run needs its kills: keep waiting for them (bounded by the timeout) before judging.
        while thread.is_alive() and time.monotonic() - started < args.timeout:
            time.sleep(0.5)
        stop.set()
        thread.join(5)
    # Let late duplicates show themselves before counting.
    time.sleep(3)
    sample_memory()
finally:
    shutdown()
    if moto:
        moto.terminate()

# Terminal transitions per task, from the result-writer's log ("task finished" once per applied
# transition), and manifests per task from the object folder.
writer_logs = [c.log for c in children if c.name in ("result-writer", "sdq-up")]
finished = collections.Counter()
for path in writer_logs:
    with open(path, errors="replace") as f:
        for line in f:
            if '"task finished"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "task finished":
                finished[entry.get("task_id")] += 1
manifests = collections.Counter()
results_dir = os.path.join(data, "objects", "sdq-data", "results")
if os.path.isdir(results_dir):
    for task_id in os.listdir(results_dir):
        manifests[task_id] = sum(1 for name in os.listdir(os.path.join(results_dir, task_id)) if name.endswith(".json"))

succeeded = sum(1 for d in states.values() if d["status"] == "succeeded")
failures = collections.Counter((d.get("error") or {}).get("code", d["status"]) for d in states.values() if d["status"] != "succeeded")
lost = len(accepted) - len(states)
twice = sorted(t for t in accepted if finished[t] > 1 or manifests[t] > 1)
elapsed = time.monotonic() - started
print("chaos run: mode %s%s, %d workers, %d tasks, error rate %.3f, hang rate %.3f, seed %d (logs: %s)"
      % (args.mode, " on moto" if args.aws else "", args.workers, args.tasks, args.error_rate, args.hang_rate, args.seed, workdir))
print("submitted: %d" % len(accepted))
print("succeeded: %d" % succeeded)
print("failed: %d %s" % (sum(failures.values()), dict(failures)))
print("kills: %d (SIGKILL %d, SIGTERM %d)" % (sum(kills.values()), kills["SIGKILL"], kills["SIGTERM"]) if workers else "kills: 0")
if proxy:
    print("AWS emulator outages: %d of %.0f s" % (outages, args.outage))
print("lost: %d" % lost)
print("completed twice: %d%s" % (len(twice), (" " + ", ".join(twice[:5])) if twice else ""))
print("time: %.0f s (%.1f tasks/s after submission)" % (elapsed, len(states) / max(0.001, time.monotonic() - submitted_at)))
for name, samples in sorted(rss.items()):
    if len(samples) >= 2:
        picks = [samples[round(i * (len(samples) - 1) / 11)] for i in range(12)] if len(samples) >= 12 else samples
        print("memory %s: RSS %d → %d MiB (max %d); through the run: %s" % (
            name, samples[0] // 1024, samples[-1] // 1024, max(samples) // 1024, " ".join(str(v // 1024) for v in picks)))
sys.exit(1 if lost or twice or (workers and sum(kills.values()) < args.kills) else 0)
