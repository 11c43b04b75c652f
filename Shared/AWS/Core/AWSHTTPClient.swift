import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// A raw AWS response.
public struct AWSResponse: Sendable {
    public var status: Int
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: Data
}

/// How the error body of a service is encoded.
public enum AWSErrorFormat: Sendable { case json, xml }

/// The time by which AWS calls made in the current task must be done, such as a Lambda
/// invocation's deadline less the time needed to answer. ``AWSHTTPClient`` caps each attempt's
/// timeout at it, skips retries that could not finish before it, and fails a call begun after it
/// with `DeadlineExceeded` without sending anything.
public enum AWSCallDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?
}

/// Sends signed requests to AWS with retries: network errors, 5xx, 429 and throttling errors are
/// retried up to `AWS_MAX_ATTEMPTS` times with capped exponential backoff and full jitter; other
/// errors surface at once as ``AWSError`` with the service's code and request id.
public struct AWSHTTPClient: Sendable {
    public let environment: AWSEnvironment
    public let credentials: any CredentialProvider
    public let http: HTTPClient
    public var logger: Logger
    public var timeout: TimeAmount
    /// Backoff base and cap.
    public var baseDelay: Duration = .milliseconds(100)
    public var maxDelay: Duration = .seconds(5)

    public init(
        environment: AWSEnvironment, credentials: any CredentialProvider, http: HTTPClient = .aws,
        logger: Logger = Logger(label: "sdq.aws"), timeout: TimeAmount = .seconds(30)
    ) {
        self.environment = environment
        self.credentials = credentials
        self.http = http
        self.logger = logger
        self.timeout = timeout
    }

    /// Sends one request to `endpoint` + `path` (`path` percent-encoded as on the wire).
    public func send(
        service: String, endpoint: URL, method: HTTPMethod, path: String, query: String = "",
        headers: [(String, String)] = [], body: Data = Data(), errorFormat: AWSErrorFormat,
        unsignedPayload: Bool = false, timeout: TimeAmount? = nil
    ) async throws(AWSError) -> AWSResponse {
        let attempts = environment.maxAttempts
        let deadline = AWSCallDeadline.current
        var attempt = 0
        while true {
            attempt += 1
            do throws(AWSError) {
                var attemptTimeout = timeout ?? self.timeout
                if let deadline {
                    let left = ContinuousClock.now.duration(to: deadline)
                    guard left > .zero else {
                        throw AWSError(code: "DeadlineExceeded", message: "the caller's deadline passed before \(service) answered")
                    }
                    let (seconds, attoseconds) = left.components
                    attemptTimeout = min(attemptTimeout, .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
                }
                let response = try await sendOnce(
                    service: service, endpoint: endpoint, method: method, path: path, query: query, headers: headers,
                    body: body, unsignedPayload: unsignedPayload, timeout: attemptTimeout)
                if (200..<300).contains(response.status) || response.status == 304 { return response }
                let error =
                    errorFormat == .json
                    ? AWSError.fromJSON(status: response.status, headers: response.headers, body: response.body)
                    : AWSError.fromXML(status: response.status, headers: response.headers, body: response.body)
                throw error
            } catch {
                guard error.isRetryable, attempt < attempts, !Task.isCancelled else { throw error }
                let cap = min(maxDelay, baseDelay * Int(1 << min(attempt, 16)))
                let capMilliseconds = cap.components.seconds * 1000 + cap.components.attoseconds / 1_000_000_000_000_000
                let jittered = Duration.milliseconds(Int64.random(in: 0...max(1, capMilliseconds)))
                // A retry that would start after the deadline cannot help: surface the error now.
                if let deadline, ContinuousClock.now.advanced(by: jittered) >= deadline { throw error }
                logger.debug("retrying AWS call", metadata: ["service": "\(service)", "error": "\(error)", "attempt": "\(attempt)"])
                do { try await Task.sleep(for: jittered) } catch { throw AWSError(code: "Cancelled", message: "cancelled") }
            }
        }
    }

    private func sendOnce(
        service: String, endpoint: URL, method: HTTPMethod, path: String, query: String, headers: [(String, String)],
        body: Data, unsignedPayload: Bool, timeout: TimeAmount
    ) async throws(AWSError) -> AWSResponse {
        let credentials = try await self.credentials.credentials()
        let host = Self.hostHeader(endpoint)
        let basePath = endpoint.path == "/" ? "" : endpoint.path
        let wirePath = basePath + (path.isEmpty ? "/" : path)
        var all = headers
        all.append(("Host", host))
        let payloadHash = unsignedPayload ? SigV4Signer.unsignedPayload : SigV4Signer.payloadHash(body)
        let signer = SigV4Signer(service: service, region: environment.region)
        let (signed, _) = signer.signedHeaders(
            for: SigningRequest(method: method.rawValue, path: wirePath, query: query, headers: all, payloadHash: payloadHash),
            credentials: credentials, date: Date())
        var url = "\(endpoint.scheme ?? "https")://\(host)\(wirePath)"
        if !query.isEmpty { url += "?" + query }
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in all + signed { request.headers.add(name: name, value: value) }
        if !body.isEmpty || method == .PUT || method == .POST {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await http.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: 256 << 20)
            var responseHeaders: [String: String] = [:]
            for header in response.headers { responseHeaders[header.name.lowercased()] = header.value }
            return AWSResponse(status: Int(response.status.code), headers: responseHeaders, body: Data(buffer.readableBytesView))
        } catch {
            throw AWSError(code: "NetworkError", message: "\(error)")
        }
    }

