import Foundation
import SDQPlatform
import SQLiteNIO

/// The model registry in the embedded database: a `models` table of JSON records by name.
extension EmbeddedTaskStore {
    func putModel(_ record: ModelRecord, replace: Bool) async throws(TransportError) -> Bool {
        guard let data = try? JSONEncoder().encode(record) else { throw .storage("cannot encode model \(record.name)") }
        let text = String(decoding: data, as: UTF8.self)
        let sql =
            replace
            ? "INSERT INTO models (name, record) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET record = excluded.record RETURNING name"
            : "INSERT INTO models (name, record) VALUES (?, ?) ON CONFLICT(name) DO NOTHING RETURNING name"
        return !(try await database.query(sql, [.text(record.name), .text(text)])).isEmpty
    }

    func models() async throws(TransportError) -> [ModelRecord] {
        try await database.query("SELECT record FROM models ORDER BY name").compactMap(Self.model(from:))
    }

    func model(named name: String) async throws(TransportError) -> ModelRecord? {
        try await database.query("SELECT record FROM models WHERE name = ?", [.text(name)]).first.flatMap(Self.model(from:))
    }

    func deleteModel(named name: String) async throws(TransportError) -> Bool {
        !(try await database.query("DELETE FROM models WHERE name = ? RETURNING name", [.text(name)])).isEmpty
    }

    private static func model(from row: SQLiteRow) -> ModelRecord? {
        row.text("record").flatMap { try? JSONDecoder().decode(ModelRecord.self, from: Data($0.utf8)) }
    }
}
