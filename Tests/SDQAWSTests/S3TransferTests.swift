import Synchronization
import Foundation
import SDQAWS
import SDQTestSupport
import Testing

/// Large objects against the AWS emulator: multipart upload (one part in memory at a time),
/// ranged reads and the size from `HEAD`.
@Suite(.enabled(if: AWSTestEnvironment.available, "needs an AWS emulator (moto)"))
struct S3TransferTests {
    /// `count` bytes: a pseudo-random 64 KiB block repeated, each copy marked with its number, so
    /// parts and ranges in the wrong place or order differ (cheap to make in a debug build).
    static func bytes(_ count: Int) -> Data {
        var state: UInt32 = 2_463_534_242
        let block = Data((0..<65_536).map { _ in
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            return UInt8(truncatingIfNeeded: state)
        })
        var data = Data(capacity: count + block.count)
        var index: UInt32 = 0
        while data.count < count {
            var marked = block
            withUnsafeBytes(of: index.littleEndian) { marked.replaceSubrange(0..<4, with: $0) }
            data.append(marked)
            index += 1
        }
        return data.prefix(count)
    }

    @Test func multipartUploadThenRangedReadsGiveTheSameBytes() async throws {
        let s3 = S3Client(client: ClientTests.client())
        let bucket = AWSTestEnvironment.uniqueStack()
        try await s3.createBucket(bucket)
        let data = Self.bytes(10 << 20 + 12_345)
        let partSize = S3Client.minimumPartSize
        let reads = Mutex(0)
        try await s3.putObjectMultipart(bucket: bucket, key: "models/big", size: Int64(data.count), contentType: "application/octet-stream", partSize: partSize) {
            offset, length in
            reads.withLock { $0 += 1 }
            #expect(length <= partSize)
            return data.subdata(in: Int(offset)..<Int(offset) + length)
        }
        #expect(reads.withLock { $0 } == 3)  // 5 MiB, 5 MiB, the rest
        #expect(try await s3.objectSize(bucket: bucket, key: "models/big") == Int64(data.count))
        var copy = Data()
        var offset: Int64 = 0
        while offset < Int64(data.count) {
            let chunk = try #require(try await s3.getObjectRange(bucket: bucket, key: "models/big", offset: offset, length: 4 << 20))
            #expect(chunk.count == min(4 << 20, data.count - Int(offset)))
            copy.append(chunk)
            offset += Int64(chunk.count)
        }
        #expect(copy == data)
        #expect(try await s3.objectSize(bucket: bucket, key: "models/none") == nil)
        #expect(try await s3.getObjectRange(bucket: bucket, key: "models/none", offset: 0, length: 10) == nil)
    }

    @Test func aFailedUploadLeavesNoObject() async throws {
        let s3 = S3Client(client: ClientTests.client())
        let bucket = AWSTestEnvironment.uniqueStack()
        try await s3.createBucket(bucket)
        struct DiskError: Error {}
        do {
            try await s3.putObjectMultipart(bucket: bucket, key: "models/half", size: 11 << 20, contentType: "application/octet-stream", partSize: 5 << 20) {
                offset, length in
                if offset > 0 { throw DiskError() }
                return Data(count: length)
            }
            Issue.record("an upload whose source failed succeeded")
        } catch {
            #expect(error.code == "ReadFailed")
        }
        #expect(try await s3.objectSize(bucket: bucket, key: "models/half") == nil)
    }

    @Test func partSizesFitTheLimits() {
        #expect(S3Client.partSize(for: 100, preferred: 1) == S3Client.minimumPartSize)
        #expect(S3Client.partSize(for: 7_000_000_000, preferred: 64 << 20) == 64 << 20)
        let huge: Int64 = 5 << 40
        let part = S3Client.partSize(for: huge, preferred: 64 << 20)
        #expect((huge + Int64(part) - 1) / Int64(part) <= Int64(S3Client.maximumParts))
    }
}
