import AsyncHTTPClient
import Foundation
@testable import InferenceService
import EmulatorServer
import SDQPlatform
import SDQTestSupport
import Testing

/// Live previews: the emulator's pictures converge, each runtime's preview wire format is read,
/// and the backends collect previews only when the job asks.
@Suite struct LivePreviewTests {
    static let picture = EmulatorImage.Parameters(
        prompt: "a harbour at dawn", model: "emulator-v1", seed: 11, width: 256, height: 192, steps: 20, cfgScale: 7, sampler: "Euler a")

    static func job(steps: Int = 20, previews: Bool = true) -> RuntimeJob {
        var job = RuntimeJob(prompt: picture.prompt, seed: picture.seed, width: picture.width, height: picture.height, steps: steps, model: picture.model)
        job.wantsPreviews = previews
        return job
    }

    /// Every preview the emulator can give for `parameters` (one per step fraction).
    static func possiblePreviews(_ parameters: EmulatorImage.Parameters, steps: Int) throws -> Set<Data> {
        Set(try (0...steps).map { try EmulatorImage.preview(parameters, fraction: Double($0) / Double(steps)) })
    }

    @Test func emulatorPreviewsConvergeToTheFinalPicture() throws {
        var small = Self.picture
        small.width = 128
        small.height = 96
        let final = EmulatorImage.render(small)
        let distances = [0.0, 0.25, 0.5, 0.75, 1.0].map { fraction in
            let pixels = EmulatorImage.previewPixels(small, fraction: fraction)
            return zip(pixels, final).reduce(0) { $0 + abs(Int($1.0) - Int($1.1)) } / final.count
        }
        #expect(distances == distances.sorted(by: >) && Set(distances).count == distances.count, "\(distances)")
        #expect(distances.last == 0, "at the end the preview is the picture")
        let png = try EmulatorImage.preview(Self.picture, fraction: 0.5)
        #expect(PNGInfo.size(of: png).map { [$0.width, $0.height] } == [128, 96], "at most 128 a side, aspect kept")
    }

    @Test func previewBytesAreRecognisedByTheirFormat() throws {
        let png = try EmulatorImage.preview(Self.picture, fraction: 0.3)
        #expect(RuntimePreview(sniffing: png)?.contentType == "image/png")
        #expect(RuntimePreview(sniffing: Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2]))?.contentType == "image/jpeg")
        #expect(RuntimePreview(sniffing: Data("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8))?.contentType == "image/webp")
        #expect(RuntimePreview(sniffing: Data("<html>".utf8)) == nil)
        #expect(RuntimePreview(base64: "data:image/png;base64," + png.base64EncodedString())?.data == png)
        #expect(RuntimePreview(base64: png.base64EncodedString())?.data == png)
        #expect(RuntimePreview(base64: "data:image/png;base64,!!!") == nil)
        #expect(RuntimePreview(sniffing: png)?.fileExtension == "png")
        #expect(RuntimePreview(data: Data(), contentType: "image/jpeg").fileExtension == "jpg")
    }

    @Test func comfyUIPreviewFramesAreReadAsServerPySendsThem() throws {
        let png = try EmulatorImage.preview(Self.picture, fraction: 0.3)
        let jpeg = Data([0xFF, 0xD8, 0xFF, 0xDB, 9, 9])
        func be(_ value: Int) -> Data { Data([UInt8(value >> 24 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]) }
        #expect(ComfyUIBackend.preview(fromFrame: be(1) + be(2) + png, following: "p1")?.data == png)
        #expect(ComfyUIBackend.preview(fromFrame: be(1) + be(1) + jpeg, following: nil)?.contentType == "image/jpeg")
        let metadata = Data(#"{"node_id": "3", "prompt_id": "p1", "image_type": "image/png"}"#.utf8)
        #expect(ComfyUIBackend.preview(fromFrame: be(4) + be(metadata.count) + metadata + png, following: "p1")?.data == png)
        #expect(ComfyUIBackend.preview(fromFrame: be(4) + be(metadata.count) + metadata + png, following: "p2") == nil, "another prompt's")
        #expect(ComfyUIBackend.preview(fromFrame: be(3) + Data("text".utf8), following: nil) == nil, "a text frame")
        #expect(ComfyUIBackend.preview(fromFrame: be(1) + be(7) + png, following: nil) == nil, "an unknown image type")
        #expect(ComfyUIBackend.preview(fromFrame: be(4) + be(1000) + metadata, following: nil) == nil, "a short frame")
        #expect(ComfyUIBackend.preview(fromFrame: Data([0, 0]), following: nil) == nil)
    }

    @Test func theInProcessEmulatorOffersPreviewsOnlyWhenAsked() async throws {
        let runtime = EmulatorRuntime(stepDelay: .milliseconds(5), previewInterval: .milliseconds(20))
        let asked = RuntimeWindow()
        _ = try await runtime.run(Self.job(), window: asked) { _ in true }
        #expect(asked.previews.offered >= 2)
        let newest = try #require(asked.previews.take())
        #expect(try Self.possiblePreviews(Self.picture, steps: 20).contains(newest.data))
        #expect(asked.previews.take() == nil, "taken once")
        let unasked = RuntimeWindow()
        _ = try await runtime.run(Self.job(previews: false), window: unasked) { _ in true }
        #expect(unasked.previews.offered == 0)
    }

    @Test(arguments: [true, false])
    func theSDWebUIBackendAsksForLivePreviews(_ perTask: Bool) async throws {
        let preview = try await SDWebUIBackendTests.withEmulator { backend in
            var backend = backend
            backend.previewInterval = .milliseconds(40)
            // Ready: the backend learns that the runtime answers /internal/progress (per task);
            // without it, it reads /sdapi/v1/progress's current_image.
            if perTask { await backend.waitUntilReady() }
            let window = RuntimeWindow()
            _ = try await backend.run(Self.job(steps: 30), window: window) { _ in true }
            return window.previews.take()
        }
        let newest = try #require(preview, "no preview came")
        #expect(newest.contentType == "image/png")
        #expect(try Self.possiblePreviews(Self.picture, steps: 30).contains(newest.data), "the task's own picture, part way")
    }

    @Test func theComfyUIBackendReadsPreviewFramesFromTheWebSocket() async throws {
        let workflow = try ComfyUIBackendTests.sampleWorkflow()
        let job = {
            var job = ComfyUIBackendTests.job(workflow)
            job.wantsPreviews = true
            return job
        }()
        let (previews, parameters) = try await ComfyUIBackendTests.withEmulator(stepDelay: .milliseconds(25)) { backend in
            let window = RuntimeWindow()
            _ = try await backend.run(job, window: window) { _ in true }
            let parsed = try ComfyWorkflow.parse(try #require(workflow.objectValue)).get()
            return (window.previews, parsed.job(model: "sd_xl_turbo_1.0.safetensors").emulatorParameters(index: 0))
        }
        #expect(previews.offered >= 1)
        let newest = try #require(previews.take())
        #expect(try Self.possiblePreviews(parameters, steps: parameters.steps).contains(newest.data))
    }
}
