import Foundation

/// A failed AWS call: the service's error code and message, the request id, the HTTP status.
public struct AWSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The AWS error code (`QueueDoesNotExist`, `ConditionalCheckFailedException`, `NoSuchKey`…),
    /// or `NetworkError`, `InvalidResponse`, `CredentialsError` for failures before an answer.
    public let code: String
    public let message: String
    public let requestID: String?
    /// HTTP status, 0 when no response arrived.
    public let statusCode: Int

    public init(code: String, message: String, requestID: String? = nil, statusCode: Int = 0) {
        self.code = code
        self.message = message
        self.requestID = requestID
        self.statusCode = statusCode
    }

    public var description: String {
        "\(code) (HTTP \(statusCode)): \(message)" + (requestID.map { " [request \($0)]" } ?? "")
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
        "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    ]

    /// Whether trying again may succeed: network failures, 5xx, 429 and throttling codes.
    public var isRetryable: Bool {
        code == "NetworkError" || statusCode >= 500 || statusCode == 429 || Self.throttlingCodes.contains(code)
    }

    /// Reads the error of a JSON-protocol response (`__type`, `message`).
    static func fromJSON(status: Int, headers: [String: String], body: Data) -> AWSError {
        let requestID = headers["x-amzn-requestid"] ?? headers["x-amz-request-id"]
        let object = try? JSONValue.parse(body)
        var code = object?["__type"]?.stringValue ?? object?["code"]?.stringValue ?? ""
        if let hash = code.lastIndex(of: "#") { code = String(code[code.index(after: hash)...]) }
        if let colon = code.firstIndex(of: ":") { code = String(code[..<colon]) }
        // SQS (query-compatible) also names the legacy code in a header.
        if let legacy = headers["x-amzn-query-error"]?.split(separator: ";").first, code.isEmpty { code = String(legacy) }
        let message = object?["message"]?.stringValue ?? object?["Message"]?.stringValue ?? String(decoding: body.prefix(300), as: UTF8.self)
        return AWSError(code: code.isEmpty ? "HTTP\(status)" : code, message: message, requestID: requestID, statusCode: status)
    }

    /// Reads the error of an XML response (Query protocols, S3).
    static func fromXML(status: Int, headers: [String: String], body: Data) -> AWSError {
        let document = XMLNode.parse(body)
        let code = document?.first("Code")?.text ?? (status == 404 ? "NotFound" : "HTTP\(status)")
        let message = document?.first("Message")?.text ?? "HTTP \(status)"
        let requestID = document?.first("RequestId")?.text ?? headers["x-amz-request-id"] ?? headers["x-amzn-requestid"]
        return AWSError(code: code, message: message, requestID: requestID, statusCode: status)
    }
}
