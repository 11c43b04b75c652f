import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One invocation as the Lambda Runtime API hands it out.
public struct LambdaInvocation: Sendable, Equatable {
    /// `Lambda-Runtime-Aws-Request-Id`.
    public var requestID: String
    /// `Lambda-Runtime-Deadline-Ms`: epoch milliseconds by which the invocation must answer.
    public var deadlineMillis: Int64
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    public var invokedFunctionARN: String
    /// `Lambda-Runtime-Trace-Id` (X-Ray), if any.
    public var traceID: String?
    /// `Lambda-Runtime-Client-Context` and `Lambda-Runtime-Cognito-Identity`, raw.
    public var clientContext: String?
    public var cognitoIdentity: String?
    /// The event.
    public var payload: Data

    public init(
        requestID: String, deadlineMillis: Int64, invokedFunctionARN: String = "", traceID: String? = nil,
        clientContext: String? = nil, cognitoIdentity: String? = nil, payload: Data
    ) {
        self.requestID = requestID
        self.deadlineMillis = deadlineMillis
        self.invokedFunctionARN = invokedFunctionARN
        self.traceID = traceID
        self.clientContext = clientContext
        self.cognitoIdentity = cognitoIdentity
        self.payload = payload
    }
}

/// An error reported to the Runtime API: `{"errorMessage", "errorType", "stackTrace"}`.
public struct LambdaErrorReport: Sendable, Equatable {
    public var errorType: String
    public var errorMessage: String
    public var stackTrace: [String]

    public init(errorType: String, errorMessage: String, stackTrace: [String] = []) {
        self.errorType = errorType
        self.errorMessage = errorMessage
        self.stackTrace = stackTrace
    }

    var json: Data {
        struct Body: Encodable { var errorType: String, errorMessage: String, stackTrace: [String] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(Body(errorType: errorType, errorMessage: errorMessage, stackTrace: stackTrace))) ?? Data()
    }
}

/// A failure talking to the Runtime API itself.
public struct LambdaRuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The seam between the run loop and the Runtime API (a fake in loop tests, HTTP in production).
public protocol LambdaRuntimeClient: Sendable {
    /// Waits, without a client timeout, for the next invocation.
    func next() async throws(LambdaRuntimeError) -> LambdaInvocation
    /// Posts the response of `requestID`.
    func respond(requestID: String, body: Data) async throws(LambdaRuntimeError)
    /// Posts the response of `requestID` in streaming mode (``LambdaResponseMode/streaming``).
    func respondStreaming(requestID: String, contentType: String, body: StreamedBody) async throws(LambdaRuntimeError)
    /// Posts an invocation error of `requestID`.
    func fail(requestID: String, error: LambdaErrorReport) async throws(LambdaRuntimeError)
    /// Posts an initialisation error (the process exits afterwards).
    func initializationFailed(_ error: LambdaErrorReport) async throws(LambdaRuntimeError)
}

/// The Lambda Runtime API over HTTP at `AWS_LAMBDA_RUNTIME_API` (`host:port`).
public struct HTTPLambdaRuntimeClient: LambdaRuntimeClient {
    public let endpoint: String
    let http: HTTPClient

    public init(endpoint: String, http: HTTPClient = .lambdaRuntime) {
        self.endpoint = endpoint
        self.http = http
    }

    private var base: String { "http://\(endpoint)/2018-06-01/runtime" }

    public func next() async throws(LambdaRuntimeError) -> LambdaInvocation {
        var request = HTTPClientRequest(url: "\(base)/invocation/next")
        request.method = .GET
        let (status, headers, body) = try await send(request, timeout: .hours(24 * 365))
        guard status == 200 else { throw LambdaRuntimeError("next answered \(status)") }
        guard let requestID = headers["lambda-runtime-aws-request-id"], !requestID.isEmpty else {
            throw LambdaRuntimeError("next answered without Lambda-Runtime-Aws-Request-Id")
        }
        return LambdaInvocation(
            requestID: requestID, deadlineMillis: headers["lambda-runtime-deadline-ms"].flatMap(Int64.init) ?? 0,
            invokedFunctionARN: headers["lambda-runtime-invoked-function-arn"] ?? "",
            traceID: headers["lambda-runtime-trace-id"], clientContext: headers["lambda-runtime-client-context"],
            cognitoIdentity: headers["lambda-runtime-cognito-identity"], payload: body)
    }

    /// Streams the response over a connection of its own (``StreamingResponsePoster``).
    public func respondStreaming(requestID: String, contentType: String, body: StreamedBody) async throws(LambdaRuntimeError) {
        try await StreamingResponsePoster(endpoint: endpoint).post(requestID: requestID, contentType: contentType, body: body)
    }

    public func respond(requestID: String, body: Data) async throws(LambdaRuntimeError) {
        var request = HTTPClientRequest(url: "\(base)/invocation/\(requestID)/response")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: body))
        try await expectAccepted(request)
    }

    public func fail(requestID: String, error: LambdaErrorReport) async throws(LambdaRuntimeError) {
        try await post(error, to: "\(base)/invocation/\(requestID)/error")
    }

    public func initializationFailed(_ error: LambdaErrorReport) async throws(LambdaRuntimeError) {
        try await post(error, to: "\(base)/init/error")
    }

    private func post(_ error: LambdaErrorReport, to url: String) async throws(LambdaRuntimeError) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Lambda-Runtime-Function-Error-Type", value: error.errorType)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: error.json))
        try await expectAccepted(request)
    }

    private func expectAccepted(_ request: HTTPClientRequest) async throws(LambdaRuntimeError) {
        let (status, _, body) = try await send(request, timeout: .seconds(30))
        guard status == 202 else {
            throw LambdaRuntimeError("\(request.url) answered \(status): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
    }

    private func send(_ request: HTTPClientRequest, timeout: TimeAmount) async throws(LambdaRuntimeError) -> (Int, [String: String], Data) {
        do {
            let response = try await http.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: 64 << 20)
            var headers: [String: String] = [:]
            for header in response.headers { headers[header.name.lowercased()] = header.value }
            return (Int(response.status.code), headers, Data(body.readableBytesView))
        } catch {
            throw LambdaRuntimeError("Runtime API request \(request.url) failed: \(error)")
        }
    }
}

extension HTTPClient {
    /// The client of the Runtime API: no read timeout, because `next` may wait for an invocation
    /// for as long as the execution environment lives (`HTTPClient.shared` would give up after its
    /// read timeout and end the runtime); one connection, kept alive between invocations.
    public static let lambdaRuntime: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: nil)
        configuration.connectionPool = .init(idleTimeout: .hours(24 * 365), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}
