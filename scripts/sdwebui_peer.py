#!/usr/bin/env python3
"""An SD WebUI (AUTOMATIC1111) API peer that keeps its own clock.

Written from the A1111 API as its clients see it, not from sdq's emulator: `GET/POST
/sdapi/v1/options`, `GET /sdapi/v1/sd-models`, `POST /sdapi/v1/txt2img` and `/img2img`,
`GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt`, and A1111's per-task progress: a request's
`force_task_id` names it, `POST /internal/progress {"id_task"}` answers `active` / `queued` /
`completed` / `progress` for it. One "GPU": generations run one at a time (a lock, as A1111's
`queue_lock`: a request that arrives while another runs waits for it), each sleeping
steps x --step-ms; an interrupt stops the current generation only (a waiting one resets it as it
starts, as A1111's `state.begin()` does). Every generation appends a JSON line to --log with the
peer's own wall-clock times (seconds): `received` (the request read), `start` and `end` (the GPU
section), `answered` (the response written). The idle time between generations is measured
where the runtime sees it, and split into the peer's own share (parsing, encoding) and the
client's (from one answer to the next request). HTTP/1.1 keep-alive,
threaded, TCP_NODELAY (as uvicorn serves A1111).

Usage: sdwebui_peer.py --port PORT --log FILE [--step-ms 10] [--model NAME]
"""
import argparse
import base64
import http.server
import json
import socket
import struct
import threading
import time
import zlib


def png(width, height, shade):
    """A valid grey PNG of the given size."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


class Peer:
    def __init__(self, step_ms, model, log_path):
        self.step_ms = step_ms
        self.model = model
        self.gpu = threading.Lock()
        self.state = threading.Lock()
        self.progress = 0.0
        self.interrupted = False
        self.current = None
        self.pending = set()
        self.finished = []
        self.log = open(log_path, "a", buffering=1)

    def task_progress(self, task):
        with self.state:
            active = task is not None and task == self.current
            return {
                "active": active, "queued": task in self.pending, "completed": task in self.finished,
                "progress": self.progress if active else None, "eta": None, "live_preview": None,
                "id_live_preview": -1, "textinfo": None,
            }

    def generate(self, body, received):
        steps = int(body.get("steps", 20))
        width, height = int(body.get("width", 64)), int(body.get("height", 64))
        seed = int(body.get("seed", -1))
        override = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        task = body.get("force_task_id")
        with self.state:
            self.pending.add(task)
        with self.gpu:
            start = time.time()
            with self.state:
                self.interrupted = False
                self.progress = 0.0
                self.pending.discard(task)
                self.current = task
            done = 0
            for step in range(steps):
                time.sleep(self.step_ms / 1000)
                done = step + 1
                with self.state:
                    self.progress = done / steps
                    if self.interrupted:
                        break
            end = time.time()
            with self.state:
                self.progress = 0.0
                self.current = None
                self.finished = (self.finished + [task])[-16:]
        image = base64.b64encode(png(min(width, 256), min(height, 256), seed % 256 if seed >= 0 else 128)).decode()
        info = json.dumps({"all_seeds": [seed], "seed": seed})
        record = {"received": received, "start": start, "end": end, "steps": done, "model": override or self.model, "task": task}
        return {"images": [image], "parameters": body, "info": info}, record


def handler(peer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def answer(self, value, status=200):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on this request (a progress poll ended with its generation)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def do_GET(self):
            if self.path == "/sdapi/v1/options":
                self.answer({"sd_model_checkpoint": peer.model})
            elif self.path == "/sdapi/v1/sd-models":
                self.answer([{"title": peer.model, "model_name": peer.model}])
            elif self.path.startswith("/sdapi/v1/progress"):
                with peer.state:
                    self.answer({"progress": peer.progress, "eta_relative": 0, "state": {"job_count": 1 if peer.progress else 0}})
            else:
                self.answer({"detail": "Not Found"}, 404)

        def do_POST(self):
            body = self.body()
            received = time.time()
            if self.path == "/sdapi/v1/options":
                if "sd_model_checkpoint" in body:
                    with peer.gpu:
                        peer.model = body["sd_model_checkpoint"]
                self.answer(None)
            elif self.path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
                answer, record = peer.generate(body, received)
                self.answer(answer)
                record["answered"] = time.time()
                peer.log.write(json.dumps(record) + "\n")
            elif self.path == "/internal/progress":
                self.answer(peer.task_progress(body.get("id_task")))
            elif self.path == "/sdapi/v1/interrupt":
                with peer.state:
                    peer.interrupted = True
                self.answer(None)
            else:
                self.answer({"detail": "Not Found"}, 404)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--step-ms", type=float, default=10)
    parser.add_argument("--model", default="peer-model")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(Peer(args.step_ms, args.model, args.log)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
