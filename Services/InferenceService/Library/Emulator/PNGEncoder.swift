import CompressNIO
import Foundation
import NIOCore

/// Encodes 8-bit RGB images as PNG (zlib-compressed IDAT, filter type 0) with text chunks.
public enum PNGEncoder {
    /// A PNG encoding failure (only possible if zlib fails).
    public struct EncodingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Encodes `rgb` (`width * height * 3` bytes, row-major) with the given text chunks.
    /// Text that Latin-1 can hold goes in `tEXt`, anything else in an uncompressed UTF-8 `iTXt`.
    public static func encode(rgb: [UInt8], width: Int, height: Int, text: [(String, String)] = [])
        throws(EncodingError) -> Data
    {
        precondition(rgb.count == width * height * 3, "pixel buffer does not match the size")
        var png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var header = Data()
        header.appendBigEndian(UInt32(width))
        header.appendBigEndian(UInt32(height))
        header.append(contentsOf: [8, 2, 0, 0, 0])  // 8-bit, truecolour, deflate, adaptive, no interlace
        appendChunk("IHDR", header, to: &png)
        for (keyword, value) in text {
            if let latin1 = value.data(using: .isoLatin1) {
                appendChunk("tEXt", Data(keyword.utf8) + [0] + latin1, to: &png)
            } else {
                // keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0
                appendChunk("iTXt", Data(keyword.utf8) + [0, 0, 0, 0, 0] + Data(value.utf8), to: &png)
            }
        }
        let stride = width * 3
        var raw = ByteBufferAllocator().buffer(capacity: (stride + 1) * height)
        rgb.withUnsafeBufferPointer { pixels in
            for row in 0..<height {
                raw.writeInteger(UInt8(0))
                raw.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: pixels[row * stride..<(row + 1) * stride])))
            }
        }
        let compressed: ByteBuffer
        do {
            compressed = try raw.compress(with: .zlib())
        } catch {
            throw EncodingError(description: "zlib failed: \(error)")
        }
        appendChunk("IDAT", Data(compressed.readableBytesView), to: &png)
        appendChunk("IEND", Data(), to: &png)
        return png
    }

    private static func appendChunk(_ type: String, _ payload: Data, to png: inout Data) {
        png.appendBigEndian(UInt32(payload.count))
        let typeBytes = Data(type.utf8)
        png.append(typeBytes)
        png.append(payload)
        png.appendBigEndian(CRC32.checksum(typeBytes + payload))
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    /// The CRC-32 of `data`.
    public static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

extension Data {
    mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }
}
