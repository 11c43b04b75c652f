import Foundation
import Logging
import SDQAWS

/// Process-wide logging: JSON lines for machines (one object per line on stderr) or plain text on
/// a terminal, as `SDQ_LOG_FORMAT` chooses.
public enum LoggingSetup {
    /// Bootstraps swift-log once per process. Every line carries the current span's `trace_id`
    /// and `span_id` when there is one, and JSON lines the `service`.
    public static func bootstrap(level: Logger.Level, format: String?, service: String? = nil) {
        let json = format.map { $0 == "json" } ?? (isatty(STDERR_FILENO) == 0)
        let provider = Telemetry.loggingMetadataProvider
        LoggingSystem.bootstrap({ label, provider in
            var handler: any LogHandler =
                json
                ? JSONLogHandler(label: label, service: service, metadataProvider: provider)
                : StreamLogHandler.standardError(label: label, metadataProvider: provider)
            handler.logLevel = level
            return handler
        }, metadataProvider: provider)
    }
}

/// A `LogHandler` writing one JSON object per line to standard error.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let service: String?

    public init(label: String, service: String? = nil, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.service = service
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [
            "ts": UTCTime.internetTimestamp(Date()),
            "level": event.level.rawValue,
            "logger": label,
            "msg": "\(event.message)",
            "service": service ?? label,
        ]
        let contextual = metadataProvider?.get() ?? [:]
        for (key, value) in contextual.merging(metadata, uniquingKeysWith: { $1 }).merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            object[key] = "\(value)"
        }
        // JSONEncoder rather than JSONSerialization: the latter's sorted keys compare through a
        // Locale, which loads ICU data on the first log line.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? encoder.encode(object) else { return }
        line.append(0x0a)
        FileHandle.standardError.write(line)
    }
}
