import Foundation
import SDQCore

/// An SNS subscription filter policy on message attributes (the attribute-based subset):
/// every named attribute must match one of its conditions.
///
/// Conditions: an exact string, `{"prefix": "…"}`, `{"anything-but": ["…"]}` and
/// `{"exists": true|false}`.
public struct FilterPolicy: Sendable, Equatable, Codable {
    /// One condition on one attribute.
    public enum Condition: Sendable, Equatable, Codable {
        case equals(String)
        case prefix(String)
        case anythingBut([String])
        case exists(Bool)

        private enum Keys: String, CodingKey {
            case prefix, exists
            case anythingBut = "anything-but"
        }

        public init(from decoder: any Decoder) throws {
            if let single = try? decoder.singleValueContainer(), let text = try? single.decode(String.self) {
                self = .equals(text)
                return
            }
            let container = try decoder.container(keyedBy: Keys.self)
            if let prefix = try container.decodeIfPresent(String.self, forKey: .prefix) {
                self = .prefix(prefix)
            } else if let exists = try container.decodeIfPresent(Bool.self, forKey: .exists) {
                self = .exists(exists)
            } else if let values = try? container.decode([String].self, forKey: .anythingBut) {
                self = .anythingBut(values)
            } else if let value = try container.decodeIfPresent(String.self, forKey: .anythingBut) {
                self = .anythingBut([value])
            } else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "unsupported filter condition"))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            switch self {
            case .equals(let value):
                var single = encoder.singleValueContainer()
                try single.encode(value)
            case .prefix(let value):
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(value, forKey: .prefix)
            case .anythingBut(let values):
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(values, forKey: .anythingBut)
            case .exists(let value):
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(value, forKey: .exists)
            }
        }

        func matches(_ value: String?) -> Bool {
            switch self {
            case .equals(let expected): value == expected
            case .prefix(let prefix): value?.hasPrefix(prefix) ?? false
            case .anythingBut(let excluded): value.map { !excluded.contains($0) } ?? false
            case .exists(let wanted): (value != nil) == wanted
            }
        }
    }

    /// Attribute name → accepted conditions (any one suffices).
    public var conditions: [String: [Condition]]

    public init(_ conditions: [String: [Condition]]) { self.conditions = conditions }

    public init(from decoder: any Decoder) throws {
        conditions = try decoder.singleValueContainer().decode([String: [Condition]].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var single = encoder.singleValueContainer()
        try single.encode(conditions)
    }

    /// Whether a message with these attributes passes the policy.
    public func matches(_ attributes: [String: String]) -> Bool {
        conditions.allSatisfy { name, accepted in
            accepted.contains { $0.matches(attributes[name]) }
        }
    }

    /// The policy as SNS's JSON text.
    public func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }
}
