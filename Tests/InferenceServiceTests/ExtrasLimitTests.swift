import Foundation
@testable import InferenceService
import SDQMessages
import SDQPlatform
import Testing

/// An upscale's output size is known only once its input is: the worker checks it then.
@Suite struct ExtrasLimitTests {
    static func png(_ width: Int, _ height: Int) throws -> Data {
        try EmulatorImage.png(EmulatorImage.Parameters(
            prompt: "p", model: "m", seed: 1, width: width, height: height, steps: 1, cfgScale: 7, sampler: "Euler a"))
    }

    /// A baseline JPEG header: SOI, an APP0 segment, then SOF0 with the size.
    static func jpeg(_ width: Int, _ height: Int) -> Data {
        var bytes: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10] + Array("JFIF".utf8) + [0, 1, 1, 0, 0, 1, 0, 1, 0, 0]
        bytes += [0xFF, 0xC0, 0x00, 0x11, 0x08, UInt8(height >> 8), UInt8(height & 0xFF), UInt8(width >> 8), UInt8(width & 0xFF), 3]
        bytes += [1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]
        return Data(bytes)
    }

    @Test func headersGiveTheSize() throws {
        #expect(ImageDimensions.of(try Self.png(64, 128)).map { [$0.width, $0.height] } == [64, 128])
        #expect(ImageDimensions.of(Self.jpeg(1920, 1080)).map { [$0.width, $0.height] } == [1920, 1080])
        #expect(ImageDimensions.of(Data("GIF89a".utf8)) == nil)
        #expect(ImageDimensions.of(Data([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00, 0, 0, 0, 0, 0, 0])) == nil)  // zero-length segment
    }

    @Test func anUpscalePastTheLimitsIsRefusedBeforeTheGPU() throws {
        var task = Sdq_V1_GenerationTask()
        task.kind = .extras
        let limits = RequestLimits()
        #expect(InferenceWorker.extrasRefusal(task, inputs: [try Self.png(512, 512)], limits: limits) == nil)  // 2× → 1024
        task.runtimeRequest = Data(#"{"upscaling_resize": 8}"#.utf8)
        let refusal = InferenceWorker.extrasRefusal(task, inputs: [try Self.png(512, 512)], limits: limits)
        #expect(refusal?.contains("4096×4096") == true)
        #expect(InferenceWorker.extrasRefusal(task, inputs: [Self.jpeg(256, 128)], limits: limits) == nil)  // 2048 × 1024
        task.kind = .img2Img
        #expect(InferenceWorker.extrasRefusal(task, inputs: [try Self.png(512, 512)], limits: limits) == nil)
    }
}
