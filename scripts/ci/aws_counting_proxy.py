#!/usr/bin/env python3
"""A counting reverse proxy for an AWS emulator (moto): forwards every request unchanged to the
upstream and counts it by AWS operation, so a benchmark can see what a client costs at the AWS
endpoint.

    aws_counting_proxy.py --port 4567 --upstream http://127.0.0.1:5000 [--moto-pid PID]

Operations are named `service:Action`: JSON protocols (DynamoDB, SQS JSON) from `X-Amz-Target`,
query protocols (SNS, SQS, STS form posts) from `Action=` in the body or query string, everything
else as S3 by method (`s3:PUT`, `s3:GET`, ...). The service is taken from the SigV4 credential
scope. Control endpoints on the same port, never forwarded:

    GET  /__counts   {"counts": {op: n}, "bytes": {op: request body bytes}, "started": epoch,
                      "dynamodb_writes": {op: {...}}, "moto_cpu_seconds": s}
    POST /__reset    zeroes the counters

For DynamoDB writes the proxy records the write capacity the response reports
(`ConsumedCapacity`) when it does, and otherwise an estimate from the request size: one WCU per
started KiB of request body, two per started KiB of each item of a transaction. The request JSON
is larger than the item as DynamoDB sizes it, so the estimate errs high.
"""
import argparse
import gzip
import http.client
import http.server
import json
import math
import os
import re
import threading
import time
import urllib.parse

CONTROL_PATHS = ("/__counts", "/__reset")
DYNAMO_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
# X-Amz-Target prefixes, for requests that carry no credential scope.
TARGET_SERVICES = {"dynamodb": "dynamodb", "amazonsqs": "sqs", "amazonsns": "sns", "secretsmanager": "secretsmanager",
                   "amazonssm": "ssm", "awssecuritytokenservice": "sts"}
SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Status codes whose responses have no body (besides any answer to HEAD).
NO_BODY = {204, 304}


class Counters:
    """Request counts by operation; every method takes the lock."""

    def __init__(self, moto_pid):
        self.lock = threading.Lock()
        self.moto_pid = moto_pid
        self.reset()

    def reset(self):
        with self.lock:
            self.started = time.time()
            self.counts, self.bytes, self.writes = {}, {}, {}

    def record(self, op, body_bytes, write=None):
        with self.lock:
            self.counts[op] = self.counts.get(op, 0) + 1
            self.bytes[op] = self.bytes.get(op, 0) + body_bytes
            if write is not None:
                entry = self.writes.setdefault(op, {"n": 0, "request_bytes": 0, "consumed_wcu": 0.0,
                                                    "consumed_reported": 0, "estimated_wcu": 0})
                entry["n"] += 1
                entry["request_bytes"] += body_bytes
                if write.get("consumed") is not None:
                    entry["consumed_wcu"] += write["consumed"]
                    entry["consumed_reported"] += 1
                entry["estimated_wcu"] += write["estimated"]

    def snapshot(self):
        with self.lock:
            document = {"counts": dict(self.counts), "bytes": dict(self.bytes), "started": self.started,
                        "dynamodb_writes": json.loads(json.dumps(self.writes)),
                        "requests": sum(self.counts.values()), "elapsed": time.time() - self.started}
        if self.moto_pid:
            document["moto_cpu_seconds"] = process_cpu_seconds(self.moto_pid)
        return document


