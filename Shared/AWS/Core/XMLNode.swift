#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A small XML tree, enough for AWS Query and S3 responses.
///
/// The reader is ours rather than Foundation's `XMLParser`, which brings libxml2 and the system's
/// ICU libraries into every process that links it (the Lambda function among them), for documents
/// that are a few elements of text. It reads what AWS writes: an optional declaration, elements
/// with attributes (ignored), character data with the five predefined entities and numeric
/// character references, CDATA sections, comments and processing instructions (skipped). A
/// document type declaration is refused (no AWS response has one, and refusing it rules out
/// entity expansion), as is anything not well-formed: mismatched or unclosed tags, a second root,
/// text outside the root, an unknown entity.
public final class XMLNode: @unchecked Sendable {
    public let name: String
    public internal(set) var text: String = ""
    public internal(set) var children: [XMLNode] = []

    init(name: String) { self.name = name }

    /// Parses a document; nil when it is not well-formed.
    public static func parse(_ data: Data) -> XMLNode? {
        guard !data.isEmpty else { return nil }
        var reader = XMLReader(bytes: Array(data))
        return reader.document()
    }

    /// The first descendant (depth first, self included) named `name`.
    public func first(_ name: String) -> XMLNode? {
        if self.name == name { return self }
        for child in children { if let found = child.first(name) { return found } }
        return nil
    }

    /// Every descendant named `name`.
    public func all(_ name: String) -> [XMLNode] {
        (self.name == name ? [self] : []) + children.flatMap { $0.all(name) }
    }

    /// The text of the direct child named `name`.
    public func child(_ name: String) -> String? { children.first { $0.name == name }?.text }
}

/// Escapes text for XML content.
public func xmlEscape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}

/// The reader behind ``XMLNode/parse(_:)``: one pass over the bytes, a stack of open elements.
struct XMLReader {
    private let bytes: [UInt8]
    private var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() -> XMLNode? {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }  // UTF-8 byte order mark
        var root: XMLNode?
        var stack: [(node: XMLNode, text: [UInt8])] = []
        while index < bytes.count {
            if bytes[index] != UInt8(ascii: "<") {
                let start = index
                while index < bytes.count, bytes[index] != UInt8(ascii: "<") { index += 1 }
                let raw = bytes[start..<index]
                if stack.isEmpty {
                    guard raw.allSatisfy(Self.isSpace) else { return nil }
                } else {
                    guard let decoded = Self.decodeEntities(raw) else { return nil }
                    stack[stack.count - 1].text += decoded
                }
                continue
            }
            if skip("<!--") {
                guard skip(through: Array("-->".utf8)) else { return nil }
            } else if skip("<![CDATA[") {
                let start = index
                guard skip(through: Array("]]>".utf8)), !stack.isEmpty else { return nil }
                stack[stack.count - 1].text += bytes[start..<(index - 3)]
            } else if skip("<?") {
                guard skip(through: Array("?>".utf8)) else { return nil }
            } else if skip("<!") {
                return nil  // a document type declaration
            } else if skip("</") {
                guard let name = readName(), let open = stack.popLast(), open.node.name == name else { return nil }
                skipSpaces()
                guard skip(">") else { return nil }
                guard let text = String(validating: open.text, as: UTF8.self) else { return nil }
                open.node.text = Self.trimmed(text)
                if stack.isEmpty { root = open.node }
            } else {
                index += 1
                guard let name = readName() else { return nil }
                guard stack.isEmpty ? root == nil : true else { return nil }
                let node = XMLNode(name: name)
                stack.last?.node.children.append(node)
                guard let selfClosing = skipAttributes() else { return nil }
                if selfClosing {
                    if stack.isEmpty { root = node }
                } else {
                    stack.append((node, []))
                }
            }
        }
        return stack.isEmpty ? root : nil
    }

    // MARK: Pieces

    private mutating func skip(_ literal: String) -> Bool {
        let utf8 = literal.utf8
        guard index + utf8.count <= bytes.count, bytes[index..<(index + utf8.count)].elementsEqual(utf8) else { return false }
        index += utf8.count
        return true
    }

    /// Moves past the next occurrence of `terminator`; false when there is none.
    private mutating func skip(through terminator: [UInt8]) -> Bool {
        while index + terminator.count <= bytes.count {
            if bytes[index..<(index + terminator.count)].elementsEqual(terminator) {
                index += terminator.count
                return true
            }
            index += 1
        }
        return false
    }

    private mutating func skipSpaces() {
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
    }

    private mutating func readName() -> String? {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if Self.isSpace(byte) || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
                || byte == UInt8(ascii: "<")
            {
                break
            }
            index += 1
        }
        guard index > start else { return nil }
        return String(validating: bytes[start..<index], as: UTF8.self)
    }

    /// Skips a start tag's attributes up to and including `>` or `/>`; returns whether the element
    /// closed itself, nil when the tag is malformed.
    private mutating func skipAttributes() -> Bool? {
        while true {
            skipSpaces()
            guard index < bytes.count else { return nil }
            if skip("/>") { return true }
            if skip(">") { return false }
            guard readName() != nil else { return nil }
            skipSpaces()
            guard skip("=") else { return nil }
            skipSpaces()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") else { return nil }
            let quote = bytes[index]
            index += 1
            while index < bytes.count, bytes[index] != quote {
                if bytes[index] == UInt8(ascii: "<") { return nil }
                index += 1
            }
            guard index < bytes.count else { return nil }
            index += 1
        }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace(scalar: $0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace(scalar: $0) })!
        return String(scalars[first...last])
    }

    private static func isSpace(scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII && isSpace(UInt8(scalar.value))
    }

    /// Character data with `&…;` references replaced; nil for an unknown or malformed reference.
    static func decodeEntities(_ raw: ArraySlice<UInt8>) -> [UInt8]? {
        guard raw.contains(UInt8(ascii: "&")) else { return Array(raw) }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var position = raw.startIndex
        while position < raw.endIndex {
            let byte = raw[position]
            guard byte == UInt8(ascii: "&") else {
                out.append(byte)
                position += 1
                continue
            }
            guard let end = raw[position...].firstIndex(of: UInt8(ascii: ";")), end - position <= 12 else { return nil }
            let reference = String(decoding: raw[(position + 1)..<end], as: UTF8.self)
            switch reference {
            case "amp": out.append(UInt8(ascii: "&"))
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                let value: UInt32?
                if reference.hasPrefix("#x") || reference.hasPrefix("#X") {
                    value = UInt32(reference.dropFirst(2), radix: 16)
                } else if reference.hasPrefix("#") {
                    value = UInt32(reference.dropFirst(), radix: 10)
                } else {
                    value = nil
                }
                guard let value, value != 0, let scalar = Unicode.Scalar(value) else { return nil }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
            position = end + 1
        }
        return out
    }
}
