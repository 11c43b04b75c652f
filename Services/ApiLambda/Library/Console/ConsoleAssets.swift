import Foundation

/// The browser console's files, served by the API under `/console/`.
///
/// The files live in `Services/ApiLambda/Console` and are compiled into the binary by
/// `scripts/gen-console-assets.py` (no JavaScript build tool). The page itself needs no key: it
/// asks for one and sends it with every API call, exactly as any other client does.
///
/// For work on the console, `SDQ_CONSOLE_DIR` names a folder to serve the files from instead, read
/// at each request, so an edit shows on reload without a rebuild.
public struct ConsoleAssets: Sendable {
    /// One file as served.
    public struct File: Sendable, Equatable {
        public var contentType: String
        public var etag: String
        public var bytes: Data
    }

    private let files: [String: File]
    private let directory: URL?

    /// The compiled files, or the files in `directory` when one is given.
    public init(directory: String? = ProcessInfo.processInfo.environment["SDQ_CONSOLE_DIR"]) {
        self.directory = directory.flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0, isDirectory: true) }
        var files: [String: File] = [:]
        for (name, entry) in Self.compiled {
            files[name] = File(contentType: entry.type, etag: "\"\(entry.sha256.prefix(32))\"", bytes: Data(base64Encoded: entry.base64) ?? Data())
        }
        self.files = files
    }

    /// The names of the compiled files.
    public static var names: [String] { compiled.keys.sorted() }

    /// The file at `name` (relative to the console's root; empty means `index.html`), or nil.
    public func file(_ name: String) -> File? {
        let name = name.isEmpty ? "index.html" : name
        guard let directory else { return files[name] }
        // Development: only names the compiled set knows or plain file names, never a path out.
        guard !name.contains(".."), !name.hasPrefix("/"),
            let bytes = try? Data(contentsOf: directory.appendingPathComponent(name))
        else { return nil }
        let type = files[name]?.contentType ?? Self.contentType(of: name)
        return File(contentType: type, etag: "\"dev-\(bytes.count)-\(bytes.hashValue)\"", bytes: bytes)
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }
}
