"""A webhook receiver for the tests: an independent implementation of the Standard Webhooks
verification (Python's hmac and hashlib), written from the published scheme.

Usage: webhook_receiver.py PORT_FILE LOG_FILE [--secret whsec_...] [--responses 500,500,200]
                           [--delay-ms N]

Listens on 127.0.0.1 on a free port (written to PORT_FILE), answers each POST with the next
status of --responses (the last repeats) after --delay-ms, and appends one JSON line per
delivery to LOG_FILE: id, timestamp, signature, verified (signature and 5-minute timestamp
tolerance), status answered, host header, path and the parsed body.
"""
import base64, hashlib, hmac, json, sys, threading, time
import os
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback_server import serve  # noqa: E402

args = sys.argv[1:]
port_file, log_file = args[0], args[1]
options = dict(zip(args[2::2], args[3::2]))
secret = options.get("--secret")
responses = [int(s) for s in options.get("--responses", "200").split(",")]
delay = int(options.get("--delay-ms", "0")) / 1000.0
lock = threading.Lock()
count = [0]


def verify(msg_id, timestamp, body, header):
    if not secret or not msg_id or not timestamp or not header:
        return False
    if abs(time.time() - int(timestamp)) > 300:
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    expected = base64.b64encode(
        hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()).decode()
    for candidate in header.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            status = responses[min(count[0], len(responses) - 1)]
            count[0] += 1
        if delay:
            time.sleep(delay)
        entry = {
            "id": self.headers.get("webhook-id"), "timestamp": self.headers.get("webhook-timestamp"),
            "signature": self.headers.get("webhook-signature"),
            "verified": verify(self.headers.get("webhook-id"), self.headers.get("webhook-timestamp"), body,
                               self.headers.get("webhook-signature")),
            "status": status, "host": self.headers.get("Host"), "path": self.path,
        }
        try:
            entry["body"] = json.loads(body)
        except ValueError:
            entry["body"] = None
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender gave up (timeout)
        with lock, open(log_file, "a") as log:
            log.write(json.dumps(entry) + "\n")

    def log_message(self, *args):
        pass


serve(Handler, port_file)
