import Crypto
import Foundation

/// The emulator's picture: a deterministic function of prompt, negative prompt, model, seed and
/// size. The prompt picks the palette, the seed places soft colour fields over it, so the same
/// seed always gives the same bytes and another seed visibly another image.
public enum EmulatorImage {
    /// What one picture depends on.
    public struct Parameters: Sendable, Equatable {
        public var prompt: String
        public var negativePrompt: String
        public var model: String
        public var seed: Int64
        public var width: Int
        public var height: Int
        public var steps: Int
        public var cfgScale: Double
        public var sampler: String

        public init(
            prompt: String, negativePrompt: String = "", model: String, seed: Int64, width: Int, height: Int,
            steps: Int, cfgScale: Double, sampler: String
        ) {
            self.prompt = prompt
            self.negativePrompt = negativePrompt
            self.model = model
            self.seed = seed
            self.width = width
            self.height = height
            self.steps = steps
            self.cfgScale = cfgScale
            self.sampler = sampler
        }

        /// The A1111-style `parameters` text stored in the PNG.
        public var infotext: String {
            var lines = [prompt]
            if !negativePrompt.isEmpty { lines.append("Negative prompt: \(negativePrompt)") }
            let cfg = cfgScale.rounded() == cfgScale ? String(Int(cfgScale)) : String(cfgScale)
            lines.append(
                "Steps: \(steps), Sampler: \(sampler), CFG scale: \(cfg), Seed: \(seed), "
                    + "Size: \(width)x\(height), Model: \(model), Version: sdq-emulator")
            return lines.joined(separator: "\n")
        }
    }

    /// Renders RGB pixels (`width * height * 3` bytes).
    public static func render(_ p: Parameters) -> [UInt8] {
        let digest = Array(SHA256.hash(data: Data("\(p.model)\u{0}\(p.prompt)\u{0}\(p.negativePrompt)".utf8)))
        var random = SplitMix64(seed: UInt64(bitPattern: p.seed) ^ 0x5DEE_CE66_D1CE_4E5B)
        let top = (Double(digest[0]), Double(digest[1]), Double(digest[2]))
        let bottom = (Double(digest[3]), Double(digest[4]), Double(digest[5]))
        struct Field { var x, y, radius2: Double; var r, g, b: Double }
        let fields = (0..<6).map { index -> Field in
            let base = 6 + index * 3
            let radius = (0.15 + random.unit() * 0.35) * Double(max(p.width, p.height))
            return Field(
                x: random.unit() * Double(p.width), y: random.unit() * Double(p.height), radius2: radius * radius,
                r: Double(digest[base]), g: Double(digest[base + 1]), b: Double(digest[base + 2]))
        }
        var pixels = [UInt8](repeating: 0, count: p.width * p.height * 3)
        let grain = UInt64(bitPattern: p.seed) &* 0x9E37_79B9_7F4A_7C15
        pixels.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for y in 0..<p.height {
                let t = p.height > 1 ? Double(y) / Double(p.height - 1) : 0
                let baseR = top.0 + (bottom.0 - top.0) * t
                let baseG = top.1 + (bottom.1 - top.1) * t
                let baseB = top.2 + (bottom.2 - top.2) * t
                for x in 0..<p.width {
                    var r = baseR, g = baseG, b = baseB
                    for field in fields {
                        let dx = Double(x) - field.x, dy = Double(y) - field.y
                        let d2 = dx * dx + dy * dy
                        if d2 < field.radius2 {
                            let w = 1 - d2 / field.radius2
                            let weight = w * w * 0.85
                            r += (field.r - r) * weight
                            g += (field.g - g) * weight
                            b += (field.b - b) * weight
                        }
                    }
                    var h = (UInt64(y) << 32 | UInt64(x)) ^ grain
                    h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
                    h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
                    h ^= h >> 31
                    let noise = Double(Int(h & 7) - 4)
                    out[offset] = clamp(r + noise)
                    out[offset + 1] = clamp(g + noise)
                    out[offset + 2] = clamp(b + noise)
                    offset += 3
                }
            }
        }
        return pixels
    }

    /// Renders and encodes as PNG with the `parameters` text chunk.
    public static func png(_ parameters: Parameters) throws(PNGEncoder.EncodingError) -> Data {
        try PNGEncoder.encode(
            rgb: render(parameters), width: parameters.width, height: parameters.height,
            text: [("parameters", parameters.infotext)])
    }

    /// The longest side of a preview.
    public static let previewSide = 128

    /// A live preview at `fraction` (0…1) of the sampling: the final picture, scaled down to at
    /// most ``previewSide`` a side, seen through noise that fades as the steps go (as a
    /// diffusion's latents clear). At 1 it is the final picture at preview size. PNG.
    public static func preview(_ parameters: Parameters, fraction: Double) throws(PNGEncoder.EncodingError) -> Data {
        let scale = min(1, Double(previewSide) / Double(max(1, max(parameters.width, parameters.height))))
        var small = parameters
        small.width = max(1, Int((Double(parameters.width) * scale).rounded()))
        small.height = max(1, Int((Double(parameters.height) * scale).rounded()))
        return try PNGEncoder.encode(rgb: previewPixels(small, fraction: fraction), width: small.width, height: small.height, text: [])
    }

    /// The pixels of ``preview(_:fraction:)`` for parameters already at preview size.
    public static func previewPixels(_ small: Parameters, fraction: Double) -> [UInt8] {
        let clear = min(1, max(0, fraction))
        var pixels = render(small)
        var noise = SplitMix64(seed: UInt64(bitPattern: small.seed) ^ 0xA5A5_5A5A_0F0F_F0F0)
        for index in pixels.indices {
            let grey = Double(noise.next() & 0xFF)
            pixels[index] = clamp(Double(pixels[index]) * clear + grey * (1 - clear))
        }
        return pixels
    }

    @inline(__always)
    private static func clamp(_ value: Double) -> UInt8 {
        UInt8(max(0, min(255, value.rounded())))
    }
}

/// A small, fast, seedable PRNG (SplitMix64); identical output on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
