import Foundation
import Synchronization

/// The key ring a running API holds, re-read from its source (`SDQ_API_KEYS_FILE`: a file,
/// Secrets Manager or SSM) at most once per `interval`, so a rotated or revoked key takes effect
/// within that time without a redeploy. The re-read happens on the request that finds it due (no
/// background task, so it works the same on Lambda); the others meanwhile use the keyring they
/// have. A source that cannot be read or parsed keeps the previous keyring.
public final class LiveKeyring: Sendable {
    /// Reads the keyring from its source.
    public typealias Loader = @Sendable () async throws(ConfigurationError) -> APIKeyring

    /// What a refresh did.
    public enum Refresh: Sendable {
        /// Not due, or another request is reading the source.
        case notDue
        case unchanged
        /// The keyring is now this one.
        case changed(APIKeyring)
        /// The source failed; the previous keyring stays.
        case failed(ConfigurationError)
    }

    private struct State {
        var keyring: APIKeyring
        var checked: ContinuousClock.Instant
        var reading = false
    }
    private let state: Mutex<State>
    private let loader: Loader?
    /// The longest a changed source goes unseen.
    public let interval: Duration

    /// A keyring that never changes (`SDQ_API_KEYS`, or none) when `loader` is nil.
    public init(_ keyring: APIKeyring, interval: Duration = .seconds(30), loader: Loader? = nil) {
        self.state = Mutex(State(keyring: keyring, checked: .now))
        self.interval = interval
        self.loader = loader
    }

    /// The keyring in force.
    public var current: APIKeyring { state.withLock { $0.keyring } }

    /// Reads the source again when `interval` has passed since the last read.
    @discardableResult
    public func refreshIfDue() async -> Refresh {
        guard let loader else { return .notDue }
        let due = state.withLock { state -> Bool in
            guard !state.reading, ContinuousClock.now - state.checked >= interval else { return false }
            state.reading = true
            return true
        }
        guard due else { return .notDue }
        let loaded: Result<APIKeyring, ConfigurationError>
        do { loaded = .success(try await loader()) } catch { loaded = .failure(error) }
        return state.withLock { state in
            state.reading = false
            state.checked = .now
            switch loaded {
            case .failure(let error):
                return .failed(error)
            case .success(let keyring) where keyring.entries == state.keyring.entries:
                return .unchanged
            case .success(let keyring):
                state.keyring = keyring
                return .changed(keyring)
            }
        }
    }
}
