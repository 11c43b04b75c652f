import Foundation
import Synchronization

/// A live preview of a running generation: a small image the runtime renders from its latents
/// (A1111's `live_preview`/`current_image`, ComfyUI's binary preview frames, the emulator's
/// blend), newest first. Only ever shown to people: nothing downstream depends on its bytes.
public struct RuntimePreview: Sendable, Equatable {
    /// The image's bytes.
    public var data: Data
    /// `image/png`, `image/jpeg` or `image/webp`.
    public var contentType: String

    public init(data: Data, contentType: String) {
        self.data = data
        self.contentType = contentType
    }

    /// A preview from bytes whose type their first bytes say (PNG, JPEG or WebP); nil for
    /// anything else (an empty answer, text, a format no browser shows).
    public init?(sniffing data: Data) {
        let bytes = [UInt8](data.prefix(12))
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            self.init(data: data, contentType: "image/png")
        } else if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            self.init(data: data, contentType: "image/jpeg")
        } else if bytes.count == 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) {
            self.init(data: data, contentType: "image/webp")
        } else {
            return nil
        }
    }

    /// A preview from base64 text, bare or as a data URL (`data:image/jpeg;base64,…`).
    public init?(base64 text: String) {
        let payload = text.hasPrefix("data:") ? text.split(separator: ",", maxSplits: 1).last.map(String.init) ?? "" : text
        guard let data = Data(base64Encoded: payload) else { return nil }
        self.init(sniffing: data)
    }

    /// The file extension it is stored under.
    public var fileExtension: String { MediaTypes.fileExtension(of: contentType) }

    /// The largest preview kept (a runtime's previews are a few tens of KiB).
    public static let maxBytes = 1 << 20
}

/// The newest preview of one run: the backend offers each one it gets, the worker takes the
/// newest one it has not taken yet. Offering never waits, so the runtime's path is untouched.
public final class PreviewSlot: Sendable {
    private struct State {
        var newest: RuntimePreview?
        var serial = 0
        var taken = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Keeps `preview` as the newest (a larger one than ``RuntimePreview/maxBytes`` is dropped).
    public func offer(_ preview: RuntimePreview) {
        guard preview.data.count <= RuntimePreview.maxBytes else { return }
        state.withLock {
            $0.newest = preview
            $0.serial += 1
        }
    }

    /// The newest preview, once: nil when none came since the last take.
    public func take() -> RuntimePreview? {
        state.withLock { state in
            guard state.serial > state.taken else { return nil }
            state.taken = state.serial
            return state.newest
        }
    }

    /// How many previews were offered.
    public var offered: Int { state.withLock { $0.serial } }
}
