import Foundation
import SDQAWS
import SDQMessages
import SDQPlatform

/// An SQS queue. Visibility and waits are whole seconds on SQS: durations round up, and a
/// positive wait of under a second long-polls for one second.
struct AWSQueue: MessageQueue {
    let name: String
    let sqs: SQSClient
    let resolver: ResourceResolver

    private func url() async throws(TransportError) -> String {
        do { return try await resolver.queueURL(name) } catch {
            if error.code == "QueueDoesNotExist" || error.code == "AWS.SimpleQueueService.NonExistentQueue" {
                throw .notFound("queue \(name)")
            }
            throw TransportError(aws: error)
        }
    }

    func send(body: String, attributes: [String: String], delay: Duration) async throws(TransportError) {
        let url = try await url()
        let delaySeconds = delay <= .zero ? 0 : min(900, AWSTransport.seconds(delay))
        // X-Ray links the hop through SQS's AWSTraceHeader system attribute.
        do {
            try await sqs.sendMessage(
                url: url, body: body, attributes: attributes, traceHeader: Self.traceHeader(attributes), delaySeconds: delaySeconds)
        } catch {
            throw TransportError(aws: error)
        }
    }

    func send(batch: [OutgoingMessage]) async -> [TransportError?] {
        if batch.count == 1 {
            do throws(TransportError) {
                try await send(body: batch[0].body, attributes: batch[0].attributes, delay: .zero)
                return [nil]
            } catch { return [error] }
        }
        if batch.isEmpty { return [] }
        let url: String
        do { url = try await self.url() } catch { return batch.map { _ in error } }
        var errors = [TransportError?](repeating: nil, count: batch.count)
        for start in stride(from: 0, to: batch.count, by: 10) {
            let chunk = Array(batch[start..<min(start + 10, batch.count)])
            let entries = chunk.enumerated().map { offset, message in
                (id: "m\(offset)", body: message.body, attributes: message.attributes,
                 traceHeader: Self.traceHeader(message.attributes))
            }
            let failed: [String]
            do { failed = try await sqs.sendMessageBatch(url: url, entries: entries) } catch {
                for index in chunk.indices { errors[start + index] = TransportError(aws: error) }
                continue
            }
            // An entry SQS refused is sent alone, which reports its own error.
            for id in failed {
                guard let offset = Int(id.dropFirst()), chunk.indices.contains(offset) else { continue }
                do throws(TransportError) {
                    try await send(body: chunk[offset].body, attributes: chunk[offset].attributes, delay: .zero)
                } catch {
                    errors[start + offset] = error
                }
            }
        }
        return errors
    }

    /// X-Ray's `AWSTraceHeader` for a message's `traceparent`, if it has one.
    private static func traceHeader(_ attributes: [String: String]) -> String? {
        attributes[MessageAttribute.traceparent].flatMap(TraceCarrier.xrayHeader(traceparent:))
    }

    func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws(TransportError) -> [QueueMessage] {
        let url = try await url()
        let waitSeconds = wait <= .zero ? 0 : min(20, max(1, AWSTransport.seconds(wait)))
        do {
            let messages = try await sqs.receiveMessage(
                url: url, maxMessages: maxMessages, waitSeconds: waitSeconds, visibilityTimeout: visibilityTimeout.map(AWSTransport.seconds))
            return messages.map { message in
                QueueMessage(
                    messageID: message.messageID, body: message.body, attributes: message.attributes,
                    receiptHandle: message.receiptHandle,
                    receiveCount: message.systemAttributes["ApproximateReceiveCount"].flatMap(Int.init) ?? 1,
                    sentAtMillis: message.systemAttributes["SentTimestamp"].flatMap(Int64.init) ?? 0)
            }
        } catch {
            throw TransportError(aws: error)
        }
    }

    func delete(receiptHandle: String) async throws(TransportError) {
        let url = try await url()
        do { try await sqs.deleteMessage(url: url, receiptHandle: receiptHandle) } catch {
            if Self.isStaleReceipt(error) { return }
            throw TransportError(aws: error)
        }
    }

    func delete(receiptHandles: [String]) async throws(TransportError) {
        guard receiptHandles.count > 1 else {
            if let receipt = receiptHandles.first { try await delete(receiptHandle: receipt) }
            return
        }
        let url = try await url()
        var start = 0
        while start < receiptHandles.count {
            let chunk = Array(receiptHandles[start..<min(start + 10, receiptHandles.count)])
            start += 10
            let failed: [String]
            do {
                failed = try await sqs.deleteMessageBatch(url: url, entries: chunk.enumerated().map { (id: "m\($0.offset)", receiptHandle: $0.element) })
            } catch {
                throw TransportError(aws: error)
            }
            // An entry that failed (a stale receipt among them) is tried alone, which ignores staleness.
            for id in failed {
                guard let index = Int(id.dropFirst()), chunk.indices.contains(index) else { continue }
                try await delete(receiptHandle: chunk[index])
            }
        }
    }

