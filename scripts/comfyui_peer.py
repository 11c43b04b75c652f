#!/usr/bin/env python3
"""A ComfyUI peer that keeps its own clock.

Written from ComfyUI's HTTP and websocket API as a client meets it (server.py's routes,
execution.py's messages), not from sdq's emulator: `GET /system_stats`, `POST /prompt`,
`GET/POST /queue`, `POST /interrupt` (optionally `{"prompt_id"}`), `GET /history/{id}`,
`GET /view`, and `/ws?clientId=` (RFC 6455, text frames). One "GPU" thread runs queued prompts in
order; each sleeps the workflow's KSampler steps x --step-ms, streaming `execution_start`,
`executing`, `progress`, `executed`, `execution_success` and `executing` with `node: null` to the
prompt's client. Every prompt appends a JSON line to --log with the peer's own wall-clock times
(seconds): `received` (queued), `start` and `end` (the GPU section), and `sdq_task` (the task id
sdq put in SaveImage's `filename_prefix`, `<prefix>_<task id>`).

Usage: comfyui_peer.py --port PORT --log FILE [--step-ms 10]
"""
import argparse
import base64
import hashlib
import http.server
import json
import socket
import struct
import threading
import time
import urllib.parse
import uuid
import zlib

KNOWN = {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage", "PreviewImage"}
OUTPUTS = {"SaveImage", "PreviewImage"}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def png(width, height, shade):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def frame(text):
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


class Peer:
    def __init__(self, step_ms, log_path):
        self.step_ms = step_ms
        self.lock = threading.Condition()
        self.pending = []      # [number, id, prompt, extra, outputs]
        self.running = None
        self.interrupted = False
        self.history = {}
        self.files = {}
        self.sockets = {}      # client id -> (socket, lock)
        self.number = 0
        self.log = open(log_path, "a", buffering=1)
        threading.Thread(target=self.gpu, daemon=True).start()

    def send(self, client, kind, data):
        with self.lock:
            entry = self.sockets.get(client)
        if not entry:
            return
        sock, guard = entry
        try:
            with guard:
                sock.sendall(frame(json.dumps({"type": kind, "data": data})))
        except OSError:
            pass

    def queue_prompt(self, prompt, client):
        errors = {}
        for node_id, node in prompt.items():
            kind = node.get("class_type") if isinstance(node, dict) else None
            if kind not in KNOWN:
                return 400, {"error": {"type": "invalid_prompt", "message": f"Cannot execute because node {kind} does not exist.",
                                       "details": f"Node ID '#{node_id}'", "extra_info": {}}, "node_errors": {}}
        outputs = [i for i, n in prompt.items() if n["class_type"] in OUTPUTS]
        if not outputs:
            return 400, {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
                         "node_errors": {}}
        with self.lock:
            self.number += 1
            prompt_id = str(uuid.uuid4())
            self.pending.append([self.number, prompt_id, prompt, {"client_id": client, "received": time.time()}, outputs])
            self.lock.notify_all()
            return 200, {"prompt_id": prompt_id, "number": self.number, "node_errors": errors}

    def gpu(self):
        while True:
            with self.lock:
                while not self.pending:
                    self.lock.wait()
                item = self.pending.pop(0)
                self.running = item
                self.interrupted = False
            number, prompt_id, prompt, extra, outputs = item
            client = extra["client_id"]
            start = time.time()
            self.send(client, "execution_start", {"prompt_id": prompt_id, "timestamp": int(start * 1000)})
            self.send(client, "execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": int(start * 1000)})
            sampler = next((i for i, n in prompt.items() if n["class_type"] == "KSampler"), None)
            steps = int(prompt[sampler]["inputs"].get("steps", 20)) if sampler else 1
            latent = next((n["inputs"] for n in prompt.values() if n["class_type"] == "EmptyLatentImage"), {})
            width, height = min(256, int(latent.get("width", 64))), min(256, int(latent.get("height", 64)))
            seed = int(prompt[sampler]["inputs"].get("seed", 0)) if sampler else 0
            interrupted = False
            if sampler:
                self.send(client, "executing", {"node": sampler, "display_node": sampler, "prompt_id": prompt_id})
            for step in range(steps):
                time.sleep(self.step_ms / 1000)
                self.send(client, "progress", {"value": step + 1, "max": steps, "prompt_id": prompt_id, "node": sampler})
                with self.lock:
                    if self.interrupted:
                        interrupted = True
                        break
            end = time.time()
            result_outputs, messages = {}, [["execution_start", {"prompt_id": prompt_id}]]
            prefix = ""
            if not interrupted:
                for node_id in outputs:
                    node = prompt[node_id]
                    kind = "output" if node["class_type"] == "SaveImage" else "temp"
                    prefix = node["inputs"].get("filename_prefix", "ComfyUI") if kind == "output" else "ComfyUI_temp"
                    name = f"{prefix}_00001_.png"
                    with self.lock:
                        self.files[(name, kind)] = png(width, height, seed % 256)
                    result_outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
                    self.send(client, "executed", {"node": node_id, "display_node": node_id, "output": result_outputs[node_id],
                                                   "prompt_id": prompt_id})
                messages.append(["execution_success", {"prompt_id": prompt_id}])
                status = {"status_str": "success", "completed": True, "messages": messages}
            else:
                messages.append(["execution_interrupted", {"prompt_id": prompt_id, "node_id": sampler}])
                status = {"status_str": "error", "completed": False, "messages": messages}
            with self.lock:
                self.history[prompt_id] = {"prompt": [number, prompt_id, prompt, extra, outputs], "outputs": result_outputs, "status": status}
                self.running = None
            if interrupted:
                self.send(client, "execution_interrupted", {"prompt_id": prompt_id, "node_id": sampler})
            else:
                self.send(client, "execution_success", {"prompt_id": prompt_id, "timestamp": int(end * 1000)})
            self.send(client, "executing", {"node": None, "prompt_id": prompt_id})
            task = prefix.rsplit("_", 1)[-1] if "_" in prefix else ""
            self.log.write(json.dumps({"received": extra["received"], "start": start, "end": end, "steps": steps,
                                       "interrupted": interrupted, "prompt_id": prompt_id, "sdq_task": task}) + "\n")


