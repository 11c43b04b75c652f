@testable import Dispatcher
import Testing

@Suite struct FairShareQueueTests {
    @Test func twoTenantsTakeTurnsHoweverManyEitherQueued() {
        var queue = FairShareQueue<String>()
        for index in 0..<100 { queue.append("big-\(index)", tenant: "big") }
        for index in 0..<3 { queue.append("small-\(index)", tenant: "small") }
        #expect(queue.count == 103)
        #expect(queue.take(upTo: 8) == ["big-0", "small-0", "big-1", "small-1", "big-2", "small-2", "big-3", "big-4"])
        #expect(queue.waiting == ["big": 95])
    }

    @Test func aTenantThatStartsWaitingJoinsAtTheEndOfTheRound() {
        var queue = FairShareQueue<String>()
        for tenant in ["a", "b", "c"] { for index in 0..<3 { queue.append("\(tenant)\(index)", tenant: tenant) } }
        #expect(queue.take() == "a0")  // b is next
        queue.append("d0", tenant: "d")
        #expect(queue.take(upTo: 5) == ["b0", "c0", "a1", "d0", "b1"])
    }

    @Test func eachTenantKeepsItsOwnOrderAndEmptiesCleanly() {
        var queue = FairShareQueue<Int>()
        for index in 0..<500 { queue.append(index, tenant: index % 7 == 0 ? "sevens" : "rest") }
        var seen: [String: [Int]] = [:]
        while let item = queue.take() { seen[item % 7 == 0 ? "sevens" : "rest", default: []].append(item) }
        #expect(seen["sevens"] == Array(stride(from: 0, to: 500, by: 7)))
        #expect(seen["rest"] == (0..<500).filter { $0 % 7 != 0 })
        #expect(queue.isEmpty && queue.count == 0 && queue.take() == nil)
        queue.append(1, tenant: "x")
        #expect(queue.removeAll() == [1])
    }
}
