import Foundation
import SDQPlatform
import SDQTestSupport
import Testing
import SDQStack

@Suite struct EmbeddedTopicTests {
    @Test func fansOutToEverySubscriptionThatMatches() async throws {
        let fixture = try await EmbeddedFixture.make()
        try await fixture.transport.provision(
            Topology(
                queues: ["all", "high", "gpu"].map {
                    QueueSpec(name: $0, visibilityTimeout: .seconds(30), maxReceiveCount: 0, deadLetterQueue: nil)
                },
                topics: ["events"],
                subscriptions: [
                    SubscriptionSpec(topic: "events", queue: "all"),
                    SubscriptionSpec(topic: "events", queue: "high", filterPolicy: FilterPolicy(["sdq-priority": [.equals("high")]])),
                    SubscriptionSpec(topic: "events", queue: "gpu", filterPolicy: FilterPolicy(["sdq-pool": [.prefix("gpu-")]])),
                ]))
        let topic = fixture.transport.topic(named: "events")
        try await topic.publish(body: "one", attributes: ["sdq-priority": "high", "sdq-pool": "cpu"])
        try await topic.publish(body: "two", attributes: ["sdq-priority": "normal", "sdq-pool": "gpu-a10"])
        func bodies(_ queue: String) async throws -> [String] {
            try await fixture.queue(queue).receive(maxMessages: 10, wait: .zero, visibilityTimeout: nil).map(\.body).sorted()
        }
        #expect(try await bodies("all") == ["one", "two"])
        #expect(try await bodies("high") == ["one"])
        #expect(try await bodies("gpu") == ["two"])
    }

    @Test func publishingToAnUnknownTopicFails() async throws {
        let fixture = try await EmbeddedFixture.make()
        await #expect(throws: TransportError.self) {
            try await fixture.transport.topic(named: "missing").publish(body: "x", attributes: [:])
        }
    }
}

@Suite struct FilterPolicyTests {
    @Test func conditions() throws {
        let policy = try JSONDecoder().decode(
            FilterPolicy.self,
            from: Data(#"{"pool":["a","b"],"tier":[{"anything-but":["free"]}],"trace":[{"exists":false}]}"#.utf8))
        #expect(policy.matches(["pool": "a", "tier": "pro"]))
        #expect(!policy.matches(["pool": "c", "tier": "pro"]))
        #expect(!policy.matches(["pool": "a", "tier": "free"]))
        #expect(!policy.matches(["pool": "a"]))  // anything-but needs the attribute
        #expect(!policy.matches(["pool": "a", "tier": "pro", "trace": "x"]))
        let again = try JSONDecoder().decode(FilterPolicy.self, from: Data(policy.jsonString().utf8))
        #expect(again == policy)
    }
}

@Suite struct EmbeddedTaskStoreTests {
    @Test func createIsIdempotentByKey() async throws {
        let fixture = try await EmbeddedFixture.make()
        var first = makeRecord()
        first.idempotencyKey = "client-key"
        #expect(try await fixture.transport.tasks.create(first) == .created(first))
        var second = makeRecord()
        second.idempotencyKey = "client-key"
        #expect(try await fixture.transport.tasks.create(second) == .existing(first))
        #expect(try await fixture.transport.tasks.get(id: second.id) == nil)
    }

    @Test func updatesApplyOnlyFromAllowedStates() async throws {
        let fixture = try await EmbeddedFixture.make()
        let record = makeRecord()
        _ = try await fixture.transport.tasks.create(record)
        let running = try await fixture.transport.tasks.update(id: record.id, ifStatusIn: [.queued]) { $0.status = .running }
        guard case .applied(let updated) = running else { Issue.record("expected applied"); return }
        #expect(updated.status == .running)
        let again = try await fixture.transport.tasks.update(id: record.id, ifStatusIn: [.queued]) { $0.status = .failed }
        #expect(again == .conflict(updated))
        #expect(try await fixture.transport.tasks.update(id: "nope", ifStatusIn: [.queued]) { _ in } == .notFound)
    }

    @Test func racingTerminalTransitionsHaveExactlyOneWinner() async throws {
        let fixture = try await EmbeddedFixture.make()
        let record = makeRecord(status: .running)
        _ = try await fixture.transport.tasks.create(record)
        let store = fixture.transport.tasks
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                group.addTask {
                    let outcome = try await store.update(id: record.id, ifStatusIn: TaskStatus.nonTerminal) {
                        $0.status = index.isMultiple(of: 2) ? .succeeded : .cancelled
                        $0.worker = "w\(index)"
                    }
                    if case .applied = outcome { return true }
                    return false
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        #expect(try await store.get(id: record.id)?.status.isTerminal == true)
    }

    @Test func expiredRecordsAreNotReturned() async throws {
        let fixture = try await EmbeddedFixture.make()
        var record = makeRecord()
        record.expiresAt = EpochClock.nowMillis() - 1
        _ = try await fixture.transport.tasks.create(record)
        #expect(try await fixture.transport.tasks.get(id: record.id) == nil)
        try await fixture.transport.purgeExpired()
        var fresh = makeRecord(id: record.id)
        fresh.expiresAt = EpochClock.nowMillis() + 60_000
        #expect(try await fixture.transport.tasks.create(fresh) == .created(fresh))
    }
}

@Suite struct EmbeddedObjectStoreTests {
    @Test func putGetExistsDelete() async throws {
        let fixture = try await EmbeddedFixture.make()
        let objects = fixture.transport.objects
        #expect(objects.bucket == "test-data")
        try await objects.put(key: "outputs/t1/image-0.png", data: Data([1, 2, 3]), contentType: "image/png")
        #expect(try await objects.get(key: "outputs/t1/image-0.png") == StoredObject(key: "outputs/t1/image-0.png", data: Data([1, 2, 3]), contentType: "image/png"))
        #expect(try await objects.exists(key: "outputs/t1/image-0.png"))
        try await objects.put(key: "outputs/t1/image-0.png", data: Data([4]), contentType: "image/png")
        #expect(try await objects.get(key: "outputs/t1/image-0.png")?.data == Data([4]))
        try await objects.delete(key: "outputs/t1/image-0.png")
        #expect(try await objects.get(key: "outputs/t1/image-0.png") == nil)
        #expect(!(try await objects.exists(key: "outputs/t1/image-0.png")))
    }

    @Test func keysCannotEscapeTheBucket() async throws {
        let fixture = try await EmbeddedFixture.make()
        for key in ["../escape", "a/../../b", "/abs", "", "a//b"] {
            await #expect(throws: TransportError.self) {
                try await fixture.transport.objects.put(key: key, data: Data(), contentType: "x")
            }
        }
    }
}

/// The database's connection has one owner that closes it once: `close()` twice, then the last
/// reference dropped (its `deinit`), must neither crash nor lose or lock the data. SQLiteNIO's
/// close is not idempotent: a second close passes a NULL handle to `sqlite3_update_hook`. Debug
/// builds compile SQLite with `SQLITE_ENABLE_API_ARMOR`, which turns that into a no-op, so only a
/// release build crashes; `scripts/release-check.sh` (CI) runs the release `sdq generate` for that.
@Suite struct EmbeddedDatabaseLifetimeTests {
    @Test func closingTwiceAndDroppingClosesOnce() async throws {
        let directory = TemporaryDirectory()
        for round in 0..<3 {
            var transport: EmbeddedTransport? = try await EmbeddedTransport.open(
                directory: directory.url.path, names: ResourceNames(stack: "lifetime"), logger: testLogger())
            _ = try await transport?.tasks.create(makeRecord(id: "round-\(round)"))
            await transport?.close()
            await transport?.close()
            transport = nil
            try await Task.sleep(for: .milliseconds(50))
        }
        // Dropped without close(): deinit closes it on the thread pool, once.
        var dropped: EmbeddedTransport? = try await EmbeddedTransport.open(
            directory: directory.url.path, names: ResourceNames(stack: "lifetime"), logger: testLogger())
        _ = dropped
        dropped = nil
        try await Task.sleep(for: .milliseconds(100))
        let reopened = try await EmbeddedTransport.open(directory: directory.url.path, names: ResourceNames(stack: "lifetime"), logger: testLogger())
        #expect(try await reopened.tasks.get(id: "round-2") != nil)
        await reopened.close()
    }
}

/// What the data folder looks like to other users and after a crash.
@Suite struct EmbeddedDataFolderTests {
    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? 0) & 0o777
    }

