import ResultWriter
import SDQPlatform

@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "result-writer") { context, _, logger in
            [ResultWriter(context: context, logger: logger)]
        }
    }
}
