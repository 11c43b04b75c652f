import Foundation
import SDQPlatform

/// The in-process runtime emulator: sleeps `stepDelay` per sampling step (so load behaves like a
/// GPU), then renders deterministic PNGs with ``EmulatorImage``.
public struct EmulatorRuntime: RuntimeBackend {
    public let name = "emulator"
    /// Simulated time per sampling step.
    public var stepDelay: Duration

    public init(stepDelay: Duration = .milliseconds(10)) {
        self.stepDelay = stepDelay
    }

    public func run(_ job: RuntimeJob, progress: @escaping @Sendable (Double) async -> Bool) async throws(RuntimeError)
        -> [RuntimeImage]
    {
        guard job.kind == "txt2img" || job.kind == "img2img" else {
            throw RuntimeError(code: "unsupported_kind", message: "the emulator runs txt2img and img2img, not \(job.kind)", retryable: false)
        }
        let steps = max(1, job.steps)
        for step in 1...steps {
            if stepDelay > .zero {
                do { try await Task.sleep(for: stepDelay) } catch {
                    throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
                }
            } else if Task.isCancelled {
                throw RuntimeError(code: "cancelled", message: "the job was cancelled", retryable: true)
            }
            guard await progress(Double(step) / Double(steps)) else {
                throw RuntimeError(code: "cancelled", message: "the task was cancelled", retryable: false)
            }
        }
        var images: [RuntimeImage] = []
        for index in 0..<max(1, job.batchSize) {
            let parameters = job.emulatorParameters(index: index)
            do {
                let png = try EmulatorImage.png(parameters)
                images.append(RuntimeImage(png: png, width: job.width, height: job.height, seed: parameters.seed))
            } catch {
                throw RuntimeError(code: "runtime_error", message: error.description, retryable: false)
            }
        }
        return images
    }
}
