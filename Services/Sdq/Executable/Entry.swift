import Sdq

@main
struct Entry {
    static func main() async {
        await SdqCommand.main()
    }
}
