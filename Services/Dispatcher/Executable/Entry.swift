import Dispatcher
import SDQPlatform
import SDQStack

@main
struct Entry {
    static func main() async {
        await ServiceRunner.run(name: "dispatcher") { context, _, logger in
            [Dispatcher(context: context, logger: logger)]
        }
    }
}
