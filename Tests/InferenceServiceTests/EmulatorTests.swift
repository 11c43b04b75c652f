import CompressNIO
import Foundation
import InferenceService
import NIOCore
import Testing

/// Reads a PNG's chunks, checking every CRC.
struct PNGChunks {
    var chunks: [(type: String, data: Data)] = []

    init(_ png: Data) throws {
        let bytes = [UInt8](png)
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var offset = 8
        while offset + 12 <= bytes.count {
            let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            let type = String(decoding: bytes[offset + 4..<offset + 8], as: UTF8.self)
            let data = Data(bytes[offset + 8..<offset + 8 + length])
            let crc = bytes[offset + 8 + length..<offset + 12 + length].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            #expect(CRC32.checksum(Data(type.utf8) + data) == crc, "CRC of \(type)")
            chunks.append((type, data))
            offset += 12 + length
        }
        #expect(offset == bytes.count)
    }

    func first(_ type: String) -> Data? { chunks.first { $0.type == type }?.data }
}

@Suite struct EmulatorTests {
    static func parameters(seed: Int64 = 7, width: Int = 96, height: Int = 64, prompt: String = "a lighthouse at dusk") -> EmulatorImage.Parameters {
        EmulatorImage.Parameters(prompt: prompt, negativePrompt: "blurry", model: "emulator-v1", seed: seed, width: width, height: height, steps: 20, cfgScale: 7, sampler: "Euler a")
    }

    @Test func crcMatchesTheReferenceValue() {
        #expect(CRC32.checksum(Data("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func producesAValidPNGOfTheRequestedSizeWithParameters() throws {
        let png = try EmulatorImage.png(Self.parameters())
        let chunks = try PNGChunks(png)
        #expect(chunks.chunks.map(\.type) == ["IHDR", "tEXt", "IDAT", "IEND"])
        #expect(PNGInfo.size(of: png)?.width == 96)
        #expect(PNGInfo.size(of: png)?.height == 64)
        let header = [UInt8](chunks.first("IHDR") ?? Data())
        #expect(Array(header[8...12]) == [8, 2, 0, 0, 0])
        let text = String(decoding: chunks.first("tEXt") ?? Data(), as: UTF8.self)
        #expect(text.hasPrefix("parameters\u{0}a lighthouse at dusk\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 96x64"))
        var compressed = ByteBuffer(data: chunks.first("IDAT") ?? Data())
        let raw = try compressed.decompress(with: .zlib())
        #expect(raw.readableBytes == (96 * 3 + 1) * 64)
    }

    @Test func nonLatinPromptsGoInAnInternationalTextChunk() throws {
        let png = try EmulatorImage.png(Self.parameters(prompt: "灯台 🌅"))
        let chunks = try PNGChunks(png)
        #expect(chunks.first("tEXt") == nil)
        #expect(String(decoding: chunks.first("iTXt") ?? Data(), as: UTF8.self).contains("灯台 🌅"))
    }

    @Test func theSameSeedGivesTheSameBytesAndAnotherSeedOthers() throws {
        let a = try EmulatorImage.png(Self.parameters(seed: 7))
        let b = try EmulatorImage.png(Self.parameters(seed: 7))
        let c = try EmulatorImage.png(Self.parameters(seed: 8))
        let d = try EmulatorImage.png(Self.parameters(seed: 7, prompt: "a forest"))
        #expect(a == b)
        #expect(a != c)
        #expect(a != d)
        let pixelsA = EmulatorImage.render(Self.parameters(seed: 7))
        let pixelsC = EmulatorImage.render(Self.parameters(seed: 8))
        let differing = zip(pixelsA, pixelsC).filter { abs(Int($0) - Int($1)) > 16 }.count
        #expect(differing > pixelsA.count / 20, "other seeds must give visibly other images")
    }

    @Test func theRuntimeReportsProgressAndStopsWhenCancelled() async throws {
        let runtime = EmulatorRuntime(stepDelay: .milliseconds(1))
        let job = RuntimeJob(prompt: "x", seed: 3, width: 64, height: 64, steps: 5, batchSize: 2, model: "emulator-v1")
        let seen = Counter()
        let images = try await runtime.run(job) { value in
            await seen.add(value)
            return true
        }
        #expect(images.map(\.seed) == [3, 4])
        #expect(await seen.values == [0.2, 0.4, 0.6, 0.8, 1.0])
        await #expect(throws: RuntimeError.self) {
            _ = try await runtime.run(job) { $0 < 0.5 }
        }
    }
}

actor Counter {
    private(set) var values: [Double] = []
    func add(_ value: Double) { values.append(value) }
}
