import Foundation

/// Large objects without holding them in memory: the size from `HEAD`, ranged `GET`s, and
/// multipart upload from a file (one part in memory at a time). A model checkpoint is larger
/// than one `PUT` allows (5 GiB; SDXL base is about 6.9 GB).
extension S3Client {
    /// The object's size in bytes, or nil when it does not exist.
    public func objectSize(bucket: String, key: String) async throws(AWSError) -> Int64? {
        let (endpoint, path) = location(bucket: bucket, key: key)
        do throws(AWSError) {
            let response = try await client.send(service: "s3", endpoint: endpoint, method: .HEAD, path: path, errorFormat: .xml)
            guard let length = response.headers["content-length"].flatMap({ Int64($0) }) else {
                throw AWSError(code: "InvalidResponse", message: "HEAD \(key) answered without a Content-Length")
            }
            return length
        } catch where error.statusCode == 404 || error.code == "NoSuchKey" {
            return nil
        }
    }

    /// Bytes `offset ..< offset + length` of an object (fewer at its end), or nil when the object
    /// does not exist. One request; a caller reads a large object as a run of these.
    public func getObjectRange(bucket: String, key: String, offset: Int64, length: Int) async throws(AWSError) -> Data? {
        precondition(length > 0 && offset >= 0)
        let (endpoint, path) = location(bucket: bucket, key: key)
        do {
            let response = try await client.send(
                service: "s3", endpoint: endpoint, method: .GET, path: path,
                headers: [("Range", "bytes=\(offset)-\(offset + Int64(length) - 1)")], errorFormat: .xml)
            // 206 with the range; a 200 (a server that ignores ranges) carries the whole object.
            if response.status == 200, offset > 0 || response.body.count > length {
                let start = Int(min(Int64(response.body.count), offset))
                return response.body.subdata(in: start..<min(response.body.count, start + length))
            }
            return response.body
        } catch where error.code == "NoSuchKey" || error.statusCode == 404 {
            return nil
        } catch where error.code == "InvalidRange" || error.statusCode == 416 {
            return Data()
        }
    }

    /// The smallest part S3 accepts (all parts but the last).
    public static let minimumPartSize = 5 << 20
    /// The most parts one upload may have.
    public static let maximumParts = 10_000

    /// The part size for a file of `size` bytes: `preferred`, grown so the file fits in
    /// ``maximumParts`` parts, and never below ``minimumPartSize``.
    public static func partSize(for size: Int64, preferred: Int) -> Int {
        let needed = Int((size + Int64(maximumParts) - 1) / Int64(maximumParts))
        return max(minimumPartSize, preferred, needed)
    }

    /// Uploads `size` bytes produced by `read` (called with an offset and a length; it returns
    /// exactly that many bytes, fewer only at the end) as a multipart upload of `partSize`-byte
    /// parts, one part in memory at a time. The object appears only when every part is in
    /// (CompleteMultipartUpload); on any failure the upload is aborted, so no parts linger.
    public func putObjectMultipart(
        bucket: String, key: String, size: Int64, contentType: String, partSize: Int,
        read: (Int64, Int) throws -> Data
    ) async throws(AWSError) {
        let (endpoint, path) = location(bucket: bucket, key: key)
        let created = try await client.send(
            service: "s3", endpoint: endpoint, method: .POST, path: path, query: "uploads",
            headers: [("Content-Type", contentType)], errorFormat: .xml)
        guard let uploadID = XMLNode.parse(created.body)?.first("UploadId")?.text, !uploadID.isEmpty else {
            throw AWSError(code: "InvalidResponse", message: "CreateMultipartUpload answered without an UploadId")
        }
        let encodedID = URIEncoding.encode(uploadID, keepSlash: false)
        do throws(AWSError) {
            var parts: [(number: Int, etag: String)] = []
            var offset: Int64 = 0
            var number = 1
            repeat {
                let length = Int(min(Int64(partSize), size - offset))
                let data: Data
                do { data = try read(offset, length) } catch {
                    throw AWSError(code: "ReadFailed", message: "cannot read bytes \(offset)… of the upload: \(error)")
                }
                guard data.count == length else {
                    throw AWSError(code: "ReadFailed", message: "the file changed while it was uploaded (short read at \(offset))")
                }
                let response = try await client.send(
                    service: "s3", endpoint: endpoint, method: .PUT, path: path, query: "partNumber=\(number)&uploadId=\(encodedID)",
                    headers: [("Content-Length", String(data.count))], body: data, errorFormat: .xml)
                guard let etag = response.headers["etag"] else {
                    throw AWSError(code: "InvalidResponse", message: "UploadPart \(number) answered without an ETag")
                }
                parts.append((number, etag))
                offset += Int64(length)
                number += 1
            } while offset < size
            let list = parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(xmlEscape($0.etag))</ETag></Part>" }.joined()
            let body = Data("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\(list)</CompleteMultipartUpload>".utf8)
            let completed = try await client.send(
                service: "s3", endpoint: endpoint, method: .POST, path: path, query: "uploadId=\(encodedID)",
                headers: [("Content-Type", "application/xml")], body: body, errorFormat: .xml)
            // CompleteMultipartUpload may answer 200 with an error in the body.
            if let document = XMLNode.parse(completed.body), document.name == "Error" {
                throw AWSError(
                    code: document.child("Code") ?? "InternalError", message: document.child("Message") ?? "CompleteMultipartUpload failed")
            }
        } catch {
            _ = try? await client.send(
                service: "s3", endpoint: endpoint, method: .DELETE, path: path, query: "uploadId=\(encodedID)", errorFormat: .xml)
            throw error
        }
    }
}
