import Foundation

/// The pixel size of an encoded image from its header (PNG `IHDR`, JPEG start-of-frame), without
/// decoding it; nil for other formats or a damaged header.
enum ImageDimensions {
    static func of(_ data: Data) -> (width: Int, height: Int)? {
        if let size = PNGInfo.size(of: data) { return size }
        let bytes = [UInt8](data.prefix(64 * 1024))
        func u16(_ at: Int) -> Int { Int(bytes[at]) << 8 | Int(bytes[at + 1]) }
        guard bytes.count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
        var index = 2
        while index + 9 < bytes.count {
            guard bytes[index] == 0xFF else { return nil }
            let marker = bytes[index + 1]
            if marker == 0xFF { index += 1; continue }  // fill byte
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { index += 2; continue }  // no length
            let length = u16(index + 2)
            // SOF0...SOF15 except DHT (C4), JPG (C8) and DAC (CC): height, then width.
            if (0xC0...0xCF).contains(marker), ![0xC4, 0xC8, 0xCC].contains(marker) {
                return (u16(index + 7), u16(index + 5))
            }
            guard length >= 2 else { return nil }
            index += 2 + length
        }
        return nil
    }
}
