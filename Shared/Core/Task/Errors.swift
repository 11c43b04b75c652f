/// A failure with a stable, machine-readable code, the shape every sdq error takes on the wire:
/// `{"error": {"code": …, "message": …, "field": …}}`.
public protocol CodedError: Error, CustomStringConvertible {
    /// Stable code, e.g. `invalid_field`, `unknown_pool`.
    var code: String { get }
    /// Human-readable explanation.
    var message: String { get }
    /// The offending input field, when one is to blame.
    var field: String? { get }
}

extension CodedError {
    public var field: String? { nil }
    public var description: String {
        field.map { "\(code): \(message) (field \($0))" } ?? "\(code): \(message)"
    }
}

/// Errors raised by the transports (embedded and AWS).
public struct TransportError: CodedError, Equatable {
    public let code: String
    public let message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// The queue, topic or table does not exist.
    public static func notFound(_ what: String) -> TransportError {
        TransportError(code: "not_found", message: "\(what) does not exist")
    }
    /// A receipt handle no longer names an in-flight message.
    public static func receiptExpired() -> TransportError {
        TransportError(code: "receipt_expired", message: "the receipt handle is no longer valid")
    }
    /// The backing store failed.
    public static func storage(_ message: String) -> TransportError {
        TransportError(code: "storage_error", message: message)
    }
}
