import Foundation
import SDQAWS
import SDQCore
import SDQMessages
import Tracing

/// W3C trace context across queues and topics: into and out of the `TraceContext` of a message
/// (and its `traceparent` attribute), and to X-Ray's `AWSTraceHeader` form for SQS.
public enum TraceCarrier {
    struct DictionaryInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    struct DictionaryExtractor: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? {
            carrier[key] ?? carrier.first { $0.key.lowercased() == key }?.value
        }
    }

    /// The current span's context as a message's `TraceContext` (empty when nothing is traced).
    public static func current() -> Sdq_V1_TraceContext {
        var headers: [String: String] = [:]
        InstrumentationSystem.instrument.inject(ServiceContext.current ?? .topLevel, into: &headers, using: DictionaryInjector())
        var trace = Sdq_V1_TraceContext()
        trace.traceparent = headers["traceparent"] ?? ""
        trace.tracestate = headers["tracestate"] ?? ""
        return trace
    }

    /// The context to parent a span on, from a message's `TraceContext`.
    public static func context(_ trace: Sdq_V1_TraceContext) -> ServiceContext {
        context(headers: ["traceparent": trace.traceparent, "tracestate": trace.tracestate].filter { !$0.value.isEmpty })
    }

    /// The context to parent a span on, from headers or message attributes (`traceparent`,
    /// `tracestate`, any case).
    public static func context(headers: [String: String]) -> ServiceContext {
        var context = ServiceContext.topLevel
        guard headers.keys.contains(where: { $0.lowercased() == "traceparent" }) else { return context }
        InstrumentationSystem.instrument.extract(headers, into: &context, using: DictionaryExtractor())
        return context
    }

    /// The trace id (32 hex digits) of a W3C `traceparent`; nil when it is not one.
    public static func traceID(of traceparent: String) -> String? {
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[1].allSatisfy(\.isHexDigit) else { return nil }
        return String(parts[1])
    }

    /// X-Ray's header (`Root=1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx;Parent=…;Sampled=1`) for a W3C
    /// `traceparent`; nil when it is not one.
    public static func xrayHeader(traceparent: String) -> String? {
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return nil }
        let trace = parts[1]
        let sampled = (UInt8(parts[3], radix: 16) ?? 0) & 1 == 1 ? "1" : "0"
        return "Root=1-\(trace.prefix(8))-\(trace.dropFirst(8));Parent=\(parts[2]);Sampled=\(sampled)"
    }

    /// The W3C `traceparent` for an X-Ray header (`Lambda-Runtime-Trace-Id`, `_X_AMZN_TRACE_ID`);
    /// nil when it has no root and parent.
    public static func traceparent(xrayHeader: String) -> String? {
        var fields: [String: String] = [:]
        for part in xrayHeader.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[pair[0].trimmingWhitespace()] = String(pair[1]) }
        }
        guard let root = fields["Root"], let parent = fields["Parent"], parent.count == 16 else { return nil }
        let rootParts = root.split(separator: "-")
        guard rootParts.count == 3, rootParts[0] == "1", rootParts[1].count == 8, rootParts[2].count == 24 else { return nil }
        let hex = Set("0123456789abcdef")
        let traceID = (rootParts[1] + rootParts[2]).lowercased()
        guard traceID.allSatisfy(hex.contains), parent.lowercased().allSatisfy(hex.contains) else { return nil }
        return "00-\(traceID)-\(parent.lowercased())-\(fields["Sampled"] == "0" ? "00" : "01")"
    }
}
