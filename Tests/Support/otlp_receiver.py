"""An OTLP/HTTP receiver for the tests, independent of swift-otel: decodes the protobuf export
requests with the opentelemetry-proto package and writes one JSON line per span and per metric
data point.

Usage: otlp_receiver.py PORT_FILE LOG_FILE
"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback_server import serve  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

port_file, log_file = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def attributes(items):
    out = {}
    for kv in items:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = getattr(value, kind) if kind else None
    return out


def service_of(resource):
    return attributes(resource.attributes).get("service.name")


def spans(body):
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    for rs in request.resource_spans:
        service = service_of(rs.resource)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield {"kind": "span", "service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                       "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                       "span_kind": span.kind, "attributes": attributes(span.attributes),
                       "start": span.start_time_unix_nano, "end": span.end_time_unix_nano}


def points(body):
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.ParseFromString(body)
    for rm in request.resource_metrics:
        service = service_of(rm.resource)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.WhichOneof("data")
                for point in getattr(metric, data).data_points:
                    entry = {"kind": "metric", "service": service, "name": metric.name, "type": data,
                             "attributes": attributes(point.attributes)}
                    if data == "histogram":
                        entry.update(count=point.count, sum=point.sum)
                    elif point.WhichOneof("value") == "as_int":
                        entry["value"] = point.as_int
                    else:
                        entry["value"] = point.as_double
                    yield entry


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.path == "/v1/traces":
                entries, reply = list(spans(body)), trace_service_pb2.ExportTraceServiceResponse()
            elif self.path == "/v1/metrics":
                entries, reply = list(points(body)), metrics_service_pb2.ExportMetricsServiceResponse()
            else:
                self.send_response(404)
                self.end_headers()
                return
        except Exception as error:  # undecodable: say so in the log and to the sender
            entries, reply = [{"kind": "error", "path": self.path, "error": str(error)}], None
        with lock, open(log_file, "a") as log:
            for entry in entries:
                log.write(json.dumps(entry) + "\n")
        payload = reply.SerializeToString() if reply is not None else b""
        self.send_response(200 if reply is not None else 400)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


serve(Handler, port_file)
