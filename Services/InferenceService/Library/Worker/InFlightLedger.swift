import SDQPlatform

/// The messages a worker holds (prefetched, running or uploading). One heartbeat loop keeps all of
/// them invisible; on shutdown whatever is left is handed back at once.
actor InFlightLedger {
    private var receipts: [String: String] = [:]  // receipt handle -> task id (or message id)

    func add(receipt: String, label: String) { receipts[receipt] = label }
    func remove(receipt: String) { receipts.removeValue(forKey: receipt) }
    var all: [String] { Array(receipts.keys) }
    var count: Int { receipts.count }
    func contains(_ receipt: String) -> Bool { receipts[receipt] != nil }

    /// Removes and returns every receipt.
    func drain() -> [String] {
        defer { receipts.removeAll() }
        return Array(receipts.keys)
    }
}