def process_cpu_seconds(pid):
    """utime + stime of `pid` from /proc, in seconds; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; the fields after it are fixed.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def classify(method, path, headers, body):
    """The AWS operation of a request, as `service:Action`."""
    authorization = headers.get("Authorization", "")
    query = urllib.parse.urlsplit(path).query
    scope = SCOPE.search(authorization) or SCOPE.search(urllib.parse.unquote(query))
    service = scope.group(1) if scope else None
    if service == "s3":
        return f"s3:{method}"
    target = headers.get("X-Amz-Target")
    if target and "." in target:
        prefix, action = target.rsplit(".", 1)
        if service is None:
            key = prefix.split("_")[0].lower()
            service = next((name for p, name in TARGET_SERVICES.items() if key.startswith(p)), key)
        return f"{service}:{action}"
    action = urllib.parse.parse_qs(query).get("Action")
    if not action and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return f"{service or 'unknown'}:{action[0]}"
    return f"s3:{method}"


def consumed_wcu(response_body, encoding):
    """The write capacity a DynamoDB response reports, or None when it reports none."""
    try:
        if encoding == "gzip":
            response_body = gzip.decompress(response_body)
        document = json.loads(response_body or b"{}")
    except (ValueError, OSError):
        return None
    consumed = document.get("ConsumedCapacity") if isinstance(document, dict) else None
    if consumed is None:
        return None
    entries = [e for e in (consumed if isinstance(consumed, list) else [consumed]) if isinstance(e, dict)]
    if not entries:
        return None
    return sum(float(e.get("WriteCapacityUnits", e.get("CapacityUnits", 0)) or 0) for e in entries)


def estimated_wcu(action, body):
    """Write capacity estimated from the request: 1 per started KiB; a transaction 2 per started KiB of each item."""
    if action == "TransactWriteItems":
        try:
            items = json.loads(body).get("TransactItems", [])
            return sum(2 * max(1, math.ceil(len(json.dumps(item).encode()) / 1024)) for item in items)
        except (ValueError, AttributeError):
            pass
    return max(1, math.ceil(len(body) / 1024))


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the client unless either side says close
    counters = None
    upstream = None  # (host, port)

    def log_message(self, *args):
        pass

    def do_request(self):
        if urllib.parse.urlsplit(self.path).path in CONTROL_PATHS:
            return self.control()
        body, raw = self.read_body()
        op = classify(self.command, self.path, self.headers, body)
        try:
            status, headers, response_body = self.forward(raw)
        except (OSError, http.client.HTTPException) as error:
            self.counters.record(op, len(body))
            return self.answer(502, {"error": f"upstream: {error}"})
        write = None
        service, _, action = op.partition(":")
        if service == "dynamodb" and action in DYNAMO_WRITES:
            write = {"consumed": consumed_wcu(response_body, headers_get(headers, "Content-Encoding")),
                     "estimated": estimated_wcu(action, body)}
        self.counters.record(op, len(body), write)
        self.relay(status, headers, response_body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = do_request

    def read_body(self):
        """The request body decoded, and the bytes as they came (chunked framing kept)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            decoded, raw = bytearray(), bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self.rfile.readline(65537)
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(decoded), bytes(raw)
                chunk = self.rfile.read(size)
                decoded += chunk
                raw += chunk + self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body, body

    def forward(self, raw):
        """Sends the request upstream as it came; the response's status, headers and body."""
        for attempt in (0, 1):
            connection = getattr(self, "upstream_connection", None)
            reused = connection is not None
            if connection is None:
                connection = self.upstream_connection = http.client.HTTPConnection(*self.upstream, timeout=120)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    connection.putheader(name, value)
                connection.endheaders(raw or None)
                response = connection.getresponse()
                body = response.read()  # empty for HEAD; reading it frees the connection
                if response.will_close:
                    connection.close()
                    self.upstream_connection = None
                return response.status, response.getheaders(), body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive upstream connection closed under us: one retry on a fresh one.
                connection.close()
                self.upstream_connection = None
                if attempt or not reused:
                    raise

    def relay(self, status, headers, body):
        self.send_response_only(status)
        has_body = self.command != "HEAD" and status not in NO_BODY and status >= 200
        for name, value in headers:
            lower = name.lower()
            # http.client has de-chunked the body: send it with its length instead.
            if has_body and lower in ("transfer-encoding", "content-length"):
                continue
            if lower == "connection" and "close" in value.lower():
                self.close_connection = True
            self.send_header(name, value)
        if has_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if has_body:
            self.wfile.write(body)

    def control(self):
        path = urllib.parse.urlsplit(self.path).path
        self.read_body()
        if path == "/__reset" and self.command == "POST":
            self.counters.reset()
            status, document = 200, {"reset": True}
        elif path == "/__counts" and self.command in ("GET", "HEAD"):
            status, document = 200, self.counters.snapshot()
        else:
            status, document = 405, {"error": "GET /__counts or POST /__reset"}
        self.answer(status, document)

    def answer(self, status, document):
        payload = json.dumps(document, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def headers_get(headers, name):
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--upstream", required=True, help="the emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("--moto-pid", type=int, help="pid whose CPU time /__counts reports")
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream if "://" in args.upstream else "http://" + args.upstream)
    ProxyHandler.counters = Counters(args.moto_pid)
    ProxyHandler.upstream = (upstream.hostname, upstream.port or 80)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), ProxyHandler)
    server.daemon_threads = True
    print(f"counting proxy on http://127.0.0.1:{args.port} -> {args.upstream}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
