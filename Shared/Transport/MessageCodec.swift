import Foundation
import SDQCore
import SwiftProtobuf

/// Names of the message attributes sdq sets. Routing and tracing read these without decoding the
/// body; the SQS system attribute `AWSTraceHeader` is added by the AWS transport.
public enum MessageAttribute {
    /// MIME type of the body before base64: `application/x-protobuf`.
    public static let contentType = "content-type"
    /// Fully qualified message name with schema version, e.g. `sdq.v1.GenerationTask`.
    public static let schema = "sdq-schema"
    /// The task the message is about (so even an undecodable body can be traced to its task).
    public static let taskID = "sdq-task-id"
    /// Target pool.
    public static let pool = "sdq-pool"
    /// `normal` or `high`.
    public static let priority = "sdq-priority"
    /// W3C trace context.
    public static let traceparent = "traceparent"
    public static let tracestate = "tracestate"
}

/// Why a queue message could not be decoded.
public struct MessageDecodingError: CodedError {
    public let code = "undecodable_message"
    public let message: String
}

/// Encodes protobuf messages as queue bodies (base64 of the serialized bytes) with attributes,
/// and decodes them back.
public enum MessageCodec {
    /// The content type every sdq body declares.
    public static let protobufContentType = "application/x-protobuf"

    /// The body and attributes for `message`; `extra` attributes are merged in.
    public static func encode<M: SwiftProtobuf.Message>(
        _ message: M, attributes extra: [String: String] = [:]
    ) -> (body: String, attributes: [String: String]) {
        // Serializing a fully initialised proto3 message cannot fail; an empty body would be
        // dead-lettered by the consumer rather than lost.
        let bytes: Data = (try? message.serializedBytes()) ?? Data()
        var attributes = extra
        attributes[MessageAttribute.contentType] = protobufContentType
        attributes[MessageAttribute.schema] = M.protoMessageName
        return (bytes.base64EncodedString(), attributes)
    }

    /// Decodes a body produced by ``encode(_:attributes:)``; checks the schema attribute when present.
    public static func decode<M: SwiftProtobuf.Message>(
        _ type: M.Type, body: String, attributes: [String: String]
    ) throws(MessageDecodingError) -> M {
        if let schema = attributes[MessageAttribute.schema], schema != M.protoMessageName {
            throw MessageDecodingError(message: "expected \(M.protoMessageName), got schema \(schema)")
        }
        guard let bytes = Data(base64Encoded: body) else {
            throw MessageDecodingError(message: "body is not base64")
        }
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw MessageDecodingError(message: "body is not a valid \(M.protoMessageName): \(error)")
        }
    }
}
