/// Items waiting per tenant, taken round-robin across the tenants that have any: the order in
/// which the dispatcher admits held tasks to a lane.
///
/// Each tenant's items keep their arrival order. ``take()`` serves the tenant at the turn and
/// moves the turn on, so with two tenants waiting the lane gets one of each in turn however many
/// either queued. A tenant that starts waiting joins at the end of the current round (after every
/// tenant already waiting has had its turn), so arriving does not jump the line either.
/// A value: the holder adds its own locking.
struct FairShareQueue<Item> {
    /// Per tenant, its items from `head` on (taken ones are dropped from the front in bulk).
    private var lines: [String: Line] = [:]
    /// The tenants with items, in turn order; `turn` indexes the next to serve.
    private var ring: [String] = []
    private var turn = 0
    /// Items held, all tenants together.
    private(set) var count = 0

    private struct Line {
        var items: [Item] = []
        var head = 0
        var isEmpty: Bool { head == items.count }
        var count: Int { items.count - head }

        mutating func popFirst() -> Item? {
            guard head < items.count else { return nil }
            let item = items[head]
            head += 1
            if head > 64, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return item
        }
    }

    var isEmpty: Bool { count == 0 }

    /// Adds `item` at the end of `tenant`'s line.
    mutating func append(_ item: Item, tenant: String) {
        if lines[tenant] == nil {
            lines[tenant] = Line()
            // Served after every tenant already in the round.
            ring.insert(tenant, at: turn)
            turn += 1
            if turn >= ring.count { turn = 0 }
        }
        lines[tenant]!.items.append(item)
        count += 1
    }

    /// The next item: the oldest of the tenant whose turn it is.
    mutating func take() -> Item? {
        guard !ring.isEmpty else { return nil }
        if turn >= ring.count { turn = 0 }
        let tenant = ring[turn]
        let item = lines[tenant]!.popFirst()!
        count -= 1
        if lines[tenant]!.isEmpty {
            lines[tenant] = nil
            ring.remove(at: turn)
            if turn >= ring.count { turn = 0 }
        } else {
            turn = (turn + 1) % ring.count
        }
        return item
    }

    /// Up to `limit` items, in turn order.
    mutating func take(upTo limit: Int) -> [Item] {
        var taken: [Item] = []
        while taken.count < limit, let item = take() { taken.append(item) }
        return taken
    }

    /// Removes and returns every item.
    mutating func removeAll() -> [Item] {
        var all: [Item] = []
        while let item = take() { all.append(item) }
        return all
    }

    /// Items waiting per tenant.
    var waiting: [String: Int] { lines.mapValues(\.count) }
}
