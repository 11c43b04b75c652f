/// A registered model file: a checkpoint, LoRA, VAE, embedding or upscaler that tasks may name.
///
/// The file is content-addressed in the stack's bucket (``objectKey(sha256:)``), so two names
/// for one file share one object, and its SHA-256 was checked when it was registered. Records
/// live in the task store (`model#<name>` items on AWS, a `models` table embedded).
public struct ModelRecord: Sendable, Codable, Equatable {
    /// What a file is, which decides the runtime folder it goes in.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case checkpoint, lora, vae, embedding, upscaler
    }

    /// The name tasks use (``validateName(_:)``).
    public var name: String
    public var kind: Kind
    /// The base family it belongs to (`sd15`, `sdxl`, …; ``validateFamily(_:)``): a LoRA only
    /// applies to a checkpoint of its family, and a pool serves the families it declares.
    public var family: String
    /// The file's size in bytes.
    public var bytes: Int64
    /// The file's SHA-256, lower-case hex.
    public var sha256: String
    /// The file name the runtime sees in its model folder (``fileName(name:source:)``).
    public var fileName: String
    /// The object in the stack's bucket that holds the file: ``objectKey(sha256:)`` for files
    /// sdq uploaded, or the key an operator had put the file under.
    public var key: String
    /// Where the file came from when it was registered (a local path is not kept; an https URL
    /// or an object key is).
    public var source: String?
    /// When it was registered, epoch milliseconds.
    public var registeredAt: Int64

    public init(
        name: String, kind: Kind, family: String, bytes: Int64, sha256: String, fileName: String, key: String? = nil,
        source: String? = nil, registeredAt: Int64
    ) {
        self.key = key ?? Self.objectKey(sha256: sha256)
        self.name = name
        self.kind = kind
        self.family = family
        self.bytes = bytes
        self.sha256 = sha256
        self.fileName = fileName
        self.source = source
        self.registeredAt = registeredAt
    }

    /// The object key of a file sdq uploads, by its digest: one object per content, whatever its names.
    public static func objectKey(sha256: String) -> String { "\(keyPrefix)sha256/\(sha256)" }

    /// Where model files live in the stack's bucket (registered ones, and `--key` sources).
    public static let keyPrefix = "models/"

    /// The families sdq knows; others are accepted when they are plain tokens (a new base model
    /// should not wait for a release), but these are what the docs and the console offer.
    public static let knownFamilies = ["sd15", "sd2", "sdxl", "sd3", "flux", "pony", "svd"]

    /// Checks a model name: 1 to 128 of letters, digits, `.`, `_`, `-`, not starting with `.`.
    public static func validateName(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 128 else { return "a model name is 1 to 128 characters" }
        guard name.first != ".", name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            return "a model name is letters, digits, '.', '_' and '-', not starting with '.'"
        }
        return nil
    }

    /// Checks a family: 1 to 32 of lower-case letters, digits and `-`.
    public static func validateFamily(_ family: String) -> String? {
        guard !family.isEmpty, family.count <= 32,
            family.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
        else { return "a family is 1 to 32 of a-z, 0-9 and '-' (e.g. \(knownFamilies.joined(separator: ", ")))" }
        return nil
    }

    /// Checks a SHA-256 given as hex.
    public static func validateDigest(_ digest: String) -> String? {
        guard digest.count == 64, digest.allSatisfy({ $0.isHexDigit }) else { return "a SHA-256 is 64 hex digits" }
        return nil
    }

    /// The file name a runtime sees: the name, with the source's extension when it has a known
    /// one (`.safetensors`, `.ckpt`, `.pt`, `.pth`, `.bin`), else `.safetensors`. Runtimes pick a
    /// loader by extension, and the name alone keeps two names for one file apart.
    public static func fileName(name: String, source: String?) -> String {
        let known = ["safetensors", "ckpt", "pt", "pth", "bin", "gguf"]
        let last = source?.split(separator: "/").last.map(String.init) ?? ""
        let stripped = last.split(separator: "?").first.map(String.init) ?? last
        let ext = stripped.split(separator: ".").count > 1 ? stripped.split(separator: ".").last.map { $0.lowercased() } : nil
        return "\(name).\(ext.flatMap { known.contains($0) ? $0 : nil } ?? "safetensors")"
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, family, bytes, sha256, source, key
        case fileName = "file_name", registeredAt = "registered_at"
    }
}

/// A LoRA a task asks for, with its weight.
public struct LoraRequest: Sendable, Codable, Equatable {
    public var name: String
    /// The strength the LoRA is applied with, −4…4 (1 is full strength).
    public var weight: Double

    public init(name: String, weight: Double) {
        self.name = name
        self.weight = weight
    }
}
