import SDQMessages

extension Sdq_V1_ModelAsset {
    /// A registered model as a task carries it, applied with `weight` (LoRAs).
    public init(record: ModelRecord, weight: Double = 1) {
        self.init()
        name = record.name
        kind = record.kind.rawValue
        sha256 = record.sha256
        bytes = record.bytes
        key = record.key
        fileName = record.fileName
        self.weight = weight
    }
}