def handler(peer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def answer(self, value, status=200, content_type="application/json"):
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def websocket(self, client):
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            sock, guard = self.connection, threading.Lock()
            with peer.lock:
                peer.sockets[client] = (sock, guard)  # one socket per client id, as server.py keeps
                remaining = len(peer.pending) + (1 if peer.running else 0)
            peer.send(client, "status", {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client})
            reader = self.rfile
            while True:
                head = reader.read(2)
                if len(head) < 2:
                    break
                opcode, length = head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", reader.read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", reader.read(8))[0]
                mask = reader.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(reader.read(length)))
                if opcode == 8:
                    try:
                        with guard:
                            sock.sendall(b"\x88\x00")
                    except OSError:
                        pass
                    break
                if opcode == 9:
                    with guard:
                        sock.sendall(struct.pack("!BB", 0x8A, len(payload)) + payload)
            with peer.lock:
                if peer.sockets.get(client, (None,))[0] is sock:
                    del peer.sockets[client]
            self.close_connection = True

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/ws":
                self.websocket(query.get("clientId", [str(uuid.uuid4())])[0])
            elif url.path == "/system_stats":
                self.answer({"system": {"os": "posix", "comfyui_version": "peer"}, "devices": []})
            elif url.path == "/queue":
                with peer.lock:
                    self.answer({"queue_running": [peer.running[:2] + [{}, {}, []]] if peer.running else [],
                                 "queue_pending": [p[:2] + [{}, {}, []] for p in peer.pending]})
            elif url.path.startswith("/history/"):
                prompt_id = url.path[len("/history/"):]
                with peer.lock:
                    entry = peer.history.get(prompt_id)
                self.answer({prompt_id: entry} if entry else {})
            elif url.path == "/view":
                name, kind = query.get("filename", [""])[0], query.get("type", ["output"])[0]
                with peer.lock:
                    data = peer.files.get((name, kind))
                if data is None:
                    self.answer({"error": "not found"}, 404)
                else:
                    self.answer(data, content_type="image/png")
            else:
                self.answer({"error": "not found"}, 404)

        def do_POST(self):
            body = self.body()
            if self.path == "/prompt":
                status, value = peer.queue_prompt(body.get("prompt") or {}, body.get("client_id", ""))
                self.answer(value, status)
            elif self.path == "/queue":
                with peer.lock:
                    if body.get("clear"):
                        peer.pending.clear()
                    for prompt_id in body.get("delete", []):
                        peer.pending = [p for p in peer.pending if p[1] != prompt_id]
                self.answer({})
            elif self.path == "/interrupt":
                with peer.lock:
                    target = body.get("prompt_id")
                    if peer.running and (target is None or target == peer.running[1]):
                        peer.interrupted = True
                self.answer({})
            else:
                self.answer({"error": "not found"}, 404)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--step-ms", type=float, default=10)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(Peer(args.step_ms, args.log)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