    /// `host[:port]` as the Host header carries it (default ports omitted).
    static func hostHeader(_ url: URL) -> String {
        let host = url.host ?? "localhost"
        guard let port = url.port else { return host }
        if (url.scheme == "https" && port == 443) || (url.scheme == "http" && port == 80) { return host }
        return "\(host):\(port)"
    }

    /// Sends an AWS JSON call (`X-Amz-Target: prefix.Operation`; protocol 1.0, or 1.1 for
    /// services such as Secrets Manager and SSM) and returns the decoded object.
    public func json(
        service: String, target: String, _ payload: JSONValue, timeout: TimeAmount? = nil, version: String = "1.0"
    ) async throws(AWSError) -> JSONValue {
        // JSONEncoder and JSONDecoder (FoundationEssentials) rather than JSONSerialization, whose
        // NSNumber bridging and sorted keys (compared through a Locale: ICU data) cost a Lambda
        // function megabytes of memory.
        let body: Data
        do { body = try JSONEncoder().encode(payload) } catch {
            throw AWSError(code: "InvalidRequest", message: "cannot encode \(target): \(error)")
        }
        let response = try await send(
            service: service, endpoint: environment.endpoint(for: service), method: .POST, path: "/",
            headers: [("Content-Type", "application/x-amz-json-\(version)"), ("X-Amz-Target", target)], body: body, errorFormat: .json,
            timeout: timeout)
        if response.body.isEmpty { return [:] }
        guard let object = try? JSONValue.parse(response.body), case .object = object else {
            throw AWSError(code: "InvalidResponse", message: "\(target) answered non-JSON", statusCode: response.status)
        }
        return object
    }

    /// Sends an AWS Query call (form-encoded `Action=…&Version=…`) and returns the parsed XML.
    public func query(service: String, action: String, version: String, _ parameters: [(String, String)]) async throws(AWSError)
        -> XMLNode
    {
        let form = URIEncoding.formEncode([("Action", action), ("Version", version)] + parameters)
        let response = try await send(
            service: service, endpoint: environment.endpoint(for: service), method: .POST, path: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], body: Data(form.utf8),
            errorFormat: .xml)
        guard let document = XMLNode.parse(response.body) else {
            throw AWSError(code: "InvalidResponse", message: "\(action) answered non-XML", statusCode: response.status)
        }
        return document
    }
}
