import Foundation
import Logging

/// What a handler knows about the invocation it serves.
public struct LambdaContext: Sendable {
    public let requestID: String
    /// Epoch milliseconds by which the answer is due.
    public let deadlineMillis: Int64
    public let invokedFunctionARN: String
    public let traceID: String?
    /// A logger whose every line carries the request id.
    public let logger: Logger

    /// Time left before the deadline (zero when past).
    public var remaining: Duration {
        let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        return .milliseconds(max(0, deadlineMillis - now))
    }
}

/// A function body: an event in, a response out. A thrown error becomes an invocation error;
/// the run loop goes on either way.
public protocol LambdaHandler: Sendable {
    func handle(_ event: Data, context: LambdaContext) async throws -> Data
}

/// The run loop of a custom runtime: `next` → handler → `response` or `error`, forever.
///
/// Per invocation it sets `_X_AMZN_TRACE_ID` from `Lambda-Runtime-Trace-Id`, gives the handler a
/// logger tagged with the request id and the deadline, and never lets a handler error end the
/// loop. Start-up failures go to `init/error` (``LambdaRuntimeClient/reportInitializationFailure(_:)``).
public struct LambdaRuntime<Client: LambdaRuntimeClient, Handler: LambdaHandler>: Sendable {
    public let client: Client
    public let handler: Handler
    public let logger: Logger
    /// Whether `_X_AMZN_TRACE_ID` is exported per invocation (as Lambda requires). Tests that share
    /// the process environment with parallel tests turn it off: `setenv` is not thread-safe.
    public let exportsTraceID: Bool
    /// Whether responses are streamed (the function's URL or REST route streams): then a
    /// ``StreamingLambdaHandler`` writes its body as it goes.
    public let responseMode: LambdaResponseMode

    public init(client: Client, handler: Handler, logger: Logger, exportsTraceID: Bool = true, responseMode: LambdaResponseMode = .buffered) {
        self.client = client
        self.handler = handler
        self.logger = logger
        self.exportsTraceID = exportsTraceID
        self.responseMode = responseMode
    }

    /// Serves invocations until cancelled or until `limit` invocations (tests, benchmarks).
    public func run(limit: Int? = nil) async throws(LambdaRuntimeError) {
        var served = 0
        while !Task.isCancelled {
            if let limit, served >= limit { return }
            let invocation = try await client.next()
            served += 1
            try await serve(invocation)
        }
    }

    /// Handles one invocation and posts its outcome.
    public func serve(_ invocation: LambdaInvocation) async throws(LambdaRuntimeError) {
        if exportsTraceID {
            if let traceID = invocation.traceID {
                setenv("_X_AMZN_TRACE_ID", traceID, 1)
            } else {
                unsetenv("_X_AMZN_TRACE_ID")
            }
        }
        var logger = self.logger
        logger[metadataKey: "aws_request_id"] = "\(invocation.requestID)"
        // The trace id as handlers and instrumentation see it: read back from the environment
        // when exported, so the log line proves what the process holds.
        let traceID = exportsTraceID ? getenv("_X_AMZN_TRACE_ID").map { String(cString: $0) } : invocation.traceID
        if let traceID { logger[metadataKey: "xray_trace_id"] = "\(traceID)" }
        logger.debug("invocation", metadata: ["deadline_ms": "\(invocation.deadlineMillis)"])
        let context = LambdaContext(
            requestID: invocation.requestID, deadlineMillis: invocation.deadlineMillis,
            invokedFunctionARN: invocation.invokedFunctionARN, traceID: invocation.traceID, logger: logger)
        do {
            if responseMode == .streaming, let streaming = handler as? any StreamingLambdaHandler {
                // The response is posted from inside the handler, once it knows its head.
                try await streaming.stream(invocation.payload, context: context) { contentType, body in
                    try await client.respondStreaming(requestID: invocation.requestID, contentType: contentType, body: body)
                }
            } else {
                let response = try await handler.handle(invocation.payload, context: context)
                try await client.respond(requestID: invocation.requestID, body: response)
            }
        } catch let error as LambdaRuntimeError {
            throw error
        } catch {
            logger.error("invocation failed", metadata: ["error": "\(error)"])
            try await client.fail(requestID: invocation.requestID, error: Self.report(error))
        }
    }

    static func report(_ error: any Error) -> LambdaErrorReport {
        let type = String(describing: Swift.type(of: error))
        return LambdaErrorReport(errorType: "Runtime.\(type)", errorMessage: String(describing: error))
    }
}

extension LambdaRuntimeClient {
    /// Posts a start-up failure to `init/error` (best effort); the caller then exits non-zero.
    public func reportInitializationFailure(_ error: any Error) async {
        let report = LambdaErrorReport(errorType: "Runtime.InitError", errorMessage: String(describing: error))
        try? await initializationFailed(report)
    }
}
