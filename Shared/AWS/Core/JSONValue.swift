#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Any JSON value, for request bodies validated field by field, for opaque client context and for
/// the AWS JSON protocols' payloads. It lives with the AWS clients, the lowest layer that needs it;
/// the platform re-exports the name.
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        // Each refused attempt costs a thrown error, so the commonest kinds come first (strings,
        // then objects: AWS payloads are almost all of both). JSONDecoder is strict about kinds
        // (no string reads as a number or a boolean, no number as a boolean), so the order
        // changes only the cost.
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else {
            self = .number(try container.decode(Double.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if !value.isFinite {
                try container.encodeNil()  // JSON has no NaN or infinity
            } else if value.rounded() == value, abs(value) < 9.0e15 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The deepest nesting of arrays and objects ``parse(_:maxDepth:)`` accepts by default.
    public static let defaultMaxDepth = 64

    /// Why a JSON text was not parsed.
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Arrays and objects nest deeper than the limit.
        case tooDeep(limit: Int)
        /// Not JSON.
        case invalid(String)

        public var description: String {
            switch self {
            case .tooDeep(let limit): "arrays and objects nest deeper than \(limit) levels"
            case .invalid(let detail): "not valid JSON: \(detail)"
            }
        }
    }

    /// Parses JSON text (any top-level value) nested at most `maxDepth` levels. The depth is
    /// measured in one linear pass before decoding, so a deeply nested document costs no more
    /// than its length (the decoder's own cost grows with the square of the depth).
    /// Only UTF-8 is JSON here (RFC 8259 §8.1): the depth scan reads bytes, and another
    /// encoding could hide brackets from it.
    public static func parse(_ data: Data, maxDepth: Int = defaultMaxDepth) throws(ParseError) -> JSONValue {
        guard String(validating: data, as: UTF8.self) != nil else { throw .invalid("the text is not UTF-8") }
        guard nestingDepth(of: data) <= maxDepth else { throw .tooDeep(limit: maxDepth) }
        do { return try JSONDecoder().decode(JSONValue.self, from: data) } catch { throw .invalid("\(error)") }
    }

    /// The deepest nesting of `[` and `{` outside strings (brackets need not balance: that is
    /// the decoder's to judge).
    public static func nestingDepth(of data: Data) -> Int {
        var depth = 0, deepest = 0
        var inString = false, escaped = false
        for byte in data {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                deepest = max(deepest, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }

    /// Compact JSON text with sorted keys.
    public func serialized() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data("null".utf8)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The element at `index` of an array; nil for anything else or out of range.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// The number as an integer, when it is integral and within ±2^53 (nil otherwise, never a trap).
    public var integerValue: Int64? {
        guard case .number(let value) = self, value.isFinite, value.rounded() == value, abs(value) <= 9_007_199_254_740_992
        else { return nil }
        return Int64(value)
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The JSON type name, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

extension JSONValue {
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// An object whose members are all strings, as a dictionary; nil for anything else.
    public var stringMap: [String: String]? {
        guard case .object(let object) = self else { return nil }
        var map: [String: String] = [:]
        for (key, value) in object {
            guard let text = value.stringValue else { return nil }
            map[key] = text
        }
        return map
    }

    /// An object of strings.
    public static func strings(_ map: [String: String]) -> JSONValue { .object(map.mapValues { .string($0) }) }

    /// An array of strings.
    public static func strings(_ list: [String]) -> JSONValue { .array(list.map { .string($0) }) }

    /// An integer.
    public static func int(_ value: Int) -> JSONValue { .number(Double(value)) }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
}