    func changeVisibility(receiptHandle: String, timeout: Duration) async throws(TransportError) {
        let url = try await url()
        do { try await sqs.changeMessageVisibility(url: url, receiptHandle: receiptHandle, timeout: AWSTransport.seconds(timeout)) } catch {
            if Self.isStaleReceipt(error) { throw .receiptExpired() }
            throw TransportError(aws: error)
        }
    }

    func depth() async throws(TransportError) -> QueueDepth {
        let url = try await url()
        do {
            let attributes = try await sqs.getQueueAttributes(
                url: url, names: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
            return QueueDepth(
                visible: attributes["ApproximateNumberOfMessages"].flatMap(Int.init) ?? 0,
                inFlight: attributes["ApproximateNumberOfMessagesNotVisible"].flatMap(Int.init) ?? 0)
        } catch {
            throw TransportError(aws: error)
        }
    }

    static func isStaleReceipt(_ error: AWSError) -> Bool {
        ["ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", "InvalidParameterValue"]
            .contains(error.code)
    }
}

/// An SNS topic (raw delivery to subscribed queues; string attributes only, as SNS raw delivery
/// to SQS carries them).
struct AWSTopic: Topic {
    let name: String
    let sns: SNSClient
    let resolver: ResourceResolver

    func publish(body: String, attributes: [String: String]) async throws(TransportError) {
        do {
            let arn = try await resolver.topicARN(name)
            try await sns.publish(topicARN: arn, message: body, attributes: attributes)
        } catch {
            throw TransportError(aws: error)
        }
    }
}

/// The stack's S3 bucket.
struct AWSObjectStore: ObjectStore {
    let bucket: String
    let s3: S3Client

    func put(key: String, data: Data, contentType: String) async throws(TransportError) {
        do { try await s3.putObject(bucket: bucket, key: key, data: data, contentType: contentType) } catch { throw TransportError(aws: error) }
    }

    func get(key: String) async throws(TransportError) -> StoredObject? {
        do {
            return try await s3.getObject(bucket: bucket, key: key).map { StoredObject(key: key, data: $0.data, contentType: $0.contentType) }
        } catch {
            throw TransportError(aws: error)
        }
    }

    func exists(key: String) async throws(TransportError) -> Bool {
        do { return try await s3.headObject(bucket: bucket, key: key) } catch { throw TransportError(aws: error) }
    }

    func delete(key: String) async throws(TransportError) {
        do { try await s3.deleteObject(bucket: bucket, key: key) } catch { throw TransportError(aws: error) }
    }

    func size(key: String) async throws(TransportError) -> Int64? {
        do { return try await s3.objectSize(bucket: bucket, key: key) } catch { throw TransportError(aws: error) }
    }

    func read(key: String, offset: Int64, length: Int) async throws(TransportError) -> Data? {
        do { return try await s3.getObjectRange(bucket: bucket, key: key, offset: offset, length: length) } catch {
            throw TransportError(aws: error)
        }
    }

    /// Files up to one part go in one `PUT`; larger ones as a multipart upload of 64 MiB parts
    /// (more for files over 640 GB), read from the file one part at a time.
    func putFile(key: String, file: URL, contentType: String) async throws(TransportError) {
        let handle: FileHandle
        let size: Int64
        do {
            handle = try FileHandle(forReadingFrom: file)
            size = Int64(try handle.seekToEnd())
        } catch {
            throw .storage("cannot read \(file.path): \(error)")
        }
        defer { try? handle.close() }
        let partSize = S3Client.partSize(for: size, preferred: Self.preferredPartSize)
        do {
            if size <= Int64(partSize) {
                try handle.seek(toOffset: 0)
                let data = try handle.readToEnd() ?? Data()
                try await s3.putObject(bucket: bucket, key: key, data: data, contentType: contentType)
            } else {
                try await s3.putObjectMultipart(bucket: bucket, key: key, size: size, contentType: contentType, partSize: partSize) {
                    offset, length in
                    try handle.seek(toOffset: UInt64(offset))
                    return try handle.read(upToCount: length) ?? Data()
                }
            }
        } catch let error as AWSError {
            throw TransportError(aws: error)
        } catch {
            throw .storage("cannot read \(file.path): \(error)")
        }
    }

    /// The part size of multipart uploads before it grows for very large files.
    static let preferredPartSize = 64 << 20

    func presignedPutURL(key: String, expiresIn: Duration, headers: [(String, String)]) async throws(TransportError) -> String? {
        do {
            return try await s3.presignedURL(
                method: "PUT", bucket: bucket, key: key, expires: AWSTransport.seconds(expiresIn), headers: headers)
        } catch {
            throw TransportError(aws: error)
        }
    }

    func presignedGetURL(key: String, expiresIn: Duration) async throws(TransportError) -> String? {
        do {
            return try await s3.presignedURL(method: "GET", bucket: bucket, key: key, expires: AWSTransport.seconds(expiresIn))
        } catch {
            throw TransportError(aws: error)
        }
    }
}
