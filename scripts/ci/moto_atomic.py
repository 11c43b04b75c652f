#!/usr/bin/env python3
"""moto's server with DynamoDB writes made atomic, as DynamoDB documents them.

moto_server answers requests on many threads, and its DynamoDB backend evaluates a write's
condition and applies the write without a lock: two concurrent conditional UpdateItem calls can
both pass (measured with moto 5.2: 2 of 20 trials of six racing writers had two winners). Real
DynamoDB applies each conditional write atomically, and sdq's exactly-once guarantees rest on
that. This runs the same moto application, serialising DynamoDB requests (and, apart from them,
SQS's queue management calls, which race in moto too; SQS long polls, sends and everything else
stay concurrent), so tests of racing writers test sdq, not the emulator.

Usage: moto_atomic.py -H 127.0.0.1 -p PORT   (the same options as moto_server's -H and -p)
"""
import argparse
import os
import sys
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


SQS_CONTROL = {f"AmazonSQS.{action}" for action in (
    "CreateQueue", "DeleteQueue", "SetQueueAttributes", "GetQueueUrl", "ListQueues", "TagQueue")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()
    sqs_control = threading.Lock()
    holder = {"target": None, "since": 0.0}

    def serialised(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            # A request that never finishes (a client gone mid-body) must not hold every other
            # DynamoDB call forever: after 30 s the next one goes ahead unserialised, and says so.
            if not dynamodb.acquire(timeout=30):
                print(f"moto_atomic: DynamoDB lock held {time.time() - holder['since']:.0f} s by {holder['target']}; "
                      f"running {target} without it", file=sys.stderr, flush=True)
                return list(app(environ, start_response))
            holder.update(target=target, since=time.time())
            try:
                return list(app(environ, start_response))
            finally:
                dynamodb.release()
        if target in SQS_CONTROL:
            # moto's SQS backend iterates its queues while another thread adds one: concurrent
            # CreateQueue calls (many test stacks provisioned at once) fail with a 500
            # ("dictionary changed size during iteration"). SQS itself has no such race.
            with sqs_control:
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(args.host, args.port, serialised, threaded=True)


if __name__ == "__main__":
    main()