    @Test func theFolderIsTheOwnersAndTheDatabaseUnreadableToOthers() async throws {
        let directory = TemporaryDirectory()
        let data = directory.url.appendingPathComponent("data").path
        _ = try await EmbeddedTransport.open(directory: data, names: ResourceNames(stack: "t"), logger: testLogger())
        #expect(try Self.mode(data) == 0o700)
        #expect(try Self.mode(data + "/sdq.sqlite") == 0o600)
        // An sdq folder loosened later (a permissive umask, a copy) is tightened again.
        chmod(data + "/sdq.sqlite", 0o644)
        chmod(data, 0o755)
        let reopened = try await EmbeddedTransport.open(directory: data, names: ResourceNames(stack: "t"), logger: testLogger())
        _ = try await reopened.secret(named: "object-url-key")
        #expect(try Self.mode(data) == 0o700)
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: data + "/sdq.sqlite" + suffix) {
            #expect(try Self.mode(data + "/sdq.sqlite" + suffix) == 0o600, "sdq.sqlite\(suffix)")
        }
    }

    @Test func aFolderThatIsNotSdqsKeepsItsModeButTheDatabaseIsPrivate() async throws {
        // `SDQ_DATA_DIR=/tmp` or a shared volume: sdq does not take the folder over.
        let directory = TemporaryDirectory()
        let shared = directory.url.appendingPathComponent("shared").path
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o1777])
        try Data("other".utf8).write(to: URL(fileURLWithPath: shared + "/someone-elses-file"))
        _ = try await EmbeddedTransport.open(directory: shared, names: ResourceNames(stack: "t"), logger: testLogger())
        let mode = (try FileManager.default.attributesOfItem(atPath: shared)[.posixPermissions] as? Int ?? 0) & 0o7777
        #expect(mode == 0o1777)
        #expect(try Self.mode(shared + "/sdq.sqlite") == 0o600)
    }

    @Test func unfinishedWritesFromBeforeAreRemovedAtStartAndFreshOnesKept() async throws {
        let directory = TemporaryDirectory()
        let names = ResourceNames(stack: "t")
        let objects = directory.url.appendingPathComponent("objects/\(names.bucket)/outputs/x")
        try FileManager.default.createDirectory(at: objects, withIntermediateDirectories: true)
        let old = objects.appendingPathComponent(".image-0.png.0000.tmp")
        let fresh = objects.appendingPathComponent(".image-1.png.1111.tmp")
        let kept = objects.appendingPathComponent("image-2.png")
        for file in [old, fresh, kept] { try Data([1]).write(to: file) }
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: old.path)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: kept.path)
        _ = try await EmbeddedTransport.open(directory: directory.path, names: names, logger: testLogger())
        #expect(!FileManager.default.fileExists(atPath: old.path))
        // Another process sharing the folder may be writing this one now.
        #expect(FileManager.default.fileExists(atPath: fresh.path))
        #expect(FileManager.default.fileExists(atPath: kept.path))
    }
}
